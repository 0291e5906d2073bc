"""Time one training epoch through the project's real input pipeline against the same steps on ready tensors.

Synthesises a Caltech-256-format tree (JPEGs, sides 200-500) in a temporary folder and prepares it with
prepare_caltech256 at the default config's image_store_size (256). The training settings are the default Config's
transfer stage (the stage that trains on Caltech-256), with --size as image_size, --batch-size as
transfer_batch_size, --backbone as backbone (any timm name; default resnet18) and --no-amp as amp=false:
build_model's network, build_task (crop-flip ImageInputs, label smoothing 0.1), build_optimizer (SGD + Nesterov) and
build_schedule (per-step warm-up + cosine). As train_run does: channels_last on CUDA and the CPU; bf16 autocast on
CUDA and on CPUs with native bf16 unless --no-amp (run.uses_amp); pinned memory on CUDA. Every timed pass is one
call of engine.train_one_epoch (torch.cuda.synchronize before and after on CUDA), in one process with one torch thread
count:
  - warm-up (not timed): --warmup steps through the real pipeline, the last one of the epoch's last batch size;
  - real: one epoch of the train split (capped at --steps batches): Loader (shuffled, read-ahead thread,
    epoch_generator(0, 1), a new order each repeat), paced by training/cores.CoreShare as train_run paces it
    (fit_threads), + the task's ImageInputs training augmentation on the device;
  - floor: the same number of steps with the same batch sizes, whose inputs are 4 batches augmented and
    normalised by the real pipeline before timing, kept on the device and cycled: the same model, optimiser,
    loss and loop with only the input pipeline removed; in the run's precision, and where the CPU has native
    bf16 also in the other one (bf16 or fp32), printed as the bf16-vs-fp32 step speedup beside that of a bare
    timm step of the same backbone (what the CPU's bf16 gives without the project: not every backbone gains);
  - with --seed-loader (--size 224 only): the same steps through the seed's loader (seed_images.py's dataset and
    transforms, DataLoader with 1 worker, shuffled, pinned memory on CUDA) in plain fp32, NCHW, after 2 untimed
    fp32 steps on ready batches; its worker start-up is timed, as it is paid in each of the seed's epochs; run once.
Real and floor are timed --repeats times, alternated, and the fastest epoch of each is kept (the machine may be
shared). Prints images/s for each, and real / floor in the run's precision; the last line is
`train_epoch efficiency: 0.XX` = real images/s / the faster floor's images/s (bf16 or fp32): a backbone whose
bf16 is slower than its fp32 on this CPU scores low with amp on, and is run with --no-amp (amp=false).

Run: .venv/bin/python benchmarks/train_epoch.py [--backbone resnet18] [--classes 10] [--per-class 40] [--size 224]
     [--batch-size 64] [--no-amp]
     [--steps N] [--warmup 2] [--repeats 3] [--device cpu] [--threads 0] [--workers 2] [--seed-loader]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import sys
import tempfile
import time
from pathlib import Path

import baselines

FLOOR_BATCHES = 4


class Ready:
    """Task inputs for batches that are model input already: only moved to the device."""

    def train(self, raw, device, generator):
        return raw.x.to(device, non_blocking=True)


def seed_module():
    """seed_images.py imported from shared/baselines (its Caltech256Files dataset and SEED_TRANSFORM)."""
    path = baselines.seed_script("seed_images.py")
    spec = importlib.util.spec_from_file_location("seed_images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18", help="any timm architecture (config key backbone)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 training (config amp=false)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=224, help="model input side (image_size)")
    parser.add_argument("--batch-size", type=int, default=64, help="transfer_batch_size")
    parser.add_argument("--steps", type=int, default=0, help="at most this many training steps; 0: a whole epoch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--repeats", type=int, default=3, help="real and floor epochs, alternated; fastest kept")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: torch's default")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for synthesis and preparation")
    parser.add_argument("--seed-loader", action="store_true", help="also time the seed's loader in plain fp32")
    args = parser.parse_args()
    if args.seed_loader and args.size != 224:
        parser.error("--seed-loader needs --size 224: the seed's transform resizes to 224 px")
    seed = seed_module() if args.seed_loader else None

    import numpy as np
    import torch

    from audio2image.config import Config
    from audio2image.datasets.synth import synth_caltech256
    from audio2image.prepare.images import prepare_caltech256
    from audio2image.prepare.store import Store
    from audio2image.training.engine import train_one_epoch
    from audio2image.training.loader import Loader, RawBatch, epoch_generator
    from audio2image.training.model import build_model
    from audio2image.training.optim import build_optimizer, build_schedule
    from audio2image.training.cores import CoreShare
    from audio2image.training.reproducibility import fits_threads
    from audio2image.training.run import resolve_device, stage_settings, uses_amp, uses_channels_last
    from audio2image.training.tasks import build_task

    if args.threads:
        torch.set_num_threads(args.threads)
    config = Config(backbone=args.backbone, image_size=args.size, transfer_batch_size=args.batch_size,
                    device=args.device, amp=not args.no_amp)
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    amp, channels_last = uses_amp(config, device), uses_channels_last(config, device)
    other = (not amp) if uses_amp(dataclasses.replace(config, amp=True), device) else None  # the other precision

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "caltech"
        synth_caltech256(root, args.classes, args.per_class, seed=0, min_side=200, max_side=500,
                         workers=args.workers, progress=False)
        prepare_caltech256(root, tmpdir / "store", size=config.image_store_size, resize=config.image_resize,
                           split=config.image_split, workers=args.workers, progress=False)
        store = Store(tmpdir / "store")
        train = store.split("train")
        task = build_task(store, config, "transfer")
        settings = stage_settings(config, "transfer")
        rows = np.arange(len(train))
        if args.steps:
            rows = rows[:args.steps * args.batch_size]
        loader = Loader(train, rows, args.batch_size, shuffle=True, generator=epoch_generator(0, 1),
                        pin_memory=cuda)
        sizes = [len(b) for b in loader.batches_of_rows()]
        images = sum(sizes)

        model = build_model(task.num_outputs, 0, task.backbone).to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, settings)
        schedule = build_schedule(optimizer, settings, len(sizes), "transfer")

        def epoch(loop_task, batches, *, amp=amp, channels_last=channels_last) -> float:
            """Seconds for one train_one_epoch over `batches`."""
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            result = train_one_epoch(model, loop_task, batches, optimizer, device,
                                     generator=epoch_generator(0, 1, stream=1), step_scheduler=schedule.step,
                                     amp=amp, channels_last=channels_last)
            if cuda:
                torch.cuda.synchronize(device)
            if not math.isfinite(result["train_loss"]):
                sys.exit("the training loss became non-finite: the timing would be of a shorter loop")
            return time.perf_counter() - start

        def report(name: str, seconds: float) -> float:
            print(f"{name}: {images} images in {len(sizes)} steps, {seconds:.2f} s = {images / seconds:.2f} images/s")
            return images / seconds

        print(f"{args.backbone}, {args.size} px, batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} torch threads, amp {amp}, channels_last {channels_last}, "
              f"train split {len(train)} images")
        # The warm-up's last batch has the epoch's last batch size: no timed step meets a new input shape.
        warm_rows = rows[:(args.warmup - 1) * args.batch_size + sizes[-1]] if args.warmup else rows[:0]
        warm = Loader(train, warm_rows, args.batch_size, shuffle=False, pin_memory=cuda)
        epoch(task, warm)
        augment = epoch_generator(0, 0, stream=1)
        ready = [RawBatch(task.inputs.train(raw, device, augment), raw.y.to(device))
                 for raw in Loader(train, rows[:FLOOR_BATCHES * args.batch_size], args.batch_size, shuffle=False)]
        floor_batches = [RawBatch(ready[i % len(ready)].x[:n], ready[i % len(ready)].y[:n])
                         for i, n in enumerate(sizes)]
        ready_task = dataclasses.replace(task, inputs=Ready())

        # the thread fitting train_run does between batches (training/cores.py), so that its cost is in `real`
        share = CoreShare(torch.get_num_threads() if fits_threads(config, device) else 0)
        real, floor, second = [], [], []
        if other is not None:
            epoch(ready_task, floor_batches[:2], amp=other)  # the other precision's kernels warmed up too
        for _ in range(args.repeats):  # alternated, so that a slow spell of a shared machine hits all alike
            real.append(epoch(task, share.paced(loader)))  # paced as train_run paces a run's batches
            floor.append(epoch(ready_task, floor_batches))
            if other is not None:
                second.append(epoch(ready_task, floor_batches, amp=other))
        precision = {True: "bf16", False: "fp32"}
        real_rate = report(f"real (Loader + ImageInputs crop-flip, {precision[amp]})", min(real))
        floor_rate = report(f"floor (ready batches on the device, {precision[amp]})", min(floor))
        fastest = floor_rate
        if other is not None:
            other_rate = report(f"floor in {precision[other]}", min(second))
            fastest = max(floor_rate, other_rate)
            bf16_rate, fp32_rate = (floor_rate, other_rate) if amp else (other_rate, floor_rate)
            bare = bare_bf16_speedup(args.backbone, args.size, args.batch_size, device)
            print(f"bf16 vs fp32 step speedup at {args.size} px: {bf16_rate / fp32_rate:.2f}x (a bare "
                  f"timm {args.backbone} step: {bare:.2f}x)")
        else:
            print("bf16: no native bf16 on this CPU: the floor is fp32")
        print(f"real / floor in the run's precision ({precision[amp]}): {real_rate / floor_rate:.2f}")
        if args.seed_loader:
            files = torch.utils.data.Subset(seed.Caltech256Files(root), range(images))  # same batches
            seed_loader = torch.utils.data.DataLoader(files, batch_size=args.batch_size, shuffle=True,
                                                      num_workers=1, pin_memory=cuda)
            model.to(memory_format=torch.contiguous_format)
            epoch(ready_task, [floor_batches[0], floor_batches[-1]], amp=False, channels_last=False)  # warm-up
            seed_seconds = epoch(ready_task, (RawBatch(x, y) for x, y in seed_loader), amp=False,
                                 channels_last=False)
            report("seed loader (PIL + torchvision, 1 worker), fp32 NCHW", seed_seconds)
        print(f"train_epoch efficiency: {real_rate / fastest:.2f}")


def bare_bf16_speedup(backbone: str, size: int, batch: int, device, steps: int = 4) -> float:
    """bf16 over fp32 for a bare timm SGD step of `backbone` (channels_last, cross-entropy, random inputs, best of
    `steps` after 2 warm-up steps): what this machine's bf16 gives, without the project around it."""
    import timm
    import torch

    from audio2image.training.backbone import takes_input_size

    def best(amp: bool) -> float:
        torch.manual_seed(0)
        sized = {"img_size": size} if takes_input_size(backbone) else {}
        model = timm.create_model(backbone, num_classes=257, **sized).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
        y = torch.randint(0, 257, (batch,), device=device)
        times = []
        for step in range(steps + 2):
            tic = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - tic)
        return min(times[2:])

    return best(False) / best(True)


if __name__ == "__main__":
    main()
