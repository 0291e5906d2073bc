"""MTAT metadata: annotations read by column name, bad rows skipped with line numbers, splits, inspection.

The last tests rebuild `annotations_final.csv` from the real clip list in shared/data (skipped
where it is absent) and check the split counts and tag frequencies against the published ones.
"""
from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from audio2image.datasets import mtat
from audio2image.datasets.mtat import (
    BAD_CLIPS,
    AnnotationError,
    Clip,
    compare_with_canonical,
    format_mtat_inspection,
    inspect_mtat,
    label_matrix,
    read_annotations,
    split_clips,
    tag_ranking,
)
from audio2image.datasets.tags import ALL_TAGS, ALL_TAGS_WITH_COUNTS, TOP50

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared/data/mtat-clips.json.gz"


def write_annotations(path: Path, columns: list[str], rows: list[list], quoted: bool = True) -> Path:
    """Write a tab-separated annotation file; every field quoted like the real file, or none."""
    quote = (lambda v: f'"{v}"') if quoted else str
    lines = ["\t".join(quote(c) for c in columns)]
    lines += ["\t".join(quote(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def rows_for(columns: list[str], clips: list[tuple[int, str, set[str]]]) -> list[list]:
    """Rows in `columns` order for (clip_id, mp3_path, tags) triples."""
    rows = []
    for clip_id, mp3_path, tags in clips:
        values = {"clip_id": clip_id, "mp3_path": mp3_path}
        rows.append([values.get(c, int(c in tags)) for c in columns])
    return rows


SMALL = [
    (2, "f/a-b-01-x-30-59.mp3", {"classical", "strings"}),
    (6, "0/c-d-02-y-0-29.mp3", {"rock", "no singing"}),
    (10, "c/e-f-03-z-0-29.mp3", set()),
    (14, "d/g-h-04-w-0-29.mp3", {"guitar", "jazz"}),
]


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("quoted", [True, False])
def test_columns_are_mapped_by_name(tmp_path, quoted):
    tags = ["guitar", "classical", "strings", "rock", "jazz", "no singing"]
    columns = ["clip_id", *tags, "mp3_path"]
    shuffled = ["mp3_path", *random.Random(0).sample(tags, len(tags)), "clip_id"]
    a = read_annotations(write_annotations(tmp_path / "a.csv", columns, rows_for(columns, SMALL), quoted))
    b = read_annotations(write_annotations(tmp_path / "b.csv", shuffled, rows_for(shuffled, SMALL), quoted))
    expected = [Clip(cid, path, frozenset(t)) for cid, path, t in SMALL]
    assert a.clips == expected and b.clips == expected
    assert a.problems == [] and b.problems == []
    assert b.tag_names == shuffled[1:-1]
    np.testing.assert_array_equal(label_matrix(a.clips, tags), label_matrix(b.clips, tags))
    assert label_matrix(a.clips, ["strings", "guitar"]).tolist() == [[1, 0], [0, 0], [0, 0], [0, 1]]


def test_whitespace_variants_of_a_tag_name_are_the_same_tag(tmp_path):
    # A header spelling with extra spaces ("no   singing") must land on the ALL_TAGS name.
    assert "no singing" in ALL_TAGS
    columns = ["clip_id", "no   singing", "mp3_path"]
    annotations = read_annotations(write_annotations(tmp_path / "a.csv", columns, [[1, 1, "0/x.mp3"]]))
    assert annotations.tag_names == ["no   singing"]
    assert annotations.clips[0].tags == {"no singing"}
    assert label_matrix(annotations.clips, ["no singing"]).tolist() == [[1]]


def test_malformed_rows_are_skipped_with_line_numbers(tmp_path):
    columns = ["clip_id", "guitar", "rock", "mp3_path"]
    rows = [
        [1, 1, 0, "0/a.mp3"],  # line 2: fine
        [2, 1, "0/b.mp3"],  # line 3: a field short
        ["x7", 0, 1, "0/c.mp3"],  # line 4: clip_id not an integer
        [4, 2, 0, "0/d.mp3"],  # line 5: value 2
        [5, 0, 1, ""],  # line 6: empty mp3_path
        [6, 0, 1, "1/f.mp3"],  # line 7: fine
        [1, 0, 0, "1/g.mp3"],  # line 8: repeated clip_id
        [8, 1, 1, "2/h.mp3", "extra"],  # line 9: a field too many
    ]
    annotations = read_annotations(write_annotations(tmp_path / "a.csv", columns, rows))
    assert [c.clip_id for c in annotations.clips] == [1, 6]
    assert annotations.clips[1] == Clip(6, "1/f.mp3", frozenset({"rock"}))
    assert [p["line"] for p in annotations.problems] == [3, 4, 5, 6, 8, 9]
    reasons = [p["reason"] for p in annotations.problems]
    assert "expected 4 fields, found 3" in reasons[0]
    assert "'x7' is not an integer" in reasons[1]
    assert "'guitar' has value '2'" in reasons[2]
    assert "mp3_path is empty" in reasons[3]
    assert "more than once" in reasons[4]
    assert "found 5" in reasons[5]


@pytest.mark.parametrize("columns, message", [
    (["id", "guitar", "mp3_path"], "no 'clip_id' column"),
    (["clip_id", "guitar", "path"], "no 'mp3_path' column"),
    (["clip_id", "guitar", "guitar", "mp3_path"], "repeats column"),
])
def test_unusable_header_is_one_clear_error(tmp_path, columns, message):
    path = write_annotations(tmp_path / "a.csv", columns, [])
    with pytest.raises(AnnotationError, match=message) as info:
        read_annotations(path)
    assert str(path) in str(info.value) and "line 1" in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_file_is_an_annotation_error(tmp_path):
    (tmp_path / "a.csv").write_text("")
    with pytest.raises(AnnotationError, match="empty"):
        read_annotations(tmp_path / "a.csv")


# ----------------------------------------------------------------------------- splits and tags


def hand_made_clips() -> list[Clip]:
    """Two clips per folder 0-f, the first tagged with a top-50 tag, the second only with 'jazz'."""
    clips = []
    for k, folder in enumerate("0123456789abcdef"):
        clips.append(Clip(100 + 2 * k, f"{folder}/t{k}.mp3", frozenset({"guitar"})))
        clips.append(Clip(101 + 2 * k, f"{folder}/u{k}.mp3", frozenset({"jazz"})))
    bad_id, bad_path = next(iter(BAD_CLIPS.items()))
    clips.append(Clip(bad_id, bad_path, frozenset({"guitar"})))
    return clips


def folders(clips: list[Clip]) -> str:
    return "".join(sorted({c.folder for c in clips}))


def test_split_protocols_by_folder():
    clips = hand_made_clips()
    standard, full, original = (split_clips(clips, p) for p in ("standard", "full", "original"))
    assert {k: folders(v) for k, v in full.items()} == {"train": "0123456789ab", "valid": "c", "test": "def"}
    assert {k: folders(v) for k, v in original.items()} == {"train": "0123456789ab", "valid": "cd", "test": "ef"}
    assert {k: len(v) for k, v in full.items()} == {"train": 24, "valid": 2, "test": 6}
    assert {k: len(v) for k, v in original.items()} == {"train": 24, "valid": 4, "test": 4}
    # standard keeps the folders of full but only clips with a top-50 tag
    assert {k: len(v) for k, v in standard.items()} == {"train": 12, "valid": 1, "test": 3}
    assert all(c.tags == {"guitar"} for split in standard.values() for c in split)
    # annotation order is kept
    assert [c.clip_id for c in full["train"]] == sorted(c.clip_id for c in full["train"])


def test_bad_clips_are_dropped_by_every_protocol():
    clips = hand_made_clips() + [Clip(cid, path, frozenset({"rock"})) for cid, path in BAD_CLIPS.items()]
    for protocol in mtat.SPLIT_PROTOCOLS:
        kept = {c.clip_id for split in split_clips(clips, protocol).values() for c in split}
        assert not kept & set(BAD_CLIPS)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="standard, full, original"):
        split_clips(hand_made_clips(), "random")


def test_tag_ranking_and_comparison_with_canonical():
    clips = [Clip(i, "0/x.mp3", frozenset({"guitar", "rock"} if i < 3 else {"jazz"})) for i in range(5)]
    assert tag_ranking(clips) == [("guitar", 3), ("rock", 3), ("jazz", 2)]
    canonical = [(tag, 1000 - i) for i, tag in enumerate(TOP50)]
    assert compare_with_canonical(canonical) == {"k": 50, "missing": [], "extra": [], "boundary_tie": False}
    # swap the 50th canonical tag for "jazz": one missing, one extra
    changed = canonical[:49] + [("jazz", 5), ("choral", 5)]
    diff = compare_with_canonical(changed)
    assert diff["missing"] == ["choral"] and diff["extra"] == ["jazz"] and diff["boundary_tie"]


# ----------------------------------------------------------------------------- inspection


def test_inspect_reports_missing_and_empty_files(tmp_path):
    columns = ["clip_id", "guitar", "jazz", "mp3_path"]
    clips = [(1, "0/a.mp3", {"guitar"}), (2, "c/b.mp3", {"guitar"}), (3, "d/c.mp3", {"jazz"}),
             (4, "f/d.mp3", {"guitar"})]
    rows = rows_for(columns, clips) + [["oops", 0, 0, "f/e.mp3"]]
    write_annotations(tmp_path / "annotations_final.csv", columns, rows)
    (tmp_path / "mp3/0").mkdir(parents=True)
    (tmp_path / "mp3/0/a.mp3").write_bytes(b"ID3 not really audio")
    (tmp_path / "mp3/c").mkdir()
    (tmp_path / "mp3/c/b.mp3").write_bytes(b"")
    report = inspect_mtat(tmp_path)
    assert report["clips"] == 4 and report["clip_info_present"] is False
    assert report["missing_files"] == {"count": 2, "examples": ["d/c.mp3", "f/d.mp3"]}
    assert report["empty_files"] == {"count": 1, "examples": ["c/b.mp3"]}
    assert report["problems"]["count"] == 1 and report["problems"]["examples"][0]["line"] == 6
    assert report["splits"]["full"] == {"train": 1, "valid": 1, "test": 2}
    assert report["splits"]["standard"] == {"train": 1, "valid": 1, "test": 1}
    assert report["splits"]["original"] == {"train": 1, "valid": 2, "test": 1}
    assert report["top50_canonical"] == list(TOP50)
    assert report["top50_given"] == [["guitar", 3], ["jazz", 1]]
    assert "jazz" in report["top50_difference"]["extra"]
    json.dumps(report)  # the CLI may write it as JSON
    text = format_mtat_inspection(report)
    assert "missing mp3 files: 2" in text and "c/b.mp3" in text and "line 6" in text


def test_inspect_without_data_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio2image download mtat") as info:
        inspect_mtat(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    with pytest.raises(FileNotFoundError, match="annotations_final.csv"):
        inspect_mtat(tmp_path)


# ----------------------------------------------------------------------------- the real metadata


@pytest.fixture(scope="module")
def real_annotations(tmp_path_factory):
    """annotations_final.csv rebuilt in the real format from shared/data/mtat-clips.json.gz."""
    if not REAL_CLIPS.exists():
        pytest.skip(f"{REAL_CLIPS} is absent")
    entries = json.loads(gzip.decompress(REAL_CLIPS.read_bytes()))
    # The JSON lists all 31,382 clips of clip_info; the 5,519 without annotations have y_all None.
    annotated = sorted((e for e in entries.values() if e["y_all"] is not None),
                       key=lambda e: int(e["extra"]["clip_id"]))
    assert len(annotated) == 25_863
    present = {int(e["extra"]["clip_id"]) for e in annotated}
    bad_rows = [{"extra": {"clip_id": str(cid), "mp3_path": p}, "split": None, "y": [], "y_all": []}
                for cid, p in BAD_CLIPS.items() if cid not in present]
    annotated += bad_rows  # not needed with this JSON (it lists them), kept for other copies
    columns = ["clip_id", *ALL_TAGS, "mp3_path"]
    lines = ["\t".join(f'"{c}"' for c in columns)]
    for entry in annotated:
        tags = {mtat.canonical_tag(t) for t in entry["y_all"]}
        assert tags <= set(ALL_TAGS)
        bits = [f'"{int(t in tags)}"' for t in ALL_TAGS]
        lines.append("\t".join([f'"{entry["extra"]["clip_id"]}"', *bits, f'"{entry["extra"]["mp3_path"]}"']))
    path = tmp_path_factory.mktemp("mtat") / "annotations_final.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, annotated


def test_real_annotations_read_fast_and_completely(real_annotations):
    path, annotated = real_annotations
    start = time.perf_counter()
    annotations = read_annotations(path)
    seconds = time.perf_counter() - start
    assert seconds < 2.0, f"reading 25,863 rows took {seconds:.2f} s"
    assert len(annotations.clips) == 25_863 and annotations.problems == []
    assert len(annotations.tag_names) == 188
    assert {c.clip_id for c in annotations.clips} >= set(BAD_CLIPS)


def test_real_split_counts(real_annotations):
    path, annotated = real_annotations
    clips = read_annotations(path).clips
    counts = {p: tuple(len(split_clips(clips, p)[s]) for s in ("train", "valid", "test"))
              for p in mtat.SPLIT_PROTOCOLS}
    assert counts == {
        "standard": (15_247, 1_529, 4_332),
        "full": (18_706, 1_825, 5_329),
        "original": (18_706, 3_502, 3_652),
    }
    # clip by clip, "full" agrees with the split recorded in the real metadata (None = the bad clips)
    recorded = {int(e["extra"]["clip_id"]): e["split"] for e in annotated}
    ours = {c.clip_id: name for name, split in split_clips(clips, "full").items() for c in split}
    assert ours == {cid: s for cid, s in recorded.items() if s is not None}
    assert {cid for cid, s in recorded.items() if s is None} == set(BAD_CLIPS)
    # the standard protocol's labels match the metadata's top-50 tags, by name
    standard = split_clips(clips, "standard")["test"]
    y = {int(e["extra"]["clip_id"]): set(e["y"]) for e in annotated}
    labels = label_matrix(standard, TOP50)
    assert all({TOP50[j] for j in np.flatnonzero(row)} == y[c.clip_id] for c, row in zip(standard, labels))


def test_real_tag_frequencies_give_the_canonical_top50(real_annotations):
    path, _ = real_annotations
    ranking = tag_ranking(read_annotations(path).clips)
    assert dict(ranking) == dict(ALL_TAGS_WITH_COUNTS)  # every count in tags.py, all 188 tags
    assert compare_with_canonical(ranking) == {"k": 50, "missing": [], "extra": [], "boundary_tie": False}
