"""Audio datasets -> audio store: decode each clip once, fix its length, log-mel it, write fp16 arrays per split.

    >>> prepare_mtat(Path("data/mtat"), Path("stores/mtat"), features="recipe", split="standard", workers=2)
    >>> prepare_audiofolder(Path("data/esc50"), Path("stores/esc50"), clip_seconds=5, workers=2)
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from audio2image.datasets import audiofolder, mtat
from audio2image.datasets.tags import TOP50
from audio2image.prepare.features import FEATURE_PRESETS, TOP_DB, MelFrontEnd, MelSettings
from audio2image.prepare.findings import check_labels, finding_lines, store_findings, upgrade_manifest
from audio2image.prepare.store import STORE_VERSION, check_splits, complete_manifest, versioned, write_manifest
from audio2image.prepare.writer import Row, SplitItems, split_signatures, worker_pool, write_splits
from audio2image.util import log

FP16_MAX = float(np.finfo(np.float16).max)
# A clip shorter than this share of the fixed length is skipped: padding would make it mostly silence.
MIN_LENGTH_SHARE = 0.5
NOT_FINITE = "decoded samples are not finite"


def prepare_mtat(root: Path, out: Path, *, features: str = "recipe", split: str = "standard",
                 clip_seconds: float = 29.1, workers: int = 1, progress: bool = True) -> dict:
    """Prepare (or finish preparing) the audio store for the MTAT dataset at `root`; returns its manifest."""
    root, out = Path(root), Path(out)
    annotations_path = root / "annotations_final.csv"
    if not annotations_path.is_file():
        raise FileNotFoundError(f"no MagnaTagATune annotations at {annotations_path}; get the data with "
                                "`audio2image download mtat DIR` or `audio2image synth mtat DIR`")
    annotations = mtat.read_annotations(annotations_path)
    splits = {name: SplitItems([str(root / "mp3" / c.mp3_path) for c in clips], [c.mp3_path for c in clips],
                               mtat.label_matrix(clips, TOP50))
              for name, clips in mtat.split_clips(annotations.clips, split).items()}
    facts = {"dataset": "mtat", "task": "tagging", "labels": list(TOP50), "split_protocol": split,
             "annotation_problems": annotations.problems}
    return write_audio_store(root, out, splits, facts, features=features, clip_seconds=clip_seconds,
                             workers=workers, progress=progress)


def prepare_audiofolder(root: Path, out: Path, *, features: str = "recipe", clip_seconds: float = 29.1,
                        split_seed: int = 0, task: str = "auto", label_column: str = "label", workers: int = 1,
                        progress: bool = True) -> dict:
    """Prepare (or finish preparing) the audio store for an audio folder (ROOT/labels.csv + the files it names, or
    Hugging Face's AudioFolder layout, its labels in `label_column`).

    Any format soundfile decodes, resampled to the feature preset's rate; the split from labels.csv's split
    column or the split folders (what they lack cut from train), else seeded by `split_seed` (stratified for
    single-label data). `task`: auto | tagging | classification (see datasets/audiofolder.py).
    """
    root, out = Path(root), Path(out)
    labels = audiofolder.read_labels(root, label_column)
    kind = audiofolder.task_of(labels, task)
    splits = {name: SplitItems([str(root / c.path) for c in clips], [c.path for c in clips],
                               audiofolder.targets(clips, labels.vocabulary, kind))
              for name, clips in audiofolder.split_clips(labels, kind, split_seed).items()}
    facts = {"dataset": "audiofolder", "task": kind, "task_requested": task, "labels": labels.vocabulary,
             "layout": audiofolder.layout_words(labels), "split_protocol": audiofolder.split_protocol(labels),
             "split_seed": split_seed,
             "annotation_problems": labels.problems}
    return write_audio_store(root, out, splits, facts, features=features, clip_seconds=clip_seconds,
                             workers=workers, progress=progress)


def audio_item(*, features: str = "recipe", clip_seconds: float = 29.1, **_) -> dict:
    """One stored clip, from the store options: its array's shape and dtype, and its features as a store's
    manifest names them (what training reads). The registry's `item`; the other options do not shape it."""
    settings = FEATURE_PRESETS[features]
    samples = round(clip_seconds * settings.sample_rate)
    return {"shape": (settings.n_mels, settings.frames(samples)), "dtype": "float16", "features": features,
            "feature_settings": settings.to_dict()}


def write_audio_store(root: Path, out: Path, splits: dict[str, SplitItems], facts: dict, *, features: str,
                      clip_seconds: float, workers: int, progress: bool) -> dict:
    """Decode, fix the length of and mel every split's clips into `out`; returns the manifest.

    `facts` go into the manifest as they are: the dataset's name, task, label names, split protocol and the
    annotation rows it dropped.
    """
    settings = FEATURE_PRESETS[features]
    samples = round(clip_seconds * settings.sample_rate)
    shape = audio_item(features=features, clip_seconds=clip_seconds)["shape"]
    described = {"root": str(root.resolve()), "features": settings.to_dict(), "samples": samples}

    def signatures_of(version: int) -> dict:
        return split_signatures(splits, versioned(described, version), shape, np.float16)

    signatures = signatures_of(STORE_VERSION)
    # Older rules made the same rows from the same clips: only the manifest's checks and lists are new.
    done = complete_manifest(out, signatures_of, functools.partial(upgrade_manifest, out, signatures=signatures,
                                                                   warned=[]))
    if done is not None:
        return done
    out.mkdir(parents=True, exist_ok=True)
    work = functools.partial(features_of_clips, settings=settings, samples=samples)
    with worker_pool(workers, __name__) as pool:
        summaries = write_splits(out, splits, work, shape, np.float16, signatures=signatures, pool=pool,
                                 show_progress=progress)
    manifest = {
        "modality": "audio", **facts, "source_root": str(root.resolve()), "features": features,
        "feature_settings": settings.to_dict(), "clip_seconds": clip_seconds, "store_version": STORE_VERSION,
        "splits": {name: {"count": s["count"]} for name, s in summaries.items()},
        "skipped": [dict(item, split=name) for name, s in summaries.items() for item in s["skipped"]],
        "warned": [dict(item, split=name) for name, s in summaries.items() for item in s.get("warned", [])],
        "signatures": signatures,
    }
    check_splits(out, manifest)
    manifest["label_warnings"] = check_labels(out, manifest)
    # Only log-mels are standardised (config refuses audio_normalize for the seed's power features).
    manifest["normalization"] = band_statistics(summaries["train"].get("sums", {})) if settings.log else None
    if not settings.log:
        manifest["fp16_saturated_values"] = {name: int(s.get("sums", {}).get("saturated", 0))
                                             for name, s in summaries.items()}
    write_manifest(out, manifest)
    dropped = len(facts.get("annotation_problems", []))
    log("\n".join([f"audio store {out}: " + ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
                   + f"; {len(manifest['skipped'])} clips skipped, {dropped} annotation rows dropped",
                   *finding_lines(store_findings(manifest, out), "audio")]))
    return manifest


def features_of_clips(paths: list[str], settings: MelSettings, samples: int) -> Iterator[Row | str]:
    """Per clip of a chunk, in order: a `Row` of its fp16 mel array [mels, frames] with the sums the store keeps
    (per-band sums and squares for the training statistics, fp16-saturated values), or why it was skipped.

    A generator whose rows share one buffer: prepare.writer.write_chunk writes each before asking for the next.
    The sums are taken here, on the workers, not by reading the store back: that would be a second pass over every
    row in the one writing process (benchmarks/README.md: preparation)."""
    clip_features = _clip_features(settings, samples)
    for path in paths:
        yield clip_features(Path(path))


@functools.lru_cache(maxsize=2)
def _clip_features(settings: MelSettings, samples: int) -> ClipFeatures:
    """One ClipFeatures per worker process and store, not per chunk: its megabytes of buffers are faulted in once."""
    return ClipFeatures(settings, samples)


class ClipFeatures:
    """A clip file -> `Row` (or the reason it is unusable): decoded, mel'd, rounded, converted and summed in
    buffers kept from clip to clip (fresh arrays would fault in new pages for each clip's megabytes).

    Where the compiled kernel was built (prepare/_melkernel.c), one pass clamps, converts to fp16 with the CPU's
    own instruction and sums. Else the conversion goes through the rounded float32 values (see `_to_fp16`):
    numpy's own float32 -> float16 cast is a scalar loop, and the rounded values serve the band sums as well
    (per-clip costs of each: benchmarks/README.md, preparation). Both store numpy's astype bits.
    """

    def __init__(self, settings: MelSettings, samples: int, compiled: bool = True):
        self.settings, self.samples = settings, samples
        self.front_end = MelFrontEnd(settings, compiled)
        shape = (settings.n_mels, settings.frames(samples))
        self.mel, self.scratch = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.bits = np.empty(shape, np.uint32)
        self.stored = np.empty(shape, np.float16)

    def __call__(self, path: Path) -> Row | str:
        audio = decode_clip(path, self.settings.sample_rate, self.samples,
                            into=self.front_end.waveform_buffer(self.samples), check_finite=False)
        if isinstance(audio, str):
            return audio
        with np.errstate(over="ignore", invalid="ignore"):  # overflowing features are caught here, named
            mel, peak = self.front_end.unfloored(audio, out=self.mel)
        if not np.isfinite(peak):  # NaN or inf samples make NaN or inf features: name which it was
            finite = np.isfinite(audio.max()) and np.isfinite(audio.min())
            return "features are not finite (samples beyond float32's range)" if finite else NOT_FINITE
        floor = peak - TOP_DB if self.settings.log else -np.inf  # librosa's top_db, done here with the rest
        # Power features can exceed fp16's range: saturated (counted in the manifest) rather than stored as inf.
        # dB features lie far inside it.
        kernel = self.front_end.kernel
        if kernel is not None:  # floor, clamp, fp16, sums in one compiled pass (prepare/_melkernel.c)
            band_sum, band_squares = np.empty(len(mel)), np.empty(len(mel))
            saturated = kernel.finish(mel, self.stored, band_sum, band_squares, *mel.shape, floor)
        else:
            if self.settings.log:
                np.maximum(mel, floor, out=mel)
            if peak > FP16_MAX:
                np.minimum(mel, FP16_MAX, out=mel)
            rounded = self._to_fp16(mel)
            band_sum = rounded.sum(axis=1).astype(np.float64)  # float32 pairwise sums: ~1e-7; clips add in float64
            band_squares = np.square(rounded, out=self.scratch).sum(axis=1).astype(np.float64)
            saturated = int(np.count_nonzero(rounded == FP16_MAX)) if peak > FP16_MAX - 16 else 0
        return Row(self.stored, {"band_sum": band_sum, "band_squares": band_squares, "frames": mel.shape[1],
                                 "saturated": saturated})

    def _to_fp16(self, values: np.ndarray) -> np.ndarray:
        """Write `values` (float32, |x| <= FP16_MAX) as fp16 into `self.stored`, bit for bit numpy's
        astype(float16); returns them rounded to those fp16 values, in place (as float32, for the sums).

        Veltkamp's split, t - (t - x) with t = x * (2**13 + 1), rounds to fp16's 11 significant bits, ties to
        even (tested against numpy on millions of values); the rounded float32 bits shifted down by 13 hold the
        sign at bit 18, then the exponent and 10-bit mantissa: the exponent is rebased from 127 to 15, the sign
        moved to bit 15 and the rest cut off. fp16's subnormals (|x| < 2**-14, rare in dB) have fewer bits:
        numpy converts those few from the original values (rounding the rounded value could differ)."""
        small = None
        if np.abs(values, out=self.scratch).min() < 2.0 ** -14:
            small = np.flatnonzero(self.scratch.ravel() < 2.0 ** -14)
            exact = values.ravel()[small].astype(np.float16)
        scaled = np.multiply(values, np.float32(2 ** 13 + 1), out=self.scratch)
        rounded = np.subtract(scaled, np.subtract(scaled, values, out=values), out=values)
        bits, sign = self.bits, self.scratch.view(np.uint32)
        np.subtract(np.right_shift(rounded.view(np.uint32), 13, out=bits), 112 << 10, out=bits)
        np.bitwise_and(np.right_shift(bits, 3, out=sign), 0x8000, out=sign)
        np.copyto(self.stored.view(np.uint16), np.bitwise_or(bits, sign, out=bits), casting="unsafe")
        if small is not None:
            self.stored.ravel()[small] = exact
            rounded.ravel()[small] = exact
        return rounded


def decode_clip(path: Path, rate: int, samples: int, into: np.ndarray | None = None,
                check_finite: bool = True) -> np.ndarray | str:
    """Mono float32 samples at `rate`, padded or cropped to `samples`; or the reason the clip is unusable.
    `into`: a buffer of at least `samples` + 1 values where a mono clip at `rate` is decoded (the result is then a
    view of it; other clips are decoded into new arrays). check_finite=False leaves NaN and inf samples to a
    caller whose features would show them (two passes over the samples saved)."""
    if not path.is_file():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with soundfile.SoundFile(path) as clip:
            native = clip.samplerate
            needed = math.ceil(samples * native / rate) + 1  # decoding stops there: the rest would be cropped
            if into is not None and clip.channels == 1 and native == rate and len(into) >= needed:
                audio = clip.read(out=into[:needed])  # a view of its first frames where the clip is shorter
            else:
                audio = clip.read(needed, dtype="float32", always_2d=True)
                audio = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1)
    except Exception as error:  # libsndfile reports bad data with several exception types
        return f"cannot decode: {error}".strip()
    if native != rate:
        from scipy.signal import resample_poly  # imported here: importing scipy.signal slows every worker's start

        gcd = math.gcd(native, rate)
        audio = resample_poly(audio, rate // gcd, native // gcd).astype(np.float32)
    if len(audio) < MIN_LENGTH_SHARE * samples:
        return f"too short: {len(audio) / rate:.2f} s, need at least {MIN_LENGTH_SHARE * samples / rate:.2f} s"
    if check_finite and not (np.isfinite(audio.max()) and np.isfinite(audio.min())):  # NaN, +-inf show there
        return NOT_FINITE
    if len(audio) >= samples:  # the usual case: decoding read one sample more than needed
        return audio[:samples]
    fixed = np.zeros(samples, dtype=np.float32)
    fixed[:len(audio)] = audio
    return fixed


def band_statistics(sums: dict) -> dict:
    """Per-mel-band mean and std over a split's stored values, from the rows' accumulated sums."""
    if not sums or not sums["frames"]:
        return {"mean": [0.0] * len(sums.get("band_sum", [])), "std": [1.0] * len(sums.get("band_sum", []))}
    mean = np.asarray(sums["band_sum"]) / sums["frames"]
    std = np.sqrt(np.maximum(np.asarray(sums["band_squares"]) / sums["frames"] - mean ** 2, 1e-12))
    return {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


__all__ = ["prepare_mtat", "prepare_audiofolder", "write_audio_store", "decode_clip", "features_of_clips"]
