"""Hugging Face's AudioFolder and ImageFolder layouts: every file's split and labels as audiofolder and imagefolder
read them equal what `datasets.load_dataset("audiofolder" | "imagefolder", data_dir=ROOT)` gives for the same tree
(offline, its caches in tmp_path); bad metadata rows skipped with their file and line; the label column key; the
trees refused by name; and both kinds of tree prepared into stores with their split folders as the splits.

datasets 5.x encodes an Audio column only where torchcodec imports, even a bare path, and decodes only through it:
the comparisons store the path as given (what its encoder does with a path) and read the stored rows undecoded.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from audio2image.cli import main
from audio2image.config import ConfigError, load_config
from audio2image.datasets.audiofolder import assign_splits, read_labels, split_clips
from audio2image.datasets.audiofolder_inspect import format_audiofolder_inspection, inspect_audiofolder
from audio2image.datasets.hf_metadata import parse_labels
from audio2image.datasets.imagefolder import format_imagefolder_inspection, inspect_imagefolder, scan_imagefolder
from audio2image.prepare.audio import prepare_audiofolder
from audio2image.prepare.images import prepare_imagefolder
from audio2image.prepare.store import Store
from audio2image.util import DatasetError

HF_SPLITS = {"train": "train", "validation": "valid", "test": "test"}


# ----------------------------------------------------------------------------- trees


def write_audio(path: Path, seconds: float = 0.05, rate: int = 16000, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32)
    soundfile.write(path, wave, rate)  # the format from the suffix: WAV or FLAC


def write_image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG" if path.suffix == ".png" else "JPEG")
    path.write_bytes(buffer.getvalue())


def tree(root: Path, files: list[str], texts: dict[str, str] | None = None, seconds: float = 0.05) -> Path:
    for i, name in enumerate(files):
        if name.endswith((".png", ".jpg")):
            write_image(root / name, i)
        else:
            write_audio(root / name, seconds, seed=i)
    for name, text in (texts or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def jsonl(*rows: str) -> str:
    return "\n".join(rows) + "\n"


CSV_AT_ROOT = ("file_name,label,comment\n"
               "a.wav,dog,loud\n"
               "b.flac,dog;outdoor,\n"
               'sub/c.wav,"[""cat"", ""indoor""]",quiet\n'
               "sub/e.flac, cat ,\n")
JSONL_PER_SPLIT = {
    "train/metadata.jsonl": jsonl('{"file_name": "x/a.wav", "label": ["dog", "outdoor"]}',
                                  '{"file_name": "b.wav", "label": ["cat"]}',
                                  '{"file_name": "c.flac", "label": ["dog"]}'),
    "validation/metadata.jsonl": jsonl('{"file_name": "d.wav", "label": ["cat", "indoor"]}'),
    "test/metadata.jsonl": jsonl('{"file_name": "e.wav", "label": ["dog"]}',
                                 '{"file_name": "f.wav", "label": ["cat", "dog"]}'),
}
AUDIO_CLASS_FOLDERS = ["train/cat/a.wav", "train/cat/b.flac", "train/dog/c.wav", "train/.hidden/h.wav",
                       "validation/cat/d.wav", "validation/dog/e.wav", "test-set/dog/f.flac", "test-set/bird/g.wav",
                       "other/cat/x.wav", "Train/cat/y.wav"]


# ----------------------------------------------------------------------------- what datasets reads


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """load(root, kind) -> {path: (split, labels)} as `datasets` reads the tree, offline, caches in tmp_path."""
    home = tmp_path_factory.mktemp("hf-home")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(home),
                            "HF_DATASETS_CACHE": str(home / "datasets")}.items():
            patch.setenv(name, value)
        datasets = pytest.importorskip("datasets")
        # set again where datasets was imported before this module set the environment
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
        patch.setattr(datasets.Audio, "encode_example", lambda self, value: {"bytes": None, "path": value})
        verbosity = datasets.logging.get_verbosity()
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()

        def load(root: Path, kind: str) -> dict:
            loaded = datasets.load_dataset(kind, data_dir=str(root), cache_dir=str(home / "cache"))
            column = "audio" if kind == "audiofolder" else "image"
            read = {}
            for split, table in loaded.items():
                feature = table.features.get("label")
                for row in table.data.table.to_pylist():  # the stored rows: nothing decoded
                    path = Path(os.path.relpath(row[column]["path"], root)).as_posix()
                    label = row.get("label")
                    if isinstance(feature, datasets.ClassLabel) and label is not None:
                        label = feature.int2str(label)
                    # a JSON list or ';' in a text label: the same rule as ours, on what datasets read
                    read[path] = (HF_SPLITS[split], None if label is None else parse_labels(label))
            return read

        yield load
        datasets.enable_progress_bars()
        datasets.logging.set_verbosity(verbosity)


def ours_audio(root: Path) -> dict:
    return {clip.path: (clip.split, clip.labels) for clip in read_labels(root).clips}


def ours_images(root: Path) -> dict:
    scan = scan_imagefolder(root)
    split = {int(i): name for name, positions in scan.folder_splits.items() for i in positions}
    return {path: (split.get(i, "train"), (scan.classes[scan.labels[i]],)) for i, path in enumerate(scan.paths)}


def test_audio_metadata_csv_at_the_root(tmp_path, hf):
    root = tree(tmp_path, ["a.wav", "b.flac", "sub/c.wav", "sub/e.flac", "d.wav"], {"metadata.csv": CSV_AT_ROOT})
    ours = ours_audio(root)
    assert ours == hf(root, "audiofolder")
    assert ours == {"a.wav": ("train", ("dog",)), "b.flac": ("train", ("dog", "outdoor")),
                    "sub/c.wav": ("train", ("cat", "indoor")), "sub/e.flac": ("train", ("cat",))}
    labels = read_labels(root)
    assert labels.hf.unread == [{"path": "d.wav", "reason": "no metadata row names it"}]
    assert labels.given == ()  # no split folders: a seeded split of all, as torch's random_split sizes it
    assert {name: len(clips) for name, clips in assign_splits(labels, "tagging", 0).items()} == {
        "train": 3, "valid": 1, "test": 0}
    text = format_audiofolder_inspection(inspect_audiofolder(root, decode=False))
    assert ("layout: Hugging Face AudioFolder layout: metadata.csv at the root, label column `label`, no split "
            "folders (a seeded 60/20/20 split at preparation)") in text
    assert "d.wav: no metadata row names it" in text


def test_audio_metadata_jsonl_in_each_split_folder(tmp_path, hf):
    root = tree(tmp_path, ["train/x/a.wav", "train/b.wav", "train/c.flac", "validation/d.wav", "test/e.wav",
                           "test/f.wav"], JSONL_PER_SPLIT)
    ours = ours_audio(root)
    assert ours == hf(root, "audiofolder")
    assert ours["train/x/a.wav"] == ("train", ("dog", "outdoor")) and ours["validation/d.wav"][0] == "valid"
    labels = read_labels(root)
    assert labels.given == ("train", "valid", "test")
    parts = split_clips(labels, "auto", seed=3)
    assert {name: [clip.path for clip in clips] for name, clips in parts.items()} == {
        "train": ["train/x/a.wav", "train/b.wav", "train/c.flac"], "valid": ["validation/d.wav"],
        "test": ["test/e.wav", "test/f.wav"]}  # as given, whatever the seed
    text = format_audiofolder_inspection(inspect_audiofolder(root, decode=False))
    assert ("Hugging Face AudioFolder layout: metadata.jsonl in train/, validation/ and test/, label column "
            "`label`, split folders train/, validation/ and test/") in text


def test_audio_class_folders(tmp_path, hf):
    root = tree(tmp_path / "split", AUDIO_CLASS_FOLDERS)
    ours = ours_audio(root)
    assert ours == hf(root, "audiofolder")
    assert ours["test-set/bird/g.wav"] == ("test", ("bird",)) and "other/cat/x.wav" not in ours
    assert "Train/cat/y.wav" not in ours  # keywords match case-sensitively: Train/ is no split folder
    flat = tree(tmp_path / "flat", ["cat/a.wav", "cat/b.wav", "dog/c.flac", "bird/d.wav"])
    assert ours_audio(flat) == hf(flat, "audiofolder")
    assert set(ours_audio(flat).values()) == {("train", ("cat",)), ("train", ("dog",)), ("train", ("bird",))}


def test_image_class_folders_with_a_validation_folder(tmp_path, hf):
    root = tree(tmp_path / "split", ["train/cat/a.png", "train/cat/b.jpg", "train/dog/c.png", "train/dog/d.jpg",
                                     "validation/cat/e.png", "validation/dog/f.jpg", "test/cat/g.jpg",
                                     "test/dog/h.png", "notes/cat/i.png"])
    ours = ours_images(root)
    assert ours == hf(root, "imagefolder")  # validation/ is the validation split: no longer a stray
    assert ours["validation/cat/e.png"] == ("valid", ("cat",))
    assert scan_imagefolder(root).strays == ["notes/"]
    # val/ and valid/ are read together, as datasets reads them; without test/, test is cut from train
    merged = tree(tmp_path / "merged", ["train/cat/a.png", "train/cat/b.png", "train/dog/c.png", "train/dog/d.png",
                                        "train/cat/e.png", "train/dog/f.png", "val/cat/g.png", "valid/dog/h.png"])
    assert ours_images(merged) == hf(merged, "imagefolder")
    report = inspect_imagefolder(merged, decode=False)
    assert report["split_source"] == "folders train/val/valid, test from train"
    assert "test: a stratified 20% of each train class" in format_imagefolder_inspection(report)


def test_image_metadata_in_train_and_test(tmp_path, hf):
    texts = {"train/metadata.csv": "file_name,label\ncat/a.png,tabby\ncat/b.jpg,tabby\nc.png,siamese\n",
             "test/metadata.csv": "file_name,label\nd.jpg,siamese\nzz/e.png,tabby\n"}
    root = tree(tmp_path, ["train/cat/a.png", "train/cat/b.jpg", "train/c.png", "train/dog/unlisted.png",
                           "test/d.jpg", "test/zz/e.png"], texts)
    ours = ours_images(root)
    assert ours == hf(root, "imagefolder")  # the metadata's labels, not the folders'; unlisted files left out
    assert ours["train/cat/a.png"] == ("train", ("tabby",))
    report = inspect_imagefolder(root, decode=False)
    assert report["split_source"] == "folders train/test, validation from train"
    text = format_imagefolder_inspection(report)
    assert "layout: Hugging Face ImageFolder layout: metadata.csv in train/ and test/, label column `label`" in text
    assert "train/dog/unlisted.png: no metadata row names it" in text


# ----------------------------------------------------------------------------- bad rows, the label column, refusals


def test_bad_metadata_rows_are_skipped_with_their_file_and_line(tmp_path):
    texts = {"train/metadata.jsonl": jsonl('{"file_name": "a.wav", "label": "dog"}', "{not json",
                                           '{"file_name": "gone.wav", "label": "dog"}',
                                           '{"file_name": "b.wav", "label": ""}', "",
                                           '{"file_name": "../test/c.wav", "label": "cat"}',
                                           '{"file_name": "a.wav", "label": "cat"}',
                                           '{"file_name": "b.wav", "label": "cat; dog"}'),
             "test/metadata.jsonl": jsonl('{"file_name": "c.wav", "label": "cat"}', '{"file_name": "d.wav"}',
                                          '{"file_name": "/etc/passwd", "label": "cat"}',
                                          '{"file_name": "e.wav", "label": "[\\"cat\\", 3]"}')}
    root = tree(tmp_path, ["train/a.wav", "train/b.wav", "test/c.wav", "test/d.wav", "test/e.wav"], texts)
    labels = read_labels(root)
    assert [(p["file"], p["line"]) for p in labels.problems] == [
        ("train/metadata.jsonl", 2), ("train/metadata.jsonl", 3), ("train/metadata.jsonl", 4),
        ("train/metadata.jsonl", 6), ("train/metadata.jsonl", 7), ("test/metadata.jsonl", 2),
        ("test/metadata.jsonl", 3)]
    reasons = [p["reason"] for p in labels.problems]
    assert reasons[0].startswith("unreadable JSON line") and reasons[1] == "missing file train/gone.wav"
    assert reasons[2] == "empty label" and "leaves the metadata file's folder (train/)" in reasons[3]
    assert "named again (first in train/metadata.jsonl line 1)" in reasons[4]
    assert reasons[5] == "no 'label'" and "leaves" in reasons[6]
    assert {clip.path: clip.labels for clip in labels.clips} == {
        "train/a.wav": ("dog",), "train/b.wav": ("cat", "dog"), "test/c.wav": ("cat",), "test/e.wav": ("cat", "3")}
    text = format_audiofolder_inspection(inspect_audiofolder(root, decode=False))
    assert "rows skipped: 7" in text and "train/metadata.jsonl: line 3: missing file train/gone.wav" in text
    assert "(validation cut from train at preparation)" in text


def test_the_label_column_is_chosen_by_its_key(tmp_path, capsys):
    root = tree(tmp_path / "audio", ["a.wav", "b.wav", "c.wav"],
                {"metadata.csv": "file_name,label,genre\na.wav,x,rock\nb.wav,y,jazz\nc.wav,x,rock;live\n"})
    assert [clip.labels for clip in read_labels(root, "genre").clips] == [("rock",), ("jazz",), ("rock", "live")]
    main(["inspect", "audiofolder", str(root), "--no-decode", "--label-column", "genre"])
    assert "label column `genre`" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="'audio_label_column': ' ' is not allowed; give the name of a column"):
        load_config(None, ["audio_label_column= "])
    with pytest.raises(DatasetError, match="no label column 'mood' .*'genre'.*audio_label_column=COLUMN") as info:
        read_labels(root, "mood")
    assert str(root / "metadata.csv") in str(info.value)
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy/labels.csv").write_text("path,labels\na.wav,x\n")
    with pytest.raises(DatasetError, match="labels.csv gives the labels in its 'labels' column"):
        read_labels(tmp_path / "legacy", "genre")
    images = tree(tmp_path / "images", ["cat/a.png", "dog/b.png"])
    with pytest.raises(DatasetError, match="image_label_column .*'genre'.*leave it at 'label'"):
        scan_imagefolder(images, "genre")


@pytest.mark.parametrize("files, texts, message", [
    (["train/a.wav", "test/b.wav"], {"metadata.csv": "file_name,label\ntrain/a.wav,x\ntest/b.wav,y\n"},
     "metadata.csv lies outside the split folders .*put a metadata file in each split folder"),
    (["cat/a.wav", "dog/b.wav", "dog/sub/c.wav"], {}, "different depths \\(cat/a.wav, dog/sub/c.wav\\)"),
    (["cat/a.wav", "cat/b.wav"], {}, "every file lies in the folder 'cat'"),
    (["train/a.wav", "test/b.wav"], {}, "lie directly in the split folders"),
    (["validation/cat/a.wav", "test/dog/b.wav"], {}, "no item is in train, only in validation and test"),
    (["train/a.wav"], {"train/metadata.csv": "file_name,label\na.wav,x\n", "train/x/metadata.jsonl": "{}\n"},
     "both metadata.csv and metadata.jsonl"),
    (["notes.txt"], {}, "holds no file this layout reads.*or a labels.csv"),
])
def test_unusable_trees_are_refused_by_name(tmp_path, files, texts, message):
    root = tree(tmp_path, [name for name in files if name.endswith(".wav")], texts)
    for name in files:
        if name.endswith(".txt"):
            (root / name).write_text("not audio")
    with pytest.raises(DatasetError, match=message) as info:
        read_labels(root)
    assert str(root) in str(info.value) and "\n" not in str(info.value)


def test_images_with_several_labels_are_refused_with_their_row(tmp_path):
    root = tree(tmp_path, ["a.png", "b.png"], {"metadata.jsonl": jsonl('{"file_name": "a.png", "label": "cat"}',
                                                                       '{"file_name": "b.png", "label": ["a", "b"]}')})
    with pytest.raises(DatasetError, match="metadata.jsonl: line 2: 'b.png' has 2 labels .*single-label"):
        scan_imagefolder(root)


def test_where_datasets_would_split_otherwise_is_noted(tmp_path):
    nested = tree(tmp_path / "nested", ["data/train/cat/a.wav", "data/train/dog/b.wav", "data/test/dog/c.wav",
                                        "notes/x/cat/d.wav"])
    assert "folders below the top are named like split folders (data/test/, data/train/)" in read_labels(
        nested).hf.notes[0]
    named = tree(tmp_path / "named", ["cat/train_1.wav", "dog/b.wav", "dog/test-2.wav"])
    assert "2 file names name a split (cat/train_1.wav, dog/test-2.wav)" in read_labels(named).hf.notes[0]


def test_a_class_folder_named_like_a_split_stays_a_class(tmp_path):
    """Caltech-256 has a class `test-tube`: among class folders it is one more class, not the test split (which
    would leave every other class out, as Hugging Face's loader does), and the tree says so; split folders that are
    most of the top still split it, the rest listed as outside."""
    classes = tree(tmp_path / "classes", ["ant/a.png", "bee/b.png", "cat/c.png", "test-tube/d.png"])
    scan = scan_imagefolder(classes)
    assert scan.classes == ["ant", "bee", "cat", "test-tube"] and scan.folder_splits == {}
    assert "test-tube/ is named like split folders but beside 3 other folders" in " ".join(scan.notes)
    split = tree(tmp_path / "split", ["train/ant/a.png", "train/bee/b.png", "test/ant/c.png", "test/bee/d.png",
                                      "extras/e.png"])
    scan = scan_imagefolder(split)
    assert set(scan.folder_splits) == {"train", "test"} and "extras/" in scan.strays


# ----------------------------------------------------------------------------- stores


def test_hf_trees_prepare_into_stores_with_their_split_folders(tmp_path):
    audio = tree(tmp_path / "audio", ["train/x/a.wav", "train/b.wav", "train/c.flac", "validation/d.wav",
                                      "test/e.wav", "test/f.wav"], JSONL_PER_SPLIT, seconds=0.5)
    manifest = prepare_audiofolder(audio, tmp_path / "audio-store", clip_seconds=0.5, workers=1, progress=False)
    store = Store(tmp_path / "audio-store")
    assert {name: store.split(name).ids for name in ("train", "valid", "test")} == {
        "train": ["train/x/a.wav", "train/b.wav", "train/c.flac"], "valid": ["validation/d.wav"],
        "test": ["test/e.wav", "test/f.wav"]}
    assert manifest["task"] == "tagging" and manifest["labels"] == ["cat", "dog", "indoor", "outdoor"]
    assert manifest["split_protocol"] == "split folders train/, validation/ and test/"
    assert manifest["layout"].startswith("Hugging Face AudioFolder layout: metadata.jsonl in train/")
    images = tree(tmp_path / "images", ["train/cat/a.png", "train/cat/b.jpg", "train/dog/c.png",
                                        "validation/cat/d.png", "validation/dog/e.jpg", "test/dog/f.png"])
    manifest = prepare_imagefolder(images, tmp_path / "image-store", size=8, workers=1, progress=False)
    store = Store(tmp_path / "image-store")
    assert {name: store.split(name).ids for name in ("train", "valid", "test")} == {
        "train": ["train/cat/a.png", "train/cat/b.jpg", "train/dog/c.png"],
        "valid": ["validation/cat/d.png", "validation/dog/e.jpg"], "test": ["test/dog/f.png"]}
    assert manifest["split_protocol"] == "folders train/validation/test" and manifest["labels"] == ["cat", "dog"]
