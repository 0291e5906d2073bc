"""A training epoch's throughput alone and beside another CPU-heavy job on the same cores.

Synthesises a small Caltech-256-format tree, prepares it with prepare_caltech256 (store side --store-size), then
times, each in its own process, the project's training loop on it: the transfer stage's model, task (crop-flip
ImageInputs), optimiser and schedule at --size px, batch --batch-size, through engine.train_one_epoch over the
Loader, epoch after epoch, with the thread count a run gets (all the cores this process may use) and its
precision (bf16 where the CPU has it natively), paced by training/cores.CoreShare as train_run paces it
("fit", fit_threads=true) or not ("fixed", fit_threads=false: today's behaviour before CoreShare). And a bare
loop the project did not write: a torchvision ResNet-18 SGD step in bf16 autocast (fp32 where the CPU has no
bf16), channels-last, on random tensors of the same shape, with as many threads as the cores.

With --sessions each process starts in its own session (two terminals, two batch jobs): where the kernel groups
a session's threads (sched_autogroup_enabled), the cores are shared between the jobs, else between their threads.
A third job, "prepare": the project's audio preparation (prepare_mtat, recipe features, --workers processes)
of --clips synthetic MTAT clips into a fresh store, again and again; its throughput is clips per second.
Scenarios, each a window of --seconds after --warmup seconds, every process stepping through the whole window:
  alone: project (fit) and project (fixed), alternated --repeats times (their ratio is each pair's, the median
         printed with the range: one window's throughput drifts by a few %), bare, prepare;
  paired: project + project (both fit; both fixed), project + bare (fit; fixed), prepare + project (fit; fixed).
A process's throughput is the images (clips) of the steps inside the window (a step across an edge counted by its
share of time inside) over the window. Each paired process's throughput is printed as a share of the same kind's
throughput alone (the fair share of two jobs on the cores is 0.5). The last line:
`shared_cores: fit alone X.XX (X.XX-X.XX) of fixed; project+project A.AA B.BB (fixed C.CC D.DD); project+bare
E.EE, bare F.FF (fixed G.GG, bare H.HH); prepare+project I.II, project J.JJ (fixed K.KK, project L.LL)`.

Run: .venv/bin/python benchmarks/shared_cores.py [--size 64] [--batch-size 32] [--seconds 20] [--warmup 8]
    [--repeats 3] [--clips 40] [--sessions]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def window_images(steps: list[tuple[float, float, int]], begin: float, end: float) -> float:
    """Images of the steps (start, stop, images) inside [begin, end], a step across an edge by its share."""
    total = 0.0
    for start, stop, images in steps:
        inside = min(stop, end) - max(start, begin)
        if inside > 0:
            total += images * inside / (stop - start)
    return total


def project_worker(args) -> list:
    import torch

    from audio2image.config import Config
    from audio2image.prepare.store import Store
    from audio2image.training.cores import CoreShare, usable_cores
    from audio2image.training.engine import train_one_epoch
    from audio2image.training.loader import Loader, epoch_generator
    from audio2image.training.model import build_model
    from audio2image.training.optim import build_optimizer, build_schedule
    from audio2image.training.run import resolve_device, stage_settings, uses_amp, uses_channels_last
    from audio2image.training.tasks import build_task

    most = max(1, int(usable_cores()))
    torch.set_num_threads(most)
    config = Config(image_size=args.size, transfer_batch_size=args.batch_size, device="cpu")
    device = resolve_device("cpu")
    store = Store(Path(args.store))
    task = build_task(store, config, "transfer")
    settings = stage_settings(config, "transfer")
    model = build_model(task.num_outputs, 0, task.backbone).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, settings)
    train = store.split("train")
    rows = list(range(len(train)))
    schedule = build_schedule(optimizer, settings, -(-len(rows) // args.batch_size) * 1000, "transfer")
    share = CoreShare(most if args.worker == "project-fit" else 0)
    steps, epoch = [], 0
    while time.time() < args.end:
        epoch += 1
        loader = Loader(train, rows, args.batch_size, shuffle=True, generator=epoch_generator(0, epoch))
        timed = _timed(share.paced(loader), steps, args.end)
        train_one_epoch(model, task, timed, optimizer, device, generator=epoch_generator(0, epoch, stream=1),
                        step_scheduler=schedule.step, amp=uses_amp(config, device),
                        channels_last=uses_channels_last(config, device))
    return steps


def _timed(batches, steps: list, end: float):
    """`batches`, each step's (start, stop, images) appended to `steps`; stops once past `end`."""
    last = None
    for batch in batches:
        now = time.time()
        if last is not None:
            steps.append((last[0], now, last[1]))
        if now >= end:
            return
        last = (now, len(batch.y))
        yield batch


def bare_worker(args) -> list:
    import torch
    import torchvision

    from audio2image.training.cores import usable_cores
    from audio2image.training.run import native_bf16

    torch.set_num_threads(max(1, int(usable_cores())))
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, args.size, args.size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    steps = []
    while time.time() < args.end:
        start = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16()):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append((start, time.time(), args.batch_size))
    return steps


def prepare_worker(args) -> list:
    """Prepares the MTAT tree at --mtat again and again, each time into a fresh store: (start, stop, clips)."""
    import shutil

    from audio2image.prepare.audio import prepare_mtat

    steps, round_ = [], 0
    while time.time() < args.end:
        store = Path(args.store).parent / f"prepared-{os.getpid()}-{round_}"
        start = time.time()
        with contextlib.redirect_stderr(io.StringIO()):  # each store's summary lines, hundreds of them
            manifest = prepare_mtat(Path(args.mtat), store, features="recipe", split="full", workers=args.workers,
                                    progress=False)
        steps.append((start, time.time(), sum(s["count"] for s in manifest["splits"].values())))
        shutil.rmtree(store)
        round_ += 1
    return steps


WORKERS = {"bare": bare_worker, "prepare": prepare_worker}  # any other kind: project_worker


def launch(kinds: list[str], store: Path, args) -> list[float]:
    """Start one process per kind; each steps from its start until the window's end. Their images/s in it."""
    begin = time.time() + args.warmup
    end = begin + args.seconds
    processes = [subprocess.Popen([sys.executable, str(HERE), "--worker", kind, "--store", str(store),
                                   "--end", str(end), "--size", str(args.size), "--batch-size", str(args.batch_size),
                                   "--mtat", str(args.mtat), "--workers", str(args.workers)],
                                  stdout=subprocess.PIPE, text=True, start_new_session=args.sessions)
                 for kind in kinds]
    rates = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            sys.exit(f"a worker failed (exit {process.returncode})")
        steps = json.loads(out.strip().splitlines()[-1])
        if not steps or steps[0][0] > begin:
            sys.exit(f"a worker began stepping after the window opened: raise --warmup (now {args.warmup} s)")
        rates.append(window_images(steps, begin, end) / args.seconds)
    print(f"{' + '.join(kinds)}: " + ", ".join(f"{rate:.1f}" for rate in rates) + " images/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="model input side (image_size)")
    parser.add_argument("--store-size", type=int, default=80, help="the store's image side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="each scenario's timed window")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds from the start to the window")
    parser.add_argument("--repeats", type=int, default=3, help="alone: fit and fixed windows, alternated")
    parser.add_argument("--clips", type=int, default=40, help="clips of each preparation")
    parser.add_argument("--workers", type=int, default=2, help="preparation processes (the config's workers)")
    parser.add_argument("--sessions", action="store_true",
                        help="each process in its own session, as jobs from two terminals or two batch jobs are: "
                             "Linux's autogroup then shares the cores between the two jobs, not between threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--end", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--mtat", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS.get(args.worker, project_worker)(args)))
        return

    from audio2image.datasets.synth import synth_caltech256, synth_mtat
    from audio2image.prepare.images import prepare_caltech256
    from audio2image.training.cores import usable_cores

    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        root, store, args.mtat = Path(tmp) / "caltech", Path(tmp) / "store", Path(tmp) / "mtat"
        synth_caltech256(root, 10, 40, seed=0, min_side=args.store_size, max_side=2 * args.store_size, workers=2,
                         progress=False)
        prepare_caltech256(root, store, size=args.store_size, workers=2, progress=False)
        synth_mtat(args.mtat, args.clips, seed=0, workers=2, progress=False)
        print(f"{usable_cores():g} cores; {args.size} px, batch {args.batch_size}; windows of {args.seconds:g} s")
        alone = {"project-fit": [], "project-fixed": []}
        for _ in range(args.repeats):
            for kind in alone:
                alone[kind].append(launch([kind], store, args)[0])
        fit, fixed = (statistics.median(alone[kind]) for kind in alone)
        ratios = sorted(a / b for a, b in zip(alone["project-fit"], alone["project-fixed"]))
        bare, prepare = (launch([kind], store, args)[0] for kind in ("bare", "prepare"))
        pp_fit = [r / fit for r in launch(["project-fit", "project-fit"], store, args)]
        pp_fixed = [r / fixed for r in launch(["project-fixed", "project-fixed"], store, args)]
        pb_fit = launch(["project-fit", "bare"], store, args)
        pb_fixed = launch(["project-fixed", "bare"], store, args)
        rp_fit = launch(["prepare", "project-fit"], store, args)
        rp_fixed = launch(["prepare", "project-fixed"], store, args)
    print(f"shared_cores: fit alone {statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) of fixed; "
          f"project+project {pp_fit[0]:.2f} {pp_fit[1]:.2f} (fixed {pp_fixed[0]:.2f} {pp_fixed[1]:.2f}); "
          f"project+bare {pb_fit[0] / fit:.2f}, bare {pb_fit[1] / bare:.2f} (fixed {pb_fixed[0] / fixed:.2f}, bare "
          f"{pb_fixed[1] / bare:.2f}); prepare+project {rp_fit[0] / prepare:.2f}, project {rp_fit[1] / fit:.2f} "
          f"(fixed {rp_fixed[0] / prepare:.2f}, project {rp_fixed[1] / fixed:.2f})")


if __name__ == "__main__":
    main()
