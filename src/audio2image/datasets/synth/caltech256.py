"""The synthetic Caltech-256 writer: 256_ObjectCategories/NNN.name/NNN_XXXX.jpg.

It owns the folder layout (the real category names, 001 to 257, then made-up ones), the per-image
job that renders and saves one JPEG (a few grayscale, like the real set), and `synth_caltech256`,
which runs the jobs through the shared writer machinery.
"""
from __future__ import annotations

from pathlib import Path

from audio2image.datasets.synth.common import FORMAT_VERSION, STREAM_IMAGE, claim, completed, finish, rng_for, run_jobs
from audio2image.datasets.synth.pictures import GRAYSCALE_RATE, MAX_CLASSES, render_image
from audio2image.util import atomic_path

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


def class_folder(c: int) -> str:
    """Folder of class c (0-based): real Caltech-256 names, then made-up ones past 257."""
    name = CALTECH_NAMES[c] if c < len(CALTECH_NAMES) else f"class-{c + 1}"
    return f"{c + 1:03d}.{name}"


def _write_image(job: dict) -> bool:
    """Render and save one JPEG (a process-pool task); True when it is saved grayscale."""
    rng = rng_for(job["seed"], STREAM_IMAGE, job["index"])
    gray = bool(rng.random() < GRAYSCALE_RATE)
    path = Path(job["path"])
    if not path.exists():
        image = render_image(job["class"], rng, job["min_side"], job["max_side"])
        if gray:
            image = image.convert("L")
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG", quality=90)
    return gray


def count_synth_caltech256(*, classes: int, per_class: int, split: str = "stratified", split_seed: int = 0,
                           **_) -> dict:
    """What a store of the synthetic Caltech-256 of these parameters will hold, without drawing an image:
    {"splits": {split: images}, "labels": classes}. The registry's `synth_count`."""
    import numpy as np

    from audio2image.datasets.caltech256 import split_images

    parts = split_images(np.repeat(np.arange(classes), per_class), split, split_seed)
    return {"splits": {name: len(positions) for name, positions in parts.items()}, "labels": classes}


def synth_caltech256(out: Path, classes: int, per_class: int, seed: int = 0, min_side: int = 200,
                     max_side: int = 500, workers: int = 1, progress: bool = True, first_class: int = 0) -> dict:
    """Write a synthetic Caltech-256 to `out`: 256_ObjectCategories/NNN.name/NNN_XXXX.jpg.

    `first_class` shifts the classes: with first_class=N the set holds classes N.. N+classes-1, disjoint from a
    set of N classes, yet drawn from the same shapes, palettes and textures (a positive control's pretraining data).

    Example: ``synth_caltech256(Path("data/caltech-synth"), classes=10, per_class=40, workers=2)``
    (workers > 1: see synth_mtat about the ``__main__`` guard).
    Returns {"root", "images", "classes", "per_class", "grayscale", "seed"}.
    """
    out = Path(out)
    params = {"kind": "caltech256", "version": FORMAT_VERSION, "classes": int(classes), "per_class": int(per_class),
              "seed": int(seed), "min_side": int(min_side), "max_side": int(max_side)}
    if first_class:
        params["first_class"] = int(first_class)  # absent when 0: earlier synthetic sets stay complete
    done = completed(out, params)
    if done is not None:
        return done
    top = min(MAX_CLASSES, 999)
    if not (1 <= classes and 0 <= first_class and first_class + classes <= top) or per_class < 1 \
            or not 1 <= min_side <= max_side:
        raise ValueError(f"synth_caltech256 needs 1 <= classes, first_class >= 0, first_class + classes <= {top}, "
                         f"per_class >= 1 and 1 <= min_side <= max_side; got {classes}, {first_class}, {per_class}, "
                         f"{min_side}, {max_side}")
    claim(out, params, CALTECH_DIR)
    jobs = []
    for c in range(first_class, first_class + classes):
        folder = out / CALTECH_DIR / class_folder(c)
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [{"path": str(folder / f"{c + 1:03d}_{k + 1:04d}.jpg"), "class": c, "index": c * 100_000 + k,
                  "seed": seed, "min_side": min_side, "max_side": max_side} for k in range(per_class)]
    gray = run_jobs(_write_image, jobs, workers, progress, "synth caltech256")
    summary = {"root": str(out), "images": len(jobs), "classes": classes, "per_class": per_class,
               "grayscale": int(sum(gray)), "seed": seed}
    return finish(out, params, summary)
