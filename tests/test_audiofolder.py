"""Audio folder: labels.csv read by column name, bad rows skipped with line numbers, task, splits, targets,
inspection with and without reading the audio headers.

Fixtures are made in tmp_path: labels.csv written line by line (so each test knows every row's line) and
half-second sines written with soundfile as WAV, FLAC and MP3.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from audio2image.datasets.audiofolder import Clip, LabelsFile, read_labels, split_clips, targets, task_of
from audio2image.datasets.audiofolder_inspect import format_audiofolder_inspection, inspect_audiofolder
from audio2image.datasets.splits import SPLITS
from audio2image.util import DatasetError


def write_csv(root, *lines: str, encoding: str = "utf-8"):
    """labels.csv with exactly these lines (line 1 is the first), newline-terminated."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return root / "labels.csv"


def write_audio(path, seconds: float = 0.5, rate: int = 16000, channels: int = 1, fmt: str | None = None):
    """A 440 Hz sine of `seconds` written with soundfile (format from the suffix unless `fmt` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate).astype(np.float32)
    soundfile.write(path, np.stack([wave] * channels, axis=1), rate, format=fmt)


def problem_lines(labels: LabelsFile) -> list[int]:
    return [p["line"] for p in labels.problems]


def in_order(clips: list[Clip]) -> bool:
    return [c.line for c in clips] == sorted(c.line for c in clips)


# ----------------------------------------------------------------------------- the three kinds of folder


def test_single_label_with_a_split_column(tmp_path):
    write_csv(tmp_path, "path,labels,split",
              "dogs/a.wav,dog,train", "cats/b.wav,cat,Train", "./dogs/../dogs/c.wav, dog ,val",
              "cats/d.wav,cat,VALIDATION", "e.wav,bird,test", "cats/f.wav,cat,valid", "g.wav,bird,train")
    labels = read_labels(tmp_path)
    assert labels.problems == [] and labels.has_split and not labels.multi_label
    assert labels.vocabulary == ["bird", "cat", "dog"]
    assert labels.clips[2] == Clip("dogs/c.wav", ("dog",), "valid", 4)
    assert task_of(labels) == "classification" and task_of(labels, "classification") == "classification"
    assert task_of(labels, "tagging") == "tagging"
    parts = split_clips(labels, "auto", seed=0)
    assert {name: [c.line for c in clips] for name, clips in parts.items()} == {
        "train": [2, 3, 8], "valid": [4, 5, 7], "test": [6]}
    assert split_clips(labels, "auto", seed=5) == parts  # the column decides, not the seed
    y = targets(parts["train"], labels.vocabulary, "classification")
    assert y.dtype == np.int64 and y.tolist() == [2, 1, 0]
    y = targets(parts["train"], labels.vocabulary, "tagging")
    assert y.dtype == np.uint8 and y.tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]


def multi_label_folder(root, n: int = 30):
    rows = [f"clip{i:02d}.flac,{'rock;guitar' if i % 3 == 0 else 'jazz'}{';;' if i == 4 else ''}" for i in range(n)]
    write_csv(root, "path,labels", *rows, "clip99.flac,piano;piano;;voice;")
    return read_labels(root)


def test_multi_label_without_a_split_column(tmp_path):
    labels = multi_label_folder(tmp_path)
    assert labels.problems == [] and not labels.has_split and labels.multi_label
    assert labels.vocabulary == ["guitar", "jazz", "piano", "rock", "voice"]
    assert labels.clips[0] == Clip("clip00.flac", ("rock", "guitar"), None, 2)
    assert labels.clips[4].labels == ("jazz",)  # empty pieces dropped
    assert labels.clips[-1].labels == ("piano", "voice")  # repeats and a trailing ";" dropped
    assert task_of(labels) == "tagging" and task_of(labels, "tagging") == "tagging"
    with pytest.raises(DatasetError, match="line 2: 'clip00.flac' has 2 labels") as info:
        task_of(labels, "classification")
    assert str(labels.path) in str(info.value) and "tagging" in str(info.value)
    parts = split_clips(labels, "tagging", seed=0)
    assert_partition(labels, parts)
    assert [len(parts[name]) for name in SPLITS] == [19, 6, 6]  # random_split's lengths for 31
    assert split_clips(read_labels(tmp_path), "auto", seed=0) == parts  # same rows, same seed: same split
    assert any(split_clips(labels, "tagging", seed=s) != parts for s in (1, 2, 3))
    y = targets(labels.clips[:2] + labels.clips[-1:], labels.vocabulary, "tagging")
    assert y.dtype == np.uint8 and y.tolist() == [[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 1]]
    with pytest.raises(ValueError, match="line 2"):
        targets(labels.clips, labels.vocabulary, "classification")


def assert_partition(labels: LabelsFile, parts: dict[str, list[Clip]]) -> None:
    """Every split present and non-empty, disjoint, covering every clip, file order kept within each."""
    assert list(parts) == list(SPLITS) and all(parts.values())
    lines = [c.line for name in SPLITS for c in parts[name]]
    assert sorted(lines) == [c.line for c in labels.clips] and len(set(lines)) == len(lines)
    assert all(in_order(clips) for clips in parts.values())


def test_single_label_without_a_split_column_is_stratified_and_seeded(tmp_path):
    rows = [f"{label}/{i}.wav,{label}" for i in range(10) for label in ("dog", "cat", "bird")]
    rows += [f"owl/{i}.wav,owl" for i in range(5)]
    write_csv(tmp_path, "path,labels", *rows)
    labels = read_labels(tmp_path)
    assert task_of(labels) == "classification" and labels.vocabulary == ["bird", "cat", "dog", "owl"]
    parts = split_clips(labels, "classification", seed=0)
    assert_partition(labels, parts)
    for label, sizes in (("dog", [6, 2, 2]), ("cat", [6, 2, 2]), ("bird", [6, 2, 2]), ("owl", [3, 1, 1])):
        assert [sum(c.labels == (label,) for c in parts[name]) for name in SPLITS] == sizes
    assert split_clips(read_labels(tmp_path), "auto", seed=0) == parts
    others = [split_clips(labels, "classification", seed=s) for s in (1, 2, 3)]
    assert any(o != parts for o in others)
    y = targets(parts["test"], labels.vocabulary, "classification")
    assert y.tolist() == [labels.vocabulary.index(c.labels[0]) for c in parts["test"]]


def test_unknown_task_names_the_allowed_ones(tmp_path):
    write_csv(tmp_path, "path,labels", "a.wav,x")
    with pytest.raises(ValueError, match="auto, tagging, classification"):
        task_of(read_labels(tmp_path), "regression")
    with pytest.raises(ValueError, match="tagging' or 'classification"):
        targets([], [], "auto")


# ----------------------------------------------------------------------------- bad rows


def test_bad_rows_are_skipped_with_their_line_and_reason(tmp_path):
    write_csv(tmp_path, "path,labels,split",
              "a.wav,dog,train",  # 2 fine
              "b.wav,dog,dev",  # 3 unknown split
              "c.wav,dog,",  # 4 empty split
              "d.wav, ; ,test",  # 5 no labels
              "./a.wav,cat,test",  # 6 same path as line 2
              "../outside.wav,dog,test",  # 7 leaves ROOT
              "/abs/e.wav,dog,test",  # 8 absolute
              "f.wav,dog,test,extra",  # 9 a field too many
              "g.wav,dog",  # 10 a field short
              ",dog,test",  # 11 empty path
              "sub/../h.wav,cat,valid",  # 12 fine: stays inside ROOT
              "missing/nowhere.wav,cat,test",  # 13 fine: a missing file is not a read problem
              "sub/..,cat,test")  # 14 ROOT itself
    labels = read_labels(tmp_path)
    assert [(c.path, c.line) for c in labels.clips] == [("a.wav", 2), ("h.wav", 12), ("missing/nowhere.wav", 13)]
    assert problem_lines(labels) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 14]
    reasons = [p["reason"] for p in labels.problems]
    assert reasons[0] == "split 'dev' is not one of train, valid, test (also accepted: val, validation)"
    assert "split is empty" in reasons[1]
    assert "no labels" in reasons[2]
    assert reasons[3] == "duplicated path, first on line 2"
    assert "'../outside.wav' leaves ROOT" in reasons[4]
    assert "'/abs/e.wav' is absolute" in reasons[5]
    assert reasons[6] == "expected 3 fields, found 4" and reasons[7] == "expected 3 fields, found 2"
    assert "path is empty" in reasons[8]
    assert "'sub/..' is ROOT itself" in reasons[9]
    assert labels.vocabulary == ["cat", "dog"]


def test_a_duplicate_of_a_skipped_row_is_kept(tmp_path):
    write_csv(tmp_path, "path,labels", "a.wav,", "a.wav,dog", "a.wav,cat")
    labels = read_labels(tmp_path)
    assert [(c.line, c.labels) for c in labels.clips] == [(3, ("dog",))]
    assert labels.problems == [{"line": 2, "reason": "no labels"},
                               {"line": 4, "reason": "duplicated path, first on line 3"}]


def test_blank_lines_are_ignored_and_lines_still_count(tmp_path):
    write_csv(tmp_path, "path,labels", "", "a.wav,x", ",", "   ", "b.wav,y", "")
    labels = read_labels(tmp_path)
    assert [c.line for c in labels.clips] == [3, 6] and labels.problems == []


def test_a_quote_left_open_is_one_problem_with_its_lines(tmp_path):
    write_csv(tmp_path, "path,labels", 'a.wav,"dog', "b.wav,cat", "c.wav,cat")
    labels = read_labels(tmp_path)
    assert labels.clips == [] and problem_lines(labels) == [2]
    assert "line 2 to 4" in labels.problems[0]["reason"] and "quote" in labels.problems[0]["reason"]


def test_a_quote_left_open_over_a_huge_field_is_fatal_with_its_line(tmp_path):
    write_csv(tmp_path, "path,labels", "a.wav,x", 'b.wav,"dog', "x" * 140_000)
    with pytest.raises(DatasetError, match="line 3: .*quote left open"):
        read_labels(tmp_path)


@pytest.mark.parametrize("header, message", [
    ("file,labels", "no 'path' column"),
    ("path,tags", "no 'labels' column"),
    ("path,labels,Path ", r"repeats column\(s\) 'path'"),
])
def test_an_unusable_header_is_one_clear_error(tmp_path, header, message):
    path = write_csv(tmp_path, header, "a.wav,x,y")
    with pytest.raises(DatasetError, match=message) as info:
        read_labels(tmp_path)
    assert str(path) in str(info.value) and "line 1" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n", ",,\n"])
def test_an_empty_file_is_an_error(tmp_path, content):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(DatasetError, match="line 1: the file is empty") as info:
        read_labels(tmp_path)
    assert str(tmp_path / "labels.csv") in str(info.value)


def test_a_missing_labels_file_names_it_and_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="labels.csv does not exist") as info:
        read_labels(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "labels.csv") in str(info.value)
    assert "path,labels" in str(info.value) and "';'" in str(info.value)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    write_csv(tmp_path, "path,labels", "a.wav,x", "b.wav,caf\u00e9", encoding="latin-1")
    with pytest.raises(DatasetError, match="line 3: not UTF-8"):
        read_labels(tmp_path)


def test_a_split_without_clips_is_an_error_naming_it(tmp_path):
    path = write_csv(tmp_path, "path,labels,split", "a.wav,x,train", "b.wav,x,test", "c.wav,y,train")
    labels = read_labels(tmp_path)
    with pytest.raises(DatasetError, match="has no clip with split 'valid'") as info:
        split_clips(labels, "auto", seed=0)
    assert str(path) in str(info.value)
    write_csv(tmp_path, "path,labels", "a.wav,x", "b.wav,y")  # too few clips for a seeded 60/20/20
    with pytest.raises(DatasetError, match="split of 2 clips leaves 'valid' and 'test' empty"):
        split_clips(read_labels(tmp_path), "auto", seed=0)


def test_rows_that_cannot_teach_the_task_are_refused_before_any_decoding(tmp_path):
    path = write_csv(tmp_path, "path,labels", *(f"{i}.wav,dog" for i in range(10)))
    with pytest.raises(DatasetError, match="has only the label 'dog', but classification needs at least two") as info:
        split_clips(read_labels(tmp_path), "auto", seed=0)
    assert str(path) in str(info.value)
    # tagging asked of the same rows: the one tag is on every clip
    with pytest.raises(DatasetError, match=r"no tag varies, as every clip has every tag \('dog'\)"):
        split_clips(read_labels(tmp_path), "tagging", seed=0)
    write_csv(tmp_path, "path,labels", *(f"{i}.wav,dog;loud" for i in range(10)))
    with pytest.raises(DatasetError, match=r"no tag varies, as every clip has every tag \('dog', 'loud'\)"):
        split_clips(read_labels(tmp_path), "auto", seed=0)
    write_csv(tmp_path, "path,labels", *(f"{i}.wav,dog;loud" for i in range(9)), "9.wav,dog")  # 'loud' varies
    assert sum(map(len, split_clips(read_labels(tmp_path), "auto", seed=0).values())) == 10


# ----------------------------------------------------------------------------- file dialects


def test_bom_quotes_header_case_and_extra_columns(tmp_path):
    text = ('\ufeff Notes ,"PATH" ,Labels, Split\r\n'
            '"two, lines\nof notes","audio/cat, sleeping.flac","cat;""big"" cat",TEST\r\n'
            'x,audio/dog.wav,dog,train\r\n'
            ',audio/owl.mp3,owl,Val\r\n')
    (tmp_path / "labels.csv").write_bytes(text.encode("utf-8"))
    labels = read_labels(tmp_path)
    assert labels.problems == [] and labels.has_split and labels.extra_columns == ["Notes"]
    assert labels.clips == [Clip("audio/cat, sleeping.flac", ("cat", '"big" cat'), "test", 2),
                            Clip("audio/dog.wav", ("dog",), "train", 4),
                            Clip("audio/owl.mp3", ("owl",), "valid", 5)]


# ----------------------------------------------------------------------------- inspection


def inspected_folder(root):
    """Clips of three formats, rates and lengths, a text file named .wav, an empty file, a missing file."""
    write_audio(root / "a/one.wav", seconds=0.5)
    write_audio(root / "a/two.flac", seconds=1.0, rate=22050, channels=2)
    write_audio(root / "b/three.mp3", seconds=0.5, fmt="MP3")
    write_audio(root / "b/four.WAV", seconds=2.0, rate=8000)
    (root / "b/fake.wav").write_text("not audio at all")
    (root / "b/empty.wav").write_bytes(b"")
    write_csv(root, "path,labels,comment",
              "a/one.wav,dog,", "a/two.flac,dog;bark,", "b/three.mp3,cat,", "b/four.WAV,cat,",
              "b/fake.wav,cat,", "b/empty.wav,dog,", "b/gone.wav,dog,", "b/bad.wav,,")


@pytest.mark.parametrize("workers", [1, 2])
def test_inspection_reads_headers_and_lists_every_finding(tmp_path, workers):
    inspected_folder(tmp_path)
    report = inspect_audiofolder(tmp_path, decode=True, workers=workers)
    json.dumps(report)  # the CLI may write it as JSON
    assert report["clips"] == 7 and report["extra_columns"] == ["comment"]
    assert report["problems"] == {"count": 1, "examples": [{"line": 9, "reason": "no labels"}]}
    assert report["labels"] == [["dog", 4], ["cat", 3], ["bark", 1]]
    assert report["task"]["auto"] == "tagging" and "first on line 3" in report["task"]["why"]
    assert report["splits"]["source"] == "seeded at preparation"
    assert report["splits"]["counts"] == {"train": 5, "valid": 1, "test": 1}
    assert report["missing_files"] == {"count": 1, "examples": ["b/gone.wav"]}
    assert report["empty_files"] == {"count": 1, "examples": ["b/empty.wav"]}
    assert report["extensions"] == {".flac": 1, ".mp3": 1, ".wav": 5}
    audio = report["audio"]
    assert audio["opened"] == 4
    assert audio["duration_seconds"]["min"] == pytest.approx(0.5, abs=0.1)
    assert audio["duration_seconds"]["max"] == pytest.approx(2.0, abs=0.01)
    assert audio["longest"] == "b/four.WAV"
    assert audio["sample_rates"] == {"8000": 1, "16000": 2, "22050": 1}
    assert audio["channels"] == {"1": 3, "2": 1}
    assert audio["formats"] == {"FLAC": 1, "MP3": 1, "WAV": 2}
    assert audio["unreadable"]["count"] == 1
    unreadable = audio["unreadable"]["examples"][0]
    assert unreadable["path"] == "b/fake.wav" and "not recognised" in unreadable["reason"].lower()
    text = format_audiofolder_inspection(report)
    for expected in ("b/gone.wav", "b/empty.wav", "b/fake.wav", "line 9: no labels", "duration (s): min",
                     "max 2.0", "MP3 x1", "22050 x1", "task (auto): tagging", "columns ignored: comment"):
        assert expected in text, expected


def test_inspection_without_decoding_reads_no_audio(tmp_path):
    inspected_folder(tmp_path)
    report = inspect_audiofolder(tmp_path, decode=False)
    assert "audio" not in report and report["decoded"] is False
    assert report["missing_files"]["count"] == 1
    assert "not decoded" in format_audiofolder_inspection(report)


def test_inspection_reports_an_unusable_split_and_labels_a_split_lacks(tmp_path):
    write_csv(tmp_path, "path,labels,split", "a.wav,x,train", "b.wav,y,test", "c.wav,x,train")
    report = inspect_audiofolder(tmp_path, decode=False)
    splits = report["splits"]
    assert splits["source"] == "column" and splits["counts"] == {"train": 2, "valid": 0, "test": 1}
    assert "no clip with split 'valid'" in splits["error"]
    assert splits["labels_absent"]["train"] == {"count": 1, "examples": ["y"]}
    assert report["task"] == {"auto": "classification", "why": "every clip has exactly one label"}
    assert report["labels_per_clip"] == {"min": 1, "median": 1, "max": 1}
    text = format_audiofolder_inspection(report)
    assert "no clip with split 'valid'" in text and "labels with no train clip: 1 (y)" in text


def test_reading_labels_imports_neither_torch_nor_soundfile():
    code = ("import sys, audio2image.datasets.audiofolder as a; "
            "print(sorted(m for m in ('torch', 'soundfile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
