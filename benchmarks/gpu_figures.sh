#!/usr/bin/env bash
# Issue 14's GPU figures in one call of the device tool: a full-size synthetic transfer run (224 px, batch 256,
# 257 classes, >= 20k images) with compile off and on, the training-epoch benchmark, a synthetic audio pretraining
# run at recipe sizes, the input benchmark and the CUDA tests, while nvidia-smi samples the GPU's utilisation; then
# the seed's sweep projected from the two runs (benchmarks/seed_sweep_time.py).
#
# On the device machine python3 is the image's own (Python 3.12, its torch and torchvision; pytest, PyYAML, tqdm,
# scipy, scikit-learn, Pillow, threadpoolctl, safetensors and a timm are there, soundfile and cffi are not,
# device/KINDS.md; the pinned timm is carried, as /tmp/site comes before the image's own packages): the project
# runs from src/ through PYTHONPATH, and the wheels carried in wheels/ are installed into /tmp/site first:
#     here:   echo /wheels/ >> .git/info/exclude
#             pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#                 --platform manylinux_2_28_x86_64 -d wheels soundfile cffi pycparser timm==1.0.29
#     device: run(command="bash benchmarks/gpu_figures.sh", carry=["wheels"], timeout_s=600)
# The device tool brings back at most 8 files from $OUT: summary.txt (machine, each step's exit status, seconds and
# last line, the projection), gpu_util.csv and one log per step (6). Steps run most important first; one that would
# start after DEADLINE seconds (default 480) is skipped and each is cut at DEADLINE + 60 s, so the call ends inside
# its 600 s with everything measured so far. Not yet run on a GPU.
# SMALL=1 DEVICE=cpu runs the same steps at toy sizes on the CPU: a check of the script itself, not a measurement.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-figures}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
PY=${PYTHON:-python3}
DEADLINE=${DEADLINE:-480}
WORK=/tmp/gpu-figures-work
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 AUDIO2IMAGE_QUIET=1
if compgen -G "wheels/*.whl" > /dev/null; then  # not into the image's own site-packages (it may be managed)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site wheels/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ uname -a; nproc; $PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } \
    > "$OUT/summary.txt" 2>&1

if command -v nvidia-smi > /dev/null; then  # a sample a second: utilisation and memory, for the whole call
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$OUT/gpu_util.csv" &
    SMI=$!
fi

step() {  # step NAME COMMAND...: run (unless past DEADLINE), keep its output, note its exit status and seconds
    local name=$1; shift
    if [ "$SECONDS" -ge "$DEADLINE" ]; then
        echo "$name: skipped at $SECONDS s (DEADLINE $DEADLINE s)" | tee -a "$OUT/summary.txt"; return
    fi
    local start=$SECONDS
    # through bash -c: timeout runs programs, and transfer/pretrain below are (exported) functions
    timeout $((DEADLINE + 60 - SECONDS)) bash -c '"$@"' _ "$@" > "$OUT/$name.txt" 2>&1
    local status=$?
    echo "$name: exit $status, $((SECONDS - start)) s (at $SECONDS s), last line: $(tail -n 1 "$OUT/$name.txt")" \
        | tee -a "$OUT/summary.txt"
}

if [ "$SMALL" = 1 ]; then
    EPOCH_ARGS=(--classes 4 --per-class 20 --size 64 --repeats 1); INPUT_ARGS=(--classes 4 --per-class 20 --rounds 1)
    CLASSES=4; PER_CLASS=20; SIZE=64; BATCH=16; EPOCHS=2; CLIPS=64; CLIP_EPOCHS=2; WORKERS=2
else
    EPOCH_ARGS=(--size 224 --batch-size 256 --classes 40 --per-class 80 --workers 16 --seed-loader)
    INPUT_ARGS=(--workers 16)
    CLASSES=257; PER_CLASS=80; SIZE=224; BATCH=256; EPOCHS=3; CLIPS=2000; CLIP_EPOCHS=3; WORKERS=16  # 20,560 images
fi

transfer() {  # transfer COMPILE: the recipe's transfer settings at full size, random init (no pretraining needed)
    local run="$WORK/runs/compile-$1"
    $PY -m audio2image transfer --config recipe --init random synthetic=true target_root= source_root= \
        synth_classes=$CLASSES synth_per_class=$PER_CLASS image_size=$SIZE transfer_batch_size=$BATCH \
        transfer_epochs=$EPOCHS fraction=1.0 workers=$WORKERS device="$DEVICE" compile="$1" progress=false \
        out_dir="$WORK/runs" data_dir="$WORK/data" --run-dir "$run" || return
    cat "$run/metrics.jsonl"  # each epoch's seconds: the first holds warm-up (and compilation)
}

pretrain() {  # the recipe's audio pretraining (3.69 s crops, batch 64) on synthetic MTAT clips of 29.1 s
    $PY -m audio2image pretrain --config recipe synthetic=true source_root= target_root= synth_clips=$CLIPS \
        pretrain_epochs=$CLIP_EPOCHS workers=$WORKERS device="$DEVICE" progress=false out_dir="$WORK/runs" \
        data_dir="$WORK/data" --run-dir "$WORK/runs/pretrain" || return
    cat "$WORK/runs/pretrain/metrics.jsonl"
}

export PY DEVICE WORK CLASSES PER_CLASS SIZE BATCH EPOCHS CLIPS CLIP_EPOCHS WORKERS
export -f transfer pretrain
step transfer_compile_false transfer false
step train_epoch $PY benchmarks/train_epoch.py --device "$DEVICE" "${EPOCH_ARGS[@]}"
step transfer_compile_true transfer true
step pretrain_audio pretrain
step input_images $PY benchmarks/input_images.py --device "$DEVICE" "${INPUT_ARGS[@]}"
step cuda_tests $PY -m pytest -q -p no:cacheprovider tests/test_metrics.py tests/test_training.py -k "cuda or device"

for compile in false true; do
    [ -f "$WORK/runs/compile-$compile/result.json" ] && $PY benchmarks/seed_sweep_time.py \
        --transfer "$WORK/runs/compile-$compile" --pretrain "$WORK/runs/pretrain" 2>&1 \
        | sed "s/^/compile $compile: /" | tee -a "$OUT/summary.txt"
done
[ -n "${SMI:-}" ] && kill "$SMI"
cat "$OUT/summary.txt"
