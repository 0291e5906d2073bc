"""What a new user's own data trips on, each on real files written in tmp_path (Pillow PNG and TIFF, soundfile WAV):
images of more than 8 bits per pixel scaled by their range, a one-label audio folder refused, tags that never vary
listed (or refused when none varies), small images listed, and every skipped or warned-of item named in the
`prepare` command's output, in the report's Datasets section, and kept apart from stores made by older rules."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from audio2image.cli import main
from audio2image.prepare import store as store_module
from audio2image.prepare.audio import prepare_audiofolder
from audio2image.prepare.images import prepare_imagefolder
from audio2image.prepare.store import STORE_VERSION, Store
from audio2image.util import DatasetError

SPLITS = ("train", "valid", "test")


def colour_image(path: Path, seed: int, size=(24, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def image_folder(root: Path, per_class: int = 5) -> Path:
    """Two classes of small-but-not-tiny colour PNGs, each class split 3/1/1."""
    for k, name in enumerate(("ants", "bees")):
        for i in range(per_class):
            colour_image(root / name / f"{i}.png", 10 * k + i)
    return root


def stored(out: Path) -> dict[str, np.ndarray]:
    """Every stored row by item id."""
    store = Store(out)
    return {item: store.split(name).x[row] for name in SPLITS for row, item in enumerate(store.split(name).ids)}


# ----------------------------------------------------------------------------- images of more than 8 bits


RAMP = np.linspace(20000, 40000, 32)  # mid-range 16-bit values: Pillow's own conversion makes them all white
WIDE = {  # file name -> (what Pillow writes: array, format), all the same ramp along x
    "ramp16.png": (np.tile(RAMP, (32, 1)).astype(np.uint16), "PNG"),  # mode I;16
    "ramp16b.tif": (np.tile(RAMP, (32, 1)).astype(">u2"), "TIFF"),  # mode I;16B
    "ramp32.tif": (np.tile(RAMP, (32, 1)).astype(np.int32), "TIFF"),  # mode I
    "rampf.tif": (np.tile(RAMP / 65535, (32, 1)).astype(np.float32), "TIFF"),  # mode F, values 0.3..0.6
}


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory):
    root = image_folder(tmp_path_factory.mktemp("wide") / "photos")
    for k, (name, (values, fmt)) in enumerate(WIDE.items()):
        Image.fromarray(values).save(root / ("ants", "bees")[k % 2] / name, format=fmt)
    Image.fromarray(np.full((32, 32), 30000, np.uint16)).save(root / "ants" / "flat16.png")
    out = root.parent / "store"
    return root, out, prepare_imagefolder(root, out, size=32, resize="squash", workers=1, progress=False)


def test_the_files_are_what_the_test_means(wide_store):
    root, _, _ = wide_store
    modes = {name: Image.open(root / ("ants", "bees")[k % 2] / name).mode for k, name in enumerate(WIDE)}
    assert modes == {"ramp16.png": "I;16", "ramp16b.tif": "I;16B", "ramp32.tif": "I", "rampf.tif": "F"}
    with Image.open(root / "ants" / "ramp16.png") as image:  # the bug: Pillow's conversion clips at 255
        assert (np.asarray(image.convert("RGB")) == 255).mean() > 0.95


@pytest.mark.parametrize("name", list(WIDE))
def test_a_wide_image_keeps_its_relative_values(wide_store, name):
    _, _, manifest = wide_store
    folder = ("ants", "bees")[list(WIDE).index(name) % 2]
    rows = stored(wide_store[1])
    pixels = rows[f"{folder}/{name}"].astype(float)
    assert (pixels == pixels[..., :1]).all()  # grey
    profile = pixels[..., 0].mean(axis=0)  # along the ramp
    expected = (RAMP - RAMP.min()) / (RAMP.max() - RAMP.min()) * 255  # its range spread over 0..255
    assert np.abs(profile - expected).max() <= 2, profile
    assert (pixels == 255).mean() < 0.1
    assert f"{folder}/{name}" not in {item["item"] for item in manifest["skipped"]}


def test_a_constant_wide_image_is_skipped_with_its_reason(wide_store):
    _, _, manifest = wide_store
    skipped = {item["item"]: item["reason"] for item in manifest["skipped"]}
    assert skipped == {"ants/flat16.png": "constant I;16 image (every pixel 30000): no range to scale to 8 bits"}


def test_inspection_says_which_modes_are_scaled(wide_store):
    from audio2image.datasets.imagefolder import format_imagefolder_inspection, inspect_imagefolder

    text = format_imagefolder_inspection(inspect_imagefolder(wide_store[0]))
    assert "decoded image modes: F 1, I 1, I;16 2, I;16B 1, RGB 10" in text
    assert "  F, I, I;16, I;16B: more than 8 bits per pixel, scaled to 8 bits by each image's own range" in text


def test_eight_bit_images_are_stored_as_before(wide_store):
    root, out, _ = wide_store
    rows = stored(out)
    with Image.open(root / "ants" / "0.png") as image:
        np.testing.assert_array_equal(rows["ants/0.png"], np.asarray(image.convert("RGB").resize((32, 32),
                                                                                                   Image.BICUBIC)))


# ----------------------------------------------------------------------------- small images and the output


@pytest.fixture(scope="module")
def flawed_folder(tmp_path_factory):
    """Two classes, one image 1x1 px and one 5x40 px (small for a 32 px store), one file that is not an image."""
    root = image_folder(tmp_path_factory.mktemp("flawed") / "photos")
    colour_image(root / "ants" / "dot.png", 99, size=(1, 1))
    colour_image(root / "bees" / "strip.png", 98, size=(5, 40))
    colour_image(root / "bees" / "eight.png", 97, size=(8, 8))  # a quarter of 32 px exactly: not small
    (root / "bees" / "broken.jpg").write_text("this is text, not a JPEG")
    return root


def test_small_images_are_kept_and_listed(flawed_folder, tmp_path):
    manifest = prepare_imagefolder(flawed_folder, tmp_path / "store", size=32, workers=1, progress=False)
    warned = {item["item"]: item for item in manifest["warned"]}
    assert set(warned) == {"ants/dot.png", "bees/strip.png"}
    assert warned["ants/dot.png"]["reason"] == "small: 1x1 px, under 25% of the store's side (32 px): enlarged 32x"
    assert warned["bees/strip.png"]["reason"].startswith("small: 5x40 px")
    assert all(item["split"] in SPLITS for item in warned.values())
    assert set(stored(tmp_path / "store")) >= set(warned)  # kept
    assert Store(tmp_path / "store").manifest["warned"] == manifest["warned"]


def test_prepare_names_the_skipped_file_and_the_small_image(flawed_folder, tmp_path, capsys):
    out = tmp_path / "store"
    main(["prepare", "imagefolder", str(flawed_folder), str(out), "--size", "32", "--workers", "1"])
    printed = capsys.readouterr()
    findings = json.loads(printed.out)["findings"]
    assert [item["item"] for item in findings["skipped"]["examples"]] == ["bees/broken.jpg"]
    assert "cannot decode" in findings["skipped"]["examples"][0]["reason"]
    assert sorted(item["item"] for item in findings["warned"]["examples"]) == ["ants/dot.png", "bees/strip.png"]
    assert findings["manifest"] == str(out / "manifest.json")
    log = printed.err  # the log line names them too, with reasons and where the full list is
    for expected in ("images skipped: 1", "  bees/broken.jpg (", "cannot decode", "images kept with a warning: 2",
                     "  ants/dot.png (", "small: 1x1 px", f"all of them are listed in {out / 'manifest.json'}"):
        assert expected in log, expected
    # run again on the complete store: nothing is logged, but the output still names them
    main(["prepare", "imagefolder", str(flawed_folder), str(out), "--size", "32", "--workers", "1"])
    again = capsys.readouterr()
    assert json.loads(again.out)["findings"] == findings and "bees/broken.jpg" not in again.err


def test_the_report_names_them_in_its_datasets_section(flawed_folder, tmp_path):
    from test_report import make_experiment

    from audio2image.report import build_report
    from audio2image.sweep import describe_store

    prepare_imagefolder(flawed_folder, tmp_path / "store", size=32, workers=1, progress=False)
    exp = make_experiment(tmp_path)
    facts = {"target": describe_store(Store(tmp_path / "store"))}
    (exp / "datasets.json").write_text(json.dumps(facts))
    paths = build_report(exp)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    datasets = markdown.split("## Datasets", 1)[1].split("\n## ", 1)[0]
    assert "- target (imagefolder), images skipped: 1: bees/broken.jpg (" in datasets
    assert "- target (imagefolder), images kept with a warning: 2: " in datasets
    assert "ants/dot.png (" in datasets and "small: 1x1 px" in datasets and "bees/strip.png (" in datasets
    assert "small: 1x1 px" in datasets and f"(all in `{tmp_path / 'store' / 'manifest.json'}`)" in datasets
    section = page.split('id="datasets"', 1)[1].split("<h2", 1)[0]
    assert "<li>target (imagefolder), images skipped: 1: bees/broken.jpg (" in section
    assert "small: 1x1 px" in section and "<code>" in section


# ----------------------------------------------------------------------------- audio labels


def sine_folder(root: Path, rows: list[tuple[str, str]], missing: tuple[str, ...] = ()) -> Path:
    """labels.csv with `rows` (path, labels) and a one-second sine per row, except the `missing` paths."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (path, _) in enumerate(rows):
        if path not in missing:
            wave = 0.3 * np.sin(2 * np.pi * (300 + 70 * i) * np.arange(8000) / 8000)
            soundfile.write(root / path, wave.astype(np.float32), 8000)
    (root / "labels.csv").write_text("path,labels\n" + "".join(f"{p},{labels}\n" for p, labels in rows))
    return root


def prepare(root: Path, out: Path, **options) -> dict:
    return prepare_audiofolder(root, out, clip_seconds=1.0, workers=1, progress=False, **options)


def test_a_one_label_audio_folder_is_refused_like_a_one_class_image_folder(tmp_path):
    root = sine_folder(tmp_path / "dogs", [(f"{i}.wav", "dog") for i in range(10)])
    with pytest.raises(DatasetError, match=r"audio folder .*labels.csv has only the label 'dog', but classification "
                                           r"needs at least two classes; add clips of another label"):
        prepare(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was decoded
    (tmp_path / "classes" / "dog").mkdir(parents=True)  # the image folder's own refusal, for the wording
    colour_image(tmp_path / "classes" / "dog" / "a.png", 0)
    with pytest.raises(DatasetError, match="has only the class folder 'dog', but classification needs at least two"):
        prepare_imagefolder(tmp_path / "classes", tmp_path / "images", size=16, workers=1, progress=False)


def test_a_class_left_without_kept_clips_refuses_the_store(tmp_path):
    rows = [(f"{i}.wav", "dog" if i < 8 else "cat") for i in range(10)]
    root = sine_folder(tmp_path / "pets", rows, missing=("8.wav", "9.wav"))  # every cat clip missing
    with pytest.raises(DatasetError, match=r"every kept clip has the label 'dog', but classification needs at least "
                                           "two classes"):
        prepare(root, tmp_path / "out", split_seed=0)
    assert not (tmp_path / "out" / "manifest.json").exists() and not (tmp_path / "out" / "train.x.npy").exists()


TAGS = [("0.wav", "rock;loud"), ("1.wav", "rock"), ("2.wav", "rock;loud;fast"), ("3.wav", "rock"),
        ("4.wav", "rock;loud"), ("5.wav", "rock"), ("6.wav", "rock;loud"), ("7.wav", "rock;fast"),
        ("8.wav", "rock;loud"), ("9.wav", "rock")]


def test_a_tag_that_never_varies_is_listed_and_kept(tmp_path):
    root = sine_folder(tmp_path / "music", TAGS, missing=("2.wav", "7.wav"))  # every 'fast' clip missing
    manifest = prepare(root, tmp_path / "out")
    assert manifest["task"] == "tagging" and manifest["labels"] == ["fast", "loud", "rock"]  # all kept
    assert manifest["label_warnings"] == [{"label": "fast", "reason": "in none of the 8 kept clips"},
                                          {"label": "rock", "reason": "in every one of the 8 kept clips"}]
    y = np.concatenate([Store(tmp_path / "out").split(name).y for name in SPLITS])
    assert y.shape == (8, 3) and y[:, 0].sum() == 0 and y[:, 2].all()


def test_tagging_with_no_tag_that_varies_is_refused(tmp_path):
    rows = [(f"{i}.wav", "rock;loud") for i in range(10)]
    root = sine_folder(tmp_path / "same", rows)
    with pytest.raises(DatasetError, match=r"no tag varies, as every clip has every tag \('loud', 'rock'\)"):
        prepare(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # varying only through clips that are missing: refused once the kept clips are known
    rows[3] = ("3.wav", "rock")
    root = sine_folder(tmp_path / "almost", rows, missing=("3.wav",))
    with pytest.raises(DatasetError, match=r"no tag varies over the 9 kept clips \(loud: in every one of the 9 kept "
                                           r"clips; rock: in every one"):
        prepare(root, tmp_path / "out2")
    assert not (tmp_path / "out2" / "manifest.json").exists()


# ----------------------------------------------------------------------------- stores made by older rules


def as_version_one(out: Path) -> None:
    """Make a store look as version 1 wrote it: no version, no lists it did not keep, its signatures unversioned."""
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("store_version", "warned", "label_warnings"):
        manifest.pop(key)
    (out / "manifest.json").write_text(json.dumps(manifest))


def older_store(root: Path, out: Path, monkeypatch, prepare_store=None) -> None:
    """The store of `root` in `out` as version 1 made it (the rows are the current rules': the tests that use this
    check what is read of an older store, not its rows)."""
    with monkeypatch.context() as patch:
        for module in ("store", "images", "audio", "findings"):
            patch.setattr(f"audio2image.prepare.{module}.STORE_VERSION", 1)
        (prepare_store or functools.partial(prepare_imagefolder, size=32, workers=1, progress=False))(root, out)
    as_version_one(out)


def test_an_older_store_of_eight_bit_images_is_brought_up_to_date_without_decoding(flawed_folder, tmp_path,
                                                                                   monkeypatch):
    out = tmp_path / "store"
    older_store(flawed_folder, out, monkeypatch)
    assert store_module.store_version(out) == 1
    arrays = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    fresh = prepare_imagefolder(flawed_folder, tmp_path / "fresh", size=32, workers=1, progress=False)
    monkeypatch.setattr("audio2image.prepare.images.load_image", None)  # decoding now would fail loudly
    manifest = prepare_imagefolder(flawed_folder, out, size=32, workers=1, progress=False)
    assert manifest["store_version"] == STORE_VERSION == fresh["store_version"]
    for key in ("warned", "skipped", "label_warnings", "signatures", "splits"):
        assert manifest[key] == fresh[key], key
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == arrays  # rows untouched


def test_an_older_store_holding_a_wide_image_is_refused_by_name(wide_store, tmp_path, monkeypatch):
    root, _, _ = wide_store
    out = tmp_path / "store"
    older_store(root, out, monkeypatch)
    with pytest.raises(DatasetError, match=r"prepared by an older audio2image \(store version 1\), which clipped "
                                           r"images of more than 8 bits per pixel.*it holds 4 \(ants/ramp16.png, "):
        prepare_imagefolder(root, out, size=32, workers=1, progress=False)
    assert store_module.store_version(out) == 1  # left as it was, for the user to delete


def test_a_run_does_not_take_an_older_store_as_ready(tmp_path, monkeypatch):
    from audio2image.config import from_dict
    from audio2image.prepare.stores import store_path, store_ready

    root = image_folder(tmp_path / "photos")
    config = from_dict({"target": "imagefolder", "target_root": str(root), "image_store_size": 32,
                        "data_dir": str(tmp_path / "data")})
    older_store(root, store_path(config, "target"), monkeypatch)
    assert not store_ready(config, "target")
    prepare_imagefolder(root, store_path(config, "target"), size=32, workers=1, progress=False)
    assert store_ready(config, "target")


def test_an_older_audio_store_is_brought_up_to_date_without_decoding(tmp_path, monkeypatch):
    root = sine_folder(tmp_path / "music", TAGS, missing=("2.wav", "7.wav"))
    out = tmp_path / "store"
    older_store(root, out, monkeypatch, prepare)
    arrays = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    monkeypatch.setattr("audio2image.prepare.audio.features_of_clips", None)  # decoding now would fail loudly
    manifest = prepare(root, out)
    assert manifest["store_version"] == STORE_VERSION and Store(out).manifest == manifest
    assert [w["label"] for w in manifest["label_warnings"]] == ["fast", "rock"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == arrays
