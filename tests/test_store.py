"""The prepared store: resumable chunked writing, in-place .npy truncation, and both preparations end to end
on tiny dataset trees (real MP3s and JPEGs, with every kind of bad input the real data has or could have)."""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import subprocess
import sys
import time
import uuid
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
from PIL import Image

from audio2image.datasets.tags import ALL_TAGS, TOP50
from audio2image.prepare.features import FEATURE_PRESETS
from audio2image.prepare.store import Store, write_manifest
from audio2image.prepare.writer import Row, SplitItems, _truncate_npy, worker_pool, write_splits

SHAPE = (2, 3)


class Killed(Exception):
    """Stands in for the process being killed in the middle of a preparation."""


def numbered_work(chunk: list, log_dir: str | None = None, flag: str | None = None, sentinel: int = -1) -> list:
    """Per item i: a [2, 3] array holding i (and i / 1000 at [0, 1]), or a reason when i % 5 == 3; the array comes
    with a warning (a `Row`) when i % 7 == 6.

    Every call leaves a file named after its first item in `log_dir`, so tests can count calls per chunk;
    it raises `Killed` on reaching item `sentinel` while the file `flag` exists.
    """
    if log_dir is not None:
        (Path(log_dir) / f"{chunk[0]}.{uuid.uuid4().hex}").touch()
    results = []
    for item in chunk:
        if flag is not None and item == sentinel and Path(flag).exists():
            raise Killed(f"killed at item {item}")
        if item % 5 == 3:
            results.append(f"item {item} is bad")
            continue
        row = np.full(SHAPE, item, dtype=np.float32)
        row[0, 1] = item / 1000
        row = row.astype(np.float16)
        results.append(Row(row, {}, f"item {item} is odd") if item % 7 == 6 else row)
    return results


def calls_per_chunk(log_dir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for entry in log_dir.iterdir():
        start = int(entry.name.split(".")[0])
        counts[start] = counts.get(start, 0) + 1
    return counts


def expected_rows(n: int) -> list[int]:
    return [i for i in range(n) if i % 5 != 3]


def write_numbered(out: Path, n: int, chunk: int = 4, **work_args) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    items = list(range(n))
    ids = [f"clip-{i}" for i in items]
    labels = np.arange(n, dtype=np.int64) * 10
    work = functools.partial(numbered_work, **work_args)
    return write_train(out, items, ids, labels, work, chunk=chunk)


def write_train(out: Path, items: list, ids: list[str], labels: np.ndarray, work, **options) -> dict:
    """Write one split, "train", and return its summary."""
    splits = {"train": SplitItems(items, ids, labels)}
    return write_splits(out, splits, work, SHAPE, np.float16, show_progress=False, **options)["train"]


def open_split(out: Path):
    write_manifest(out, {"modality": "audio", "task": "tagging", "labels": []})
    return Store(out).split("train")


# --- write_splits ------------------------------------------------------------------------------------------------
def test_skipped_items_are_listed_and_rows_line_up(tmp_path):
    summary = write_numbered(tmp_path, 23, chunk=4)
    kept = expected_rows(23)
    assert summary["count"] == len(kept)
    assert summary["skipped"] == [{"item": f"clip-{i}", "reason": f"item {i} is bad"} for i in (3, 8, 13, 18)]
    assert summary["warned"] == [{"item": f"clip-{i}", "reason": f"item {i} is odd"} for i in (6, 20)]  # 13: skipped
    split = open_split(tmp_path)
    assert split.x.shape == (len(kept), *SHAPE) and split.x.dtype == np.float16
    assert split.ids == [f"clip-{i}" for i in kept]
    np.testing.assert_array_equal(split.y, np.array(kept) * 10)
    np.testing.assert_array_equal(split.x[:, 1, 2], np.array(kept, dtype=np.float16))
    np.testing.assert_array_equal(split.x[:, 0, 1], (np.array(kept) / 1000).astype(np.float16))
    # nothing left over from the writing
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".train.done.json", "manifest.json", "train.ids.json", "train.x.npy", "train.y.npy"])


def test_rows_written_by_pool_workers_line_up_like_in_process(tmp_path):
    """Workers write their rows into the store themselves, at their items' places, while later chunks are in
    flight; the writing process moves rows down over skipped items' places. The result must equal the in-process
    store byte for byte (skips in almost every chunk, 2 workers with 4 chunks in flight)."""
    reference = write_numbered(tmp_path / "one", 41, chunk=3)
    (tmp_path / "two").mkdir()
    items = list(range(41))
    with worker_pool(2, "audio2image.prepare.writer") as pool:
        summary = write_train(tmp_path / "two", items, [f"clip-{i}" for i in items],
                              np.arange(41, dtype=np.int64) * 10, numbered_work, chunk=3, pool=pool)
    assert summary == reference
    for name in ("train.x.npy", "train.y.npy", "train.ids.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_finished_split_is_not_redone(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    first = write_numbered(tmp_path / "out", 10, log_dir=str(log))
    assert calls_per_chunk(log) == {0: 1, 4: 1, 8: 1}
    stamp = (tmp_path / "out/train.x.npy").stat().st_mtime_ns
    again = write_numbered(tmp_path / "out", 10, log_dir=str(log))
    assert again == first
    assert calls_per_chunk(log) == {0: 1, 4: 1, 8: 1}
    assert (tmp_path / "out/train.x.npy").stat().st_mtime_ns == stamp


def test_empty_and_all_skipped_splits(tmp_path):
    summary = write_numbered(tmp_path / "empty", 0)
    assert summary == {"count": 0, "skipped": [], "warned": []}
    split = open_split(tmp_path / "empty")
    assert split.x.shape == (0, *SHAPE) and split.y.shape == (0,) and split.ids == []

    out = tmp_path / "bad"
    out.mkdir()
    summary = write_train(out, [3, 8], ["a", "b"], np.zeros((2, 50), np.uint8), numbered_work)
    assert summary["count"] == 0 and [s["item"] for s in summary["skipped"]] == ["a", "b"]
    split = open_split(out)
    assert split.x.shape == (0, *SHAPE) and split.y.shape == (0, 50)


def wrong_shape_work(chunk: list) -> list:
    return [np.zeros((3, 2)) for _ in chunk]


def test_a_row_of_the_wrong_shape_is_refused(tmp_path):
    """Rows are written as raw bytes: a [3, 2] row must not slip into a [2, 3] store unnoticed."""
    with pytest.raises(ValueError, match=r"clip-0: got shape \(3, 2\), the store holds \(2, 3\)"):
        write_train(tmp_path, [0, 1], ["clip-0", "clip-1"], np.zeros(2), wrong_shape_work)


def test_resumes_after_a_kill(tmp_path):
    n, chunk = 30, 4  # chunks start at 0, 4, 8, 12, ...; the kill comes inside the 4th chunk
    reference = write_numbered(tmp_path / "reference", n, chunk)

    out, log, flag = tmp_path / "out", tmp_path / "log", tmp_path / "kill-flag"
    log.mkdir()
    flag.touch()
    with pytest.raises(Killed):
        write_numbered(out, n, chunk, log_dir=str(log), flag=str(flag), sentinel=13)
    assert calls_per_chunk(log) == {0: 1, 4: 1, 8: 1, 12: 1}
    assert not (out / "train.x.npy").exists()  # the final name only appears once complete
    assert not (out / "train.y.npy").exists() and not (out / "train.ids.json").exists()

    flag.unlink()
    summary = write_numbered(out, n, chunk, log_dir=str(log), flag=str(flag), sentinel=13)
    counts = calls_per_chunk(log)
    assert counts == {start: (2 if start == 12 else 1) for start in range(0, n, chunk)}
    assert summary == reference
    for name in ("train.x.npy", "train.y.npy", "train.ids.json"):
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert not list(out.glob("*.partial")) and not list(out.glob(".*progress*"))


def test_kill_in_the_first_chunk_and_twice(tmp_path):
    n, chunk = 13, 4
    reference = write_numbered(tmp_path / "reference", n, chunk)
    out, flag = tmp_path / "out", tmp_path / "flag"
    flag.touch()
    with pytest.raises(Killed):
        write_numbered(out, n, chunk, flag=str(flag), sentinel=1)
    with pytest.raises(Killed):  # killed again before getting anywhere
        write_numbered(out, n, chunk, flag=str(flag), sentinel=1)
    flag.unlink()
    assert write_numbered(out, n, chunk, flag=str(flag), sentinel=1) == reference
    assert (out / "train.x.npy").read_bytes() == (tmp_path / "reference/train.x.npy").read_bytes()


# --- _truncate_npy -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, keep, item_shape, dtype", [
    (1000, 999, (4, 5), np.float16),
    (10, 3, (6, 6, 3), np.uint8),
    (10, 3, (4, 5), np.float16),
    (1000, 999, (6, 6, 3), np.uint8),
    (100000, 7, (2,), np.float16),  # the shape text shrinks by several digits
    (5, 0, (3,), np.uint8),
    (4, 4, (3,), np.float16),  # nothing to do
])
@pytest.mark.parametrize("writer", ["save", "open_memmap"])
def test_truncate_npy_leaves_a_valid_file(tmp_path, rows, keep, item_shape, dtype, writer):
    rng = np.random.default_rng(rows + keep)
    full = (rng.random((rows, *item_shape)) * 200).astype(dtype)
    path = tmp_path / "a.npy"
    if writer == "save":
        np.save(path, full)
    else:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=full.shape)
        array[:] = full
        array.flush()
        del array
    data_start = path.stat().st_size - full.nbytes
    _truncate_npy(path, keep)
    assert path.stat().st_size == data_start + keep * full[0].nbytes
    loaded = np.load(path)
    assert loaded.shape == (keep, *item_shape) and loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, full[:keep])
    mapped = np.load(path, mmap_mode="r")
    assert mapped.shape == (keep, *item_shape)
    np.testing.assert_array_equal(mapped, full[:keep])
    del mapped
    with open(path, "rb") as handle:  # the header stays well formed: version 1.0, 64-byte aligned, newline-ended
        assert np.lib.format.read_magic(handle) == (1, 0)
        header = handle.read(data_start - 8)
    assert data_start % 64 == 0 and header.endswith(b"\n")


# --- prepare_mtat end to end ---------------------------------------------------------------------------------------
RATE = 16000
CLIP_SECONDS = 3.0


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    y = sum(0.25 / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 5))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)) + 0.01 * rng.standard_normal(len(t))
    return y.astype(np.float32)


# (clip_id, mp3_path, tags, seconds, kind); folders 0-b train, c valid, d-f test.
MTAT_CLIPS = [
    (2, "0/artist_a-album-01-one-0-29.mp3", {"guitar", "rock", "loud"}, 3.0, "good"),
    (5, "3/artist_b-album-02-two-30-59.mp3", {"piano", "classical", "no vocal"}, 3.0, "good"),
    (7, "7/artist_c-album-03-three-0-29.mp3", {"techno", "electronic", "jazz"}, 3.4, "good"),  # cropped
    (11, "a/artist_d-album-04-four-0-29.mp3", {"female", "vocal", "pop", "choral"}, 3.0, "good"),
    (13, "b/artist_e-album-05-five-0-29.mp3", {"no vocals", "slow", "ambient"}, 2.0, "good"),  # padded
    (17, "c/artist_f-album-06-six-0-29.mp3", {"violin", "strings"}, 3.0, "good"),
    (19, "d/artist_g-album-07-seven-0-29.mp3", {"sitar", "indian"}, 3.0, "good"),
    (23, "f/artist_h-album-08-eight-0-29.mp3", {"drums", "beat", "fast"}, 3.0, "good"),
    (29, "e/artist_i-album-09-nine-0-29.mp3", {"metal", "heavy"}, 3.0, "good"),
    (31, "5/artist_j-album-10-ten-0-29.mp3", {"jazz", "bass"}, 3.0, "no-top50"),  # not in the standard split
    (37, "1/artist_k-album-11-zero-0-29.mp3", {"guitar"}, 0, "zero"),
    (41, "d/artist_l-album-12-trunc-0-29.mp3", {"rock"}, 0, "truncated"),
    (43, "c/artist_m-album-13-text-0-29.mp3", {"piano"}, 0, "text"),
    (47, "6/artist_n-album-14-missing-0-29.mp3", {"violin"}, 0, "missing"),
    (53, "8/artist_o-album-15-short-0-29.mp3", {"slow"}, 0.5, "short"),
]
BAD_KINDS = {"zero", "truncated", "text", "missing", "short"}


def build_mtat(root: Path) -> None:
    """An MTAT-format root: quoted tab-separated annotations (columns in a shuffled order), real MP3s."""
    columns = ["clip_id", *np.random.default_rng(0).permutation(list(ALL_TAGS)).tolist(), "mp3_path"]
    rows = []
    for number, (clip_id, mp3_path, tags, seconds, kind) in enumerate(MTAT_CLIPS):
        assert tags <= set(ALL_TAGS)
        rows.append([str(clip_id), *("1" if c in tags else "0" for c in columns[1:-1]), mp3_path])
        path = root / "mp3" / mp3_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("good", "no-top50", "short"):
            soundfile.write(path, tone(seconds, 180.0 * 1.3 ** number, number), RATE, format="MP3")
        elif kind == "zero":
            path.touch()
        elif kind == "truncated":
            buffer = io.BytesIO()
            soundfile.write(buffer, tone(3.0, 300, 99), RATE, format="MP3")
            path.write_bytes(buffer.getvalue()[:300])
        elif kind == "text":
            path.write_text("this is not an mp3 file\n" * 20)
    malformed = ["99", *(["1"] * (len(columns) - 3)), "0/artist_z-album-99-bad-0-29.mp3"]  # one field short
    rows.insert(3, malformed)
    with open(root / "annotations_final.csv", "w", newline="") as handle:
        csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([columns, *rows])


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mtat_store(tmp_path_factory):
    from audio2image.prepare.audio import prepare_mtat

    root = tmp_path_factory.mktemp("mtat")
    build_mtat(root)
    out = root.parent / (root.name + "-store")
    manifest = prepare_mtat(root, out, features="recipe", split="standard", clip_seconds=CLIP_SECONDS,
                            workers=1, progress=False)
    return root, out, manifest


def test_mtat_store_contents(mtat_store):
    root, out, manifest = mtat_store
    store = Store(out)
    assert store.manifest == manifest
    assert store.modality == "audio" and store.task == "tagging" and store.labels == list(TOP50)
    settings = FEATURE_PRESETS["recipe"]
    assert manifest["feature_settings"] == settings.to_dict()
    frames = settings.frames(round(CLIP_SECONDS * settings.sample_rate))

    by_path = {path: (tags, kind) for _, path, tags, _, kind in MTAT_CLIPS}
    split_of = {**{f: "train" for f in "0123456789ab"}, "c": "valid", **{f: "test" for f in "def"}}
    for name in ("train", "valid", "test"):
        split = store.split(name)
        expected = [p for p, (_, kind) in by_path.items() if kind == "good" and split_of[p[0]] == name]
        assert split.ids == expected  # annotation order, all good clips there
        assert manifest["splits"][name]["count"] == len(expected)
        assert split.x.dtype == np.float16 and split.x.shape == (len(expected), settings.n_mels, frames)
        assert split.y.dtype == np.uint8 and split.y.shape == (len(expected), 50)
        for row, path in enumerate(split.ids):
            tags = by_path[path][0]
            assert {TOP50[j] for j in np.flatnonzero(split.y[row])} == tags & set(TOP50), path
        assert np.isfinite(split.x).all()


def test_mtat_bad_clips_are_skipped_with_reasons(mtat_store):
    _, _, manifest = mtat_store
    skipped = {s["item"]: s for s in manifest["skipped"]}
    bad = {path: kind for _, path, _, _, kind in MTAT_CLIPS if kind in BAD_KINDS}
    assert set(skipped) == set(bad)
    for path, kind in bad.items():
        reason = skipped[path]["reason"]
        assert reason, path
        expected = {"zero": "empty", "missing": "missing", "short": "too short"}.get(kind)
        if expected:
            assert expected in reason, (kind, reason)
    assert skipped[bad_path("truncated")]["split"] == "test" and skipped[bad_path("text")]["split"] == "valid"
    assert len(manifest["annotation_problems"]) == 1 and manifest["annotation_problems"][0]["line"] == 5
    assert "fields" in manifest["annotation_problems"][0]["reason"]


def bad_path(kind: str) -> str:
    return next(path for _, path, _, _, k in MTAT_CLIPS if k == kind)


def test_mtat_features_are_librosa_log_mels_of_the_right_clip(mtat_store):
    root, out, _ = mtat_store
    settings = FEATURE_PRESETS["recipe"]
    samples = round(CLIP_SECONDS * settings.sample_rate)
    store = Store(out)
    for name in ("train", "test"):
        split = store.split(name)
        for row, path in enumerate(split.ids):
            audio, rate = soundfile.read(root / "mp3" / path, dtype="float32")
            assert rate == settings.sample_rate
            fixed = np.zeros(samples, np.float32)
            fixed[:min(samples, len(audio))] = audio[:samples]
            reference = librosa.power_to_db(librosa.feature.melspectrogram(
                y=fixed, sr=rate, n_fft=settings.n_fft, hop_length=settings.hop, n_mels=settings.n_mels,
                fmin=settings.f_min, fmax=settings.f_max))
            np.testing.assert_allclose(split.x[row].astype(np.float32), reference, rtol=0, atol=0.1, err_msg=path)


def test_mtat_normalization_is_the_training_statistics(mtat_store):
    _, out, manifest = mtat_store
    x = Store(out).split("train").x.astype(np.float64)
    norm = manifest["normalization"]
    np.testing.assert_allclose(norm["mean"], x.mean(axis=(0, 2)), atol=1e-4)
    np.testing.assert_allclose(norm["std"], x.std(axis=(0, 2)), rtol=1e-4, atol=1e-4)
    assert len(norm["mean"]) == len(norm["std"]) == 128


def test_mtat_prepare_again_is_a_no_op(mtat_store):
    from audio2image.prepare.audio import prepare_mtat

    root, out, manifest = mtat_store
    before = snapshot(out)
    tic = time.perf_counter()
    again = prepare_mtat(root, out, features="recipe", split="standard", clip_seconds=CLIP_SECONDS, workers=1,
                         progress=False)
    assert time.perf_counter() - tic < 1.0
    assert again == manifest
    assert snapshot(out) == before


def test_mtat_prepare_never_imports_torch(tmp_path, mtat_store):
    """torch would cost each preparation process ~350 MB and seconds of start-up: the CLI path stays without it."""
    script = ("import sys; from audio2image.cli import main; main(sys.argv[1:]); "
              "assert 'torch' not in sys.modules, 'torch was imported'")
    command = [sys.executable, "-c", script, "prepare", "mtat", str(mtat_store[0]), str(tmp_path / "store"),
               "--workers", "2", "--clip-seconds", str(CLIP_SECONDS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Store(tmp_path / "store").split("train").ids == Store(mtat_store[1]).split("train").ids


def test_mtat_original_features(tmp_path, mtat_store):
    from audio2image.prepare.audio import prepare_mtat

    root = mtat_store[0]
    manifest = prepare_mtat(root, tmp_path / "original", features="original", split="original",
                            clip_seconds=CLIP_SECONDS, workers=1, progress=False)
    settings = FEATURE_PRESETS["original"]
    assert manifest["feature_settings"] == settings.to_dict() and manifest["features"] == "original"
    store = Store(tmp_path / "original")
    train = store.split("train")
    frames = settings.frames(round(CLIP_SECONDS * settings.sample_rate))
    # the original split: every readable clip in 0-b (including the one without a top-50 tag), c-d valid, e-f test
    assert train.ids == [p for _, p, _, _, k in MTAT_CLIPS if k in ("good", "no-top50") and p[0] in "0123456789ab"]
    assert store.split("valid").ids == [p for _, p, _, _, k in MTAT_CLIPS if k == "good" and p[0] in "cd"]
    assert train.x.shape == (len(train.ids), 128, frames) and train.x.dtype == np.float16
    assert (train.x >= 0).all() and np.isfinite(train.x).all()  # power, not dB
    assert float(train.x.max()) > 1.0
    saturated = manifest["fp16_saturated_values"]
    assert set(saturated) == {"train", "valid", "test"}
    assert saturated["train"] == int((train.x == np.float16(65504)).sum())


def test_old_value_names_prepare_and_old_manifests_open(tmp_path, mtat_store, capsys):
    """`--features seed --split seed`, the names before `original`, prepare the original store, saying so; a store
    whose manifest an older version wrote with those names is recognised as complete and read as `original`."""
    from audio2image.cli import main
    from audio2image.config import load_config
    from audio2image.prepare.audio import prepare_mtat
    from audio2image.training.tasks import build_task

    root, out = mtat_store[0], tmp_path / "store"
    main(["prepare", "mtat", str(root), str(out), "--features", "seed", "--split", "seed",
          "--clip-seconds", str(CLIP_SECONDS), "--workers", "1"])
    err = capsys.readouterr().err
    assert "audio_features=seed is now audio_features=original" in err
    assert "audio_split=seed is now audio_split=original" in err
    manifest = Store(out).manifest
    assert manifest["features"] == manifest["split_protocol"] == "original"
    write_manifest(out, {**manifest, "features": "seed", "split_protocol": "seed"})  # as an older version wrote it
    before = snapshot(out)
    again = prepare_mtat(root, out, features="original", split="original", clip_seconds=CLIP_SECONDS, workers=1,
                         progress=False)
    assert again["features"] == "seed" and snapshot(out) == before  # recognised: nothing prepared anew
    config = load_config(None, ["audio_features=original", "audio_normalize=false", "audio_crop_seconds=0"])
    assert build_task(Store(out), config, "pretrain").inputs.original_channels  # the original's stacked channels


# --- prepare_caltech256 end to end ---------------------------------------------------------------------------------
SIZE = 24
COLOURS = {"001.ak47": (200, 40, 40), "002.bat": (40, 200, 40), "003.cat": (40, 40, 200), "257.clutter": (128,) * 3}


def save_jpeg(path: Path, colour, size=(60, 45), mode="RGB") -> None:
    Image.new(mode, size, colour).save(path, format="JPEG", quality=95)


def build_caltech(root: Path) -> dict:
    """A Caltech-256 tree; returns {relative path: expected mean colour or the kind of bad file}."""
    top = root / "256_ObjectCategories"
    expected = {}
    for name, colour in COLOURS.items():
        folder = top / name
        folder.mkdir(parents=True)
        number = name.split(".")[0]
        for i in range(1, 6):
            shade = tuple(min(255, c + 7 * i) for c in colour)
            save_jpeg(folder / f"{number}_{i:04d}.jpg", shade, size=(40 + 9 * i, 70 - 5 * i))
            expected[f"256_ObjectCategories/{name}/{number}_{i:04d}.jpg"] = shade
    a, b, c = (top / n for n in ("001.ak47", "002.bat", "003.cat"))
    save_jpeg(a / "001_0006.jpg", 90, mode="L")
    expected["256_ObjectCategories/001.ak47/001_0006.jpg"] = (90, 90, 90)
    save_jpeg(a / "001_0007.jpg", (0, 255, 255, 0), mode="CMYK")  # red in CMYK
    expected["256_ObjectCategories/001.ak47/001_0007.jpg"] = (255, 0, 0)
    Image.new("RGB", (30, 30), (1, 2, 3)).save(b / "002_0006.jpg", format="PNG")
    expected["256_ObjectCategories/002.bat/002_0006.jpg"] = "png"
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG")
    (b / "002_0007.jpg").write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    expected["256_ObjectCategories/002.bat/002_0007.jpg"] = "truncated"
    (c / "003_0006.jpg").touch()
    expected["256_ObjectCategories/003.cat/003_0006.jpg"] = "zero"
    (c / "003_0008.jpg").write_text("this is not a picture")
    expected["256_ObjectCategories/003.cat/003_0008.jpg"] = "text"
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, :, 2] = 220  # blue, with red bands at the sides that a centre crop (of 3000 x 3000) cuts away
    big[:, :450] = big[:, 3550:] = (220, 0, 0)
    Image.fromarray(big).save(c / "003_0007.jpg", format="JPEG", quality=90)
    expected["256_ObjectCategories/003.cat/003_0007.jpg"] = (0, 0, 220)
    # stray entries, as in the real tree
    (b / "greg").mkdir()
    save_jpeg(b / "greg" / "002_0100.jpg", (1, 1, 1))
    (b / "RENAME2").write_text("not an image")
    (top / "notes.txt").write_text("stray")
    (top / "extra").mkdir()
    return expected


@pytest.fixture(scope="module")
def caltech_store(tmp_path_factory):
    from audio2image.prepare.images import prepare_caltech256

    root = tmp_path_factory.mktemp("caltech")
    expected = build_caltech(root)
    out = root.parent / (root.name + "-store")
    manifest = prepare_caltech256(root, out, size=SIZE, resize="center", split="stratified", split_seed=0,
                                  workers=1, progress=False)
    return root, out, manifest, expected


def test_caltech_store_contents(caltech_store):
    root, out, manifest, expected = caltech_store
    store = Store(out)
    assert store.modality == "image" and store.task == "classification"
    assert store.labels == list(COLOURS)
    good = {p: v for p, v in expected.items() if not isinstance(v, str)}
    seen = []
    for name in ("train", "valid", "test"):
        split = store.split(name)
        assert split.x.dtype == np.uint8 and split.x.shape == (len(split.ids), SIZE, SIZE, 3)
        assert split.y.dtype == np.int64 and split.y.shape == (len(split.ids),)
        assert manifest["splits"][name]["count"] == len(split.ids) > 0
        for row, path in enumerate(split.ids):
            assert store.labels[split.y[row]] == path.split("/")[1], path
            pixels = split.x[row].reshape(-1, 3).astype(int)
            assert np.abs(pixels - np.array(good[path])).max() <= 12, (path, pixels.mean(0))
        seen += split.ids
    assert sorted(seen) == sorted(good)  # grayscale, CMYK and the big image are kept; strays are not images
    train = store.split("train")
    for name in COLOURS:  # stratified: every class in training
        assert any(p.split("/")[1] == name for p in train.ids)


def test_caltech_bad_files_are_skipped_with_reasons(caltech_store):
    _, _, manifest, expected = caltech_store
    skipped = {s["item"]: s["reason"] for s in manifest["skipped"]}
    bad = {p: v for p, v in expected.items() if isinstance(v, str)}
    assert set(skipped) == set(bad)
    for path, kind in bad.items():
        reason = {"png": "not a JPEG", "truncated": "cannot decode", "zero": "empty", "text": "cannot decode"}[kind]
        assert reason in skipped[path], path
    assert sorted(manifest["strays"]) == sorted([
        "256_ObjectCategories/002.bat/greg/", "256_ObjectCategories/002.bat/RENAME2",
        "256_ObjectCategories/notes.txt", "256_ObjectCategories/extra/"])


def test_caltech_prepare_again_is_a_no_op(caltech_store):
    from audio2image.prepare.images import prepare_caltech256

    root, out, manifest, _ = caltech_store
    before = snapshot(out)
    tic = time.perf_counter()
    again = prepare_caltech256(root, out, size=SIZE, workers=1, progress=False)
    assert time.perf_counter() - tic < 1.0
    assert again == manifest and snapshot(out) == before


def test_caltech_squash(tmp_path, caltech_store):
    """Squash gives the same rows (split, labels, solid colours), but keeps the big image's red bands."""
    from audio2image.prepare.images import prepare_caltech256

    root, out, _, _ = caltech_store
    manifest = prepare_caltech256(root, tmp_path / "squash", size=SIZE, resize="squash", workers=1, progress=False)
    assert manifest["resize"] == "squash"
    one, two = Store(out), Store(tmp_path / "squash")
    for name in ("train", "valid", "test"):
        assert one.split(name).ids == two.split(name).ids
        np.testing.assert_array_equal(one.split(name).y, two.split(name).y)
        for row, path in enumerate(two.split(name).ids):
            squashed = two.split(name).x[row].astype(int)
            if path.endswith("003_0007.jpg"):
                assert squashed[SIZE // 2, 0, 0] > 150 and squashed[SIZE // 2, SIZE // 2, 2] > 150
            elif "." in path:  # solid colours look the same however they are resized
                assert np.abs(squashed - one.split(name).x[row].astype(int)).max() <= 3, path


@pytest.mark.parametrize("resize", ["center", "squash"])
def test_caltech_images_are_stored_upright_by_their_exif_orientation(tmp_path, resize):
    """A camera's portrait photo is stored landscape with an EXIF tag saying "rotate 90 degrees clockwise"."""
    from audio2image.prepare.images import load_image

    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :30] = (220, 0, 0)  # left half red, right half blue, as stored
    pixels[:, 30:] = (0, 0, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "portrait.jpg"
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)
    image = load_image(path, 20, resize).astype(int)
    assert image.shape == (20, 20, 3)
    top, bottom = image[:8].mean(axis=(0, 1)), image[-8:].mean(axis=(0, 1))
    assert top[0] > 150 and top[2] < 60  # upright: what was the left edge is now at the top
    assert bottom[2] > 150 and bottom[0] < 60


def test_caltech_image_beyond_the_decompression_bomb_limit_is_skipped(tmp_path, monkeypatch):
    """Pillow's limit (MAX_IMAGE_PIXELS, ~89 million pixels) is lowered so that the test image can stay small."""
    from audio2image.prepare.images import load_image

    path = tmp_path / "huge.jpg"
    Image.new("RGB", (1500, 1000), (10, 20, 30)).save(path, format="JPEG")
    assert load_image(path, 20, "center").shape == (20, 20, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    reason = load_image(path, 20, "center")
    assert isinstance(reason, str) and reason.startswith("too large to decode safely")
