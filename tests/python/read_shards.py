"""Read a cocolm shard directory with pyarrow and Hugging Face datasets.

Usage: python3 read_shards.py SHARD_DIR

Prints JSON: {"examples": [[ids…], …] in shard order, "random_access_batches": n,
"datasets_rows": n, "datasets_features": "…"}. Fails (non-zero exit) on any mismatch
between the manifest, the pyarrow stream reader, random access through the manifest's
batch offsets, and datasets.Dataset.from_file.
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.ipc
from datasets import Dataset


def main() -> None:
    root = sys.argv[1]
    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    examples = []
    random_access = 0
    datasets_rows = 0
    features = None
    for shard in manifest["shards"]:
        path = os.path.join(root, shard["file"])
        # Zero-copy stream read through a memory map.
        with pa.memory_map(path) as source:
            table = pa.ipc.open_stream(source).read_all()
        assert table.num_rows == shard["rows"], (path, table.num_rows, shard["rows"])
        assert table.schema.field("input_ids").type == pa.list_(pa.uint32()), table.schema
        assert table.schema.metadata[b"cocolm.format"] == b"cocolm-shards"
        rows = table.column("input_ids").to_pylist()
        examples.extend(rows)
        # Random access: each record batch message at the offset the manifest gives.
        schema = table.schema
        first = 0
        with open(path, "rb") as f:
            for offset, count in zip(shard["batch_offsets"], shard["batch_rows"]):
                f.seek(offset)
                message = pa.ipc.read_message(f)
                batch = pa.ipc.read_record_batch(message, schema)
                assert batch.num_rows == count, (offset, batch.num_rows, count)
                assert batch.column(0).to_pylist() == rows[first:first + count]
                first += count
                random_access += 1
        # Hugging Face datasets opens the shard as it is.
        ds = Dataset.from_file(path)
        assert ds.num_rows == shard["rows"]
        assert list(ds["input_ids"]) == rows
        datasets_rows += ds.num_rows
        features = str(ds.features)
    json.dump(
        {
            "examples": examples,
            "random_access_batches": random_access,
            "datasets_rows": datasets_rows,
            "datasets_features": features,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
