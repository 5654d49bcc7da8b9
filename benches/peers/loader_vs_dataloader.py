"""Peer 3: the loader. A PyTorch DataLoader (num_workers = cores) with Hugging Face's
DataCollatorForLanguageModeling (15% masking) over the cocolm shards opened with
`datasets.Dataset.from_file`, against `cocolm bench loader` with the same batch shape and
masking; whole passes, worker start-up (time to the first batch) reported apart.

    python loader_vs_dataloader.py SHARD_DIR [ROUNDS]
"""

import glob
import json
import os
import sys
import time

from common import alternate, report, timed

BATCH = 32


def main():
    shards = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cores = int(os.environ["CORES"])
    import torch
    from datasets import Dataset, concatenate_datasets
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(shards, "tokenizer.json"),
                                        pad_token="[PAD]", mask_token="[MASK]")
    files = sorted(glob.glob(os.path.join(shards, "shard-*.arrow")))
    ds = concatenate_datasets([Dataset.from_file(f) for f in files]).select_columns(["input_ids"])
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    startups = {"pytorch": [], "cocolm": []}

    def pytorch():
        start = time.perf_counter()
        loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True,
                                             num_workers=cores, collate_fn=collator)
        tokens, first = 0, None
        for batch in loader:
            if first is None:
                first = time.perf_counter() - start
            tokens += int(batch["attention_mask"].sum())
        elapsed = time.perf_counter() - start - first
        startups["pytorch"].append(first)
        return tokens / elapsed

    def cocolm():
        _, out = timed([os.environ["COCOLM"], "bench", "loader", shards, "--batch-size", str(BATCH),
                        "--workers", str(cores)])
        line = json.loads(out.strip().splitlines()[-1])
        return line["loader_tokens_per_s"]

    results = alternate([("cocolm", cocolm), ("pytorch", pytorch)], rounds)
    report(f"loader ({len(ds)} examples, batch {BATCH})", "tokens/s", results, higher_is_better=True,
           extra={"cores": cores, "pytorch_startup_s": startups["pytorch"]})


if __name__ == "__main__":
    main()
