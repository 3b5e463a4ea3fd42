#!/usr/bin/env bash
# Prepare what scripts/gpu_check.sh needs on a GPU machine that has no package index: the py3.12
# manylinux wheels of the packages it lacks, pinned as in requirements*.txt, into .whl/, and a copy of a
# folder of real clips into .gpu_data/clips. Both folders are git-ignored; copy them to the GPU machine
# with the checkout. Run it on a machine where pip reaches PyPI.
#   scripts/fetch_gpu_wheels.sh [--with-decord] [--with-opencv] [CLIPS_DIR]   (CLIPS_DIR default: ../shared/data/clips)
# A GPU image with torch and Python 3.12 but no omegaconf, av, decord or wandb: omegaconf (the config)
# and av (the default decoder, imported by video/) are needed; decord (13.6 MB) only with --with-decord;
# wandb is not (the checks log with logger.wandb.mode=disabled). The side-by-side against mmaction2 needs
# mmaction2, mmengine and mmcv-lite (pure-Python wheels, fetched without their dependencies so no second
# torch comes along) and their pure-Python dependencies, all fetched; mmcv also imports OpenCV (cv2), whose
# headless wheel (61 MB) comes only with --with-opencv: without cv2 on the GPU machine that check is skipped.
# The folders and the tracked files must stay within GPU_WHEELS_LIMIT bytes (default 64 MiB; 0: no limit).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LIMIT="${GPU_WHEELS_LIMIT:-67108864}"
PACKAGES=(omegaconf av)  # pinned in requirements.txt
OPENCV=0
# the headless build of the OpenCV that mmengine's opencv-python dependency resolves to for requirements-test.txt
OPENCV_PIN=opencv-python-headless==5.0.0.93
# mmaction2's modules and what they import beyond the GPU image (numpy, yaml, PIL, matplotlib, einops), pinned
# in requirements-test.txt
TEST_PACKAGES=(mmaction2 mmengine mmcv-lite addict yapf platformdirs termcolor rich pygments markdown-it-py mdurl
               packaging)
while [ $# -gt 0 ]; do
    case "$1" in
        --with-decord) PACKAGES+=(decord); shift ;;
        --with-opencv) OPENCV=1; shift ;;
        *) break ;;
    esac
done
CLIPS="${1:-../shared/data/clips}"
pins=()
for name in "${PACKAGES[@]}"; do
    pin=$(grep -i "^$name==" requirements.txt) || { echo "error: $name is not pinned in requirements.txt" >&2; exit 2; }
    pins+=("$pin")
done
for name in "${TEST_PACKAGES[@]}"; do
    pin=$(grep -i "^$name==" requirements-test.txt) || {
        echo "error: $name is not pinned in requirements-test.txt" >&2; exit 2; }
    pins+=("$pin")
done
[ "$OPENCV" -eq 0 ] || pins+=("$OPENCV_PIN")
mkdir -p .whl
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"
# keep one version of each package: two make the --no-index install on the GPU machine fail
names=("${PACKAGES[@]}" "${TEST_PACKAGES[@]}")
[ "$OPENCV" -eq 0 ] || names+=(opencv-python-headless)
for name in "${names[@]}"; do
    count=$(find .whl -maxdepth 1 -iname "${name//-/_}-*.whl" | wc -l)
    [ "$count" -eq 1 ] || { echo "error: .whl holds $count wheels of $name; keep one" >&2; exit 2; }
done
if [ -d "$CLIPS" ]; then
    mkdir -p .gpu_data
    rm -rf .gpu_data/clips
    cp -r "$CLIPS" .gpu_data/clips
    chmod -R u+w .gpu_data/clips
else
    echo "note: no clips folder $CLIPS; the decoded bench train checks will be skipped" >&2
fi
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .whl .gpu_data 2>/dev/null | tail -1 | cut -f1)
total=$((tracked + carried))
echo "wheels: $(du -cb .whl/*.whl | tail -1 | cut -f1) bytes; clips: $(du -sb .gpu_data 2>/dev/null | cut -f1 || echo 0) bytes;" \
     "with the tracked tree $total bytes (limit GPU_WHEELS_LIMIT=$LIMIT)"
[ "$LIMIT" -eq 0 ] || [ "$total" -le "$LIMIT" ] || {
    echo "error: that is over GPU_WHEELS_LIMIT=$LIMIT bytes: leave out OpenCV, decord or some clips" >&2; exit 2; }
