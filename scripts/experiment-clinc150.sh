#!/usr/bin/env bash
# The fine-tuning experiment of README ("Does pretraining help?") and BENCHMARKS.md:
#
#   1. a 16K byte-level BPE tokenizer trained on ../shared/data/corpus, minus the last
#      8 State of the Union addresses, which are held out;
#   2. 128-token shards of both parts;
#   3. COCO-LM pretraining of configs/clinc-pretrain.toml (4 layers / 256 hidden) for at
#      most MINUTES minutes (SIGTERM at the deadline: the run checkpoints and stops),
#      scored on the held-out shards every 250 steps;
#   4. CLINC150 intent classification, fine-tuned from that checkpoint and from scratch
#      with the same budget, on the full training set and on 10 examples per intent.
#
# Usage: scripts/experiment-clinc150.sh [OUT]   (default target/experiment-clinc150)
# Variables: SHARED (../shared), MINUTES (60), STEPS (4500: the schedule's length; set it
# to what fits MINUTES on the machine), SKIP_PRETRAIN=1 to fine-tune an existing run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/experiment-clinc150}
shared=${SHARED:-../shared}
minutes=${MINUTES:-60}
steps=${STEPS:-4500}
corpus=$shared/data/corpus
clinc=$shared/data/eval/clinc150
bin=target/release/cocolm
[ -x "$bin" ] || cargo build --release --locked
mkdir -p "$out"

mapfile -t sotu < <(ls "$corpus"/sotu/*.txt | sort)
held=("${sotu[@]: -8}")
train_files=("$corpus/moby-dick" "$corpus/wikipedia-summaries.jsonl.zst" "${sotu[@]:0:${#sotu[@]}-8}")

if [ "${SKIP_PRETRAIN:-0}" != 1 ]; then
  "$bin" tokenizer train --input "${train_files[@]}" --vocab-size 16000 --out "$out/tokenizer.json"
  "$bin" prepare --input "${train_files[@]}" --tokenizer "$out/tokenizer.json" --out "$out/shards" --seq-len 128
  "$bin" prepare --input "${held[@]}" --tokenizer "$out/tokenizer.json" --out "$out/held-out" --seq-len 128
  status=0
  timeout -s TERM "${minutes}m" "$bin" train --data "$out/shards" --config configs/clinc-pretrain.toml \
    --out "$out/run" --steps "$steps" --eval-data "$out/held-out" --eval-every 250 || status=$?
  # 75: stopped by the deadline's SIGTERM after a checkpoint.
  [ "$status" = 0 ] || [ "$status" = 75 ] || exit "$status"
fi

finetune() { # NAME EXTRA-ARGS…
  local name=$1; shift
  "$bin" finetune --checkpoint "$out/run" --train "$clinc/train.tsv" --dev "$clinc/dev.tsv" \
    --test "$clinc/test.tsv" --lr 2e-4 --batch-size 32 --out "$out/finetune/$name" "$@" \
    | tee "$out/finetune-$name.log"
}
finetune full-pretrained --epochs 4
finetune full-scratch --epochs 4 --from-scratch
finetune 10-per-label-pretrained --epochs 30 --patience 5 --train-per-label 10
finetune 10-per-label-scratch --epochs 30 --patience 5 --train-per-label 10 --from-scratch

python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
print("| regime | start | dev accuracy | test accuracy | test macro-F1 | epochs (best) | seconds |")
print("|---|---|---|---|---|---|---|")
for regime in ["full", "10-per-label"]:
    for start in ["pretrained", "scratch"]:
        r = json.load(open(f"{out}/finetune/{regime}-{start}/results.json"))
        print(f"| {regime} | {start} | {r['dev_scores']['accuracy']:.4f} | {r['test_scores']['accuracy']:.4f} "
              f"| {r['test_scores']['macro_f1']:.4f} | {len(r['history'])} ({r['best_epoch']}) | {r['seconds']:.0f} |")
EOF
