"""The peers' shared inputs, built once under $SCRATCH: the ../shared corpus replicated
to at least 200 MB of JSON lines, and the 128K tokenizer decompressed."""

import json
import os
import pathlib

import pyarrow as pa

SCRATCH = pathlib.Path(os.environ["SCRATCH"])
SHARED = pathlib.Path(os.environ["SHARED"])
MIN_BYTES = 200 << 20


def _zstd_text(path):
    with pa.CompressedInputStream(pa.OSFile(str(path)), "zstd") as f:
        return f.read().decode("utf-8")


def documents():
    corpus = SHARED / "data" / "corpus"
    docs = []
    for path in sorted(corpus.rglob("*")):
        if path.suffix == ".txt":
            docs.append(path.read_text(encoding="utf-8"))
        elif path.name.endswith(".jsonl.zst"):
            docs.extend(json.loads(line)["text"] for line in _zstd_text(path).splitlines() if line.strip())
    return docs


def corpus():
    """`corpus-200mb.jsonl`: every document of ../shared/data/corpus, repeated."""
    out = SCRATCH / "corpus-200mb.jsonl"
    if not out.exists():
        docs = documents()
        lines = [json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs]
        size = sum(len(l.encode()) for l in lines)
        tmp = out.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for _ in range(-(-MIN_BYTES // size)):
                f.writelines(lines)
        tmp.rename(out)
    return out


def tokenizer_128k():
    out = SCRATCH / "llama3-128k.tokenizer.json"
    if not out.exists():
        out.write_text(_zstd_text(SHARED / "data" / "tokenizers" / "llama3-128k.tokenizer.json.zst"))
    return out


if __name__ == "__main__":
    print(corpus(), tokenizer_128k())
