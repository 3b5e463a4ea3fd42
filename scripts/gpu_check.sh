#!/usr/bin/env bash
# One short run that proves the CUDA path on one GPU (at most 8 minutes), or rehearses it at tiny sizes
# on a machine without CUDA. Usage: scripts/gpu_check.sh [OUT_DIR]   (default: $OUT, else runs/gpu_check)
#
# On a GPU machine without a package index, the Python packages it lacks (omegaconf, av, ...) come as
# wheels in .whl/ (made by scripts/fetch_gpu_wheels.sh on a machine where pip works) and are installed
# with pip --no-index --target; real test clips can be put in .gpu_data/clips. Results: OUT_DIR/gpu_check.json.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs/gpu_check}}"
# The project's .venv Python when it exists (after `make venv`), else $PYTHON, else python3.
if [ -x .venv/bin/python ]; then
    PYTHON=.venv/bin/python; WHY="the project's .venv"
elif [ -n "${PYTHON:-}" ]; then
    WHY="\$PYTHON"
else
    PYTHON=python3; WHY="python3 on the PATH (no .venv: run 'make venv' first)"
fi
echo "gpu_check: using $PYTHON ($WHY)"
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
