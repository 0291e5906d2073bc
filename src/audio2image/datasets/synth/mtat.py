"""The synthetic MagnaTagATune writer: mp3/<0-f>/*.mp3, annotations_final.csv, clip_info_final.csv.

It owns what makes the folder look like the real one: made-up artists, albums, titles and segment
times grouped like the real clips, ids, the per-clip plan (scene and tags, without audio:
`mtat_plan`), the two tab-separated CSV files, and `synth_mtat`, which renders and encodes the clips
(MP3 at 32 kbit/s like the real clips) through the shared writer machinery.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from audio2image.datasets.synth.common import (FORMAT_VERSION, STREAM_AUDIO, STREAM_NAMES, STREAM_SCENE, claim,
                                               completed, finish, rng_for, run_jobs)
from audio2image.datasets.synth.music import render_clip
from audio2image.datasets.synth.scenes import sample_scene, scene_tags
from audio2image.datasets.tags import ALL_TAGS
from audio2image.util import atomic_path, atomic_write_text

FOLDERS = "0123456789abcdef"

_FIRST = ("john", "mary", "hans", "anna", "louis", "claire", "ravi", "mei", "pablo", "ingrid", "omar", "lena",
          "victor", "sofia", "kenji", "aisha", "marco", "elena", "david", "nora")
_LAST = ("williamson", "braun", "christian", "shankar", "dubois", "keller", "moreno", "tanaka", "olsen",
         "heringman", "baker", "rossi", "novak", "fischer", "silva", "lind", "carter", "ivanova")
_BANDS = ("the_strange_loops", "american_baroque", "jade_leary", "electric_frankenstein", "solace", "the_west_exit",
          "seismic_anamoly", "mountain_mirrors", "rapoon", "dac_crowell", "shiva_in_exile", "paul_berget")
_WORDS = ("quiet", "river", "hours", "light", "dances", "suites", "night", "garden", "echoes", "winter", "stone",
          "mirror", "road", "silver", "morning", "fire", "blue", "waves", "dreams", "journey", "ancient", "city",
          "shadow", "golden", "songs", "sky", "desert", "ocean", "forest", "gently", "now", "zen", "lute", "settings")


def _words(rng: np.random.Generator, lo: int, hi: int) -> str:
    return "_".join(_WORDS[i] for i in rng.choice(len(_WORDS), int(rng.integers(lo, hi + 1)), replace=False))


def _artist(rng: np.random.Generator) -> str:
    if rng.random() < 0.4:
        return _BANDS[rng.integers(len(_BANDS))]
    return f"{_FIRST[rng.integers(len(_FIRST))]}_{_LAST[rng.integers(len(_LAST))]}"


def _display(slug: str) -> str:
    return " ".join(w.capitalize() for w in slug.split("_"))


# Real MTAT folders group clips by album; each album has tracks cut into 29 s segments.
_TRACKS_PER_ALBUM, _SEGMENTS_PER_TRACK = 3, 3


def _clip_names(seed: int, i: int) -> dict:
    """Folder, artist, album, track, title and segment of clip i (cycling folders 0-f, grouped by album)."""
    folder = FOLDERS[i % len(FOLDERS)]
    j = i // len(FOLDERS)
    album_no, within = divmod(j, _TRACKS_PER_ALBUM * _SEGMENTS_PER_TRACK)
    track, segment = divmod(within, _SEGMENTS_PER_TRACK)
    album_rng = rng_for(seed, STREAM_NAMES, album_no * len(FOLDERS) + FOLDERS.index(folder))
    # The folder and album number in the album name keep every path unique, whatever the words drawn.
    artist, album = _artist(album_rng), f"{_words(album_rng, 1, 3)}_{folder}{album_no}"
    titles = [_words(album_rng, 1, 3) for _ in range(_TRACKS_PER_ALBUM)]  # a track's segments share its title
    title = titles[track]
    start = 30 + 29 * segment
    return {"folder": folder, "artist": artist, "album": album, "track": track + 1, "title": title,
            "start": start, "end": start + 29}


def mtat_plan(clips: int, seed: int = 0) -> list[dict]:
    """Every clip's id, names, scene and tags, without audio (cheap: use it to check the label model)."""
    plan = []
    for i in range(clips):
        rng = rng_for(seed, STREAM_SCENE, i)
        scene = sample_scene(rng)
        names = _clip_names(seed, i)
        mp3 = (f"{names['folder']}/{names['artist']}-{names['album']}-{names['track']:02d}-{names['title']}"
               f"-{names['start']}-{names['end']}.mp3")
        # Increasing but not contiguous, like the real ids (2, 6, 10, ...).
        clip_id = 2 + 4 * i + int(rng.integers(0, 3))
        plan.append({"index": i, "clip_id": clip_id, "mp3_path": mp3, **names, "scene": scene,
                     "tags": scene_tags(scene, rng)})
    return plan


def count_synth_mtat(*, clips: int, seed: int = 0, split: str = "standard", **_) -> dict:
    """What a store of the synthetic MTAT of these parameters will hold, from its plan alone (no audio made):
    {"splits": {split: clips}, "labels": tags}. The registry's `synth_count`."""
    from audio2image.datasets import mtat

    annotated = [mtat.Clip(c["clip_id"], c["mp3_path"], frozenset(c["tags"])) for c in mtat_plan(clips, seed)]
    parts = mtat.split_clips(annotated, split)
    return {"splits": {name: len(found) for name, found in parts.items()}, "labels": len(mtat.TOP50)}


def _csv_text(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _annotations_text(plan: list[dict]) -> str:
    rows = [["clip_id", *ALL_TAGS, "mp3_path"]]
    for clip in plan:
        tags = set(clip["tags"])
        rows.append([clip["clip_id"], *(int(t in tags) for t in ALL_TAGS), clip["mp3_path"]])
    return _csv_text(rows)


def _clip_info_text(plan: list[dict]) -> str:
    rows = [["clip_id", "track_number", "title", "artist", "album", "url", "segmentStart", "segmentEnd",
             "original_url", "mp3_path"]]
    for c in plan:
        title, artist = _display(c["title"]), _display(c["artist"])
        url = f"http://www.magnatune.com/artists/albums/{c['artist'].replace('_', '')}-{c['album'].replace('_', '')}/"
        original = f"http://he3.magnatune.com/all/{c['track']:02d}--{title}--{artist}.mp3".replace(" ", "%20")
        rows.append([c["clip_id"], c["track"], title, artist, _display(c["album"]), url, c["start"], c["end"],
                     original, c["mp3_path"]])
    return _csv_text(rows)


def _write_clip(job: dict) -> str:
    """Render and encode one clip (a process-pool task); skip it when an earlier run already wrote it."""
    import soundfile

    path = Path(job["path"])
    if not path.exists():
        rng = rng_for(job["seed"], STREAM_AUDIO, job["index"])
        audio = render_clip(job["scene"], job["seconds"], job["sample_rate"], rng)
        with atomic_path(path) as tmp:
            # Constant 32 kbit/s, as the real clips (compression level 0.85 maps to 32 kbit/s at 16 kHz).
            soundfile.write(tmp, audio, job["sample_rate"], format="MP3", compression_level=0.85,
                            bitrate_mode="CONSTANT")
    return job["path"]


def synth_mtat(out: Path, clips: int, seed: int = 0, seconds: float = 29.1, sample_rate: int = 16000,
               workers: int = 1, progress: bool = True) -> dict:
    """Write a synthetic MagnaTagATune to `out`: mp3/<0-f>/*.mp3, annotations_final.csv, clip_info_final.csv.

    Example: ``synth_mtat(Path("data/mtat-synth"), clips=300, seconds=10, workers=2)``. With workers > 1 it
    starts worker processes (forkserver), so a calling script needs the ``if __name__ == "__main__":`` guard.
    Returns {"root", "clips", "seconds", "sample_rate", "seed", "tags"} (tags: how many clips carry each).
    """
    out = Path(out)
    params = {"kind": "mtat", "version": FORMAT_VERSION, "clips": int(clips), "seed": int(seed),
              "seconds": float(seconds), "sample_rate": int(sample_rate)}
    done = completed(out, params)
    if done is not None:
        return done
    if clips < 1 or seconds <= 0:
        raise ValueError(f"synth_mtat needs clips >= 1 and seconds > 0, got clips={clips}, seconds={seconds}")
    claim(out, params, "mp3")
    plan = mtat_plan(clips, seed)
    jobs = [{"path": str(out / "mp3" / c["mp3_path"]), "scene": c["scene"], "index": c["index"], "seed": seed,
             "seconds": seconds, "sample_rate": sample_rate} for c in plan]
    for folder in {Path(job["path"]).parent for job in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    run_jobs(_write_clip, jobs, workers, progress, "synth mtat")
    atomic_write_text(out / "annotations_final.csv", _annotations_text(plan))
    atomic_write_text(out / "clip_info_final.csv", _clip_info_text(plan))
    counts = {tag: sum(tag in c["tags"] for c in plan) for tag in ALL_TAGS}
    summary = {"root": str(out), "clips": clips, "seconds": seconds, "sample_rate": sample_rate, "seed": seed,
               "tags": {tag: k for tag, k in sorted(counts.items(), key=lambda kv: -kv[1]) if k}}
    return finish(out, params, summary)
