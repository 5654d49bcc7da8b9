# Sourced by the peer scripts: PY (a Python with the peers' packages), COCOLM (a release
# binary), CORES, SHARED (../shared), SCRATCH (a work directory kept between runs).
#
# PY is $COCOLM_PEERS_PYTHON when set; otherwise benches/peers/.venv, created from the
# package registry on first use (datasets, tokenizers, pyarrow, transformers, torch: a
# few GB with torch's CUDA wheels).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="$ROOT/benches/peers"
if [ -n "${COCOLM_PEERS_PYTHON:-}" ]; then
    PY="$COCOLM_PEERS_PYTHON"
else
    if [ ! -x "$PEERS/.venv/bin/python" ]; then
        python3 -m venv "$PEERS/.venv"
        "$PEERS/.venv/bin/pip" install --quiet --disable-pip-version-check \
            datasets tokenizers pyarrow transformers torch
    fi
    PY="$PEERS/.venv/bin/python"
fi
COCOLM="${COCOLM:-$ROOT/target/release/cocolm}"
if [ ! -x "$COCOLM" ]; then
    (cd "$ROOT" && cargo build --release --locked)
fi
CORES="${CORES:-$(nproc)}"
SHARED="${SHARED:-$ROOT/../shared}"
SCRATCH="${SCRATCH:-${TMPDIR:-/tmp}/cocolm-peers}"
mkdir -p "$SCRATCH"
export PY COCOLM CORES SHARED SCRATCH ROOT PEERS
