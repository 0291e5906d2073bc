"""Time the project's image input pipeline against the seed's, on the same synthetic Caltech-256 tree.

Synthesises a Caltech-256-format tree in a temporary folder, prepares it once with prepare_caltech256(size=256)
(timed on its own), then times, in alternating rounds:
  - the seed: /work/shared/baselines/seed_images.py ROOT --epochs 1 as a subprocess (PIL decode per image per
    epoch, torchvision transforms, DataLoader with 1 worker, batch 256), every image; its own timing is used;
  - the project: --project-epochs epochs over the train split with training.loader.Loader (shuffled, batch 256,
    epoch_generator(0, epoch), one RecycledMemory across epochs as in train_run) + ImageInputs(size,
    "crop-flip").train(raw, device, epoch_generator(0, epoch, stream=1)), exactly what a training epoch feeds its
    model (on the CPU that is training.inputs.resized_crops: a uint8 crop + antialiased resize per image, in
    chunks shared by one thread per core, normalised into float [B, 3, size, size]).
Why rounds: this machine's speed drifts by up to ~1.8x within seconds (the same pure-Python loop took 56 to 100 ms
from one second to the next), so timing one side after the other lets the drift decide the ratio. Each side's rate
is its images over its seconds, summed over the rounds; the project's first epoch (cold buffers) is included.
Also printed: the project rate with the one-off preparation amortised over its epochs.
The last line is `input_images speedup: X.Xx` = project images/s / seed images/s.
With --device cuda the project's batches are pinned, copied asynchronously and augmented on the GPU (the seed pins
memory when CUDA exists and augments on its CPU worker, as it did); the default runs both on the CPU.

Run: .venv/bin/python benchmarks/input_images.py [--classes 20] [--per-class 80] [--rounds 3] [--project-epochs 4]
     [--size 224] [--workers 2] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of one seed epoch and the project's")
    parser.add_argument("--project-epochs", type=int, default=4,
                        help="project epochs per round, over the train split (60%% of the images)")
    parser.add_argument("--size", type=int, default=224, help="model input side")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for synthesis and preparation")
    parser.add_argument("--device", default="cpu", help="where the project's augmentation runs: cpu or cuda (as in "
                        "training: pinned batches, copied asynchronously, augmented on the device)")
    args = parser.parse_args()
    seed_script = baselines.seed_script("seed_images.py")

    from audio2image.datasets.synth import synth_caltech256
    from audio2image.prepare.images import prepare_caltech256
    from audio2image.prepare.store import Store
    from audio2image.training.inputs import ImageInputs
    from audio2image.training.loader import batch_memory

    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "caltech"
        start = time.perf_counter()
        info = synth_caltech256(root, args.classes, args.per_class, seed=0, min_side=200, max_side=500,
                                workers=args.workers, progress=False)
        print(f"synthesised {info['images']} images in {time.perf_counter() - start:.2f} s")

        start = time.perf_counter()
        manifest = prepare_caltech256(root, tmpdir / "store", size=256, workers=args.workers, progress=False)
        prepare_s = time.perf_counter() - start
        counts = {name: s["count"] for name, s in manifest["splits"].items()}
        print(f"project prepare_caltech256 (size 256, {args.workers} workers): {sum(counts.values())} images "
              f"{counts} in {prepare_s:.2f} s")

        train = Store(tmpdir / "store").split("train")
        inputs = ImageInputs(args.size, "crop-flip")
        memory = batch_memory()  # one for the run's loaders, as train_run has
        seed_images = seed_s = project_images = project_s = 0
        for round_ in range(args.rounds):
            images, seconds = seed_epoch(seed_script, root)
            seed_images, seed_s = seed_images + images, seed_s + seconds
            first = round_ * args.project_epochs
            epochs = range(first, first + args.project_epochs)
            images, seconds = project_epochs(train, inputs, memory, args.device, epochs)
            project_images, project_s = project_images + images, project_s + seconds
            print(f"round {round_ + 1}: seed {images_per_s(seed_images, seed_s)}, "
                  f"project {images_per_s(project_images, project_s)} (running totals)")

        seed_rate, project_rate = seed_images / seed_s, project_images / project_s
        print(f"seed seed_images.py ({args.rounds} epochs, all images): {seed_images} images in {seed_s:.2f} s = "
              f"{seed_rate:.2f} images/s")
        print(f"project Loader + ImageInputs crop-flip on {args.device} ({args.rounds * args.project_epochs} epochs, "
              f"train split): {project_images} images in {project_s:.2f} s = {project_rate:.2f} images/s")
        print(f"project including the one-off prepare: {project_images / (project_s + prepare_s):.2f} images/s")
        print(f"input_images speedup: {project_rate / seed_rate:.1f}x")


def seed_epoch(seed_script: Path, root: Path) -> tuple[int, float]:
    """(images, seconds) of one epoch of the seed's pipeline, as it times itself."""
    result = subprocess.run([sys.executable, str(seed_script), str(root), "--epochs", "1"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"seed_images.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    line = result.stdout.strip().splitlines()[-1]
    match = re.search(r"seed_images: (\d+) images in ([\d.]+) s", line)
    if not match:
        sys.exit(f"cannot parse seed_images.py output: {line!r}")
    return int(match.group(1)), float(match.group(2))


def project_epochs(train, inputs, memory, device: str, epochs: range) -> tuple[int, float]:
    """(images, seconds) of the project's training batches over `epochs` of the train split."""
    import numpy as np
    import torch

    from audio2image.training.loader import Loader, epoch_generator

    cuda = device.startswith("cuda")
    rows = np.arange(len(train))
    produced, start = 0, time.perf_counter()
    for epoch in epochs:
        loader = Loader(train, rows, 256, shuffle=True, generator=epoch_generator(0, epoch), pin_memory=cuda,
                        memory=memory)
        augment = epoch_generator(0, epoch, stream=1)
        for raw in loader:
            produced += len(inputs.train(raw, device, augment))
    if cuda:
        torch.cuda.synchronize()
    return produced, time.perf_counter() - start


def images_per_s(images: int, seconds: float) -> str:
    return f"{images / seconds:.1f} images/s"


if __name__ == "__main__":
    main()
