"""What a config may hold: each key's allowed choices and sign, and the checks between keys (config.py's Config
calls `validate` on itself). Every failure is a ConfigError that names the key and what is allowed.

Kept apart from config.py, which defines the keys and reads, overrides and saves them; this module needs no Config
at run time (only attributes of the one it is given), so config.py imports it, not the reverse.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import typing

from audio2image.datasets.registry import DATASETS
from audio2image.errors import UserError
from audio2image.training.initspec import INIT_HELP, parse_init

if typing.TYPE_CHECKING:
    from audio2image.config import Config


class ConfigError(UserError, ValueError):
    """A config problem, phrased for the user: it names the key and what is allowed."""


CHOICES: dict[str, tuple[str, ...]] = {
    "source": tuple(DATASETS),
    "target": tuple(DATASETS),
    "control": ("", *DATASETS),
    "audio_features": ("recipe", "original"),
    "audio_split": ("standard", "full", "original"),
    "audio_task": ("auto", "tagging", "classification"),
    "audio_channels": ("repeat", "sum"),
    "image_split": ("stratified", "original"),
    "image_resize": ("center", "squash"),
    "image_augment": ("crop-flip", "original", "none"),
    "pretrain_optimizer": ("sgd", "adam", "adamw"),
    "transfer_optimizer": ("sgd", "adam", "adamw"),
    "pretrain_schedule": ("cosine", "constant", "original-plateau"),
    "transfer_schedule": ("cosine", "constant", "original-plateau"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "executor": ("local", "ray", "slurm", "submitit-local"),
    "trackers": ("tensorboard", "mlflow", "wandb"),  # a list: each of its values one of these
}
POSITIVE = {"synth_clips", "synth_seconds", "synth_classes", "synth_per_class", "audio_clip_seconds",
            "audio_eval_crops", "image_store_size", "image_size", "pretrain_epochs", "pretrain_batch_size",
            "pretrain_lr", "transfer_epochs", "transfer_batch_size", "transfer_lr", "workers", "parallel",
            "slurm_time_min", "tune_seeds", "effect_of_interest"}
NON_NEGATIVE = {"threads", "precise_bn_batches", "checkpoint_seconds", "cka_items", "audio_crop_seconds",
                "audio_patch_stride", "pretrain_weight_decay", "transfer_weight_decay", "pretrain_warmup_epochs",
                "transfer_warmup_epochs", "pretrain_label_smoothing", "transfer_label_smoothing"}
NOT_BLANK = {"audio_label_column", "image_label_column"}
FREEZE_PATTERN = re.compile(r"^(none|original|linear|stages:\d+)$")


def reject(key: str, value, allowed: str) -> typing.NoReturn:
    """Raise the ConfigError for a bad value: the key, the value and what is allowed instead."""
    raise ConfigError(f"config key '{key}': {value!r} is not allowed; {allowed}")


def validate_init(key: str, init: str) -> None:
    try:
        parse_init(init)
    except ValueError:
        reject(key, init, f"use {INIT_HELP}")


def validate_freeze(key: str, freeze: str) -> None:
    if not FREEZE_PATTERN.match(freeze):
        reject(key, freeze, "use none, original, linear or stages:K with K from 0 to the backbone's stage count")


def _same_data(config: Config, side: str, other: str, target: tuple[str, str] | None = None) -> bool:
    """Whether two sides name the same data: one dataset kind and one folder (or no folder for either).
    `target`: (dataset, root) standing for the target side (an entry of `targets`)."""
    named = {"target": target} if target else {}
    first, root = named.get(side) or (getattr(config, side), config.root_of(side))
    second, other_root = named.get(other) or (getattr(config, other), config.root_of(other))
    if first != second:
        return False
    if side == "control" and config.synthetic and not root and DATASETS[first].synth_disjoint:
        return False  # synthesised with classes disjoint from the other side's (prepare/stores.py)
    return not (root and other_root) or os.path.normpath(root) == os.path.normpath(other_root)


def parse_target(entry: str) -> tuple[str, str]:
    """An entry of `targets`, DATASET[:ROOT], as (dataset, root); the root may hold ':' itself.

        >>> parse_target("imagefolder:C:/data/pets")
        ('imagefolder', 'C:/data/pets')
    """
    name, _, root = entry.partition(":")
    return name.strip(), root.strip()


def _check_targets(config: Config) -> None:
    """Each entry of `targets`: a known dataset, a folder where it is not synthesised, listed once, not the source's
    or the control's data; and a control that serves some target of its own modality."""
    if config.target_root:
        reject("target_root", config.target_root, "targets names every target with its folder (DATASET:ROOT); "
              "leave target_root empty")
    seen: dict[tuple, str] = {}
    for entry in config.targets:
        name, root = parse_target(entry)
        if name not in DATASETS:
            near = difflib.get_close_matches(name, list(DATASETS), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            reject("targets", entry, f"{name!r} is not a dataset{hint}; each entry is DATASET[:ROOT], DATASET one "
                  f"of {', '.join(DATASETS)}")
        if not root and DATASETS[name].synth is None:
            reject("targets", entry, f"{name} has no synthetic version; give its folder as {name}:PATH")
        if not root and not config.synthetic:
            reject("targets", entry, f"it names no folder and synthetic is false; give it as {name}:PATH (or set "
                  f"synthetic=true for the built-in synthetic {name})")
        key = (name, os.path.realpath(root) if root else "")
        if key in seen:
            reject("targets", entry, f"it is the same target as {seen[key]!r}; list each target once")
        seen[key] = entry
        for side in ("source", "control"):
            if getattr(config, side) and _same_data(config, side, "target", (name, root)):
                reject("targets", entry, f"it is the same dataset as {side}; a target is other data than the "
                      f"{side} (give a folder other than {side}_root)")
    modalities = {DATASETS[parse_target(entry)[0]].modality for entry in config.targets}
    control = config.dataset("control").modality if config.control else ""
    if control and control not in modalities:
        reject("control", config.control, f"it is {control} data and no target is; a control serves the targets of "
              "its own modality (add one, or leave control empty)")
    if control and modalities - {control} and all(parse_init(i).base == "control" for i in config.inits):
        reject("inits", config.inits, f"the control serves the {control} targets only, so the others would have no "
              "init to run; add random (and the inits to compare)")


def _check_sides(config: Config) -> None:
    """Source, control and target may be the same kind of dataset (two audio folders), but not the same data."""
    if config.targets:  # they replace target and target_root
        _check_targets(config)
    elif _same_data(config, "source", "target"):
        reject("target", config.target, "it is the same dataset as source; transfer between two folders of one kind "
              "by giving both source_root and target_root, different folders")
    if not config.control:
        return
    for other in ("source",) if config.targets else ("target", "source"):
        if _same_data(config, "control", other):
            reject("control", config.control, f"it is the same dataset as {other}; a control is pretrained on other "
                  f"data (control_root=PATH, a folder other than {other}_root)")


def validate_value(key: str, value) -> None:
    """The checks of one key on its own (allowed choices, sign); `validate` adds those between keys."""
    for item in value if isinstance(value, list) else [value]:  # a list key's choices are its values'
        if key in CHOICES and item not in CHOICES[key]:
            reject(key, item, "choose one of " + ", ".join(CHOICES[key]))
    if key in POSITIVE and not (math.isfinite(value) and value > 0):
        reject(key, value, "it must be a finite number greater than 0")
    if key in NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
        reject(key, value, "it must be a finite number, 0 or more")
    if key in NOT_BLANK and not str(value).strip():
        reject(key, value, "give the name of a column (by default 'label')")


def validate(config: Config) -> None:
    for key in (*CHOICES, *POSITIVE, *NON_NEGATIVE, *NOT_BLANK):
        validate_value(key, getattr(config, key))
    if not config.name.strip() or config.name in (".", "..") or "/" in config.name or "\\" in config.name:
        reject("name", config.name, "it names the experiment's folder inside out_dir: give a non-empty name without "
              "slashes (e.g. name=demo)")
    _check_sides(config)
    if not 0 < config.fraction <= 1:
        reject("fraction", config.fraction, "it must be in (0, 1]")
    for value in config.fractions:
        if not 0 < value <= 1:
            reject("fractions", value, "every fraction must be in (0, 1]")
    if config.audio_crop_seconds > config.audio_clip_seconds:
        reject("audio_crop_seconds", config.audio_crop_seconds, "it must not exceed audio_clip_seconds")
    if 0 < config.cka_items < 4:
        reject("cka_items", config.cka_items, "it must be 0 (no similarity analysis) or at least 4 (the unbiased "
              "CKA estimator needs 4 items)")
    if not 0 < config.convergence_share <= 1:
        reject("convergence_share", config.convergence_share, "it must be in (0, 1]")
    for key in ("pretrain_label_smoothing", "transfer_label_smoothing"):
        if getattr(config, key) >= 1:
            reject(key, getattr(config, key), "it must be below 1")
    if config.audio_normalize and config.audio_features == "original":
        reject("audio_normalize", True, "the seed's power features are not on a log scale, so per-band "
              "standardisation would be ruled by a few loud frames; set audio_normalize=false (as "
              "configs/original.yaml does) or use audio_features=recipe")
    if config.audio_channels == "sum" and config.audio_features == "original":
        reject("audio_channels", "sum", "the original features stack three different maps as the channels; use "
              "audio_channels=repeat with them")
    parse_backbone_args(config.backbone_args)
    validate_init("init", config.init)
    for value in config.inits:
        validate_init("inits", value)
    validate_freeze("freeze", config.freeze)
    for value in config.freezes:
        validate_freeze("freezes", value)
    if len(set(config.trackers)) != len(config.trackers):
        reject("trackers", config.trackers, "values must not repeat")
    for key in SWEEP_LISTS:  # before the checks between them: an empty list is named, not what needs it
        if not getattr(config, key):
            reject(key, getattr(config, key), "give at least one value")
        if len(set(getattr(config, key))) != len(getattr(config, key)):
            reject(key, getattr(config, key), "values must not repeat")
    _check_settings(config)


def _check_settings(config: Config) -> None:
    """The lists the sweep chooses transfer settings from, the tuning seeds, and the control's init."""
    for value in config.transfer_lrs:
        if not (math.isfinite(value) and value > 0):
            reject("transfer_lrs", value, "every learning rate must be a finite number greater than 0")
    for value in config.transfer_weight_decays:
        if not (math.isfinite(value) and value >= 0):
            reject("transfer_weight_decays", value, "every weight decay must be a finite number, 0 or more")
    if config.tune_seeds > len(config.seeds):
        reject("tune_seeds", config.tune_seeds, f"it must not exceed the number of seeds ({len(config.seeds)})")
    uses_control = any(parse_init(init).base == "control" and not parse_init(init).path for init in config.inits)
    if uses_control and not config.control:
        reject("inits", config.inits, "the init 'control' is the pretraining on the control dataset; name it "
              "(control=DATASET and control_root=PATH) or drop 'control' from inits")
    if config.control and not uses_control:
        reject("control", config.control, "no init uses it; add 'control' to inits (or leave control empty)")


# the sweep's lists: none may be empty or repeat a value; none enters a run's identity (each run records its value)
SWEEP_LISTS = ("fractions", "inits", "seeds", "freezes", "transfer_lrs", "transfer_weight_decays", "pretrain_seeds")


ARG_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_backbone_args(text: str) -> tuple:
    """backbone_args "a=1,b=x" -> (("a", 1), ("b", "x")): sorted pairs of names and YAML values."""
    import yaml

    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not ARG_PATTERN.match(name):
            reject("backbone_args", text, "give name=value pairs separated by commas, e.g. drop_path_rate=0.1")
        try:
            pairs.append((name, yaml.safe_load(value)))
        except yaml.YAMLError:
            reject("backbone_args", text, f"the value of {name} is not readable")
    return tuple(sorted(pairs))


def check_backbone(config: Config) -> dict:
    """The checks that need the backbone's own description (imports timm, so they run where work starts, not
    when a config is read): a name timm knows, `@K` and `stages:K` within its stage count, a patch stride only
    for a backbone with a patch embedding. Returns the description (training/backbone.py: describe)."""
    from audio2image.training.backbone import describe

    described = describe(config.backbone, parse_backbone_args(config.backbone_args))
    count = len(described["stages"])
    allowed = f"{config.backbone} has {count} stages ({', '.join(described['stages'])}), so K runs from 1 to {count}"
    for key, inits in (("init", [config.init]), ("inits", config.inits)):
        for init in inits:
            if (parse_init(init).depth or 0) > count:
                reject(key, init, allowed)
    for key, freezes in (("freeze", [config.freeze]), ("freezes", config.freezes)):
        for freeze in freezes:
            if freeze.startswith("stages:") and int(freeze.split(":")[1]) > count:
                reject(key, freeze, allowed.replace("from 1", "from 0"))
    if config.audio_patch_stride and not described["tokens"]:
        reject("audio_patch_stride", config.audio_patch_stride, f"{config.backbone} has no patch embedding (a ViT "
              "has one); set it to 0")
    return described
