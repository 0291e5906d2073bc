"""Time the project's audio preparation against the seed's mel extraction, on the same synthetic MTAT clips.

Synthesises MTAT-format clips into a temporary folder, then measures, on the SAME mp3 files:
  (a) the project: audio2image.prepare.audio.prepare_mtat(..., features="recipe", split="full")
      (split "full" so that every clip is prepared);
  (b) a reference floor: plain soundfile decoding of every mp3, in one process, nothing else;
  (c) the seed: /work/shared/baselines/seed_mel.py run as a subprocess, timed around the call (its
      interpreter and import start-up included; nothing subtracted). Its own printed rate is shown too.
The last line is `prepare_audio speedup: X.Xx` = project clips/s / seed clips/s (both wall time around the call).

Run: .venv/bin/python benchmarks/prepare_audio.py [--clips 300] [--seconds 29.1] [--workers 2]
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
    parser.add_argument("--clips", type=int, default=300, help="synthetic clips to make and prepare")
    parser.add_argument("--seconds", type=float, default=29.1, help="length of each clip")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for synthesis and preparation")
    args = parser.parse_args()
    seed_script = baselines.seed_script("seed_mel.py")

    import soundfile

    from audio2image.datasets.synth import synth_mtat
    from audio2image.prepare.audio import prepare_mtat

    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "mtat"
        start = time.perf_counter()
        synth_mtat(root, args.clips, seed=0, seconds=args.seconds, workers=args.workers, progress=False)
        mp3s = sorted((root / "mp3").rglob("*.mp3"))
        print(f"synthesised {len(mp3s)} clips of {args.seconds} s in {time.perf_counter() - start:.2f} s")

        # (a) the project
        start = time.perf_counter()
        manifest = prepare_mtat(root, tmpdir / "store", features="recipe", split="full",
                                clip_seconds=args.seconds, workers=args.workers, progress=False)
        project_s = time.perf_counter() - start
        project_n = sum(s["count"] for s in manifest["splits"].values())
        project_rate = project_n / project_s
        print(f"project prepare_mtat (recipe, {args.workers} workers): {project_n} clips in {project_s:.2f} s"
              f" = {project_rate:.2f} clips/s ({len(manifest['skipped'])} skipped)")

        # (b) decoding alone, one process
        start = time.perf_counter()
        for path in mp3s:
            soundfile.read(path, dtype="float32")
        decode_s = time.perf_counter() - start
        decode_rate = len(mp3s) / decode_s
        print(f"soundfile decode only (1 process): {len(mp3s)} clips in {decode_s:.2f} s = {decode_rate:.2f} clips/s")

        # (c) the seed
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(seed_script), str(root / "mp3"), str(tmpdir / "seed")],
                                capture_output=True, text=True)
        seed_s = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"seed_mel.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        seed_line = result.stdout.strip().splitlines()[-1]
        match = re.search(r"seed_mel: (\d+) clips in ([\d.]+) s = ([\d.]+) clips/s", seed_line)
        seed_n = int(match.group(1)) if match else len(mp3s)
        seed_rate = seed_n / seed_s
        print(f"seed seed_mel.py (1 process, wall incl. start-up): {seed_n} clips in {seed_s:.2f} s"
              f" = {seed_rate:.2f} clips/s")
        if match:
            print(f"seed seed_mel.py (its own timing, loop only): {match.group(3)} clips/s")
        errors = [line for line in result.stdout.splitlines() if line.startswith("error reading")]
        if errors:
            print(f"seed reported {len(errors)} unreadable clips, e.g. {errors[0]}")

        print(f"ratio project prepare / decode only: {project_rate / decode_rate:.2f}")
        print(f"prepare_audio speedup: {project_rate / seed_rate:.1f}x")


if __name__ == "__main__":
    main()
