"""The names of starting weights (inits), without torch: config validation, the sweep and the report read them.

An init is `BASE[@K | -stats][:PATH]`:

- BASE: `random`, `imagenet` (the backbone's published weights, training/published.py), `audio` / `image` (a
  pretraining run folder: PATH, or in a sweep this experiment's own pretraining on its source), `control` (the
  same, on the experiment's control dataset: the positive control), `checkpoint` (a state dict at PATH).
- `@K` (K = 1, 2, ...) carries only the first K stages of those weights, as the backbone counts them
  (training/backbone.py: ResNet-18's five are conv1 + bn1, layer1 ... layer4); the other stages keep exactly the
  random init of the run's seed (Raghu et al. 2019's Transfusion: reuse weights up to block k, re-initialise the
  rest). K may not exceed the backbone's stage count (config_checks.check_backbone).
- `-stats` is the weight-statistics control (Transfusion's Mean Var init): every tensor of the backbone is drawn
  i.i.d. from N(mean, std^2) of the corresponding pretrained tensor, seeded by the run's seed, and every
  normalisation layer is the identity. It keeps the weights' scale and drops their features.

The head is always new. `random` takes no modifier. training/inits.py gives a model the weights an init names.

    >>> parse_init("audio@2:runs/demo/pretrain/source-seed0")
    InitSpec(base='audio', depth=2, stats=False, path='runs/demo/pretrain/source-seed0')
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PRETRAINED_RUNS = ("audio", "image", "control")  # a pretraining run folder: PATH/best.pt
BASES = ("random", "imagenet", *PRETRAINED_RUNS, "checkpoint")
INIT_PATTERN = re.compile(r"^(?P<base>[a-z]+)(?:@(?P<depth>\d+)|(?P<stats>-stats))?(?::(?P<path>.+))?$")
INIT_HELP = ("random, imagenet, audio, image, control, audio:RUN_DIR, image:RUN_DIR or checkpoint:PATH, each but "
             "random optionally with @K (the first K of the backbone's stages, e.g. audio@2) or -stats (the "
             "weight-statistics control, e.g. audio-stats)")


@dataclass(frozen=True)
class InitSpec:
    base: str
    depth: int | None = None  # stages carried; None: all of them
    stats: bool = False
    path: str = ""

    @property
    def name(self) -> str:
        """The init without its path: "audio@2", "imagenet-stats", ..."""
        return self.base + (f"@{self.depth}" if self.depth else "") + ("-stats" if self.stats else "")


def parse_init(init: str) -> InitSpec:
    """The parts of an init string; ValueError (saying what is allowed) when it is not one."""
    match = INIT_PATTERN.match(init)
    if match and match.group("base") in BASES:
        base, path, stats = match.group("base"), match.group("path") or "", bool(match.group("stats"))
        depth = int(match.group("depth")) if match.group("depth") else None
        # a run folder may be named or implied; a checkpoint must be named; random and imagenet take no path
        path_ok = base in PRETRAINED_RUNS or bool(path) == (base == "checkpoint")
        modifier_ok = (base != "random" or not (depth or stats)) and (depth is None or depth >= 1)
        if path_ok and modifier_ok:
            return InitSpec(base, depth, stats, path)
    raise ValueError(f"{init!r} is not an init; use {INIT_HELP}")


def describe_depth(depth: int, stage_words: list[str]) -> str:
    """The stages an init of depth K carries, in the backbone's words: 'conv1 + bn1, layer1' for ResNet's 2."""
    return ", ".join(stage_words[:depth])
