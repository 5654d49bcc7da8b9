#!/usr/bin/env bash
# The GPU checks of cocolm, for a machine with an NVIDIA GPU and no Rust toolchain:
#
#   scripts/gpu-check.sh [BINARY] [REPORT_DIR]
#
# BINARY is a `cocolm` built with `--features cuda` (scripts/build-cuda-binary.sh), plain
# or xz-compressed (unpacked with Python's lzma); default dist/cocolm-cuda.xz. Run from
# the repository root (it reads configs/ and the ELECTRA fixture). Within about 8 minutes:
#
#   1. the ELECTRA fixture forward on CUDA in fp32 against Hugging Face's outputs (the
#      CPU reproduces them to ~2e-7): relative error at most 1e-4;
#   2. the tiny config, 50 steps on the bundled corpus in fp32, bf16 and fp16: the loss
#      falls, nothing is NaN, final losses within 10 % of fp32's;
#   3. the base config (12L/768H/12 heads, generator 4L, seq 512, batch 32) in bf16:
#      ms/step, tokens/s, model FLOP utilisation against 790 TFLOP/s, peak memory;
#   4. ZeRO-1 with one rank through a one-rank NCCL communicator (the NCCL path itself).
#
# Everything goes to REPORT_DIR (default $OUT if set, else gpu-report/): report.txt
# (a summary) and the commands' own output, one log per check.
set -uo pipefail
cd "$(dirname "$0")/.."
binary=${1:-dist/cocolm-cuda.xz}
report=${2:-${OUT:-gpu-report}}
mkdir -p "$report"
work=$(mktemp -d)
summary="$report/report.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
started=$(date +%s)
say "cocolm gpu-check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$summary"

# The binary: unpack an .xz with Python (xz may be absent).
case "$binary" in
*.xz)
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$binary" "$work/cocolm" || { say "FAIL cannot unpack $binary"; exit 1; }
    ;;
*) cp "$binary" "$work/cocolm" ;;
esac
chmod +x "$work/cocolm"
cocolm="$work/cocolm"

# CUDA: the toolkit (NVRTC and the headers cubecl compiles kernels with).
for dir in "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$dir" ] && [ -d "$dir/include" ]; then export CUDA_PATH=$dir; break; fi
done
python_nvidia=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]) + "/nvidia")' 2>/dev/null || true)
if [ -z "${CUDA_PATH:-}" ] && [ -d "$python_nvidia/cu13/include" ]; then export CUDA_PATH=$python_nvidia/cu13; fi
say "CUDA_PATH=${CUDA_PATH:-not found}"
libs=$work/lib
mkdir -p "$libs"
# NCCL: cudarc loads `libnccl.so`; the runtime packages and the pip wheel ship only
# libnccl.so.2, so a link with the unversioned name goes on the loader path.
nccl=$(ls "$python_nvidia"/nccl/lib/libnccl.so.2 "$python_nvidia"/cu13/lib/libnccl.so.2 /usr/lib/x86_64-linux-gnu/libnccl.so.2 /usr/local/cuda/lib64/libnccl.so.2 2>/dev/null | head -n 1)
[ -n "$nccl" ] && ln -sf "$nccl" "$libs/libnccl.so"
say "NCCL: ${nccl:-not found}"
for dir in "${CUDA_PATH:-/nonexistent}/lib64" "${CUDA_PATH:-/nonexistent}/lib" "$python_nvidia/cu13/lib" "$python_nvidia/cuda_nvrtc/lib"; do
    [ -d "$dir" ] && LD_LIBRARY_PATH="$dir:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"

failures=0
check() { # name timeout command…
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s)
    if timeout "$limit" "$@" > "$report/$name.log" 2>&1; then
        say "ok   $name ($(( $(date +%s) - t0 )) s)"
    else
        say "FAIL $name (exit $?, $(( $(date +%s) - t0 )) s): $(tail -n 3 "$report/$name.log" | tr '\n' ' ')"
        failures=$((failures + 1))
    fi
}

# 1. The reference check on the GPU.
check electra-fp32 120 "$cocolm" check electra --device cuda --max-error 1e-4
grep -h '^{' "$report/electra-fp32.log" | sed 's/^/electra: /' >> "$summary"

# 2. Tiny config, 50 steps in each precision, on shards of the bundled corpus (prepared
#    on the CPU by a 1-step demo).
check corpus 180 "$cocolm" demo --quick --out "$work/demo"
for precision in fp32 bf16 fp16; do
    check "tiny-$precision" 150 "$cocolm" train --data "$work/demo/shards" --config configs/tiny.toml \
        --out "$work/tiny-$precision" --steps 50 --device cuda --precision "$precision" --set train.log_every=1
    cp "$work/tiny-$precision/metrics.jsonl" "$report/tiny-$precision.metrics.jsonl" 2>/dev/null
done
python3 - "$report" >> "$summary" <<'PY'
import json, sys, math
report = sys.argv[1]
final = {}
for p in ["fp32", "bf16", "fp16"]:
    try:
        m = [json.loads(l) for l in open(f"{report}/tiny-{p}.metrics.jsonl")]
    except OSError:
        print(f"tiny {p}: no metrics"); continue
    losses = [x["loss"] for x in m if x.get("loss") is not None]
    skipped = sum(1 for x in m if x.get("skipped"))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    final[p] = last
    ok = last < first and all(math.isfinite(l) for l in losses)
    print(f"tiny {p}: {len(m)} steps, loss {first:.3f} -> {last:.3f} ({'falls' if ok else 'DOES NOT FALL'}), {skipped} skipped, {m[-1]['tokens_per_s']:.0f} tokens/s, scale {m[-1].get('loss_scale')}")
if "fp32" in final:
    for p in ["bf16", "fp16"]:
        if p in final:
            rel = abs(final[p] - final["fp32"]) / final["fp32"]
            print(f"tiny {p} vs fp32 final loss: {rel:.1%} ({'within' if rel <= 0.10 else 'OUTSIDE'} the stated 10 %)")
PY

# 3. The base config step in bf16 (one micro-batch of 32 × 512 per step).
check base-bf16 240 "$cocolm" bench train --config configs/base.toml --vocab-size 32000 --seq-len 512 \
    --device cuda --precision bf16 --set train.grad_accum=1 --warmup 2 --steps 8 --peak-tflops 790
grep -h -A2 '^train bench' "$report/base-bf16.log" >> "$summary"

# 4. ZeRO-1 through a one-rank NCCL communicator.
check zero1-nccl 120 "$cocolm" bench train --config configs/tiny.toml --vocab-size 1000 --seq-len 128 \
    --device cuda --precision bf16 --zero --warmup 1 --steps 5
grep -h -A2 '^train bench' "$report/zero1-nccl.log" >> "$summary"

say "finished in $(( $(date +%s) - started )) s with $failures failed check(s)"
rm -rf "$work"
exit $((failures > 0))
