"""Peer 2: the bare tokenizer floor. Python `tokenizers` `encode_batch` over the texts
held in memory, and `cocolm bench prepare` (its bare Rust encoding of the same texts and
the whole prepare job), alternating rounds. Goal: prepare >= 0.8x the fastest bare engine.

    python tokenizer_floor.py TOKENIZER_JSON [ROUNDS]
"""

import json
import os
import sys
import time

from common import alternate, report, timed
from inputs import SCRATCH, corpus, documents


def main():
    tokenizer = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    from tokenizers import Tokenizer

    # A slice of the corpus (about 50 MB) keeps each round under a minute on 2 cores.
    texts = documents()
    while sum(len(t) for t in texts) < 50 << 20:
        texts = texts + texts
    mb = sum(len(t.encode()) for t in texts) / 1e6
    text_file = SCRATCH / "floor.jsonl"
    if not text_file.exists():
        with open(text_file, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    tok = Tokenizer.from_file(tokenizer)
    last = {}

    def python_bare():
        start = time.perf_counter()
        tok.encode_batch(texts, add_special_tokens=False)
        return mb / (time.perf_counter() - start)

    def cocolm_bench():
        # Three in-process rounds, medians: the first bare encoding runs with the
        # tokenizer's word caches cold, every later run (prepare's too) with them warm.
        _, out = timed([os.environ["COCOLM"], "bench", "prepare", "--input", str(text_file),
                        "--tokenizer", tokenizer, "--threads", os.environ["CORES"],
                        "--rounds", "3"])
        last.update(json.loads(out.strip().splitlines()[-1]))
        rust_bare.append(last["bare_mb_per_s"])
        return last["prepare_mb_per_s"]

    rust_bare = []
    results = alternate([("cocolm", cocolm_bench), ("python tokenizers encode_batch", python_bare)], rounds)
    results["rust bare engine"] = rust_bare
    report(f"tokenizer floor ({os.path.basename(tokenizer)}, {mb:.0f} MB)", "MB/s", results,
           higher_is_better=True, extra={"cores": int(os.environ["CORES"])})


if __name__ == "__main__":
    main()
