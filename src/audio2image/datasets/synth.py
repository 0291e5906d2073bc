"""Synthetic MagnaTagATune and Caltech-256, written in the real on-disk formats.

The same readers, preparers and training code then serve synthetic and real data, and tests and CPU
smoke runs need no download.

MTAT: each clip is drawn from a small generative model of music: a genre picks instruments, a drum
pattern, a voice, a tempo and a level (plus a rare "weird" effect). Every latent choice is rendered
so that it is audible on a log-mel spectrogram (timbre, register, decay, vibrato, formants, rhythm,
loudness). Tags are drawn from the latents with an annotator's recall below one, like the real,
noisy labels; synonyms (vocal/vocals/singing) share a cue. Sound is additive synthesis from one
band-limited wavetable per note, vectorised numpy; libsndfile encodes MP3 at 32 kbit/s like the
real clips.

Caltech-256: each class is a distinct (shape, palette, texture) combination; every image draws it
at a random position, scale and rotation over a noisy background with distractor blobs.

Both writers are idempotent and resumable: `.synth.partial` claims the folder when writing starts,
every file is written atomically, and `.synth.json` (the parameters) is written last.
Randomness comes from one generator per clip or image, seeded by (seed, stream, index): the
content does not depend on `workers`, and a smaller dataset is a prefix of a larger one.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from audio2image.datasets.tags import ALL_TAGS, TOP50
from audio2image.util import atomic_path, atomic_write_text, progress as progress_bar, write_json

MARKER = ".synth.json"  # written last: the folder holds a complete dataset made with these parameters
PARTIAL = ".synth.partial"  # written first: the folder is ours to overwrite (and resume, if parameters match)
FORMAT_VERSION = 1  # bump when the content changes, so existing synthetic folders are rewritten
FOLDERS = "0123456789abcdef"
_STREAM_SCENE, _STREAM_AUDIO, _STREAM_NAMES, _STREAM_IMAGE = 1, 2, 3, 4


# ============================================================================= shared machinery


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _completed(out: Path, params: dict) -> dict | None:
    """The summary of a complete dataset in `out` made with `params`, else None."""
    marker = _read_json(out / MARKER)
    return marker["summary"] if isinstance(marker, dict) and marker.get("params") == params else None


def _claim(out: Path, params: dict, subtree: str) -> None:
    """Make `out` ours to (re)write, keeping the files of an interrupted run with the same parameters.

    A folder holding `subtree` that synth did not make (no marker) is refused, so real data is never
    deleted. The order of steps keeps a claim file present at every moment, so a kill anywhere leaves
    a folder that the next call recognises as its own.
    """
    out.mkdir(parents=True, exist_ok=True)
    owned = (out / MARKER).exists() or (out / PARTIAL).exists()
    if not owned and (out / subtree).exists():
        raise FileExistsError(f"{out / subtree} exists and was not made by synth (no {MARKER}); "
                              "refusing to overwrite it")
    if not (out / PARTIAL).exists():
        write_json(out / PARTIAL, {})
    (out / MARKER).unlink(missing_ok=True)
    if _read_json(out / PARTIAL) != params:  # other parameters (or none yet): start clean
        shutil.rmtree(out / subtree, ignore_errors=True)
        write_json(out / PARTIAL, params)


def _finish(out: Path, params: dict, summary: dict) -> dict:
    write_json(out / MARKER, {"params": params, "summary": summary})
    (out / PARTIAL).unlink(missing_ok=True)
    return summary


def _run_jobs(task, jobs: list, workers: int, show: bool, desc: str) -> list:
    """task(job) for every job, in order; in a process pool when workers > 1."""
    bar = progress_bar(total=len(jobs), enabled=show, desc=desc, unit="file")
    results = []
    try:
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                results.append(task(job))
                bar.update()
        else:
            # Not fork: the caller may hold torch/OpenMP threads, which a forked child can deadlock on.
            with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
                for result in pool.map(task, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _pick(rng: np.random.Generator, weights: dict):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), p=p / p.sum())]


# ============================================================================= MTAT: the generative model


@dataclass(frozen=True)
class Genre:
    weight: float
    always: tuple[str, ...]  # instruments every clip of the genre has
    pool: dict  # instruments drawn from without replacement, {instrument: weight} ...
    pool_counts: dict  # ... how many: {count: probability}
    drums: dict  # drum pattern: {pattern or "none": probability}
    voice: dict  # voice style: {style or "none": probability}
    tempo: tuple[float, float, float]  # P(slow, mid, fast)
    level: tuple[float, float, float, float]  # P(quiet, soft, mid, loud)
    reverb: float = 0.0  # reverberation time (s) of the room it is recorded in; 0: dry studio sound


# Weights are chosen so that every top-50 tag lands on roughly 6-35% of clips (test_label_model_frequencies).
GENRES: dict[str, Genre] = {
    "classical": Genre(
        .22, always=(), pool={"strings": 1, "violin": 1, "cello": 1.3, "piano": 1, "harpsichord": 1.4, "flute": .9,
                              "harp": .8},
        pool_counts={1: .35, 2: .35, 3: .30}, drums={"none": 1},
        voice={"none": .45, "opera_female": .2, "opera_male": .12, "choir": .23},
        tempo=(.45, .30, .25), level=(.30, .25, .35, .10), reverb=1.8),
    "rock": Genre(
        .11, always=("rock_guitar",), pool={"piano": 1, "synth": 1}, pool_counts={0: .75, 1: .25}, drums={"rock": 1},
        voice={"none": .3, "male_sung": .4, "female_sung": .15, "male_spoken": .15},
        tempo=(.15, .45, .40), level=(.02, .03, .45, .50)),
    "metal": Genre(
        .06, always=("metal_guitar",), pool={}, pool_counts={0: 1}, drums={"metal": 1},
        voice={"none": .35, "male_sung": .5, "male_spoken": .15},
        tempo=(.05, .25, .70), level=(0, 0, .2, .8)),
    "techno": Genre(
        .11, always=("synth",), pool={"pad": 1}, pool_counts={0: .6, 1: .4}, drums={"techno": 1},
        voice={"none": .45, "female_sung": .15, "female_spoken": .25, "male_spoken": .15},
        tempo=(.05, .45, .50), level=(.02, .05, .50, .43)),
    "ambient": Genre(
        .09, always=("pad",), pool={"piano": 1, "flute": 1, "harp": 1, "cello": 1}, pool_counts={0: .5, 1: .5},
        drums={"none": .9, "techno": .1}, voice={"none": .6, "female_spoken": .2, "choir": .2},
        tempo=(.85, .15, 0), level=(.45, .35, .20, 0), reverb=3.0),
    "new_age": Genre(
        .06, always=(), pool={"pad": 1, "harp": 1, "flute": 1, "piano": 1}, pool_counts={1: .4, 2: .6},
        drums={"none": 1}, voice={"none": .6, "female_sung": .15, "female_spoken": .1, "choir": .15},
        tempo=(.70, .30, 0), level=(.35, .45, .20, 0), reverb=2.5),
    "indian": Genre(
        .09, always=("sitar", "drone"), pool={"flute": 1}, pool_counts={0: .8, 1: .2},
        drums={"none": .4, "tabla": .6}, voice={"none": .45, "female_sung": .3, "male_sung": .25},
        tempo=(.40, .30, .30), level=(.10, .15, .60, .15)),
    "pop": Genre(
        .11, always=(), pool={"piano": 1, "acoustic_guitar": 1, "synth": 1}, pool_counts={1: .6, 2: .4},
        drums={"rock": .5, "techno": .4, "none": .1},
        voice={"none": .1, "female_sung": .45, "male_sung": .25, "female_spoken": .1, "male_spoken": .1},
        tempo=(.20, .50, .30), level=(.05, .10, .60, .25)),
    "country": Genre(
        .07, always=("acoustic_guitar",), pool={"violin": 1}, pool_counts={0: .5, 1: .5},
        drums={"rock": .6, "none": .4}, voice={"none": .2, "male_sung": .45, "female_sung": .25, "male_spoken": .1},
        tempo=(.20, .50, .30), level=(.05, .10, .70, .15)),
}
WEIRD_RATE = 0.09

# fact -> {tag: probability an annotator gives it}. Facts: "genre:G", "inst:I", "drums:D", "voice:V",
# "tempo:T", "level:L", "weird", "solo". Rare non-top-50 tags make the synthetic frequency ranking differ
# from the canonical list, as a copy of the real data's labels would.
TAG_RULES: dict[str, dict[str, float]] = {
    "genre:classical": {"classical": .9, "classic": .55, "baroque": .05},
    "genre:rock": {"rock": .9, "hard rock": .05},
    "genre:metal": {"metal": .9, "rock": .5, "heavy metal": .1},
    "genre:techno": {"techno": .9, "electronic": .75, "dance": .5, "electro": .1},
    "genre:ambient": {"ambient": .9, "electronic": .4, "new age": .25, "spacey": .05},
    "genre:new_age": {"new age": .9, "ambient": .4},
    "genre:indian": {"indian": .9, "eastern": .1},
    "genre:pop": {"pop": .9},
    "genre:country": {"country": .9, "folk": .05},
    "inst:rock_guitar": {"guitar": .9, "electric guitar": .08},
    "inst:metal_guitar": {"guitar": .8},
    "inst:acoustic_guitar": {"guitar": .9, "acoustic": .05},
    "inst:piano": {"piano": .9},
    "inst:harpsichord": {"harpsichord": .9, "harpsicord": .15},
    "inst:harp": {"harp": .9},
    "inst:sitar": {"sitar": .9},
    "inst:drone": {},
    "inst:strings": {"strings": .9, "string": .05},
    "inst:violin": {"violin": .9, "strings": .35, "violins": .05},
    "inst:cello": {"cello": .9, "strings": .35},
    "inst:flute": {"flute": .9},
    "inst:synth": {"synth": .9},
    "inst:pad": {"synth": .5, "electronic": .3},
    "drums:rock": {"drums": .85, "beat": .6, "drum": .08},
    "drums:metal": {"drums": .85, "beat": .4},
    "drums:techno": {"beat": .85, "beats": .7, "dance": .35, "drums": .3},
    "drums:tabla": {"drums": .3, "percussion": .1},
    "voice:male_sung": {"male": .75, "male vocal": .7, "man": .4, "vocal": .6, "singing": .6, "vocals": .25,
                        "male vocals": .1},
    "voice:female_sung": {"female": .75, "female vocal": .65, "woman": .55, "vocals": .6, "singing": .6,
                          "vocal": .3, "female vocals": .1},
    "voice:male_spoken": {"male voice": .9, "voice": .7, "man": .55, "male": .4, "talking": .1},
    "voice:female_spoken": {"female voice": .9, "voice": .7, "woman": .5, "female": .4},
    "voice:opera_female": {"opera": .9, "female": .6, "woman": .35, "singing": .5, "vocal": .4, "female opera": .1},
    "voice:opera_male": {"opera": .9, "male": .6, "man": .35, "singing": .4, "vocal": .4, "male opera": .1},
    "voice:choir": {"choir": .9, "choral": .8, "vocal": .3, "singing": .3, "voices": .1},
    "voice:none": {"no vocals": .6, "no vocal": .55, "no voice": .45, "instrumental": .05},
    "drums:none": {}, "tempo:mid": {}, "level:mid": {},
    "tempo:slow": {"slow": .9}, "tempo:fast": {"fast": .9},
    "level:loud": {"loud": .9}, "level:quiet": {"quiet": .9}, "level:soft": {"soft": .85},
    "weird": {"weird": .85, "strange": .1},
    "solo": {"solo": .9},
}
assert all(tag in ALL_TAGS for rule in TAG_RULES.values() for tag in rule), "TAG_RULES names a tag not in ALL_TAGS"


def sample_scene(rng: np.random.Generator) -> dict:
    """The latent musical content of one clip (plain values, so it pickles and prints)."""
    name = _pick(rng, {g: spec.weight for g, spec in GENRES.items()})
    genre = GENRES[name]
    count = _pick(rng, genre.pool_counts)
    pool, weights = list(genre.pool), np.array(list(genre.pool.values()), dtype=float)
    extra = [pool[i] for i in rng.choice(len(pool), count, replace=False, p=weights / weights.sum())] if count else []
    return {"genre": name, "instruments": list(genre.always) + extra,
            "drums": _pick(rng, genre.drums), "voice": _pick(rng, genre.voice),
            "tempo": _pick(rng, dict(zip(("slow", "mid", "fast"), genre.tempo))),
            "level": _pick(rng, dict(zip(("quiet", "soft", "mid", "loud"), genre.level))),
            "weird": bool(rng.random() < WEIRD_RATE)}


def scene_facts(scene: dict) -> list[str]:
    melodic = [i for i in scene["instruments"] if i != "drone"]
    facts = [f"genre:{scene['genre']}", f"drums:{scene['drums']}", f"voice:{scene['voice']}",
             f"tempo:{scene['tempo']}", f"level:{scene['level']}"] + [f"inst:{i}" for i in scene["instruments"]]
    if scene["weird"]:
        facts.append("weird")
    if len(melodic) == 1 and scene["drums"] == "none" and scene["voice"] == "none":
        facts.append("solo")
    return facts


def scene_tags(scene: dict, rng: np.random.Generator) -> list[str]:
    """Tags an annotator gives the scene; always at least one top-50 tag (like the benchmark's clips)."""
    tags, top = set(), set(TOP50)
    for fact in scene_facts(scene):
        for tag, p in TAG_RULES[fact].items():
            if rng.random() < p:
                tags.add(tag)
    if not tags & top:  # fall back on the genre's surest top-50 tag
        rule = TAG_RULES[f"genre:{scene['genre']}"]
        tags.add(max((t for t in rule if t in top), key=rule.get))
    return sorted(tags, key=ALL_TAGS.index)


# ============================================================================= MTAT: names and metadata

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
    album_rng = _rng(seed, _STREAM_NAMES, album_no * len(FOLDERS) + FOLDERS.index(folder))
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
        rng = _rng(seed, _STREAM_SCENE, i)
        scene = sample_scene(rng)
        names = _clip_names(seed, i)
        mp3 = (f"{names['folder']}/{names['artist']}-{names['album']}-{names['track']:02d}-{names['title']}"
               f"-{names['start']}-{names['end']}.mp3")
        # Increasing but not contiguous, like the real ids (2, 6, 10, ...).
        clip_id = 2 + 4 * i + int(rng.integers(0, 3))
        plan.append({"index": i, "clip_id": clip_id, "mp3_path": mp3, **names, "scene": scene,
                     "tags": scene_tags(scene, rng)})
    return plan


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


# ============================================================================= MTAT: sound


@dataclass(frozen=True)
class Instrument:
    register: tuple[int, int]  # MIDI range of the main line
    beats: float  # note length in beats (ignored when `seconds_per_note` is set)
    spectrum: dict  # keyword arguments of harmonic_amplitudes()
    envelope: tuple[float, float, float]  # attack s, decay time constant s, sustain level
    chord: tuple[int, ...] = (0,)  # one line per entry, offset in scale steps from the main line
    motion: str = "walk"  # walk: stepwise melody; arpeggio: broken chords; hold: repeated root
    vibrato: tuple[float, float] = (0.0, 0.0)  # rate Hz, relative depth
    glide: float = 0.0  # seconds of portamento into each note (sitar meend, speech contour)
    detune: float = 0.0  # relative spread between chord lines: ensemble beating
    drive: float = 0.0  # tanh distortion (electric guitars)
    breath: float = 0.0  # noise relative to the tone (flute)
    formants: float = 0.0  # 0: none; else vowel formants scaled by this (1 male, 1.17 female)
    legato: float = 1.0  # sounding fraction of the time to the next note
    rests: float = 0.0  # probability that a note is silent (phrasing)
    seconds_per_note: float = 0.0  # fixed syllable rate (speech), independent of tempo
    fricatives: float = 0.0  # level of hiss bursts (s, sh, f) starting half the syllables (speech)
    gain: float = 0.6


# Timbre lives in the harmonic spectrum (tilt, odd-only, pluck position, resonances) and the envelope
# (plucked/struck decay vs bowed sustain); register and vibrato separate the bowed strings.
INSTRUMENTS: dict[str, Instrument] = {
    "acoustic_guitar": Instrument((45, 69), .5, dict(tilt=1.0, position=.18, cutoff=4000), (.002, .5, 0), (0, 2, 4)),
    "rock_guitar": Instrument((40, 57), .5, dict(tilt=1.0, position=.2), (.005, 1.5, .4), (0, 4), drive=5),
    "metal_guitar": Instrument((28, 43), .25, dict(tilt=.9), (.003, .12, .15), (0, 4), drive=14),
    "piano": Instrument((48, 84), 1, dict(tilt=1.5, position=.12, cutoff=3000), (.002, 1.0, 0), (0, -7)),
    "harpsichord": Instrument((53, 79), .25, dict(tilt=.5, position=.1), (.001, .3, 0), motion="arpeggio"),
    "harp": Instrument((48, 84), .25, dict(tilt=2.5), (.003, .8, 0), motion="arpeggio"),
    "sitar": Instrument((55, 76), .5, dict(tilt=.8, boost=(2200, 900, 6)), (.002, .9, .05), glide=.08),
    "drone": Instrument((43, 50), 4, dict(tilt=1.0, boost=(1500, 800, 4)), (.05, 3.0, .3), (0, 4), motion="hold",
                        gain=.4),
    "strings": Instrument((55, 79), 2, dict(tilt=1.0, cutoff=3500), (.25, 1, 1), (0, 2, 4), vibrato=(5, .003),
                          detune=.004),
    "violin": Instrument((64, 91), 1, dict(tilt=.9, boost=(3000, 1200, 2), cutoff=6000), (.06, 1, 1),
                         vibrato=(5.5, .006)),
    "cello": Instrument((36, 60), 1, dict(tilt=1.0, boost=(600, 300, 2)), (.08, 1, 1), vibrato=(5, .005)),
    "flute": Instrument((72, 93), 1, dict(tilt=3.0), (.05, 1, 1), vibrato=(5, .004), breath=.12),
    "synth": Instrument((48, 72), .25, dict(tilt=1.0, odd=True), (.003, .12, .5), motion="arpeggio"),
    "pad": Instrument((48, 72), 4, dict(tilt=1.0, cutoff=1200), (1.2, 1, 1), (0, 2, 4), detune=.006, gain=.5),
}

# Voices: a pulse train through vowel formants; sung (held notes, vibrato) or spoken (gliding contour,
# syllables); male low f0, female high; opera with a wide vibrato; a choir of four parts.
# Sung voices carry the "singer's formant" (a resonance near 3 kHz that lets a voice cut through a band).
_SUNG = dict(tilt=1.0, boost=(2900, 450, 5))
VOICES: dict[str, Instrument] = {
    "male_sung": Instrument((45, 60), 1, _SUNG, (.04, 1, 1), vibrato=(5.5, .012), formants=1.0, legato=.9, rests=.2,
                            gain=1.5),
    "female_sung": Instrument((60, 77), 1, _SUNG, (.04, 1, 1), vibrato=(5.5, .012), formants=1.17, legato=.9,
                              rests=.2, gain=1.5),
    "male_spoken": Instrument((43, 50), 1, dict(tilt=1.0), (.02, .15, .2), glide=.22, formants=1.0, legato=.8,
                              rests=.25, seconds_per_note=.22, fricatives=2.0, gain=1.5),
    "female_spoken": Instrument((53, 60), 1, dict(tilt=1.0), (.02, .15, .2), glide=.22, formants=1.17, legato=.8,
                                rests=.25, seconds_per_note=.22, fricatives=2.0, gain=1.5),
    "opera_male": Instrument((48, 65), 2, dict(_SUNG, tilt=.8), (.08, 1, 1), vibrato=(6, .03), formants=1.0,
                             legato=.95, rests=.1, gain=1.5),
    "opera_female": Instrument((67, 84), 2, dict(_SUNG, tilt=.8), (.08, 1, 1), vibrato=(6, .03), formants=1.17,
                               legato=.95, rests=.1, gain=1.5),
    "choir": Instrument((67, 76), 2, _SUNG, (.3, 1, 1), (0, -2, -4, -11), vibrato=(5, .006), detune=.004,
                        formants=1.1, legato=.95, gain=1.5),
}

# F1, F2, F3 (Hz) of a male voice; a female voice scales them up.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
                  dtype=np.float32)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "raga": (0, 1, 4, 5, 7, 8, 11)}
TEMPO_BPM = {"slow": (50, 68), "mid": (92, 118), "fast": (150, 180)}
PEAK = {"quiet": 0.1, "soft": 0.25, "mid": 0.5, "loud": 0.85}  # MP3 decoding adds a few % to peaks
TABLE = 2048  # wavetable length (a power of two): room for every harmonic below 8 kHz down to f0 = 16 Hz
BLOCK = 16  # samples per control step: pitch and envelopes change every 1 ms at 16 kHz


def harmonic_amplitudes(freqs: np.ndarray, harmonic: np.ndarray, tilt: float = 1.0, odd: bool = False,
                        position: float | None = None, cutoff: float | None = None,
                        boost: tuple[float, float, float] | None = None) -> np.ndarray:
    """Amplitude of each harmonic (number `harmonic`, frequency `freqs` in Hz)."""
    amps = harmonic ** -tilt
    if odd:  # square-ish: only odd harmonics
        amps = amps * (harmonic % 2)
    if position:  # plucked/struck at a fraction of the string: that harmonic series has notches
        amps = amps * (0.15 + np.abs(np.sin(np.pi * harmonic * position)))
    if cutoff:  # a dull, low-passed timbre
        amps = amps * np.exp(-freqs / cutoff)
    if boost:  # one resonance (body of a violin/cello, a sitar's buzzing bridge)
        centre, width, gain = boost
        amps = amps * (1 + gain * np.exp(-((freqs - centre) / width) ** 2))
    return amps


def _formant_gain(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Vocal-tract gain at `freqs` [notes, harmonics] for each note's formants [notes, 3]."""
    widths, gains = (90.0, 120.0, 170.0), (1.0, 0.7, 0.35)
    out = 0.03
    for j in range(3):
        out = out + gains[j] / (1 + ((freqs - formants[:, j:j + 1]) / widths[j]) ** 2)
    return out


def note_tables(f0: np.ndarray, sr: int, spectrum: dict, formants: np.ndarray | None = None) -> np.ndarray:
    """One band-limited single-period waveform per note [notes, TABLE], unit RMS."""
    harmonic = np.arange(1, TABLE // 2, dtype=np.float32)[None, :]
    freqs = f0[:, None].astype(np.float32) * harmonic
    amps = harmonic_amplitudes(freqs, harmonic, **spectrum) * (freqs < 0.48 * sr)  # nothing above Nyquist
    if formants is not None:
        amps = amps * _formant_gain(freqs, formants)
    # Schroeder phases keep the crest factor low, so peaks do not dominate the level normalisation.
    phases = np.pi * harmonic * (harmonic - 1) / harmonic.shape[1]
    spec = np.zeros((len(f0), TABLE // 2 + 1), dtype=np.complex64)
    spec[:, 1:TABLE // 2] = amps * np.exp(1j * phases)
    tables = np.fft.irfft(spec, n=TABLE, axis=1).astype(np.float32)
    return tables / (np.sqrt((tables ** 2).mean(axis=1, keepdims=True)) + 1e-12)


def _pitch_grid(key: dict, inst: Instrument) -> np.ndarray:
    """The scale's MIDI pitches from an octave below to two octaves above the register (room for chords)."""
    lo, hi = inst.register
    return np.array([m for m in range(lo - 19, hi + 26) if (m - key["root"]) % 12 in SCALES[key["scale"]]])


def _degrees(inst: Instrument, notes: int, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index into `grid` of each note of the main line, inside the register."""
    inside = np.flatnonzero((grid >= inst.register[0]) & (grid <= inst.register[1]))
    lo, hi = inside[0], inside[-1]
    if inst.motion == "hold":
        return np.full(notes, lo)
    if inst.motion == "arpeggio":  # 1-3-5-8 broken chords whose root wanders every bar
        roots = np.repeat(lo + rng.integers(0, max(1, hi - lo - 6), size=notes // 4 + 1), 4)[:notes]
        return np.minimum(roots + np.resize([0, 2, 4, 7], notes), hi)
    steps = rng.choice([-2, -1, -1, 0, 1, 1, 2], size=notes)
    walk = np.cumsum(steps) + rng.integers(lo, hi + 1)
    span = 2 * (hi - lo) if hi > lo else 1
    folded = (walk - lo) % span  # reflect the walk back into the register
    return lo + np.where(folded > hi - lo, span - folded, folded)


def _note_times(inst: Instrument, beat_s: float, blocks: int, sr: int, rng: np.random.Generator, human: bool):
    """Onset of every note, in control steps (BLOCK samples)."""
    slot = inst.seconds_per_note or inst.beats * beat_s
    onsets = np.arange(0, blocks * BLOCK / sr, slot)
    if human:  # small timing jitter: players are not quantised
        onsets = onsets + rng.uniform(0, 0.15 * slot, size=len(onsets)) * (np.arange(len(onsets)) > 0)
    onsets = np.round(onsets * sr / BLOCK).astype(np.int64)
    return onsets[onsets < blocks]


def _envelope(ts: np.ndarray, length: np.ndarray, attack: float, decay: float, sustain: float) -> np.ndarray:
    rise = np.minimum(ts / attack, 1.0)
    fall = sustain + (1 - sustain) * np.exp(-ts / decay)
    tail = np.clip((length - ts) / 0.01, 0.0, 1.0)  # fade the last 10 ms: no click when a note ends
    return rise * fall * tail


def _pitch_curve(f0: np.ndarray, starts: np.ndarray, note: np.ndarray, inst: Instrument, t: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Pitch (Hz) at times `t` (s), notes starting at `starts` (s): glides and vibrato included."""
    if inst.glide:  # slide in log-frequency from the previous note over `glide` seconds
        knots = np.stack([starts, starts + inst.glide], axis=1).ravel()
        values = np.stack([np.log(np.r_[f0[0], f0[:-1]]), np.log(f0)], axis=1).ravel()
        order = np.argsort(knots, kind="stable")
        curve = np.exp(np.interp(t, knots[order], values[order]))
    else:
        curve = f0[note]
    rate, depth = inst.vibrato
    if depth:
        curve = curve * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    return curve


def render_line(inst: Instrument, f0: np.ndarray, onsets: np.ndarray, n: int, sr: int,
                rng: np.random.Generator, formants: np.ndarray | None = None) -> np.ndarray:
    """One monophonic line: a wavetable per note, read at the pitch curve, times its envelope.

    Pitch and envelope are computed once per control step of BLOCK samples (1 ms at 16 kHz) and
    held; only the phase and the table lookup run per sample, which keeps a line to a few ms.
    """
    blocks = -(-n // BLOCK)
    t = np.arange(blocks) * (BLOCK / sr)
    note = np.repeat(np.arange(len(onsets)), np.diff(np.r_[onsets, blocks]))
    starts = onsets * (BLOCK / sr)
    pitch = _pitch_curve(f0, starts, note, inst, t, rng)
    # A note sounds until the next one starts (a `legato` fraction of that), whatever the timing jitter.
    length = np.diff(np.r_[onsets, blocks]) * (BLOCK / sr) * inst.legato
    env = _envelope(t - starts[note], length[note], *inst.envelope).astype(np.float32)
    if inst.rests:
        env = env * (rng.random(len(onsets)) >= inst.rests)[note]
    phase = np.cumsum(np.repeat(pitch / sr, BLOCK))  # float64: exact phase over a long clip
    index = (phase * TABLE).astype(np.int64) & (TABLE - 1)
    tables = note_tables(f0, sr, inst.spectrum, formants)
    gain = np.repeat(env, BLOCK)
    line = tables.ravel()[np.repeat(note * TABLE, BLOCK) + index] * gain
    if inst.breath:
        line += inst.breath * rng.standard_normal(len(line), dtype=np.float32) * gain
    if inst.fricatives:
        hiss = (t - starts[note] < 0.05) & (rng.random(len(onsets)) < 0.5)[note]
        noise = _band_noise(len(line), sr, 3000, 6000, rng).astype(np.float32)
        line += inst.fricatives * noise * np.repeat(hiss, BLOCK)
    return line[:n]


def render_part(inst: Instrument, key: dict, beat_s: float, n: int, sr: int, rng: np.random.Generator,
                human: bool = True) -> np.ndarray:
    """An instrument or voice: one line per chord entry, at unit RMS."""
    onsets = _note_times(inst, beat_s, -(-n // BLOCK), sr, rng, human)
    grid = _pitch_grid(key, inst)
    degrees = _degrees(inst, len(onsets), grid, rng)
    vowels = VOWELS[rng.integers(0, len(VOWELS), len(onsets))] * inst.formants if inst.formants else None
    if vowels is not None and len(inst.chord) > 1:  # a choir sings open vowels (a, o) together
        vowels = VOWELS[rng.choice([0, 3], len(onsets))] * inst.formants
    out = np.zeros(n)
    for j, offset in enumerate(inst.chord):
        midi = grid[np.clip(degrees + offset, 0, len(grid) - 1)]
        f0 = 440.0 * 2 ** ((midi - 69) / 12) * (1 + inst.detune * (j - (len(inst.chord) - 1) / 2))
        out += render_line(inst, f0, onsets, n, sr, rng, vowels)
    if inst.drive:
        out = np.tanh(inst.drive * out / (np.sqrt((out ** 2).mean()) + 1e-9))
    return out / (np.sqrt((out ** 2).mean()) + 1e-9)


# ----------------------------------------------------------------------------- drums


def _decay(sr: int, seconds: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(seconds * sr)) / sr
    return t, np.exp(-t / tau)


def _band_noise(n: int, sr: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    noise = np.fft.irfft(spec * ((f >= lo) & (f <= hi)), n)
    return noise / (np.abs(noise).max() + 1e-9)


def _kick(sr: int, top: float, bottom: float, tau: float) -> np.ndarray:
    t, env = _decay(sr, 5 * tau, tau)
    f = bottom + (top - bottom) * np.exp(-t / 0.03)  # the pitch drop that makes a kick thump
    return np.sin(2 * np.pi * np.cumsum(f) / sr) * env


def drum_sounds(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t, snare_env = _decay(sr, 0.25, 0.06)
    snare = 0.7 * _band_noise(len(t), sr, 1000, 5000, rng) * snare_env
    snare += 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / .04)  # the drum's body under the wires
    hat = _band_noise(int(0.06 * sr), sr, 5000, sr / 2, rng) * _decay(sr, 0.06, 0.012)[1]
    open_hat = _band_noise(int(0.3 * sr), sr, 4500, sr / 2, rng) * _decay(sr, 0.3, 0.08)[1]
    crash = _band_noise(int(1.2 * sr), sr, 3000, sr / 2, rng) * _decay(sr, 1.2, 0.45)[1]
    burst = _band_noise(int(0.15 * sr), sr, 800, 3000, rng)
    t15 = np.arange(len(burst)) / sr
    clap = burst * sum(np.exp(-np.maximum(t15 - d, 0) / .012) * (t15 >= d) for d in (0, .01, .02))
    tn, na_env = _decay(sr, 0.5, 0.18)
    na = (np.sin(2 * np.pi * 520 * tn) + 0.4 * np.sin(2 * np.pi * 1300 * tn)) * na_env
    ge_f = 85 + 40 * (1 - np.exp(-tn / 0.1))  # the bayan's upward bend
    ge = np.sin(2 * np.pi * np.cumsum(ge_f) / sr) * np.exp(-tn / 0.25)
    return {"kick": _kick(sr, 130, 50, .08), "kick808": _kick(sr, 160, 42, .16), "snare": snare, "hat": hat,
            "open_hat": open_hat, "crash": crash, "clap": clap, "na": na, "ge": ge}


def _pattern_hits(pattern: str, steps: int, rng: np.random.Generator) -> list[tuple[int, str, float]]:
    """(sixteenth index, sound, velocity) for the whole clip."""
    hits = []
    for s in range(steps):
        b = s % 16
        if pattern in ("rock", "metal"):
            if b in (0, 8) or pattern == "metal" or (b in (6, 10, 14) and rng.random() < .3):
                hits.append((s, "kick", 1.0 if pattern == "rock" else 0.8))
            if b in (4, 12):
                hits.append((s, "snare", 1.0))
            if b % 2 == 0:
                hits.append((s, "hat", 0.5 if pattern == "rock" else 0.3))
            if pattern == "metal" and b == 0:
                hits.append((s, "crash", 0.6))
        elif pattern == "techno":
            if b % 4 == 0:
                hits.append((s, "kick808", 1.0))  # four on the floor
            if b in (4, 12):
                hits.append((s, "clap", 0.7))
            hits.append((s, "open_hat" if b % 4 == 2 else "hat", 0.5 if b % 4 == 2 else 0.25))
        elif pattern == "tabla" and rng.random() < .55:
            hits.append((s, "na" if rng.random() < .6 else "ge", rng.uniform(.5, 1)))
    return hits


def render_drums(pattern: str, beat_s: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    sounds = drum_sounds(sr, rng)
    step = beat_s / 4
    out = np.zeros(n)
    for s, name, velocity in _pattern_hits(pattern, int(n / sr / step) + 1, rng):
        start = int(round(s * step * sr))
        shot = sounds[name][: n - start]
        out[start:start + len(shot)] += velocity * shot
    return out / (np.sqrt((out ** 2).mean()) + 1e-9)


# ----------------------------------------------------------------------------- the mix


def _weird(mix: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Ring modulation plus repeating glissando sweeps: inharmonic, unmusical, obvious on a spectrogram."""
    t = np.arange(len(mix)) / sr
    ring = mix * np.sin(2 * np.pi * rng.uniform(200, 700) * t)
    period = rng.uniform(0.6, 1.4)
    lo, hi = rng.uniform(200, 500), rng.uniform(3000, 6000)
    f = lo * (hi / lo) ** ((t % period) / period)
    sweep = np.sin(2 * np.pi * np.cumsum(f) / sr)
    return 0.5 * mix + 0.5 * ring + 0.6 * sweep * np.sqrt((mix ** 2).mean())


def _reverb(mix: np.ndarray, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room: convolution with exponentially decaying noise (RT60 `seconds`); smears onsets and fills gaps."""
    t = np.arange(int(min(seconds, 3.0) * sr)) / sr
    response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / seconds)
    response /= np.sqrt((response ** 2).sum())
    size = 1 << int(np.ceil(np.log2(len(mix) + len(t))))
    wet = np.fft.irfft(np.fft.rfft(mix, size) * np.fft.rfft(response, size), size)[:len(mix)]
    return mix + 0.6 * wet


def _lowpass(mix: np.ndarray, sr: int, corner: float, order: int) -> np.ndarray:
    f = np.fft.rfftfreq(len(mix), 1 / sr)
    return np.fft.irfft(np.fft.rfft(mix) / (1 + (f / corner) ** order), len(mix))


def _apply_level(mix: np.ndarray, level: str, sr: int) -> np.ndarray:
    if level == "soft":  # softly played: darker as well as lower
        mix = _lowpass(mix, sr, 1500, 2)
    if level == "loud":  # compressed: loud means dense, not only a high peak
        mix = np.tanh(2.5 * mix / (np.abs(mix).max() + 1e-9))
        # Squashed peaks carry energy up to Nyquist; the 32 kbit/s encoder cuts above ~7 kHz, which would
        # raise the decoded peaks past 1. Cut it here, so the normalised peak is the one that gets decoded.
        mix = _lowpass(mix, sr, min(6500, 0.4 * sr), 8)
    return mix * (PEAK[level] / (np.abs(mix).max() + 1e-9))


def render_clip(scene: dict, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The clip's audio, float32 mono in [-1, 1]."""
    n = int(round(seconds * sr))
    key = {"root": int(rng.integers(0, 12)),
           "scale": "raga" if scene["genre"] == "indian" else str(rng.choice(["major", "minor"]))}
    beat_s = 60.0 / rng.uniform(*TEMPO_BPM[scene["tempo"]])
    electronic = scene["genre"] in ("techno", "ambient")  # sequenced: no timing jitter
    mix = np.zeros(n)
    for name in scene["instruments"]:
        mix += INSTRUMENTS[name].gain * render_part(INSTRUMENTS[name], key, beat_s, n, sr, rng, not electronic)
    if scene["voice"] != "none":
        inst = VOICES[scene["voice"]]
        mix += inst.gain * render_part(inst, key, beat_s, n, sr, rng)
    if scene["drums"] != "none":
        mix += 0.7 * render_drums(scene["drums"], beat_s, n, sr, rng)
    if GENRES[scene["genre"]].reverb:
        mix = _reverb(mix, GENRES[scene["genre"]].reverb, sr, rng)
    if scene["weird"]:
        mix = _weird(mix, sr, rng)
    mix = mix + 1e-3 * np.sqrt((mix ** 2).mean()) * rng.standard_normal(n)  # a noise floor, like any recording
    return _apply_level(mix, scene["level"], sr).astype(np.float32)


def _write_clip(job: dict) -> str:
    """Render and encode one clip (a process-pool task); skip it when an earlier run already wrote it."""
    import soundfile

    path = Path(job["path"])
    if not path.exists():
        rng = _rng(job["seed"], _STREAM_AUDIO, job["index"])
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
    done = _completed(out, params)
    if done is not None:
        return done
    if clips < 1 or seconds <= 0:
        raise ValueError(f"synth_mtat needs clips >= 1 and seconds > 0, got clips={clips}, seconds={seconds}")
    _claim(out, params, "mp3")
    plan = mtat_plan(clips, seed)
    jobs = [{"path": str(out / "mp3" / c["mp3_path"]), "scene": c["scene"], "index": c["index"], "seed": seed,
             "seconds": seconds, "sample_rate": sample_rate} for c in plan]
    for folder in {Path(job["path"]).parent for job in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    _run_jobs(_write_clip, jobs, workers, progress, "synth mtat")
    atomic_write_text(out / "annotations_final.csv", _annotations_text(plan))
    atomic_write_text(out / "clip_info_final.csv", _clip_info_text(plan))
    counts = {tag: sum(tag in c["tags"] for c in plan) for tag in ALL_TAGS}
    summary = {"root": str(out), "clips": clips, "seconds": seconds, "sample_rate": sample_rate, "seed": seed,
               "tags": {tag: k for tag, k in sorted(counts.items(), key=lambda kv: -kv[1]) if k}}
    return _finish(out, params, summary)


# ============================================================================= Caltech-256

CALTECH_DIR = "256_ObjectCategories"
# The real category names, 001 to 257, in order.
CALTECH_NAMES = """ak47 american-flag backpack baseball-bat baseball-glove basketball-hoop bat bathtub bear beer-mug
billiards binoculars birdbath blimp bonsai-101 boom-box bowling-ball bowling-pin boxing-glove brain-101 breadmaker
buddha-101 bulldozer butterfly cactus cake calculator camel cannon canoe car-tire cartman cd centipede cereal-box
chandelier-101 chess-board chimp chopsticks cockroach coffee-mug coffin coin comet computer-keyboard
computer-monitor computer-mouse conch cormorant covered-wagon cowboy-hat crab-101 desk-globe diamond-ring dice dog
dolphin-101 doorknob drinking-straw duck dumb-bell eiffel-tower electric-guitar-101 elephant-101 elk ewer-101
eyeglasses fern fighter-jet fire-extinguisher fire-hydrant fire-truck fireworks flashlight floppy-disk
football-helmet french-horn fried-egg frisbee frog frying-pan galaxy gas-pump giraffe goat golden-gate-bridge
goldfish golf-ball goose gorilla grand-piano-101 grapes grasshopper guitar-pick hamburger hammock harmonica harp
harpsichord hawksbill-101 head-phones helicopter-101 hibiscus homer-simpson horse horseshoe-crab hot-air-balloon
hot-dog hot-tub hourglass house-fly human-skeleton hummingbird ibis-101 ice-cream-cone iguana ipod iris
jesus-christ joy-stick kangaroo-101 kayak ketch-101 killer-whale knife ladder laptop-101 lathe leopards-101
license-plate lightbulb light-house lightning llama-101 mailbox mandolin mars mattress megaphone menorah-101
microscope microwave minaret minotaur motorbikes-101 mountain-bike mushroom mussels necktie octopus ostrich owl
palm-pilot palm-tree paperclip paper-shredder pci-card penguin people pez-dispenser photocopier picnic-table
playing-card porcupine pram praying-mantis pyramid raccoon radio-telescope rainbow refrigerator revolver-101 rifle
rotary-phone roulette-wheel saddle saturn school-bus scorpion-101 screwdriver segway self-propelled-lawn-mower
sextant sheet-music skateboard skunk skyscraper smokestack snail snake sneaker snowmobile soccer-ball socks
soda-can spaghetti speed-boat spider spoon stained-glass starfish-101 steering-wheel stirrups sunflower-101
superman sushi swan swiss-army-knife sword syringe tambourine teapot teddy-bear teepee telephone-box tennis-ball
tennis-court tennis-racket theodolite toaster tomato tombstone top-hat touring-bike tower-pisa traffic-light
treadmill triceratops tricycle trilobite-101 tripod t-shirt tuning-fork tweezer umbrella-101 unicorn vcr
video-projector washing-machine watch-101 waterfall watermelon welding-mask wheelbarrow windmill wine-bottle
xylophone yarmulke yo-yo zebra airplanes-101 car-side-101 faces-easy-101 greyhound tennis-shoes toad clutter""".split()
assert len(CALTECH_NAMES) == 257

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "bars", "hexagon")
# (background, first and second foreground colour) per palette.
PALETTES = (((200, 200, 195), (200, 30, 30), (250, 160, 40)), ((220, 200, 160), (30, 60, 180), (100, 180, 240)),
            ((40, 40, 50), (40, 170, 60), (200, 230, 80)), ((240, 230, 200), (120, 40, 150), (230, 120, 200)),
            ((30, 110, 120), (250, 130, 20), (250, 220, 120)), ((150, 190, 230), (20, 20, 20), (240, 240, 240)),
            ((110, 70, 40), (240, 210, 40), (250, 250, 180)), ((120, 140, 110), (0, 200, 210), (220, 0, 140)))
TEXTURES = ("solid", "stripes", "dots", "checker", "gradient")
GRAYSCALE_RATE = 0.03  # the real set has ~1.4% grayscale JPEGs; a few more make sure small sets have some
MAX_CLASSES = len(SHAPES) * len(PALETTES) * len(TEXTURES)


def class_folder(c: int) -> str:
    """Folder of class c (0-based): real Caltech-256 names, then made-up ones past 257."""
    name = CALTECH_NAMES[c] if c < len(CALTECH_NAMES) else f"class-{c + 1}"
    return f"{c + 1:03d}.{name}"


def class_design(c: int) -> tuple[str, int, str]:
    """(shape, palette, texture) of class c; distinct for every c < MAX_CLASSES.

    Consecutive classes differ in palette, and shape and texture are shifted by the digits before them,
    so even a handful of classes covers many shapes and textures. The digits (p, q, r) = (c mod 8,
    c div 8 mod 8, c div 64) identify c, and each shift depends only on earlier digits, so the design
    stays one-to-one.
    """
    p, q, r = c % len(PALETTES), c // len(PALETTES) % len(SHAPES), c // (len(PALETTES) * len(SHAPES))
    palette = p
    shape = (q + 3 * p) % len(SHAPES)
    texture = (r + p + q) % len(TEXTURES)
    return SHAPES[shape], palette, TEXTURES[texture]


def _unit_shape(shape: str) -> list[tuple[np.ndarray, int]]:
    """Polygons in unit coordinates (radius ~1) with the mask value each paints, in order."""
    def circle(r=1.0, k=48):
        a = np.linspace(0, 2 * np.pi, k, endpoint=False)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)

    def regular(k, r=1.0):
        return circle(r, k)

    def rect(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)

    if shape == "circle":
        return [(circle(), 255)]
    if shape == "square":
        return [(rect(-.8, -.8, .8, .8), 255)]
    if shape == "triangle":
        return [(regular(3), 255)]
    if shape == "hexagon":
        return [(regular(6), 255)]
    if shape == "star":
        pts = regular(10)
        pts[1::2] *= 0.45
        return [(pts, 255)]
    if shape == "cross":
        w = .3
        return [(rect(-1, -w, 1, w), 255), (rect(-w, -1, w, 1), 255)]
    if shape == "ring":
        return [(circle(), 255), (circle(.55), 0)]
    if shape == "bars":
        return [(rect(-1, y - .15, 1, y + .15), 255) for y in (-.6, 0, .6)]
    raise ValueError(f"unknown shape {shape!r}")


def _shape_mask(shape: str, size: tuple[int, int], rng: np.random.Generator):
    from PIL import Image, ImageDraw

    w, h = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    radius = rng.uniform(0.18, 0.38) * min(w, h)
    centre = np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h])
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for polygon, value in _unit_shape(shape):
        points = polygon @ rotation.T * radius + centre
        draw.polygon([tuple(p) for p in points], fill=value)
    return mask


def _jitter(colour, rng: np.random.Generator, amount: float = 18) -> np.ndarray:
    return np.clip(np.array(colour, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _texture(texture: str, fg1: np.ndarray, fg2: np.ndarray, size: tuple[int, int], rng: np.random.Generator):
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    period = rng.uniform(8, 24)
    if texture == "solid":
        weight = np.zeros_like(u)
    elif texture == "stripes":
        weight = (u // period) % 2
    elif texture == "dots":
        weight = ((u % period - period / 2) ** 2 + (v % period - period / 2) ** 2 < (period / 3) ** 2)
    elif texture == "checker":
        weight = (u // period + v // period) % 2
    else:  # gradient across the image
        weight = (u - u.min()) / (u.max() - u.min() + 1e-6)
    weight = weight.astype(np.float32)[..., None]
    return fg1 * (1 - weight) + fg2 * weight


def _background(colour: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (x * np.cos(angle) + y * np.sin(angle)) / max(w, h)  # a slow lighting gradient
    noise = rng.normal(0, 10, (h, w, 3)).astype(np.float32)
    return colour + 40 * ramp[..., None] + noise


def render_image(c: int, rng: np.random.Generator, min_side: int, max_side: int):
    """One PIL image of class c: its shape, palette and texture, at a random place, size and angle."""
    from PIL import Image, ImageDraw

    shape, palette, texture = class_design(c)
    bg, fg1, fg2 = (_jitter(colour, rng) for colour in PALETTES[palette])
    size = (int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1)))
    fill = _texture(texture, fg1, fg2, size, rng)
    back = _background(bg, size, rng)
    mask = np.asarray(_shape_mask(shape, size, rng), dtype=np.float32)[..., None] / 255
    pixels = np.clip(back * (1 - mask) + fill * mask, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):  # distractor blobs of random colour
        r = rng.uniform(0.03, 0.1) * min(size)
        cx, cy = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def _write_image(job: dict) -> bool:
    """Render and save one JPEG (a process-pool task); True when it is saved grayscale."""
    rng = _rng(job["seed"], _STREAM_IMAGE, job["index"])
    gray = bool(rng.random() < GRAYSCALE_RATE)
    path = Path(job["path"])
    if not path.exists():
        image = render_image(job["class"], rng, job["min_side"], job["max_side"])
        if gray:
            image = image.convert("L")
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG", quality=90)
    return gray


def synth_caltech256(out: Path, classes: int, per_class: int, seed: int = 0, min_side: int = 200,
                     max_side: int = 500, workers: int = 1, progress: bool = True) -> dict:
    """Write a synthetic Caltech-256 to `out`: 256_ObjectCategories/NNN.name/NNN_XXXX.jpg.

    Example: ``synth_caltech256(Path("data/caltech-synth"), classes=10, per_class=40, workers=2)``
    (workers > 1: see synth_mtat about the ``__main__`` guard).
    Returns {"root", "images", "classes", "per_class", "grayscale", "seed"}.
    """
    out = Path(out)
    params = {"kind": "caltech256", "version": FORMAT_VERSION, "classes": int(classes), "per_class": int(per_class),
              "seed": int(seed), "min_side": int(min_side), "max_side": int(max_side)}
    done = _completed(out, params)
    if done is not None:
        return done
    if not 1 <= classes <= min(MAX_CLASSES, 999) or per_class < 1 or not 1 <= min_side <= max_side:
        raise ValueError(f"synth_caltech256 needs 1 <= classes <= {min(MAX_CLASSES, 999)}, per_class >= 1 and "
                         f"1 <= min_side <= max_side; got {classes}, {per_class}, {min_side}, {max_side}")
    _claim(out, params, CALTECH_DIR)
    jobs = []
    for c in range(classes):
        folder = out / CALTECH_DIR / class_folder(c)
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [{"path": str(folder / f"{c + 1:03d}_{k + 1:04d}.jpg"), "class": c, "index": c * 100_000 + k,
                  "seed": seed, "min_side": min_side, "max_side": max_side} for k in range(per_class)]
    gray = _run_jobs(_write_image, jobs, workers, progress, "synth caltech256")
    summary = {"root": str(out), "images": len(jobs), "classes": classes, "per_class": per_class,
               "grayscale": int(sum(gray)), "seed": seed}
    return _finish(out, params, summary)


__all__ = ["synth_mtat", "synth_caltech256", "mtat_plan", "sample_scene", "scene_tags", "render_clip",
           "render_image", "class_design", "class_folder", "GENRES", "TAG_RULES", "MARKER"]
