"""The experiment config: one flat, typed dataclass of primitives, read from YAML plus `key=value` overrides.

Keys are grouped by prefix so that a run's identity can be derived from the keys it reads:
`audio_*` and `image_*` configure a modality's store and inputs (whichever side it is on), `pretrain_*` and
`transfer_*` configure the two training stages, and the rest say where things live and how to run them.

    >>> config = load_config("configs/demo.yaml", ["transfer_epochs=2", "seeds=0,1"])
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audio2image.config_checks import CHOICES, SWEEP_LISTS, ConfigError, reject, validate
from audio2image.datasets.registry import DATASETS
from audio2image.util import log

SIDES = ("source", "control", "target")  # the dataset pretrained on, the positive control's, the one transferred to
PRETRAINED_SIDES = ("source", "control")  # the sides a sweep pretrains on
PRETRAIN_DIR = "pretrain"  # E/pretrain/<side>-seed<S>: one folder per pretrained side and pretraining seed
SELECTION_FILE = "selection.json"  # E/selection.json: each cell's transfer setting chosen on validation
BACKBONE_FILE = "backbone.json"  # E/backbone.json: the backbone's stages, head, first layer and outputs
CKA_FILE = Path("analysis") / "cka.json"  # E/analysis/cka.json: the per-stage similarity of the networks
# keys that no longer exist -> what to use instead
RENAMED = {"mtat_root": "source_root or target_root (the folder of the source or the target dataset)",
           "caltech256_root": "source_root or target_root (the folder of the source or the target dataset)"}
# values that were renamed: (key, old value) -> (new value, what it is); the old value is still accepted, mapped to
# the new one with a note (`renamed_value`), so that validation, saved configs and run identities see only the new
RENAMED_VALUES = {("audio_features", "seed"): ("original", "features"),
                  ("audio_split", "seed"): ("original", "split"),
                  ("image_split", "seed"): ("original", "split"),
                  ("image_augment", "seed"): ("original", "augmentation"),
                  ("pretrain_schedule", "seed-plateau"): ("original-plateau", "schedule"),
                  ("transfer_schedule", "seed-plateau"): ("original-plateau", "schedule"),
                  ("freeze", "seed"): ("original", "frozen layers"),
                  ("freezes", "seed"): ("original", "frozen layers")}
# former true/false keys that became a value of a list key: `tensorboard: true` is read as `trackers: [tensorboard]`
# with a note (`false`, the old default, adds nothing), so that one key says which trackers a run feeds
FOLDED = {"tensorboard": "trackers"}


@dataclass(frozen=True)
class Config:
    # --- what and where -------------------------------------------------------------------------------------------
    name: str = "experiment"  # the experiment's folder inside out_dir, and its report's title
    out_dir: str = "runs"  # the experiment writes to out_dir/name
    data_dir: str = ".cache/audio2image"  # synthetic datasets and prepared stores
    source: str = "mtat"  # the dataset pretrained on (a name in datasets/registry.py)
    target: str = "caltech256"  # the dataset transferred to
    source_root: str = ""  # the source dataset's folder; empty with synthetic=true means "synthesise it"
    target_root: str = ""  # the target dataset's folder; empty with synthetic=true means "synthesise it"
    # several targets in one study, each DATASET[:ROOT] (caltech256, imagefolder:data/pets, audiofolder:data/esc50):
    # pretrained once, each target tuned, run and reported on its own (E/targets/<name>/). Empty: the one target of
    # target and target_root; given, it replaces both (leave target_root empty). A single entry is that one target
    targets: list[str] = field(default_factory=list)
    control: str = ""  # a second source, pretrained on as the positive control (init `control`); empty: none
    control_root: str = ""  # synthetic=true and empty: a synthetic set with classes disjoint from the target's
    synthetic: bool = False  # synthesise the data of every side whose *_root is empty (the demo)
    synth_seed: int = 0  # seed of the synthetic datasets
    synth_clips: int = 400  # synthetic audio: number of clips
    synth_seconds: float = 29.1  # synthetic audio: length of a clip
    synth_classes: int = 10  # synthetic images: number of classes
    synth_per_class: int = 40  # synthetic images: images per class
    # --- the network -----------------------------------------------------------------------------------------------
    backbone: str = "resnet18"  # any timm architecture, by its timm name (training/backbone.py)
    backbone_args: str = ""  # more arguments of timm's model, "name=value,...": e.g. drop_path_rate=0.1
    # --- audio store and inputs -------------------------------------------------------------------------------------
    audio_features: str = "recipe"  # recipe: 16 kHz log-mel; original: the seed experiment's 22,050 Hz power mel
    audio_split: str = "standard"  # MTAT's split protocol: standard | full | original
    audio_split_seed: int = 0  # audiofolder without a split column: seed of its split
    audio_task: str = "auto"  # audiofolder: auto (tagging when a clip has several labels) | tagging | classification
    audio_label_column: str = "label"  # audiofolder in Hugging Face's layout: the metadata column of the labels
    audio_clip_seconds: float = 29.1  # every clip is padded or cropped to this length
    audio_crop_seconds: float = 3.69  # training crop; 0 = the whole clip (as the seed)
    audio_eval_crops: int = 16  # evaluation averages this many evenly spaced crops per clip
    audio_specaugment: bool = True  # SpecAugment: random time and frequency masks on training spectrograms
    audio_normalize: bool = True  # standardise log-mels with the training split's statistics
    audio_channels: str = "repeat"  # repeat: a log-mel as 3 identical channels (an RGB first layer); sum: 1 channel
    audio_patch_stride: int = 0  # a patch-embedding backbone's stride on spectrograms (AST: 10); 0: the patch size
    # --- image store and inputs -------------------------------------------------------------------------------------
    image_split: str = "stratified"  # Caltech-256's split: stratified | original (unstratified, as the seed)
    image_split_seed: int = 0  # Caltech-256, and imagefolder without split folders
    image_label_column: str = "label"  # imagefolder with metadata.csv/.jsonl (Hugging Face's): its class column
    image_include_clutter: bool = True  # Caltech-256's 257.clutter
    image_store_size: int = 256  # side of the stored square images
    image_resize: str = "center"  # center: short side then centre crop; squash: straight to a square (seed)
    image_size: int = 224  # side of the model input
    image_augment: str = "crop-flip"  # crop-flip | original (flip + rotation 30) | none
    # --- pretraining stage ----------------------------------------------------------------------------------------
    pretrain_seed: int = 0  # one pretraining run's seed (a sweep's: pretrain_seeds)
    pretrain_epochs: int = 30  # epochs of a pretraining run
    pretrain_batch_size: int = 64  # training items per step
    pretrain_optimizer: str = "sgd"  # sgd (momentum 0.9, Nesterov) | adam | adamw
    pretrain_lr: float = 0.05  # peak learning rate
    pretrain_weight_decay: float = 1e-4  # L2 penalty (decoupled for adamw)
    pretrain_schedule: str = "cosine"  # cosine | constant | original-plateau (the seed's ReduceLROnPlateau)
    pretrain_warmup_epochs: int = 1  # epochs of linear warm-up before the schedule
    pretrain_label_smoothing: float = 0.1  # for a classification source; tagging (BCE) takes none
    # --- transfer stage -------------------------------------------------------------------------------------------
    transfer_epochs: int = 30  # epochs of a transfer run
    transfer_batch_size: int = 64  # training items per step
    transfer_optimizer: str = "sgd"  # sgd (momentum 0.9, Nesterov) | adam | adamw
    transfer_lr: float = 0.05  # one transfer run's learning rate (a sweep's: transfer_lrs, chosen on validation)
    transfer_weight_decay: float = 5e-4  # one transfer run's weight decay (a sweep's: transfer_weight_decays)
    transfer_schedule: str = "cosine"  # cosine | constant | original-plateau (the seed's ReduceLROnPlateau)
    transfer_warmup_epochs: int = 1  # epochs of linear warm-up before the schedule
    transfer_label_smoothing: float = 0.1  # for a classification target; tagging (BCE) takes none
    # one transfer run
    fraction: float = 1.0  # the share of the target's training items it trains on (a sweep's: fractions)
    init: str = "random"  # where its weights start: random, imagenet, audio, audio@K, control, checkpoint:PATH, ...
    seed: int = 0  # its seed: network init, data order, training subset (a sweep's: seeds)
    freeze: str = "none"  # none | original | linear | stages:K: what it keeps frozen (a sweep's: freezes)
    # the sweep grid: fractions x inits x seeds x freezes
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.15, 0.3, 0.5, 0.7, 1.0])  # training-set shares
    inits: list[str] = field(default_factory=lambda: ["random", "audio"])  # the inits compared, each as `init` takes it
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # every cell runs once per seed
    freezes: list[str] = field(default_factory=lambda: ["none"])  # what the runs keep frozen, each as `freeze` takes it
    # the settings chosen per init, fraction and freeze on validation (sweep/selection.py): every setting is trained
    # on the first tune_seeds seeds, the best mean validation metric wins and runs on every seed
    transfer_lrs: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1])  # the learning rates tried
    transfer_weight_decays: list[float] = field(default_factory=lambda: [5e-4])  # the weight decays tried
    tune_seeds: int = 1  # how many of the first seeds every setting is tried on
    # pretraining runs per pretrained side; transfer seed number i (its position in seeds) uses run i mod n
    pretrain_seeds: list[int] = field(default_factory=lambda: [0])
    precise_bn_batches: int = 50  # batch-norm statistics recomputed over this many training batches per epoch
    checkpoint_seconds: float = 60.0  # a run's checkpoint is rewritten after this much training; 0: every epoch
    # --- what transfers (analysis/) ----------------------------------------------------------------------------------
    cka_items: int = 1000  # validation items on which per-stage CKA compares networks; 0: no similarity analysis
    convergence_share: float = 0.9  # converged: validation metric at this share of the random init's mean best
    # the report: the gain (points of the target's metric) for which it says how many seeds would detect it
    effect_of_interest: float = 5.0
    # --- how to run -----------------------------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (AMX / AVX-512 BF16); false: fp32
    channels_last: bool = True  # NHWC model and inputs on CUDA and the CPU (faster on both)
    compile: bool = False  # torch.compile the model
    workers: int = 2  # processes for preparation; loader threads for training
    threads: int = 0  # torch CPU threads per run; 0: the cores it may use (affinity, cgroup quota) / parallel
    fit_threads: bool = True  # fewer threads while other processes busy the cores (training/cores.py)
    executor: str = "local"  # local | ray | slurm | submitit-local (submitit's local mode, for trying a Slurm setup)
    parallel: int = 1  # local executor: runs at once (one per GPU where there are GPUs)
    ray_address: str = ""  # empty: start a local Ray
    slurm_partition: str = ""  # executor=slurm: the partition; empty: the cluster's default
    slurm_time_min: int = 240  # executor=slurm: a job's time limit in minutes (a preempted or timed-out run resumes)
    imagenet_weights: str = ""  # the backbone's published weights (.safetensors/.pth); empty: timm's or torch's cache
    progress: bool = True  # progress bars: downloads, preparation, and each epoch's batches where stderr is a terminal
    deterministic: bool = False  # torch's deterministic algorithms and fixed threads: bit-identical reruns, slower
    # experiment trackers fed by every run (training/trackers.py); none is part of any run's identity
    trackers: list[str] = field(default_factory=list)  # where each run is also logged (config, epochs, result)
    mlflow_uri: str = ""  # MLflow's tracking URI; empty: sqlite:///<experiment folder>/mlflow.db
    wandb_project: str = ""  # the W&B project; empty: the experiment's name

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def experiment_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def dataset(self, side: str):
        """The registry's description (datasets/registry.py) of the source or the target dataset."""
        return DATASETS[getattr(self, side)]

    def root_of(self, side: str) -> str:
        """The configured folder of the source or the target dataset ("" when unset)."""
        return getattr(self, f"{side}_root")




# --- reading, overriding, saving ---------------------------------------------------------------------------------
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = typing.get_type_hints(Config)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}


def key_spec(key: str) -> tuple[type, object, tuple | None]:
    """(type, default, allowed values or None) of a config key: what a command-line option for it needs. For a key
    with renamed values the type is a converter that also maps an old value to its new one (`renamed_value`)."""
    _check_known(key)
    kind = _TYPES[key]
    if any(renamed == key for renamed, _ in RENAMED_VALUES):
        def convert(text: str):
            return renamed_value(key, kind(text))

        convert.__name__ = kind.__name__  # argparse names the type in its messages
        return convert, _DEFAULTS[key], CHOICES.get(key)
    return kind, _DEFAULTS[key], CHOICES.get(key)


def renamed_value(key: str, value, quiet: bool = False):
    """`value` of `key` under its present name: an old value in RENAMED_VALUES becomes its new one, saying so
    (unless quiet); any other value is returned as it is.

        >>> renamed_value("image_split", "seed", quiet=True)
        'original'
    """
    if not isinstance(value, str) or (key, value) not in RENAMED_VALUES:
        return value
    new, what = RENAMED_VALUES[key, value]
    if not quiet:
        log(f"{key}={value} is now {key}={new} (the original experiment's {what}); using that")
    return new


def _coerce(key: str, value):
    """Turn a YAML or command-line value into the field's type (a renamed value into its new one), or fail naming
    the key."""
    kind = _TYPES[key]
    if typing.get_origin(kind) is list:
        (item_kind,) = typing.get_args(kind)
        if isinstance(value, str):
            value = [v for v in value.strip("[]").split(",") if v.strip()]
            value = [yaml.safe_load(v.strip()) for v in value]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [renamed_value(key, _coerce_scalar(key, v, item_kind)) for v in value]
    return renamed_value(key, _coerce_scalar(key, value, kind))


def _coerce_scalar(key: str, value, kind):
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        reject(key, value, "it must be true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        reject(key, value, "it must be a whole number")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        reject(key, value, "it must be a number")
    if kind is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        reject(key, value, "it must be a string")
    raise TypeError(kind)


def _check_known(key: str) -> None:
    if key in FOLDED:
        return
    if key in RENAMED:
        raise ConfigError(f"config key '{key}' is gone: use {RENAMED[key]}")
    if key not in _FIELDS:
        near = difflib.get_close_matches(key, list(_FIELDS), n=3, cutoff=0.6)
        listed = "`audio2image keys` lists every key"
        hint = f"did you mean {', '.join(repr(n) for n in near)}? ({listed})" if near else listed
        raise ConfigError(f"unknown config key '{key}'; {hint}")


def _yaml_scalar(key: str, raw: str):
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        reject(key, raw, "it is not a readable value")


def parse_overrides(overrides: list[str]) -> dict:
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key = key.strip().lstrip("-").replace("-", "_")
        _check_known(key)
        # Text keys keep the literal text (name=1.10 stays "1.10"); other keys are read as YAML scalars.
        literal = key not in FOLDED and (typing.get_origin(_TYPES[key]) is list or _TYPES[key] is str)
        values[key] = raw if literal else _yaml_scalar(key, raw)
    return values


def from_dict(values: dict, base: Config | None = None) -> Config:
    """A Config from a mapping of keys to values; unknown keys and bad values raise ConfigError."""
    values = _folded(values, base)
    for key in values:
        _check_known(key)
    coerced = {key: _coerce(key, value) for key, value in values.items()}
    return dataclasses.replace(base, **coerced) if base else Config(**coerced)


def _folded(values: dict, base: Config | None) -> dict:
    """`values` with each former true/false key (FOLDED) turned into a value of its list key, saying so."""
    values = dict(values)
    for old, key in FOLDED.items():
        if old in values and _coerce_scalar(old, values.pop(old), bool):
            listed = (_coerce(key, values[key]) if key in values
                      else getattr(base, key) if base else _FIELDS[key].default_factory())
            values[key] = [*listed, *([] if old in listed else [old])]
            log(f"{old}=true is now {key}={','.join(values[key])}; using that")
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(error).split())}")
        if not isinstance(values, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
    values.update(parse_overrides(overrides or []))
    return from_dict(values)


def config_yaml(config: Config) -> str:
    """The resolved config as YAML, every key in Config's order: what config.yaml holds beside every result."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (readable) next to a result."""
    from audio2image.util import atomic_write_text

    atomic_write_text(path, config_yaml(config))


def config_hash(values: dict) -> str:
    """A stable short hash of plain values (key order does not matter)."""
    import hashlib

    blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


SHARED_TRAINING_KEYS = ("precise_bn_batches", "backbone", "backbone_args")
# Keys that say how a dataset folder is read into its store, added after stores existed: a store's name hashes each
# only when it differs from its default (prepare/stores.py), so the stores made before keep their names; a run's
# identity has them through its store's name alone (keys_for leaves them out), so no run made before changes id.
READING_KEYS = ("audio_label_column", "image_label_column")


def keys_for(modality: str, stage: str) -> list[str]:
    """The config keys that a stage's run on a modality reads: its identity, apart from run-specific values
    (the sweep's lists are not read by a run: each run has its own transfer_lr, pretrain_seed, ...)."""
    return [k for k in _FIELDS if (k.startswith((f"{modality}_", f"{stage}_")) or k in SHARED_TRAINING_KEYS)
            and k not in SWEEP_LISTS and k not in READING_KEYS]
