#!/usr/bin/env bash
# The four peer benchmarks, one after the other, and one Markdown table of their results
# (benches/peers/results.md). Not part of CI: it downloads the peers' packages on first
# use (see env.sh) and takes a while. ROUNDS (default 3) rounds each, alternating.
source "$(dirname "$0")/env.sh"
ROUNDS="${ROUNDS:-3}"
cd "$PEERS"
log="$SCRATCH/peers.jsonl"
: > "$log"
tok128="$("$PY" inputs.py | cut -d' ' -f2)"
corpus="$SCRATCH/corpus-200mb.jsonl"
tok32="$SCRATCH/bpe-32k.tokenizer.json"
[ -f "$tok32" ] || "$COCOLM" tokenizer train --input "$SHARED/data/corpus" --vocab-size 32000 --out "$tok32"
shards="$SCRATCH/shards-512"
"$COCOLM" prepare --input "$corpus" --tokenizer "$tok128" --out "$shards" --seq-len 512 > /dev/null
for tok in "$tok128" "$tok32"; do
    "$PY" prepare_vs_datasets.py "$tok" "$ROUNDS" | tee -a "$log.out"
    "$PY" tokenizer_floor.py "$tok" "$ROUNDS" | tee -a "$log.out"
done
"$PY" loader_vs_dataloader.py "$shards" "$ROUNDS" | tee -a "$log.out"
"$PY" trainer_step.py "$ROUNDS" | tee -a "$log.out"
grep '^{' "$log.out" > "$log"
"$PY" - "$log" <<'PYEOF' | tee "$PEERS/results.md"
import json, sys
print(f"| benchmark | unit | cocolm median | peer | peer median | cocolm vs peer |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    ours = r["summaries"]["cocolm"]["median"]
    for peer, ratio in r["ratios"].items():
        print(f"| {r['benchmark']} | {r['unit']} | {ours:.4g} | {peer} | {r['summaries'][peer]['median']:.4g} | {ratio:.2f}x |")
PYEOF
