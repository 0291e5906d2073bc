"""Time the project's image input pipeline against the seed's, on the same synthetic Caltech-256 tree.

Synthesises a Caltech-256-format tree in a temporary folder, then measures:
  - the seed: /work/shared/baselines/seed_images.py ROOT --epochs E as a subprocess (PIL decode per image
    per epoch, torchvision transforms, DataLoader with 1 worker, batch 256); its own printed images/s is used;
  - the project, one-off: prepare_caltech256(root, out, size=256) into a memory-mapped uint8 store (timed alone);
  - the project, steady state: E epochs over the train split with training.inputs.Loader (shuffled, batch 256,
    epoch_generator(0, epoch)) + ImageInputs(size, "crop-flip").train(raw, "cpu", epoch_generator(0, epoch,
    stream=1)), exactly what a CPU training epoch feeds its model (on the CPU that is training.inputs.resized_crops:
    a uint8 crop + antialiased resize per image on one thread per core, normalised into float [B, 3, size, size]);
    images/s = images produced / seconds.
Also printed: the project rate with the one-off preparation amortised over the E epochs.
The last line is `input_images speedup: X.Xx` = steady-state project images/s / seed images/s.
With --device cuda the project's batches are pinned, copied asynchronously and augmented on the GPU (the seed pins
memory when CUDA exists and augments on its CPU worker, as it did); the default runs both on the CPU.

Run: .venv/bin/python benchmarks/input_images.py [--classes 20] [--per-class 80] [--epochs 3] [--size 224]
     [--workers 2] [--device cpu|cuda]
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
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=224, help="model input side")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for synthesis and preparation")
    parser.add_argument("--device", default="cpu", help="where the project's augmentation runs: cpu or cuda (as in "
                        "training: pinned batches, copied asynchronously, augmented on the device)")
    args = parser.parse_args()
    seed_script = baselines.seed_script("seed_images.py")

    import numpy as np
    import torch

    from audio2image.datasets.synth import synth_caltech256
    from audio2image.prepare.images import prepare_caltech256
    from audio2image.prepare.store import Store
    from audio2image.training.inputs import ImageInputs, Loader, epoch_generator

    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "caltech"
        start = time.perf_counter()
        info = synth_caltech256(root, args.classes, args.per_class, seed=0, min_side=200, max_side=500,
                                workers=args.workers, progress=False)
        print(f"synthesised {info['images']} images in {time.perf_counter() - start:.2f} s")

        # the seed
        result = subprocess.run([sys.executable, str(seed_script), str(root), "--epochs", str(args.epochs)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"seed_images.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        seed_line = result.stdout.strip().splitlines()[-1]
        match = re.search(r"seed_images: (\d+) images in ([\d.]+) s = ([\d.]+) images/s", seed_line)
        if not match:
            sys.exit(f"cannot parse seed_images.py output: {seed_line!r}")
        seed_rate = float(match.group(3))
        print(f"seed seed_images.py ({args.epochs} epochs, all images): {match.group(1)} images in "
              f"{match.group(2)} s = {seed_rate:.2f} images/s")

        # the project: one-off preparation
        out = tmpdir / "store"
        start = time.perf_counter()
        manifest = prepare_caltech256(root, out, size=256, workers=args.workers, progress=False)
        prepare_s = time.perf_counter() - start
        counts = {name: s["count"] for name, s in manifest["splits"].items()}
        print(f"project prepare_caltech256 (size 256, {args.workers} workers): {sum(counts.values())} images "
              f"{counts} in {prepare_s:.2f} s")

        # the project: steady-state epochs over the train split
        train = Store(out).split("train")
        rows = np.arange(len(train))
        inputs = ImageInputs(args.size, "crop-flip")
        cuda = args.device.startswith("cuda")
        produced, start = 0, time.perf_counter()
        for epoch in range(args.epochs):
            loader = Loader(train, rows, 256, shuffle=True, generator=epoch_generator(0, epoch), pin_memory=cuda)
            augment = epoch_generator(0, epoch, stream=1)
            for raw in loader:
                x = inputs.train(raw, args.device, augment)
                produced += x.shape[0]
        if cuda:
            torch.cuda.synchronize()
        train_s = time.perf_counter() - start
        project_rate = produced / train_s
        amortised = produced / (train_s + prepare_s)
        print(f"project Loader + ImageInputs crop-flip on {args.device} ({args.epochs} epochs, train split): "
              f"{produced} images in "
              f"{train_s:.2f} s = {project_rate:.2f} images/s")
        print(f"project including the one-off prepare over {args.epochs} epochs: {amortised:.2f} images/s")
        print(f"input_images speedup: {project_rate / seed_rate:.1f}x")


if __name__ == "__main__":
    main()
