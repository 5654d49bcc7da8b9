"""Peer 1: corpus -> tokenized memory-mapped Arrow. Hugging Face `datasets`
(load_dataset -> map(tokenize, batched, num_proc=cores) -> save_to_disk) and a
Megatron-style pool of `tokenizers` writing one binary token file, against
`cocolm prepare`, on the same >= 200 MB corpus and tokenizer, alternating rounds.

    python prepare_vs_datasets.py TOKENIZER_JSON [ROUNDS]
Environment: COCOLM, CORES, SCRATCH, SHARED (benches/peers/env.sh sets them).
"""

import os
import shutil
import sys

from common import alternate, report, timed
from inputs import SCRATCH, corpus

DATASETS = r"""
import sys
from datasets import load_dataset
from tokenizers import Tokenizer
corpus, tokenizer, out, cache, cores = sys.argv[1:6]
tok = Tokenizer.from_file(tokenizer)
def encode(batch):
    return {"input_ids": [e.ids for e in tok.encode_batch(batch["text"], add_special_tokens=False)]}
ds = load_dataset("json", data_files=corpus, split="train", cache_dir=cache)
ds = ds.map(encode, batched=True, num_proc=int(cores), remove_columns=["text"])
ds.save_to_disk(out)
"""

MEGATRON = r"""
import json, sys
from multiprocessing import Pool
import numpy as np
from tokenizers import Tokenizer
corpus, tokenizer, out, cores = sys.argv[1:5]
def init():
    global tok
    tok = Tokenizer.from_file(tokenizer)
def encode(line):
    return np.asarray(tok.encode(json.loads(line)["text"], add_special_tokens=False).ids, dtype=np.uint32)
with open(corpus, encoding="utf-8") as f, open(out, "wb") as sink, Pool(int(cores), initializer=init) as pool:
    for ids in pool.imap(encode, f, chunksize=64):
        sink.write(ids.tobytes())
"""


def main():
    tokenizer = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cores = os.environ["CORES"]
    text = corpus()
    mb = text.stat().st_size / 1e6
    work = SCRATCH / "prepare-peer"

    def fresh(name):
        path = work / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def cocolm():
        out = fresh("cocolm")
        t, _ = timed([os.environ["COCOLM"], "prepare", "--input", str(text), "--tokenizer", tokenizer,
                      "--out", str(out), "--seq-len", "512", "--threads", cores])
        return mb / t

    def datasets():
        out, cache = fresh("datasets"), fresh("hf-cache")
        t, _ = timed([sys.executable, "-c", DATASETS, str(text), tokenizer, str(out), str(cache), cores])
        return mb / t

    def megatron():
        out = fresh("megatron.bin")
        t, _ = timed([sys.executable, "-c", MEGATRON, str(text), tokenizer, str(out), cores])
        return mb / t

    name = os.path.basename(tokenizer)
    results = alternate([("cocolm", cocolm), ("datasets", datasets), ("megatron-style", megatron)], rounds)
    report(f"prepare ({name}, {mb:.0f} MB)", "MB/s", results, higher_is_better=True,
           extra={"cores": int(cores), "tokenizer": name})


if __name__ == "__main__":
    main()
