"""The dataset registry: one description per dataset, read by the CLI, store preparation, config validation, the
sweep and the report. Nothing outside a dataset's own module branches on its name.

A description says what the dataset is (modality, task), which config keys shape its prepared store, and where
its functions are (prepare, inspect, and where it has them synth and download). Functions are named by module and
attribute and imported when first called, so that reading the registry (for `--help` or config validation) imports
neither numpy nor soundfile nor Pillow.

Options follow one rule: an option's flag names the function's parameter (`--clip-seconds` -> `clip_seconds`),
and an option with a `key` takes its type, default and allowed values from that config key, which also gives its
value when a run prepares or synthesises the dataset from a config. Adding a dataset is one module plus one entry
in `DATASETS` below.

    >>> DATASETS["mtat"].modality
    'audio'
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

MODALITIES = ("audio", "image")
TASKS = ("tagging", "classification")


@dataclass(frozen=True)
class Ref:
    """A function named as "module:attribute", imported when first called."""

    target: str

    def __call__(self, *args, **kwargs):
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


@dataclass(frozen=True)
class Option:
    """A command-line option of one of a dataset's commands; with `key`, also a config key (see the module doc)."""

    flag: str
    help: str
    key: str = ""
    type: type | None = None  # options without a key: their type and default
    default: object = None
    boolean: bool = False  # a --flag / --no-flag pair

    @property
    def param(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Anchors:
    """Published results of training on a dataset, shown beside a pretraining run on it.

    `columns` are result keys ("test_roc_auc", "val_roc_auc", ...); each row is (model, protocol, values, one per
    column, None where not published). `protocol` holds the config values the published rows used: a run with
    other values is compared only approximately, and a run on synthetic data not at all.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, str, tuple], ...]
    protocol: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    name: str
    modality: str  # "audio" | "image": the model inputs, and which config keys (audio_* | image_*) its runs read
    task: str | None  # "tagging" (multi-label) | "classification"; None: decided by the data (see its module)
    summary: str  # one line for --help
    layout: str  # what its root folder holds, for messages
    prepare: Ref  # prepare(root, out, *, workers, progress, **store options) -> the store's manifest
    store_options: tuple[Option, ...]  # every option has a key: these keys shape the store (its folder's hash)
    inspect: Ref  # inspect(root, **inspect options) -> report dict
    format_inspection: Ref  # report dict -> text
    # what a store will hold, without preparing it (a plan's counts and sizes): item(**store options) -> its
    # array's shape and dtype (and what training reads of an audio store's features); count(root, **store options)
    # -> {"splits": {split: items}, "labels": n}, from the folder's index (annotations, file names), nothing decoded
    item: Ref
    count: Ref
    inspect_options: tuple[Option, ...] = ()
    synth: Ref | None = None  # synth(out, *, workers, progress, **synth options) -> summary; every option keyed
    synth_options: tuple[Option, ...] = ()
    # the same as `count` for the synthetic version, from its parameters (synth values and store options by
    # parameter name) before it is made
    synth_count: Ref | None = None
    # the synth parameter that, set to N, makes its classes disjoint from a synthetic set of N classes: how a
    # synthetic positive control of the target's kind is made (prepare/stores.py); empty: the dataset has none
    synth_disjoint: str = ""
    # the config key of the store's image side, when the synth draws images of sides min_side..max_side: a sweep
    # draws them from that side to 2.5 times it (at most SYNTH_LARGEST_SIDE), as larger ones only cost drawing
    # and decoding time; empty: the synth's own sizes
    synth_store_side: str = ""
    download: Ref | None = None  # download(dir, **download options) -> summary
    download_options: tuple[Option, ...] = ()
    anchors: Anchors | None = None

    @property
    def store_keys(self) -> tuple[str, ...]:
        return tuple(option.key for option in self.store_options)

    @property
    def task_words(self) -> str:
        return self.task or "tagging or classification, from its labels"


# --- shared options ------------------------------------------------------------------------------------------------
WORKERS = Option("--workers", "processes for decoding", type=int, default=2)
DECODE = Option("--decode", "decode every file to find the broken ones (--no-decode: file sizes only)",
                type=bool, default=True, boolean=True)
FEATURES = Option("--features", "recipe: 16 kHz, n_fft 512, hop 256, 128 mels, dB (Won et al. 2020); original: "
                  "the seed's 22,050 Hz, n_fft 2048, hop 512, 128 mels, power", key="audio_features")
CLIP_SECONDS = Option("--clip-seconds", "pad or crop every clip to this length", key="audio_clip_seconds")
IMAGE_SIZE = Option("--size", "side of the stored square images", key="image_store_size")
RESIZE = Option("--resize", "center: short side to SIZE, centre crop; squash: straight to SIZE x SIZE (as the seed)",
                key="image_resize")
IMAGE_SPLIT_SEED = Option("--split-seed", "seed of the split", key="image_split_seed")
CLUTTER = Option("--include-clutter", "keep 257.clutter as a class (--no-include-clutter leaves it out)",
                 key="image_include_clutter", boolean=True)
SYNTH_SEED = Option("--seed", "random seed", key="synth_seed")
AUDIO_ITEM = Ref("audio2image.prepare.audio:audio_item")
IMAGE_ITEM = Ref("audio2image.prepare.images:image_item")
LABEL_HELP = "in Hugging Face's layout: the metadata column that holds the labels"
AUDIO_LABEL_COLUMN = Option("--label-column", LABEL_HELP, key="audio_label_column")
IMAGE_LABEL_COLUMN = Option("--label-column", LABEL_HELP, key="image_label_column")

MTAT = Dataset(
    name="mtat", modality="audio", task="tagging",
    summary="MagnaTagATune: 29.1 s music clips, top-50 tags (multi-label)",
    layout="annotations_final.csv and mp3/<0-f>/*.mp3",
    prepare=Ref("audio2image.prepare.audio:prepare_mtat"),
    store_options=(FEATURES,
                   Option("--split", "standard: folders 0-b / c / d-f, clips with a top-50 tag; full: same folders, "
                          "all clips; original: the seed's 0-b / c-d / e-f", key="audio_split"),
                   CLIP_SECONDS),
    inspect=Ref("audio2image.datasets.mtat:inspect_mtat"),
    format_inspection=Ref("audio2image.datasets.mtat:format_mtat_inspection"),
    item=AUDIO_ITEM, count=Ref("audio2image.datasets.mtat:count_mtat"),
    synth=Ref("audio2image.datasets.synth:synth_mtat"),
    synth_count=Ref("audio2image.datasets.synth.mtat:count_synth_mtat"),
    synth_options=(Option("--clips", "number of clips", key="synth_clips"),
                   Option("--seconds", "clip length in seconds", key="synth_seconds"), SYNTH_SEED),
    download=Ref("audio2image.datasets.download:download_mtat"),
    download_options=(Option("--mirror", "base URL to download from instead of the official host", type=str),),
    anchors=Anchors(
        columns=("test_roc_auc", "test_pr_auc", "val_roc_auc"),
        rows=(("short-chunk ResNet (Won et al. 2020)", "clean standard split, 16 crops", (0.9129, 0.4614, None)),
              ("Harmonic CNN (Won et al. 2020)", "clean standard split, 16 crops", (0.9127, 0.4611, None)),
              ("musicnn (Won et al. 2020)", "clean standard split, 16 crops", (0.9106, 0.4493, None)),
              ("FCN (Won et al. 2020)", "clean standard split, 16 crops", (0.9005, 0.4295, None)),
              ("seed experiment", "its own split, whole clip, no log", (None, None, 0.824))),
        protocol={"audio_split": "standard"}),
)

CALTECH256 = Dataset(
    name="caltech256", modality="image", task="classification",
    summary="Caltech-256: 30,607 images in 257 classes (with clutter)",
    layout="256_ObjectCategories/NNN.name/*.jpg",
    prepare=Ref("audio2image.prepare.images:prepare_caltech256"),
    store_options=(IMAGE_SIZE, RESIZE,
                   Option("--split", "stratified: 60/20/20 per class; original: the seed's unstratified 60/20/20",
                          key="image_split"),
                   IMAGE_SPLIT_SEED, CLUTTER),
    inspect=Ref("audio2image.datasets.caltech256:inspect_caltech256"),
    format_inspection=Ref("audio2image.datasets.caltech256:format_caltech256_inspection"),
    inspect_options=(DECODE, CLUTTER, WORKERS),
    item=IMAGE_ITEM, count=Ref("audio2image.datasets.caltech256:count_caltech256"),
    synth=Ref("audio2image.datasets.synth:synth_caltech256"),
    synth_count=Ref("audio2image.datasets.synth.caltech256:count_synth_caltech256"),
    synth_options=(Option("--classes", "number of classes", key="synth_classes"),
                   Option("--per-class", "images per class", key="synth_per_class"), SYNTH_SEED),
    synth_disjoint="first_class",
    synth_store_side="image_store_size",
    download=Ref("audio2image.datasets.download:download_caltech256"),
    download_options=(Option("--url", "URL of 256_ObjectCategories.tar instead of the official one", type=str),),
)

IMAGEFOLDER = Dataset(
    name="imagefolder", modality="image", task="classification",
    summary="your images: ROOT/<class>/**/<image> (torchvision ImageFolder's rules), optionally in split folders "
            "(train/, validation/, test/, ...), or Hugging Face's ImageFolder layout with metadata.csv/.jsonl",
    layout="<class>/**/<image> (or train/, validation/, test/ each holding class folders, or metadata.csv/.jsonl "
           "files naming each image and its label)",
    prepare=Ref("audio2image.prepare.images:prepare_imagefolder"),
    store_options=(IMAGE_SIZE, RESIZE, IMAGE_SPLIT_SEED, IMAGE_LABEL_COLUMN),
    inspect=Ref("audio2image.datasets.imagefolder:inspect_imagefolder"),
    format_inspection=Ref("audio2image.datasets.imagefolder:format_imagefolder_inspection"),
    inspect_options=(DECODE, WORKERS, IMAGE_LABEL_COLUMN),
    item=IMAGE_ITEM, count=Ref("audio2image.datasets.imagefolder:count_imagefolder"),
)

AUDIOFOLDER = Dataset(
    name="audiofolder", modality="audio", task=None,
    summary="your audio: ROOT/labels.csv (path, labels separated by ';', optional split) and the files it names "
            "(any format soundfile decodes), or Hugging Face's AudioFolder layout (metadata.csv/.jsonl or class "
            "folders, optionally in split folders)",
    layout="labels.csv with columns path and labels (and optionally split), and the audio files it names; or "
           "metadata.csv/.jsonl files (file_name, label) or class folders, optionally in split folders",
    prepare=Ref("audio2image.prepare.audio:prepare_audiofolder"),
    store_options=(FEATURES, CLIP_SECONDS,
                   Option("--split-seed", "seed of the split when labels.csv has no split column",
                          key="audio_split_seed"),
                   Option("--task", "auto: tagging when any clip has several labels, else classification",
                          key="audio_task"),
                   AUDIO_LABEL_COLUMN),
    inspect=Ref("audio2image.datasets.audiofolder_inspect:inspect_audiofolder"),
    format_inspection=Ref("audio2image.datasets.audiofolder_inspect:format_audiofolder_inspection"),
    inspect_options=(DECODE, WORKERS, AUDIO_LABEL_COLUMN),
    item=AUDIO_ITEM, count=Ref("audio2image.datasets.audiofolder:count_audiofolder"),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (MTAT, CALTECH256, IMAGEFOLDER, AUDIOFOLDER)}


def dataset(name: str) -> Dataset:
    """The registered dataset `name`; KeyError names the known ones."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]
