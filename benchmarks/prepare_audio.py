"""Time the project's audio preparation against the decode floor and the seed's mel extraction, same clips.

Synthesises MTAT-format clips into a temporary folder and makes two datasets of them: the first --small clips
and all --clips clips (the small one's annotations list only its clips; the mp3 files are shared). Each
measurement runs on both and reports the *marginal* rate, (clips - small) / (seconds - seconds_small), so that
start-up (interpreters, process pools, imports) does not count; each side and size is measured --rounds times,
interleaved, and its fastest time kept (this machine's speed drifts by up to ~1.8x: single measurements of one
code swung the ratio from 0.53 to 0.68):
  (a) the project: audio2image.prepare.audio.prepare_mtat(..., features="recipe", split="full") with --workers
      processes (split "full": every clip is prepared), into a fresh store each time;
  (b) the decode floor: plain soundfile decoding of the same mp3s in a process per core (all --workers cores,
      nothing else: no resampling, no features, no writing);
  (c) the seed: shared/baselines/seed_mel.py (librosa load at 22,050 Hz + power mel, one clip at a time, one
      process) as a subprocess on the same files, after one untimed run on 4 clips (librosa's numba functions
      compile and cache on the first call: seconds that would otherwise fall on the small size only).
Where the compiled kernel was built, (a) is also run on the numpy path (AUDIO2IMAGE_MEL_KERNEL=0, in a fresh
interpreter) and its ratio printed first. Prints each side's marginal clips/s; then `ratio project / all-core
decode floor: 0.XX` and, last,
`prepare_audio speedup: X.Xx` (project over seed, marginal rates).

Run: .venv/bin/python benchmarks/prepare_audio.py [--clips 300] [--small 100] [--seconds 29.1] [--rounds 3]
    [--workers 2]
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import baselines


def decode(path: str) -> int:
    import soundfile

    return len(soundfile.read(path, dtype="float32")[0])


def subset(root: Path, out: Path, clips: int) -> list[Path]:
    """An MTAT root holding the first `clips` annotation rows (mp3s linked, not copied); their mp3 paths."""
    with open(root / "annotations_final.csv", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    out.mkdir(parents=True)
    with open(out / "annotations_final.csv", "w", newline="") as handle:
        csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL).writerows(rows[:clips + 1])
    path_col = rows[0].index("mp3_path")
    mp3s = [root / "mp3" / row[path_col] for row in rows[1:clips + 1]]
    for mp3 in mp3s:
        target = out / "mp3" / mp3.relative_to(root / "mp3")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(mp3, target)
    return mp3s


def time_project(root: Path, store: Path, seconds: float, workers: int) -> tuple[int, float]:
    from audio2image.prepare.audio import prepare_mtat

    start = time.perf_counter()
    manifest = prepare_mtat(root, store, features="recipe", split="full", clip_seconds=seconds, workers=workers,
                            progress=False)
    return sum(s["count"] for s in manifest["splits"].values()), time.perf_counter() - start


def time_numpy_path(root: Path, store: Path, seconds: float, workers: int) -> float:
    """time_project in a fresh interpreter with AUDIO2IMAGE_MEL_KERNEL=0: the numpy path, timed inside it (a
    fresh one because the preparation workers' forkserver keeps the environment it started with)."""
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import prepare_audio; "
            "print(prepare_audio.time_project(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), "
            "int(sys.argv[5]))[1])")
    here = str(Path(__file__).resolve().parent)
    result = subprocess.run([sys.executable, "-c", code, here, str(root), str(store), str(seconds), str(workers)],
                            env={**os.environ, "AUDIO2IMAGE_MEL_KERNEL": "0"}, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"the numpy path failed ({result.returncode}):\n{result.stderr}")
    return float(result.stdout.split()[-1])


def time_decode(mp3s: list[Path], workers: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(decode, map(str, mp3s), chunksize=8))
    return time.perf_counter() - start


def time_seed(script: Path, root: Path, out: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(script), str(root / "mp3"), str(out)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"seed_mel.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300, help="clips of the large dataset")
    parser.add_argument("--small", type=int, default=100, help="clips of the small dataset (its first ones)")
    parser.add_argument("--seconds", type=float, default=29.1, help="length of each clip")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each side and size (fastest kept)")
    parser.add_argument("--workers", type=int, default=2, help="processes (cores) for synthesis, preparation and "
                                                                "the decode floor")
    args = parser.parse_args()
    if not 0 < args.small < args.clips:
        parser.error("--small must be between 0 and --clips")
    seed_script = baselines.seed_script("seed_mel.py")
    from audio2image.datasets.synth import synth_mtat
    from audio2image.prepare.features import KERNEL

    print(f"front end: {'the compiled kernel (prepare/_melkernel.c)' if KERNEL else 'numpy (no compiled kernel)'}")
    sides = ("project", "numpy", "decode", "seed") if KERNEL else ("project", "decode", "seed")

    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        tmpdir = Path(tmp)
        start = time.perf_counter()
        synth_mtat(tmpdir / "mtat", args.clips, seed=0, seconds=args.seconds, workers=args.workers, progress=False)
        print(f"synthesised {args.clips} clips of {args.seconds} s in {time.perf_counter() - start:.2f} s")
        sizes = {"small": args.small, "large": args.clips}
        roots = {name: tmpdir / name for name in sizes}
        mp3s = {name: subset(tmpdir / "mtat", roots[name], n) for name, n in sizes.items()}
        # librosa compiles (numba) and caches on its first call: a warm-up run keeps that out of the small size
        warm = tmpdir / "warm"
        subset(tmpdir / "mtat", warm, 4)
        time_seed(seed_script, warm, tmpdir / "seed-warm")
        timings = {side: {name: [] for name in sizes} for side in sides}
        for round_ in range(args.rounds):  # sides and sizes interleaved so drift hits all alike; fastest kept
            for name in sizes:
                store = tmpdir / f"store-{name}-{round_}"
                count, seconds = time_project(roots[name], store, args.seconds, args.workers)
                if count != sizes[name]:
                    sys.exit(f"prepare_mtat kept {count} of {sizes[name]} clips: the rates would not compare")
                shutil.rmtree(store)
                timings["project"][name].append(seconds)
                if "numpy" in sides:
                    timings["numpy"][name].append(time_numpy_path(roots[name], store, args.seconds, args.workers))
                    shutil.rmtree(store)
                timings["decode"][name].append(time_decode(mp3s[name], args.workers))
                seed_out = tmpdir / f"seed-{name}-{round_}"
                timings["seed"][name].append(time_seed(seed_script, roots[name], seed_out))
                shutil.rmtree(seed_out, ignore_errors=True)
        timings = {side: {name: min(runs) for name, runs in by_size.items()} for side, by_size in timings.items()}
        extra = args.clips - args.small
        rates = {}
        labels = {"project": f"project prepare_mtat (recipe, {args.workers} workers)",
                  "numpy": "the same on the numpy path (AUDIO2IMAGE_MEL_KERNEL=0)",
                  "decode": f"decode floor (soundfile only, {args.workers} processes)",
                  "seed": "seed seed_mel.py (1 process)"}
        for side in sides:
            label = labels[side]
            small, large = timings[side]["small"], timings[side]["large"]
            rates[side] = extra / (large - small)
            print(f"{label}: {args.small} clips {small:.2f} s, {args.clips} clips {large:.2f} s -> marginal "
                  f"{rates[side]:.2f} clips/s")
        if "numpy" in rates:
            print(f"ratio numpy path / all-core decode floor: {rates['numpy'] / rates['decode']:.2f}")
        print(f"ratio project / all-core decode floor: {rates['project'] / rates['decode']:.2f}")
        print(f"prepare_audio speedup: {rates['project'] / rates['seed']:.1f}x")


if __name__ == "__main__":
    main()
