"""MagnaTagATune -> audio store: decode each MP3 once, fix its length, log-mel it, write fp16 arrays per split.

    >>> prepare_mtat(Path("data/mtat"), Path("stores/mtat"), features="recipe", split="standard", workers=2)
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from audio2image.datasets import mtat
from audio2image.datasets.tags import TOP50
from audio2image.prepare.features import FEATURE_PRESETS, MelFrontEnd, MelSettings
from audio2image.prepare.store import SPLITS, Store, is_complete, worker_pool, write_manifest, write_split
from audio2image.util import log

FP16_MAX = float(np.finfo(np.float16).max)
# A clip shorter than this share of the fixed length is skipped: padding would make it mostly silence.
MIN_LENGTH_SHARE = 0.5


def prepare_mtat(root: Path, out: Path, *, features: str = "recipe", split: str = "standard",
                 clip_seconds: float = 29.1, workers: int = 1, progress: bool = True) -> dict:
    """Prepare (or finish preparing) the audio store for the MTAT dataset at `root`; returns its manifest."""
    root, out = Path(root), Path(out)
    if is_complete(out):
        return Store(out).manifest
    annotations_path = root / "annotations_final.csv"
    if not annotations_path.is_file():
        raise FileNotFoundError(f"no MagnaTagATune annotations at {annotations_path}; get the data with "
                                "`audio2image download mtat DIR` or `audio2image synth mtat DIR`")
    settings = FEATURE_PRESETS[features]
    samples = round(clip_seconds * settings.sample_rate)
    annotations = mtat.read_annotations(annotations_path)
    out.mkdir(parents=True, exist_ok=True)
    work = functools.partial(features_of_clips, settings=settings, samples=samples)
    shape = (settings.n_mels, settings.frames(samples))
    summaries = {}
    with worker_pool(workers, __name__) as pool:
        for name, clips in mtat.split_clips(annotations.clips, split).items():
            paths = [str(root / "mp3" / clip.mp3_path) for clip in clips]
            summaries[name] = write_split(out, name, paths, [c.mp3_path for c in clips],
                                          mtat.label_matrix(clips, TOP50), work, shape, np.float16,
                                          pool=pool, show_progress=progress)
    manifest = {
        "modality": "audio", "task": "tagging", "dataset": "mtat", "labels": list(TOP50),
        "source_root": str(root.resolve()), "split_protocol": split, "features": features,
        "feature_settings": settings.to_dict(), "clip_seconds": clip_seconds,
        "splits": {name: {"count": s["count"]} for name, s in summaries.items()},
        "skipped": [dict(item, split=name) for name, s in summaries.items() for item in s["skipped"]],
        "annotation_problems": annotations.problems,
        "normalization": _mel_statistics(out, settings),
    }
    write_manifest(out, manifest)
    log(f"audio store {out}: " + ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
        + f"; {len(manifest['skipped'])} clips skipped")
    return manifest


def features_of_clips(paths: list[str], settings: MelSettings, samples: int) -> list:
    """Decode a chunk of clips and return, per clip, its mel array [mels, frames] or the reason it was skipped."""
    decoded = [decode_clip(Path(p), settings.sample_rate, samples) for p in paths]
    good = [d for d in decoded if not isinstance(d, str)]
    if not good:
        return decoded
    mels = MelFrontEnd(settings)(torch.from_numpy(np.stack(good)))
    if not settings.log:  # power can exceed fp16's range; saturate rather than store infinities
        mels = mels.clamp_max(FP16_MAX)
    mels = iter(mels.to(torch.float16).numpy())
    return [d if isinstance(d, str) else next(mels) for d in decoded]


def decode_clip(path: Path, rate: int, samples: int) -> np.ndarray | str:
    """Mono float32 samples at `rate`, padded or cropped to `samples`; or the reason the clip is unusable."""
    if not path.is_file():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        audio, native = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile reports bad data with several exception types
        return f"cannot decode: {error}".strip()
    audio = audio.mean(axis=1)
    if native != rate:
        gcd = math.gcd(native, rate)
        audio = resample_poly(audio, rate // gcd, native // gcd).astype(np.float32)
    if len(audio) < MIN_LENGTH_SHARE * samples:
        return f"too short: {len(audio) / rate:.2f} s, need at least {MIN_LENGTH_SHARE * samples / rate:.2f} s"
    if not np.isfinite(audio).all():
        return "decoded samples are not finite"
    fixed = np.zeros(samples, dtype=np.float32)
    fixed[:min(samples, len(audio))] = audio[:samples]
    return fixed


def _mel_statistics(out: Path, settings: MelSettings, chunk: int = 64) -> dict:
    """Per-mel-band mean and std of the stored features over the training split, streamed (bounded memory)."""
    x = np.load(out / "train.x.npy", mmap_mode="r")
    if len(x) == 0:
        return {"mean": [0.0] * settings.n_mels, "std": [1.0] * settings.n_mels}
    total = np.zeros(settings.n_mels)
    squares = np.zeros(settings.n_mels)
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start:start + chunk], dtype=np.float64)
        if not settings.log:
            block = np.log10(block + 1e-10)  # power features are normalised on a log scale (see inputs)
        total += block.sum(axis=(0, 2))
        squares += (block ** 2).sum(axis=(0, 2))
    count = len(x) * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


__all__ = ["prepare_mtat", "decode_clip", "features_of_clips", "SPLITS"]
