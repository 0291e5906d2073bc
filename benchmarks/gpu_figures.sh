#!/usr/bin/env bash
# Issue 14's GPU figures in one call of the device tool: the training-epoch and input benchmarks on CUDA, the CUDA
# tests, and a full-size synthetic transfer run (224 px, batch 256, 257 classes, >= 20k images) with compile off
# and on, while nvidia-smi samples the GPU's utilisation. Everything lands in $OUT (the device tool brings it back).
#
# On the device machine python3 is the image's own (Python 3.12, its torch and torchvision; pytest, PyYAML, tqdm,
# scipy, scikit-learn, Pillow, threadpoolctl are there, soundfile and cffi are not, device/KINDS.md): the project
# runs from src/ through PYTHONPATH, and the wheels carried in wheels/ are installed first:
#     here:   echo /wheels/ >> .git/info/exclude
#             pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#                 --platform manylinux_2_28_x86_64 -d wheels soundfile cffi pycparser
#     device: run(command="bash benchmarks/gpu_figures.sh", carry=["wheels"], timeout_s=600)
# SMALL=1 DEVICE=cpu runs the same steps at toy sizes on the CPU: a check of the script itself, not a measurement.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-figures}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 AUDIO2IMAGE_QUIET=1
if compgen -G "wheels/*.whl" > /dev/null; then
    $PY -m pip install --quiet --no-deps wheels/*.whl 2>&1 | tail -2
fi
{ uname -a; nproc; $PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"
  command -v nvidia-smi > /dev/null && nvidia-smi; } > "$OUT/machine.txt" 2>&1

if command -v nvidia-smi > /dev/null; then  # a sample a second: utilisation and memory, for the whole call
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$OUT/gpu_util.csv" &
    SMI=$!
fi

step() {  # step NAME COMMAND...: run, keep its output, note its wall time and exit status in summary.txt
    local name=$1; shift
    local start=$SECONDS
    "$@" > "$OUT/$name.txt" 2>&1
    local status=$?
    echo "$name: exit $status, $((SECONDS - start)) s, last line: $(tail -n 1 "$OUT/$name.txt")" | tee -a "$OUT/summary.txt"
}

if [ "$SMALL" = 1 ]; then
    EPOCH_ARGS=(--classes 4 --per-class 20 --size 64 --repeats 1); INPUT_ARGS=(--classes 4 --per-class 20 --rounds 1)
    CLASSES=4; PER_CLASS=20; SIZE=64; BATCH=16; EPOCHS=1
else
    EPOCH_ARGS=(--size 224 --batch-size 256 --classes 40 --per-class 80 --workers 16 --seed-loader)
    INPUT_ARGS=(--workers 16)
    CLASSES=257; PER_CLASS=80; SIZE=224; BATCH=256; EPOCHS=2  # 20,560 images: 257 x 80
fi
step train_epoch $PY benchmarks/train_epoch.py --device "$DEVICE" "${EPOCH_ARGS[@]}"
step input_images $PY benchmarks/input_images.py --device "$DEVICE" "${INPUT_ARGS[@]}"
step cuda_tests $PY -m pytest -q -p no:cacheprovider tests/test_metrics.py tests/test_training.py -k "cuda or device"

# The recipe's transfer settings at full size on synthetic data, random init (no pretraining needed); the run's
# metrics.jsonl has each epoch's seconds: images/s = training images / seconds. compile off, then on.
for compile in false true; do
    step "transfer_compile_$compile" $PY -m audio2image transfer --config recipe --init random \
        synthetic=true target_root= source_root= synth_classes=$CLASSES synth_per_class=$PER_CLASS \
        image_size=$SIZE transfer_batch_size=$BATCH transfer_epochs=$EPOCHS fraction=1.0 \
        device="$DEVICE" compile=$compile progress=false out_dir=/tmp/gpu-figures-runs data_dir=/tmp/gpu-figures-data \
        --run-dir "/tmp/gpu-figures-runs/compile-$compile"
    cp "/tmp/gpu-figures-runs/compile-$compile/metrics.jsonl" "$OUT/metrics_compile_$compile.jsonl" 2>/dev/null
done
[ -n "${SMI:-}" ] && kill "$SMI"
cat "$OUT/summary.txt"
