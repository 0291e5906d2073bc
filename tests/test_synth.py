"""Synthetic MTAT and Caltech-256: real on-disk formats, idempotence, and content a model can learn.

The learnability checks use only numpy features and scikit-learn, not the project's pipeline, so they
test the data rather than the code that will consume it.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from audio2image.datasets import synth
from audio2image.datasets.synth import MARKER, PARTIAL, mtat_plan, synth_caltech256, synth_mtat
from audio2image.datasets.tags import ALL_TAGS, TOP50

CLIP_INFO_COLUMNS = ["clip_id", "track_number", "title", "artist", "album", "url", "segmentStart", "segmentEnd",
                     "original_url", "mp3_path"]


def read_tsv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t", quotechar='"'))


def mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- MTAT format


@pytest.fixture(scope="module")
def small_mtat(tmp_path_factory):
    out = tmp_path_factory.mktemp("mtat")
    summary = synth_mtat(out, clips=40, seed=1, seconds=2.0, workers=1, progress=False)
    return out, summary


def test_mtat_annotations_mirror_the_real_file(small_mtat):
    out, summary = small_mtat
    first_line = (out / "annotations_final.csv").read_text().split("\n", 1)[0]
    assert first_line.startswith('"clip_id"\t"')  # every field quoted, tab-separated, like the real file
    header, *rows = read_tsv(out / "annotations_final.csv")
    assert header[0] == "clip_id" and header[-1] == "mp3_path"
    assert sorted(header[1:-1]) == sorted(ALL_TAGS)
    assert len(rows) == summary["clips"] == 40
    ids = [int(row[0]) for row in rows]
    assert ids == sorted(set(ids)) and ids[-1] - ids[0] > len(ids)  # increasing, not contiguous
    assert all(set(row[1:-1]) <= {"0", "1"} for row in rows)
    top = [header.index(tag) for tag in TOP50]
    assert all(any(row[j] == "1" for j in top) for row in rows)  # every clip has a top-50 tag
    paths = [row[-1] for row in rows]
    assert all(re.fullmatch(r"[0-9a-f]/[a-z0-9_]+-[a-z0-9_]+-\d\d-[a-z0-9_]+-\d+-\d+\.mp3", p) for p in paths)
    assert {p[0] for p in paths} == set("0123456789abcdef")
    assert all((out / "mp3" / p).is_file() for p in paths)


def test_mtat_clip_info_matches_annotations(small_mtat):
    out, _ = small_mtat
    header, *rows = read_tsv(out / "clip_info_final.csv")
    assert header == CLIP_INFO_COLUMNS
    annotations = read_tsv(out / "annotations_final.csv")[1:]
    assert [(r[0], r[-1]) for r in rows] == [(a[0], a[-1]) for a in annotations]
    assert all(int(r[7]) - int(r[6]) == 29 for r in rows)


def test_mtat_audio_is_mono_16k_mp3(small_mtat):
    out, _ = small_mtat
    path = next((out / "mp3").rglob("*.mp3"))
    assert soundfile.info(str(path)).format == "MP3"
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    assert abs(len(audio) - 2.0 * 16000) < 1600  # MP3 decoders pad or trim a frame or so
    peaks = [np.abs(soundfile.read(p, dtype="float32")[0]).max() for p in (out / "mp3").rglob("*.mp3")]
    assert 0.05 < min(peaks) and max(peaks) <= 1.0  # levels differ (quiet ~0.1, loud ~0.9), nothing clips


def test_mtat_is_idempotent(small_mtat):
    out, summary = small_mtat
    before = mtimes(out)
    assert synth_mtat(out, clips=40, seed=1, seconds=2.0, workers=1, progress=False) == summary
    assert mtimes(out) == before
    assert not list(out.rglob("*.tmp")) and not (out / PARTIAL).exists()


def test_mtat_resumes_after_an_interruption(tmp_path):
    synth_mtat(tmp_path, clips=16, seconds=1.0, progress=False)
    params = json.loads((tmp_path / MARKER).read_text())["params"]
    # What a kill leaves: the claim, no completion marker, some clips not written yet.
    (tmp_path / MARKER).unlink()
    (tmp_path / PARTIAL).write_text(json.dumps(params))
    missing = sorted((tmp_path / "mp3").rglob("*.mp3"))[:3]
    for path in missing:
        path.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (tmp_path / "mp3").rglob("*.mp3")}
    synth_mtat(tmp_path, clips=16, seconds=1.0, progress=False)
    assert all(p.is_file() for p in missing)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished files were not redone
    assert (tmp_path / MARKER).exists() and not (tmp_path / PARTIAL).exists()


def test_mtat_rewrites_when_parameters_change(tmp_path):
    synth_mtat(tmp_path, clips=16, seconds=1.0, progress=False)
    summary = synth_mtat(tmp_path, clips=20, seconds=1.0, seed=5, progress=False)
    assert summary["clips"] == 20 and summary["seed"] == 5
    assert len(read_tsv(tmp_path / "annotations_final.csv")) == 21
    assert len(list((tmp_path / "mp3").rglob("*.mp3"))) == 20  # the old clips are gone


def test_refuses_to_overwrite_data_it_did_not_make(tmp_path):
    (tmp_path / "mp3" / "0").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        synth_mtat(tmp_path, clips=4, seconds=1.0, progress=False)


# ----------------------------------------------------------------------------- MTAT labels


def test_label_model_frequencies():
    plan = mtat_plan(3000, seed=0)
    counts = {tag: sum(tag in clip["tags"] for clip in plan) / len(plan) for tag in ALL_TAGS}
    assert {tag: f for tag, f in counts.items() if tag in TOP50 and not 0.05 <= f <= 0.6} == {}
    assert all(set(clip["tags"]) & set(TOP50) for clip in plan)
    rare = [tag for tag, f in counts.items() if tag not in TOP50 and f > 0]
    assert 5 <= len(rare) and max(counts[tag] for tag in rare) < 0.05


def test_plan_is_deterministic_and_prefix_stable():
    assert mtat_plan(30, seed=3) == mtat_plan(30, seed=3)
    assert mtat_plan(30, seed=3)[:10] == mtat_plan(10, seed=3)  # a small dataset is a prefix of a larger one
    assert [c["tags"] for c in mtat_plan(30, seed=3)] != [c["tags"] for c in mtat_plan(30, seed=4)]


# ----------------------------------------------------------------------------- MTAT audibility


def mel_filters(rate: int, n_fft: int, bands: int) -> np.ndarray:
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(0, mel(rate / 2), bands + 2))[:, None]
    f = np.fft.rfftfreq(n_fft, 1 / rate)
    rising = (f - edges[:-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[2:] - f) / (edges[2:] - edges[1:-1])
    return np.maximum(0, np.minimum(rising, falling))


def clip_features(path: Path, filters: np.ndarray) -> np.ndarray:
    """Log-mel quantiles per band, spectral flux per band, rhythm (onset autocorrelation) and level."""
    audio, rate = soundfile.read(path, dtype="float32")
    frames = np.lib.stride_tricks.sliding_window_view(audio, 512)[::256] * np.hanning(512)
    logmel = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ filters.T + 1e-6)
    flux = np.maximum(np.diff(logmel, axis=0), 0)
    onset = flux.sum(1) / (flux.sum(1).mean() + 1e-9)
    centred = onset - onset.mean()
    auto = np.correlate(centred, centred, "full")[len(onset) - 1:]
    auto /= auto[0] + 1e-9
    rhythm = [auto[a:b].max() for a, b in [(3, 6), (6, 10), (10, 16), (16, 25), (25, 40), (40, 63), (63, 100)]]
    peaks = ((onset[1:-1] > onset[:-2]) & (onset[1:-1] >= onset[2:]) & (onset[1:-1] > 1.5)).sum()
    level = [logmel.max(), np.percentile(logmel.sum(1), 90)]
    quantiles = np.percentile(logmel, [10, 50, 90], axis=0).ravel()
    return np.concatenate([quantiles, flux.mean(0), rhythm, [peaks * rate / len(audio)], level])


def test_tags_are_audible(tmp_path):
    """A linear model on simple log-mel statistics predicts held-out clips' top-50 tags (macro ROC-AUC)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    synth_mtat(tmp_path, clips=160, seconds=3.0, seed=0, workers=2, progress=False)
    header, *rows = read_tsv(tmp_path / "annotations_final.csv")
    filters = mel_filters(16000, 512, 24)
    x = np.stack([clip_features(tmp_path / "mp3" / row[-1], filters) for row in rows])
    y = np.array([[int(row[header.index(tag)]) for tag in TOP50] for row in rows])
    folders = np.array([row[-1][0] for row in rows])
    scores = np.zeros(y.shape)
    for held_out in ("0123", "4567", "89ab", "cdef"):  # by folder, as the real splits are
        test = np.isin(folders, list(held_out))
        for j in range(len(TOP50)):
            if y[~test, j].min() == y[~test, j].max():
                scores[test, j] = y[~test, j].mean()
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, class_weight="balanced", max_iter=3000))
            scores[test, j] = model.fit(x[~test], y[~test, j]).predict_proba(x[test])[:, 1]
    aucs = {tag: roc_auc_score(y[:, j], scores[:, j]) for j, tag in enumerate(TOP50) if 0 < y[:, j].sum() < len(y)}
    assert len(aucs) >= 45
    assert np.mean(list(aucs.values())) > 0.8, sorted(aucs.items(), key=lambda kv: kv[1])[:10]


# ----------------------------------------------------------------------------- Caltech-256


@pytest.fixture(scope="module")
def small_caltech(tmp_path_factory):
    out = tmp_path_factory.mktemp("caltech")
    summary = synth_caltech256(out, classes=10, per_class=30, seed=0, min_side=120, max_side=260, workers=2,
                               progress=False)
    return out, summary


def test_caltech_layout(small_caltech):
    out, summary = small_caltech
    folders = sorted(p.name for p in (out / "256_ObjectCategories").iterdir())
    assert len(folders) == summary["classes"] == 10
    assert folders[:3] == ["001.ak47", "002.american-flag", "003.backpack"]
    for folder in folders:
        number = folder[:3]
        assert re.fullmatch(r"\d{3}\.[a-z0-9-]+", folder)
        files = sorted(p.name for p in (out / "256_ObjectCategories" / folder).iterdir())
        assert files == [f"{number}_{k:04d}.jpg" for k in range(1, 31)]
    assert summary["images"] == 300


def test_caltech_images(small_caltech):
    out, summary = small_caltech
    modes = []
    for path in (out / "256_ObjectCategories").rglob("*.jpg"):
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert 120 <= image.width <= 260 and 120 <= image.height <= 260
            modes.append(image.mode)
    assert set(modes) == {"RGB", "L"}
    assert modes.count("L") == summary["grayscale"] and summary["grayscale"] < 0.1 * len(modes)


def test_caltech_is_idempotent(small_caltech):
    out, summary = small_caltech
    before = mtimes(out)
    again = synth_caltech256(out, classes=10, per_class=30, seed=0, min_side=120, max_side=260, progress=False)
    assert again == summary and mtimes(out) == before


def test_caltech_classes_are_learnable(small_caltech):
    """Colour histograms alone separate the classes far better than chance (0.1)."""
    from sklearn.linear_model import LogisticRegression

    out, _ = small_caltech
    x, y, index = [], [], []
    for path in sorted((out / "256_ObjectCategories").rglob("*.jpg")):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((64, 64))).reshape(-1, 3) // 64
        x.append(np.bincount(pixels @ [16, 4, 1], minlength=64) / len(pixels))
        y.append(int(path.parent.name[:3]))
        index.append(int(path.stem[-4:]))
    x, y, test = np.array(x), np.array(y), np.array(index) > 20
    model = LogisticRegression(C=10, max_iter=3000).fit(x[~test], y[~test])
    assert model.score(x[test], y[test]) > 0.5


def test_class_designs_are_distinct():
    designs = [synth.class_design(c) for c in range(synth.MAX_CLASSES)]
    assert len(set(designs)) == len(designs) >= 257
    assert synth.class_folder(256) == "257.clutter"
