"""Stores prepared from the two bring-your-own folders, end to end on tiny trees: imagefolder (rows labelled as
torchvision's ImageFolder labels them, split folders honoured, broken files skipped with their reason) and
audiofolder (WAV, FLAC and MP3 at mixed rates resampled, tagging or classification, bad rows and unusable clips
recorded), an empty split refused by name, and the `prepare` / `inspect` commands in a subprocess."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from audio2image.prepare.audio import prepare_audiofolder
from audio2image.prepare.features import FEATURE_PRESETS, _hz_to_mel, _mel_to_hz
from audio2image.prepare.images import load_image, prepare_imagefolder
from audio2image.prepare.store import Store
from audio2image.util import DatasetError

SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- builders

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF"}


def image_bytes(seed: int, suffix: str, size=(20, 16)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=FORMATS[suffix.lower()])
    return buffer.getvalue()


def write_image(path: Path, seed: int = 0, size=(20, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, path.suffix, size))
    return path


def make_classes(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    for k, (name, count) in enumerate(per_class.items()):
        for i in range(count):
            write_image(root / name / f"{i:03d}.png", seed + 100 * k + i, size=(16 + 3 * i, 18))
    return root


def torchvision_samples(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(root)
    return folder.classes, [(Path(os.path.relpath(p, root)).as_posix(), t) for p, t in folder.samples]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def store_ids(out: Path) -> dict[str, list[str]]:
    store = Store(out)
    return {name: store.split(name).ids for name in SPLITS}


# ----------------------------------------------------------------------------- imagefolder

SIZE = 24
ODD_IMAGES = [  # odd class names, every extension (upper case too), nested folders, non-square sizes 16-40 px
    "café/x.jpg", "café/B.JPEG", "café/a/1.png", "café/a b/2.bmp", "café/a/c/3.webp",
    "10 apples/apple.tif", "10 apples/apple2.webp", "10 apples/c.png",
    "2cats/z.png", "2cats/sub/y.jpg", "2cats/w.bmp",
    "Dog/d.jpg", "Dog/e.jpeg", "Dog/f.webp",
    "dog/d.jpg", "dog/g.tif", "dog/deeper/h.png",
]
BROKEN = {"2cats/fake.jpg": "UnidentifiedImageError", "2cats/truncated.png": "truncated"}


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd") / "pets"
    for i, name in enumerate(ODD_IMAGES):
        write_image(root / name, i, size=(16 + (7 * i) % 25, 16 + (11 * i) % 25))
    (root / "dog/notes.txt").write_text("not an image")
    (root / "2cats/fake.jpg").write_text("this is text, not a JPEG")
    good = image_bytes(99, ".png", size=(40, 30))
    (root / "2cats/truncated.png").write_bytes(good[: len(good) // 2])
    out = root.parent / "store"
    manifest = prepare_imagefolder(root, out, size=SIZE, resize="center", split_seed=0, workers=1, progress=False)
    return root, out, manifest


def test_imagefolder_rows_are_labelled_as_torchvision_labels_them(odd_images):
    root, out, manifest = odd_images
    classes, samples = torchvision_samples(root)
    target = dict(samples)
    assert manifest["labels"] == classes == ["10 apples", "2cats", "Dog", "café", "dog"]
    store = Store(out)
    assert store.modality == "image" and store.task == "classification" and store.manifest == manifest
    for name in SPLITS:
        split = store.split(name)
        assert split.x.dtype == np.uint8 and split.x.shape == (len(split.ids), SIZE, SIZE, 3)
        assert split.y.dtype == np.int64 and split.y.shape == (len(split.ids),)
        assert manifest["splits"][name]["count"] == len(split.ids) > 0
        assert [target[path] for path in split.ids] == split.y.tolist(), name


def test_imagefolder_every_indexed_file_is_stored_once_or_skipped(odd_images):
    root, out, manifest = odd_images
    _, samples = torchvision_samples(root)
    stored = [path for ids in store_ids(out).values() for path in ids]
    skipped = {item["item"]: item for item in manifest["skipped"]}
    assert len(stored) == len(set(stored))  # in exactly one split
    assert not set(stored) & set(skipped)
    assert set(stored) | set(skipped) == {path for path, _ in samples}
    assert set(stored) == set(ODD_IMAGES)
    assert set(skipped) == set(BROKEN)
    for path, why in BROKEN.items():
        assert skipped[path]["reason"].startswith("cannot decode") and why in skipped[path]["reason"], skipped[path]
        assert skipped[path]["split"] in SPLITS
    assert manifest["strays"] == ["dog/notes.txt"]
    assert manifest["split_protocol"] == "stratified 60/20/20 at preparation"


def test_imagefolder_pixels_are_load_image_of_the_file(odd_images):
    root, out, _ = odd_images
    store = Store(out)
    for name in SPLITS:
        split = store.split(name)
        for row, path in enumerate(split.ids):
            expected = load_image(root / path, SIZE, "center", None)
            assert isinstance(expected, np.ndarray), (path, expected)
            np.testing.assert_array_equal(split.x[row], expected, err_msg=path)


def test_imagefolder_prepare_again_is_a_no_op(odd_images):
    root, out, manifest = odd_images
    before = snapshot(out)
    again = prepare_imagefolder(root, out, size=SIZE, resize="center", split_seed=0, workers=1, progress=False)
    assert again == manifest
    assert snapshot(out) == before  # train.x.npy among them: same mtime, same bytes


def test_imagefolder_two_workers_write_the_same_store(odd_images, tmp_path):
    root, out, manifest = odd_images
    again = prepare_imagefolder(root, tmp_path / "two", size=SIZE, resize="center", split_seed=0, workers=2,
                                progress=False)
    assert again == manifest
    for name in ("x.npy", "y.npy", "ids.json"):
        for split in SPLITS:
            assert (tmp_path / "two" / f"{split}.{name}").read_bytes() == (out / f"{split}.{name}").read_bytes()


@pytest.mark.parametrize("validation", ["val", "valid"])
def test_imagefolder_split_folders_are_the_store_splits(tmp_path, validation):
    root = tmp_path / "tree"
    layout = {"train": {"cat": 4, "dog": 3}, validation: {"dog": 2, "cat": 1}, "test": {"cat": 2, "dog": 1}}
    for k, (folder, per_class) in enumerate(layout.items()):
        make_classes(root / folder, per_class, seed=1000 * k)
    manifest = prepare_imagefolder(root, tmp_path / "store", size=16, workers=1, progress=False)
    assert manifest["split_protocol"] == f"folders train/{validation}/test"
    store = Store(tmp_path / "store")
    assert store.labels == ["cat", "dog"]
    for name, folder in (("train", "train"), ("valid", validation), ("test", "test")):
        classes, samples = torchvision_samples(root / folder)
        split = store.split(name)
        assert split.ids == [f"{folder}/{path}" for path, _ in samples]
        assert [store.labels[t] for t in split.y] == [classes[t] for _, t in samples]  # by name, as train's


def test_imagefolder_train_and_test_folders_carve_validation_from_train(tmp_path):
    root = tmp_path / "tree"
    make_classes(root / "train", {"cat": 6, "dog": 5})
    make_classes(root / "test", {"cat": 2, "dog": 2}, seed=500)
    manifest = prepare_imagefolder(root, tmp_path / "store", size=16, workers=1, progress=False)
    assert manifest["split_protocol"] == "folders train/test, validation from train"
    ids = store_ids(tmp_path / "store")
    _, train_samples = torchvision_samples(root / "train")
    _, test_samples = torchvision_samples(root / "test")
    assert ids["test"] == [f"test/{path}" for path, _ in test_samples]
    assert not set(ids["train"]) & set(ids["valid"])
    assert sorted(ids["train"] + ids["valid"]) == sorted(f"train/{path}" for path, _ in train_samples)
    assert {path.split("/")[1] for path in ids["valid"]} == {"cat", "dog"}  # stratified: 20% of each class
    assert len(ids["valid"]) == 2


# ----------------------------------------------------------------------------- audiofolder

CLIP = 1.0  # seconds: 16,000 samples at the recipe's rate, 63 frames
RECIPE = FEATURE_PRESETS["recipe"]
FRAMES = RECIPE.frames(round(CLIP * RECIPE.sample_rate))


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def write_audio(path: Path, wave: np.ndarray, rate: int, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave, rate, format=fmt)


def write_csv(root: Path, *lines: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


# (line in labels.csv, path, label, split column, how the file is made); header on line 1
SINGLE = [
    (2, "train/dog1.wav", "dog", "train", ("wav", 440, 1.0, 16000)),
    (3, "train/cat1.flac", "cat", "train", ("flac", 1000, 1.2, 8000)),  # resampled 8 -> 16 kHz
    (4, "train/cat1_16k.wav", "cat", "train", ("wav", 1000, 1.2, 16000)),  # the same sine at 16 kHz
    (5, "train/bird.mp3", "bird", "train", ("mp3", 2000, 1.5, 16000)),  # cropped to 1 s
    (6, "train/stereo.wav", "dog", "train", ("stereo", 440, 1.0, 16000)),  # dog1's sine in both channels
    (7, "extra.wav", "dog", "dev", ("wav", 440, 1.0, 16000)),  # bad row: unknown split
    (8, "valid/cat2.mp3", "cat", "valid", ("mp3", 700, 1.0, 8000)),
    (9, "valid/short.wav", "dog", "valid", ("wav", 440, 0.4, 16000)),  # < half of CLIP: too short
    (10, "valid/dog2.wav", "dog", "Val", ("wav", 300, 0.8, 8000)),  # padded
    (11, "test/bird2.flac", "bird", "test", ("flac", 2500, 1.0, 16000)),
    (12, "test/gone.wav", "cat", "test", None),  # missing file
    (13, "test/fake.wav", "dog", "test", "text"),  # not audio
    (14, "test/dog3.wav", "dog", "test", ("wav", 500, 1.0, 8000)),
]
SKIPPED = {"valid/short.wav": "too short", "test/gone.wav": "missing file", "test/fake.wav": "cannot decode"}
KEPT = {"train": ["train/dog1.wav", "train/cat1.flac", "train/cat1_16k.wav", "train/bird.mp3", "train/stereo.wav"],
        "valid": ["valid/cat2.mp3", "valid/dog2.wav"], "test": ["test/bird2.flac", "test/dog3.wav"]}


def build_single(root: Path) -> None:
    for _, path, _, _, how in SINGLE:
        if how is None:
            continue
        if how == "text":
            (root / path).write_text("this is not audio\n" * 20)
            continue
        kind, freq, seconds, rate = how
        wave = sine(freq, seconds, rate)
        if kind == "stereo":
            wave = np.stack([wave, wave], axis=1)
        write_audio(root / path, wave, rate, fmt="MP3" if kind == "mp3" else None)
    write_csv(root, "path,labels,split", *(f"{path},{label},{split}" for _, path, label, split, _ in SINGLE))


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    root = tmp_path_factory.mktemp("sounds")
    build_single(root)
    out = root.parent / (root.name + "-store")
    manifest = prepare_audiofolder(root, out, clip_seconds=CLIP, workers=1, progress=False)
    return root, out, manifest


def test_audiofolder_single_label_store(single_label):
    _, out, manifest = single_label
    store = Store(out)
    assert store.manifest == manifest and store.modality == "audio"
    assert manifest["task"] == "classification" and manifest["task_requested"] == "auto"
    assert manifest["labels"] == ["bird", "cat", "dog"] and manifest["split_protocol"] == "column"
    label_of = {path: label for _, path, label, _, _ in SINGLE}
    for name in SPLITS:
        split = store.split(name)
        assert split.ids == KEPT[name]  # file order, unusable clips left out
        assert manifest["splits"][name] == {"count": len(KEPT[name])}
        assert split.y.dtype == np.int64 and split.y.shape == (len(split.ids),)
        assert split.y.tolist() == [manifest["labels"].index(label_of[p]) for p in split.ids]
        assert split.x.dtype == np.float16 and split.x.shape == (len(split.ids), RECIPE.n_mels, FRAMES)
        assert np.isfinite(split.x).all()
    norm = manifest["normalization"]
    assert len(norm["mean"]) == len(norm["std"]) == RECIPE.n_mels


def test_audiofolder_unusable_clips_and_rows_are_recorded(single_label):
    _, _, manifest = single_label
    skipped = {item["item"]: item for item in manifest["skipped"]}
    assert set(skipped) == set(SKIPPED)
    for path, why in SKIPPED.items():
        assert skipped[path]["reason"].startswith(why), skipped[path]
    assert skipped["valid/short.wav"]["split"] == "valid" and skipped["test/gone.wav"]["split"] == "test"
    assert "0.40 s" in skipped["valid/short.wav"]["reason"]
    assert manifest["annotation_problems"] == [
        {"line": 7, "reason": "split 'dev' is not one of train, valid, test (also accepted: val, validation)"}]


def band_profile(x: np.ndarray) -> np.ndarray:
    """Mean dB per mel band over the frames away from the clip's edges."""
    return x[:, 5:-5].astype(np.float64).mean(axis=1)


def test_audiofolder_resamples_to_the_preset_rate(single_label):
    _, out, _ = single_label
    train = Store(out).split("train")
    row = {path: i for i, path in enumerate(train.ids)}
    low, high = band_profile(train.x[row["train/cat1.flac"]]), band_profile(train.x[row["train/cat1_16k.wav"]])
    centres = _mel_to_hz(np.linspace(_hz_to_mel(RECIPE.f_min), _hz_to_mel(RECIPE.f_max), RECIPE.n_mels + 2))[1:-1]
    expected = int(np.argmin(np.abs(centres - 1000)))
    assert abs(int(np.argmax(high)) - expected) <= 1
    assert int(np.argmax(low)) == int(np.argmax(high))  # unresampled, the 8 kHz file would peak near 2 kHz
    near = slice(expected - 4, expected + 5)
    np.testing.assert_allclose(low[near], high[near], atol=1.5)
    # the 2 kHz MP3 at 16 kHz, cropped: its energy where a 2 kHz sine's is
    bird = band_profile(train.x[row["train/bird.mp3"]])
    assert abs(int(np.argmax(bird)) - int(np.argmin(np.abs(centres - 2000)))) <= 1
    # stereo is averaged to mono: both channels hold dog1's sine, so the rows are identical
    np.testing.assert_array_equal(train.x[row["train/stereo.wav"]], train.x[row["train/dog1.wav"]])


def test_audiofolder_tagging_asked_of_single_label_data(single_label, tmp_path):
    root, out, manifest = single_label
    tagged = prepare_audiofolder(root, tmp_path / "tagged", clip_seconds=CLIP, task="tagging", workers=1,
                                 progress=False)
    assert tagged["task"] == "tagging" and tagged["task_requested"] == "tagging"
    assert tagged["labels"] == manifest["labels"]
    one, two = Store(out), Store(tmp_path / "tagged")
    for name in SPLITS:
        y = two.split(name).y
        assert two.split(name).ids == one.split(name).ids
        assert y.dtype == np.uint8 and y.shape == (len(two.split(name).ids), 3)
        assert (y.sum(axis=1) == 1).all() and y.argmax(axis=1).tolist() == one.split(name).y.tolist()


MULTI = [  # no split column: seeded; (path, labels)
    ("m/00.wav", "rock;loud"), ("m/01.wav", "jazz"), ("m/02.flac", "rock;jazz"), ("m/03.wav", "quiet"),
    ("m/04.wav", "loud"), ("m/05.flac", "rock"), ("m/06.wav", "jazz;quiet;loud"), ("m/07.wav", "rock"),
    ("m/08.wav", "quiet;jazz"), ("m/09.wav", "loud;rock"),
]


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    for i, (path, _) in enumerate(MULTI):
        write_audio(root / path, sine(300 + 150 * i, 1.0, 8000), 8000)
    write_csv(root, "path,labels", *(f"{path},{labels}" for path, labels in MULTI))
    return root


def test_audiofolder_multi_label_is_tagging_with_a_seeded_split(multi_label, tmp_path):
    root = multi_label
    manifest = prepare_audiofolder(root, tmp_path / "s0", clip_seconds=CLIP, split_seed=0, workers=1,
                                   progress=False)
    assert manifest["task"] == "tagging" and manifest["split_protocol"] == "seeded"
    assert manifest["labels"] == ["jazz", "loud", "quiet", "rock"]
    assert manifest["skipped"] == [] and manifest["annotation_problems"] == []
    labels_of = {path: set(labels.split(";")) for path, labels in MULTI}
    store = Store(tmp_path / "s0")
    for name in SPLITS:
        split = store.split(name)
        assert split.y.dtype == np.uint8 and split.y.shape == (len(split.ids), 4)
        for row, path in enumerate(split.ids):
            assert {manifest["labels"][j] for j in np.flatnonzero(split.y[row])} == labels_of[path], path
        assert split.x.shape == (len(split.ids), RECIPE.n_mels, FRAMES)
    zero = store_ids(tmp_path / "s0")
    assert sorted(p for ids in zero.values() for p in ids) == sorted(labels_of)
    assert {name: len(ids) for name, ids in zero.items()} == {"train": 6, "valid": 2, "test": 2}
    prepare_audiofolder(root, tmp_path / "s1", clip_seconds=CLIP, split_seed=1, workers=1, progress=False)
    one = store_ids(tmp_path / "s1")
    assert one != zero
    assert sorted(p for ids in one.values() for p in ids) == sorted(labels_of)


def test_audiofolder_classification_of_multi_label_data_names_the_line(multi_label, tmp_path):
    with pytest.raises(DatasetError, match=r"line 2: 'm/00.wav' has 2 labels"):
        prepare_audiofolder(multi_label, tmp_path / "out", clip_seconds=CLIP, task="classification", workers=1,
                            progress=False)
    assert not (tmp_path / "out").exists()


def test_a_split_left_empty_by_skipping_refuses_the_store(tmp_path):
    root = tmp_path / "sounds"
    rows = [("a.wav", "x", "train", 1.0), ("b.wav", "y", "train", 1.0), ("c.wav", "x", "valid", 0.3),
            ("d.wav", "y", "valid", 0.2), ("e.wav", "x", "test", 1.0)]
    for path, _, _, seconds in rows:
        write_audio(root / path, sine(440, seconds, 8000), 8000)
    write_csv(root, "path,labels,split", *(f"{p},{label},{split}" for p, label, split, _ in rows))
    out = tmp_path / "store"
    for _ in range(2):  # and again, from the splits already written
        with pytest.raises(DatasetError, match=r"split 'valid' has no usable item: all 2 were skipped") as info:
            prepare_audiofolder(root, out, clip_seconds=CLIP, workers=1, progress=False)
        assert "c.wav: too short" in str(info.value) and "d.wav: too short" in str(info.value)
        assert not (out / "manifest.json").exists()


def test_a_refused_store_is_prepared_once_its_files_are_mended(tmp_path):
    root = tmp_path / "sounds"
    rows = [("a.wav", "x", "train", 1.0), ("b.wav", "y", "train", 1.0), ("c.wav", "x", "valid", 0.3),
            ("e.wav", "x", "test", 1.0)]
    for path, _, _, seconds in rows:
        write_audio(root / path, sine(440, seconds, 8000), 8000)
    write_csv(root, "path,labels,split", *(f"{p},{label},{split}" for p, label, split, _ in rows))
    out = tmp_path / "store"
    with pytest.raises(DatasetError, match="mend the files or the settings and run the same command again"):
        prepare_audiofolder(root, out, clip_seconds=CLIP, workers=1, progress=False)
    write_audio(root / "c.wav", sine(440, 1.0, 8000), 8000)  # the too-short clip, replaced
    manifest = prepare_audiofolder(root, out, clip_seconds=CLIP, workers=1, progress=False)
    assert manifest["splits"]["valid"]["count"] == 1 and manifest["skipped"] == []


def two_clip_folder(root: Path) -> Path:
    for split in ("train", "valid", "test"):
        for k, label in enumerate(("x", "y")):
            write_audio(root / f"{split}{k}.wav", sine(300 + 500 * k, 1.0, 8000), 8000)
    write_csv(root, "path,labels,split",
              *(f"{split}{k}.wav,{label},{split}" for split in ("train", "valid", "test")
                for k, label in enumerate(("x", "y"))))
    return root


def test_a_preparation_resumed_with_other_settings_redoes_what_they_change(tmp_path, monkeypatch):
    """Interrupted at 1 s clips, run again at 0.5 s: no split may keep rows of the first settings."""
    import audio2image.prepare.audio as audio

    root, out = two_clip_folder(tmp_path / "sounds"), tmp_path / "store"
    real = audio.features_of_clips

    def interrupted(paths, **kwargs):
        if any("valid" in p for p in paths):
            raise KeyboardInterrupt
        return real(paths, **kwargs)

    monkeypatch.setattr(audio, "features_of_clips", interrupted)
    with pytest.raises(KeyboardInterrupt):
        audio.prepare_audiofolder(root, out, clip_seconds=1.0, workers=1, progress=False)
    assert (out / "train.x.npy").exists() or (out / "train.x.npy.partial").exists()
    monkeypatch.setattr(audio, "features_of_clips", real)
    resumed = audio.prepare_audiofolder(root, out, clip_seconds=0.5, workers=1, progress=False)
    fresh = audio.prepare_audiofolder(root, tmp_path / "fresh", clip_seconds=0.5, workers=1, progress=False)
    for split in ("train", "valid", "test"):
        assert np.array_equal(Store(out).split(split).x, Store(tmp_path / "fresh").split(split).x), split
    assert resumed["normalization"] == fresh["normalization"]


def test_a_complete_store_is_returned_for_its_own_settings_and_refused_for_others(tmp_path, monkeypatch):
    root, out = two_clip_folder(tmp_path / "sounds"), tmp_path / "store"
    first = prepare_audiofolder(root, out, clip_seconds=1.0, workers=1, progress=False)
    monkeypatch.chdir(tmp_path)  # the same folder named relatively: the same store
    assert prepare_audiofolder(Path("sounds"), Path("store"), clip_seconds=1.0, workers=1, progress=False) == first
    with pytest.raises(DatasetError, match="already holds a store prepared from other data or settings"):
        prepare_audiofolder(root, out, clip_seconds=0.5, workers=1, progress=False)


# ----------------------------------------------------------------------------- the commands


def audio2image(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "audio2image", *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_prepare_commands_print_their_summary(odd_images, single_label, tmp_path):
    root, out, manifest = odd_images
    done = audio2image("prepare", "imagefolder", root, tmp_path / "images", "--size", SIZE, "--workers", 1)
    images = json.loads(done.stdout)
    findings = images.pop("findings")
    assert images == {"store": str(tmp_path / "images"), "task": "classification", "labels": 5,
                      "splits": manifest["splits"], "skipped": 2, "annotation_rows_dropped": 0}
    assert findings == {"skipped": {"count": 2, "examples": manifest["skipped"]},
                        "manifest": str(tmp_path / "images" / "manifest.json")}
    assert "images skipped: 2" in done.stderr and "2cats/fake.jpg" in done.stderr
    assert (tmp_path / "images/train.x.npy").read_bytes() == (out / "train.x.npy").read_bytes()

    root, out, manifest = single_label
    sounds = json.loads(audio2image("prepare", "audiofolder", root, tmp_path / "sounds", "--clip-seconds", CLIP,
                                    "--workers", 1).stdout)
    findings = sounds.pop("findings")
    assert sounds == {"store": str(tmp_path / "sounds"), "task": "classification", "labels": 3,
                      "splits": {"train": {"count": 5}, "valid": {"count": 2}, "test": {"count": 2}},
                      "skipped": 3, "annotation_rows_dropped": 1}
    assert Store(tmp_path / "sounds").manifest["skipped"] == manifest["skipped"]
    assert findings["skipped"] == {"count": 3, "examples": manifest["skipped"]}
    assert findings["annotation_problems"] == {"count": 1, "examples": manifest["annotation_problems"]}


def test_inspect_commands_name_labels_and_broken_files(odd_images, single_label):
    """Both inspections in one process (each start costs seconds), through the CLI's own entry point."""
    marker = "----- next command -----"
    script = ("import sys; from audio2image.cli import main; "
              f"main(['inspect', 'imagefolder', sys.argv[1], '--workers', '1']); print({marker!r}); "
              "main(['inspect', 'audiofolder', sys.argv[2], '--workers', '1'])")
    done = subprocess.run([sys.executable, "-c", script, str(odd_images[0]), str(single_label[0])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    images, sounds = done.stdout.split(marker)
    for expected in ("5 classes, 19 images", "10 apples", "2cats", "Dog", "café", "dog/notes.txt",
                     "images that fail to decode (skipped at preparation): 2",
                     "2cats/fake.jpg: UnidentifiedImageError", "2cats/truncated.png: OSError: image file is truncated"):
        assert expected in images, expected
    for expected in ("12 clips, 3 labels, split column: yes", "line 7: split 'dev'", "task (auto): classification",
                     "missing files (skipped at preparation): 1", "test/gone.wav",
                     "files soundfile cannot open (skipped at preparation): 1", "test/fake.wav: Format not recognised",
                     "sample rates (Hz): 8000 x4, 16000 x6", "FLAC x2", "MP3 x2", "WAV x6"):
        assert expected in sounds, expected
    for label in ("bird", "cat", "dog"):
        assert f"  {label} " in sounds, label
