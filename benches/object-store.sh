#!/usr/bin/env bash
# `cocolm prepare` of the same corpus from local paths, `file://` URLs and an HTTP server on
# loopback (Python's http.server, threaded), alternating, ROUNDS rounds (default 3): a few
# large JSON-lines files, then many small ones (where the 8 objects opened ahead matter).
# Not part of CI. Usage: benches/object-store.sh [TOKENIZER] (default: a 32K BPE trained on
# the bundled corpus). Needs a release build (cargo build --release) and python3. With MOTO
# set to a Python that has `moto[server]` (and so boto3), the same files are also uploaded
# to a moto S3 server on loopback and read as `s3://bench/SET/` prefixes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
COCOLM="${COCOLM:-$repo/target/release/cocolm}"
ROUNDS="${ROUNDS:-3}"
SMALL="${SMALL:-10000}"
scratch="${SCRATCH:-/tmp/cocolm-object-store-bench}"
mkdir -p "$scratch"
tok="${1:-$scratch/bpe-32k.json}"
[ -f "$tok" ] || "$COCOLM" tokenizer train --input "$repo/data/moby-dick.jsonl.zst" --vocab-size 32000 --out "$tok" > /dev/null

# The corpus: the bundled book's documents, repeated into 16 files of ~12 MB, and SMALL
# files of ~1 KB each.
if [ ! -f "$scratch/large/done" ]; then
    rm -rf "$scratch/large" "$scratch/small"
    mkdir -p "$scratch/large" "$scratch/small"
    zstd -dc "$repo/data/moby-dick.jsonl.zst" > "$scratch/book.jsonl"
    python3 - "$scratch" "$SMALL" <<'PYEOF'
import json, sys
scratch, small = sys.argv[1], int(sys.argv[2])
lines = open(f"{scratch}/book.jsonl").read().splitlines()
texts = [json.loads(l)["text"] for l in lines]
for f in range(16):
    with open(f"{scratch}/large/part{f:02d}.jsonl", "w") as out:
        size, i = 0, f
        while size < 12_000_000:
            line = json.dumps({"text": f"{f} {i} " + texts[i % len(texts)]}) + "\n"
            out.write(line); size += len(line); i += 1
words = " ".join(texts).split()
for k in range(small):
    text = " ".join(words[(k * 37) % (len(words) - 200):][: 150 + k % 50])
    with open(f"{scratch}/small/doc{k:06d}.txt", "w") as out:
        out.write(f"{k} {text}")
PYEOF
    touch "$scratch/large/done"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$scratch" && exec python3 -m http.server "$port" --bind 127.0.0.1 > /dev/null 2>&1) &
server=$!
trap 'kill $server' EXIT
sleep 1
kinds="path file http"
if [ -n "${MOTO:-}" ]; then
    s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$MOTO" -m moto.server -p "$s3port" > /dev/null 2>&1 &
    moto=$!
    trap 'kill $server $moto' EXIT
    sleep 3
    export AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
    "$MOTO" - "$scratch" <<'PYEOF'
import boto3, os, sys
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
for set_ in ("large", "small"):
    for name in sorted(os.listdir(f"{sys.argv[1]}/{set_}")):
        if name != "done":
            s3.upload_file(f"{sys.argv[1]}/{set_}/{name}", "bench", f"{set_}/{name}")
PYEOF
    kinds="$kinds s3"
fi

inputs() { # KIND SET → the input arguments
    local kind=$1 set=$2
    if [ "$kind" = s3 ]; then
        echo "s3://bench/$set/"
        return
    fi
    for f in $(cd "$scratch" && ls "$set" | grep -v '^done$' | sort); do
        case $kind in
            path) echo "$scratch/$set/$f" ;;
            file) echo "file://$scratch/$set/$f" ;;
            http) echo "http://127.0.0.1:$port/$set/$f" ;;
        esac
    done
}

run() { # KIND SET → seconds
    local out="$scratch/out-$1-$2"
    rm -rf "$out"
    mapfile -t args < <(inputs "$1" "$2")
    local start end
    start=$(date +%s.%N)
    "$COCOLM" prepare --input "${args[@]}" --tokenizer "$tok" --out "$out" --seq-len 512 > /dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

for set in large small; do
    bytes=$(du -sb "$scratch/$set" | cut -f1)
    declare -A times=()
    for round in $(seq "$ROUNDS"); do
        for kind in $kinds; do
            times[$kind]+="$(run "$kind" "$set") "
        done
    done
    for kind in $kinds; do
        cmp -s "$scratch/out-path-$set/shard-00000.arrow" "$scratch/out-$kind-$set/shard-00000.arrow" \
            && same=yes || same=NO
        python3 - "$set" "$kind" "$bytes" "${times[$kind]}" "$same" <<'PYEOF'
import statistics, sys
set_, kind, size, times, same = sys.argv[1], sys.argv[2], int(sys.argv[3]), sorted(map(float, sys.argv[4].split())), sys.argv[5]
mbs = [size / t / 1e6 for t in times]
print(f"{set_:5} {kind:4} {size/1e6:7.1f} MB  s: min {times[0]:.2f} median {statistics.median(times):.2f} max {times[-1]:.2f}"
      f"  MB/s median {statistics.median(mbs):.1f}  first shard identical to local: {same}")
PYEOF
    done
    unset times
done
