"""The command line: each command parses its arguments and calls one importable function.

    audio2image run                      # the demo: synthetic data -> pretraining -> transfer sweep -> report
    audio2image run configs/recipe.yaml source_root=/data/mtat target_root=/data/caltech256
    audio2image run tiny source=imagefolder source_root=/data/photos target=mtat   # image -> audio
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from audio2image import __version__
from audio2image.errors import UserError
from audio2image.util import skip_exit_collection

if TYPE_CHECKING:  # the commands import the package's modules lazily, to keep `--help` fast
    from audio2image.config import Config

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIG_HELP = ("a YAML config file, or the name of a bundled one (demo, original, recipe, tiny, ast); "
               "followed by key=value overrides")
KEYS_HINT = "The config keys, with their types, defaults and meanings: `audio2image keys [WORD]`."
RENAMED_CONFIGS = {"seed": "original"}  # bundled configs renamed: old name -> new name (the old one still works)


def config_path(name: str | None) -> Path:
    """A config given by path, or by the name of a bundled config; a renamed bundled config's old name or file
    (`seed`, configs/seed.yaml) gives the new one, saying so."""
    if name is None:
        return CONFIG_DIR / "demo.yaml"
    path = Path(name)
    if not (path.exists() or path.suffix):
        path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists() and path.stem in RENAMED_CONFIGS:
        renamed = path.with_name(RENAMED_CONFIGS[path.stem] + path.suffix)
        if renamed.is_file():
            from audio2image.util import log

            log(f"config {path.stem} is now {renamed.stem} (the original experiment's settings); using {renamed}")
            return renamed
    return path


def load(args) -> Config:
    from audio2image.config import load_config
    from audio2image.training.reproducibility import prepare_environment

    config = load_config(config_path(args.config), args.overrides)
    prepare_environment(config)  # before this process's first CUDA work, which fixes cuBLAS's workspace
    return config


def load_experiment(args) -> Config:
    """The config of a whole experiment, its data folders checked before the training stack (torch) is imported:
    a wrong folder is one line at once, not after seconds."""
    from audio2image.sides import check_all_roots

    config = load(args)
    check_all_roots(config)
    return config


# --- dataset commands: what each dataset offers is in datasets/registry.py -------------------------------------
def _dataset(args):
    from audio2image.datasets.registry import DATASETS

    return DATASETS[args.dataset]


def _values(args, options) -> dict:
    """The parsed values of a dataset's options, by function parameter; keyed ones checked like config values."""
    from audio2image.config_checks import ConfigError, validate_value

    values = {}
    for option in options:
        value = getattr(args, option.param)
        if option.key:
            try:
                validate_value(option.key, value)
            except ConfigError as error:
                raise ConfigError(f"{option.flag}: {str(error).split(': ', 1)[1]}") from None
        values[option.param] = value
    return values


def cmd_synth(args) -> object:
    dataset = _dataset(args)
    return dataset.synth(args.out, workers=args.workers, **_values(args, dataset.synth_options))


def cmd_download(args) -> object:
    dataset = _dataset(args)
    return dataset.download(args.dir, **_values(args, dataset.download_options))


def cmd_inspect(args) -> str:
    dataset = _dataset(args)
    return dataset.format_inspection(dataset.inspect(args.root, **_values(args, dataset.inspect_options)))


def cmd_prepare(args) -> dict:
    """The store's summary: counts, and under "findings" the first few items skipped or kept with a warning, with
    their reasons, and where the full lists are (also for a store that was complete already)."""
    from audio2image.prepare.findings import store_findings

    dataset = _dataset(args)
    manifest = dataset.prepare(args.root, args.out, workers=args.workers, **_values(args, dataset.store_options))
    return {"store": str(args.out), "task": manifest["task"], "labels": len(manifest["labels"]),
            "splits": manifest["splits"], "skipped": len(manifest["skipped"]),
            "annotation_rows_dropped": len(manifest.get("annotation_problems", [])),
            "findings": store_findings(manifest, args.out)}


# --- training commands ---------------------------------------------------------------------------------------------
def cmd_pretrain(args) -> dict:
    from audio2image.config_checks import check_backbone
    from audio2image.prepare.stores import ensure_store
    from audio2image.sweep.executors import use_threads
    from audio2image.sweep.grid import pretrain_plan
    from audio2image.training.run import train_run

    config = load(args)
    check_backbone(config)
    plan = pretrain_plan(config, ensure_store(config, "source").path)
    use_threads(config)
    return _summary(train_run(config, plan.spec, args.run_dir or plan.run_dir))


def cmd_transfer(args) -> dict:
    """One cell of the sweep's grid, planned exactly as the sweep plans it (same folder, identity and row)."""
    import dataclasses

    from audio2image.config_checks import check_backbone
    from audio2image.prepare.stores import ensure_store
    from audio2image.sweep.executors import use_threads
    from audio2image.sweep.grid import plan_transfer
    from audio2image.targets import one_target
    from audio2image.training import distributed
    from audio2image.training.run import train_run

    config = one_target(load(args), "audio2image transfer")
    if args.init:
        config = dataclasses.replace(config, init=args.init)  # validated like any config value
    check_backbone(config)
    distributed.setup()
    store = ensure_store(config, "target") if distributed.is_main() else None
    store_path = Path(distributed.broadcast_object(str(store.path) if store else None))
    run = plan_transfer(config, store_path, config.fraction, config.init, config.seed, config.freeze)
    use_threads(config, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun's processes share the cores
    return _summary(train_run(run.config, run.spec, args.run_dir or run.run_dir))


def cmd_sweep(args) -> dict:
    config = load_experiment(args)
    from audio2image.sweep import run_sweep

    return run_sweep(config)


def cmd_plan(args) -> dict | str:
    config = load_experiment(args)
    from audio2image.sweep.plan import format_plan, plan_experiment

    plan = plan_experiment(config)
    return plan if args.json else format_plan(plan)


def cmd_report(args) -> dict:
    from audio2image.report.report import build_report

    return {k: _plain(v) for k, v in build_report(args.run_dir).items()}


def cmd_config(args) -> str:
    """The resolved config as YAML, read and checked as `run` reads and checks it (its keys and values, and what
    they ask of the backbone); the data folders and the device are not looked at."""
    from audio2image.config import config_yaml
    from audio2image.config_checks import check_backbone

    config = load(args)
    check_backbone(config)
    return config_yaml(config).rstrip("\n")


def cmd_keys(args) -> str:
    from audio2image.config_keys import describe_keys

    return describe_keys(args.word)


def cmd_run(args) -> dict:
    config = load_experiment(args)
    from audio2image.report.report import build_report
    from audio2image.sweep import run_sweep

    summary = run_sweep(config)
    report = build_report(config.experiment_dir)
    return {**summary, "report": str(report["markdown"]), "html": str(report["html"])}


def _plain(value):
    """Paths as strings, in lists too, so that the printed JSON holds no `PosixPath(...)` reprs; numbers stay
    numbers."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _summary(result: dict) -> dict:
    return {k: result.get(k) for k in ("status", "message", "best_epoch", "val", "test", "wall_seconds")}


# --- parser ------------------------------------------------------------------------------------------------------
DATASET_COMMANDS = (  # command, help, what its datasets must have, positional arguments, options of the dataset
    ("synth", "write a synthetic dataset in the real on-disk format", "synth", ("out",), "synth_options"),
    ("download", "download a real dataset (resumable, verified)", "download", ("dir",), "download_options"),
    ("inspect", "check a dataset folder and print what is in it", "inspect", ("root",), "inspect_options"),
    ("prepare", "decode a dataset once into a memory-mapped training store", "prepare", ("root", "out"),
     "store_options"),
)


def _dataset_commands(commands) -> None:
    """synth / download / inspect / prepare, with one sub-command per registered dataset that supports it."""
    from audio2image.datasets.registry import DATASETS

    for command, help_text, needs, positionals, options in DATASET_COMMANDS:
        parser = commands.add_parser(command, help=help_text)
        kinds = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
        for dataset in DATASETS.values():
            if getattr(dataset, needs) is None:
                continue
            sub = kinds.add_parser(dataset.name, help=dataset.summary, description=f"{dataset.summary}. "
                                   f"{dataset.modality}, {dataset.task_words}; its folder holds {dataset.layout}.")
            for name in positionals:
                sub.add_argument(name, type=Path)
            for option in getattr(dataset, options):
                _add_option(sub, option)
            if command in ("synth", "prepare"):
                sub.add_argument("--workers", type=int, default=2, help="processes (default 2)")
        parser.set_defaults(func=globals()[f"cmd_{command}"])


def _add_option(parser: argparse.ArgumentParser, option) -> None:
    """One dataset option; a keyed one takes its type, default and choices from the config key."""
    from audio2image.config import key_spec

    kind, default, choices = key_spec(option.key) if option.key else (option.type, option.default, None)
    text = f"{option.help} (default {default}" + (f"; config key {option.key})" if option.key else ")")
    if option.boolean:
        parser.add_argument(option.flag, dest=option.param, action=argparse.BooleanOptionalAction, default=default,
                            help=text)
    else:
        parser.add_argument(option.flag, dest=option.param, type=kind, default=default, choices=choices, help=text)


def _config_arguments(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        parser.add_argument("config", nargs="?", help=CONFIG_HELP + " (default: demo)")
    else:
        parser.add_argument("--config", help=CONFIG_HELP + " (default: demo)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a config key")
    parser.epilog = KEYS_HINT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio2image",
        description="Does pretraining a network on one modality help it learn another? Pretrain a network "
                    "(any timm backbone; ResNet-18 by default) on a source dataset (by default music auto-tagging, "
                    "MagnaTagATune), transfer it to a target dataset (by default image classification, "
                    "Caltech-256) at several fractions of its training data, "
                    "compare with random initialisation over seeds, report. Any direction: audio or image, "
                    "MagnaTagATune, Caltech-256 or your own folders (imagefolder, audiofolder).",
        epilog="Start with `audio2image run`: the whole pipeline on built-in synthetic data.")
    parser.add_argument("--version", action="version", version=f"audio2image {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _dataset_commands(commands)
    pretrain = commands.add_parser("pretrain", help="train on the source dataset (one run)")
    _config_arguments(pretrain)
    pretrain.add_argument("--run-dir", type=Path,
                          help="run folder (default: OUT_DIR/NAME/pretrain/source-seedS, S = pretrain_seed)")
    pretrain.set_defaults(func=cmd_pretrain)

    transfer = commands.add_parser("transfer", help="train on the target dataset from an init (one run); "
                                                    "runs under torchrun for several GPUs")
    _config_arguments(transfer)
    transfer.add_argument("--init", help="random | imagenet | audio | image (this experiment's pretraining) | "
                                         "control (its control's) | audio:RUN_DIR | image:RUN_DIR | "
                                         "checkpoint:PATH")
    transfer.add_argument("--run-dir", type=Path, help="run folder (default: OUT_DIR/NAME/transfer/RUN_ID)")
    transfer.set_defaults(func=cmd_transfer)

    sweep = commands.add_parser("sweep", help="pretrain, then every fraction x init x seed x freeze; resumable")
    _config_arguments(sweep, positional=True)
    sweep.set_defaults(func=cmd_sweep)

    plan = commands.add_parser("plan", help="what a sweep will train (and has finished), its time and disk, the "
                                            "power of its design; nothing is prepared, trained or written")
    _config_arguments(plan, positional=True)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    report = commands.add_parser("report", help="statistics, figures, report.md and report.html of an experiment")
    report.add_argument("run_dir", type=Path, help="the experiment folder (OUT_DIR/NAME)")
    report.set_defaults(func=cmd_report)

    run = commands.add_parser("run", help="the whole pipeline: data, stores, pretraining, sweep, report")
    _config_arguments(run, positional=True)
    run.set_defaults(func=cmd_run)

    config = commands.add_parser("config", help="print the resolved config: every key, as saved with a run, read "
                                                "and checked as `run` reads it")
    _config_arguments(config, positional=True)
    config.set_defaults(func=cmd_config)

    keys = commands.add_parser("keys", help="every config key: its type, default and meaning")
    keys.add_argument("word", nargs="?", default="", help="only the keys whose name or description holds WORD")
    keys.set_defaults(func=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> None:
    skip_exit_collection()
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) and "=" in args.config:  # `run key=value` with no config file
        args.overrides.insert(0, args.config)
        args.config = None
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        sys.exit("audio2image: interrupted; run the same command again to resume")
    except (UserError, FileNotFoundError, NotADirectoryError) as error:  # missing paths are the user's too
        _fail(str(error))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        _fail(_full_disk(error))
    try:
        if isinstance(result, str):
            print(result)
        elif result is not None:
            print(json.dumps(result, indent=2, default=str))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`audio2image keys | head`): no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and none when Python flushes at exit


def _fail(message: str) -> None:
    """Problems with the user's input get one line; anything else is a bug and keeps its traceback."""
    print(f"audio2image: error: {message}", file=sys.stderr)
    sys.exit(2)


def _full_disk(error: OSError) -> str:
    """One line for a full disk: where, and how much is free there; what was written so far is kept."""
    where = Path(error.filename or ".")
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    return (f"no space left on the disk holding {error.filename or where} ({free / 1e6:.0f} MB free); free some "
            "space and run the same command again: it resumes where it stopped")
