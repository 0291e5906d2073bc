"""The generative model of music content and of the tags an annotator gives it.

A genre picks instruments, a drum pattern, a voice, a tempo and a level (plus a rare "weird" effect);
`sample_scene` draws these latent choices as plain values. Tags are drawn from the latents
(`scene_facts` -> `TAG_RULES`) with an annotator's recall below one, like the real, noisy labels;
synonyms (vocal/vocals/singing) share a cue. How a scene sounds is music.py's business.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio2image.datasets.synth.common import pick
from audio2image.datasets.tags import ALL_TAGS, TOP50


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
    name = pick(rng, {g: spec.weight for g, spec in GENRES.items()})
    genre = GENRES[name]
    count = pick(rng, genre.pool_counts)
    pool, weights = list(genre.pool), np.array(list(genre.pool.values()), dtype=float)
    extra = [pool[i] for i in rng.choice(len(pool), count, replace=False, p=weights / weights.sum())] if count else []
    return {"genre": name, "instruments": list(genre.always) + extra,
            "drums": pick(rng, genre.drums), "voice": pick(rng, genre.voice),
            "tempo": pick(rng, dict(zip(("slow", "mid", "fast"), genre.tempo))),
            "level": pick(rng, dict(zip(("quiet", "soft", "mid", "loud"), genre.level))),
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
