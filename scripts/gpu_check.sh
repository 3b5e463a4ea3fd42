#!/usr/bin/env bash
# One short run that proves the CUDA path on one GPU (at most 8 minutes), or rehearses it at tiny sizes
# on a machine without CUDA. Usage: scripts/gpu_check.sh [OUT_DIR]   (default: $OUT, else runs/gpu_check)
#
# Python packages the GPU machine lacks (omegaconf, av) travel as wheels in .whl/ (made by
# scripts/fetch_gpu_wheels.sh where pip works) and are installed here with pip --no-index --target;
# the shared real clips travel in .gpu_data/clips (same script). Results: OUT_DIR/gpu_check.json.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs/gpu_check}}"
PYTHON="${PYTHON:-python3}"
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    SITE="${TMPDIR:-/tmp}/gpu_check_site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || { echo "error: installing the wheels in $WHEELS failed" >&2; exit 2; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d .gpu_data/clips ] && [ -z "${VIDEO_TEST_DATA:-}" ]; then
    export VIDEO_TEST_DATA="$PWD/.gpu_data"
fi
exec "$PYTHON" scripts/gpu_check.py "$OUT_DIR"
