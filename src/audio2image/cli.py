"""The command line: each command parses its arguments and calls one importable function.

    audio2image run                      # the demo: synthetic data -> pretraining -> transfer sweep -> report
    audio2image run configs/recipe.yaml mtat_root=/data/mtat caltech256_root=/data/caltech
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from audio2image import __version__

if TYPE_CHECKING:  # the commands import the package's modules lazily, to keep `--help` fast
    from audio2image.config import Config

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIG_HELP = ("a YAML config file, or the name of a bundled one (demo, seed, recipe, tiny); "
               "followed by key=value overrides")


def config_path(name: str | None) -> Path:
    """A config given by path, or by the name of a bundled config."""
    if name is None:
        return CONFIG_DIR / "demo.yaml"
    path = Path(name)
    if path.exists() or path.suffix:
        return path
    return CONFIG_DIR / f"{name}.yaml"


def load(args) -> Config:
    from audio2image.config import load_config

    return load_config(config_path(args.config), args.overrides)


# --- commands ----------------------------------------------------------------------------------------------------
def cmd_synth(args) -> object:
    from audio2image.datasets import synth

    if args.dataset == "mtat":
        return synth.synth_mtat(args.out, args.clips, args.seed, args.seconds, workers=args.workers)
    return synth.synth_caltech256(args.out, args.classes, args.per_class, args.seed, workers=args.workers)


def cmd_download(args) -> object:
    from audio2image.datasets import download

    if args.dataset == "mtat":
        return download.download_mtat(args.dir, args.mirror)
    return download.download_caltech256(args.dir, args.url)


def cmd_inspect(args) -> str:
    if args.dataset == "mtat":
        from audio2image.datasets import mtat

        return mtat.format_mtat_inspection(mtat.inspect_mtat(args.root))
    from audio2image.datasets import caltech256

    report = caltech256.inspect_caltech256(args.root, include_clutter=not args.exclude_clutter,
                                           decode=not args.no_decode, workers=args.workers)
    return caltech256.format_caltech256_inspection(report)


def cmd_prepare(args) -> dict:
    if args.dataset == "mtat":
        from audio2image.prepare.audio import prepare_mtat

        manifest = prepare_mtat(args.root, args.out, features=args.features, split=args.split,
                                clip_seconds=args.clip_seconds, workers=args.workers)
    else:
        from audio2image.prepare.images import prepare_caltech256

        manifest = prepare_caltech256(args.root, args.out, size=args.size, resize=args.resize, split=args.split,
                                      split_seed=args.split_seed, include_clutter=not args.exclude_clutter,
                                      workers=args.workers)
    return {"store": str(args.out), "splits": manifest["splits"], "skipped": len(manifest["skipped"])}


def cmd_pretrain(args) -> dict:
    from audio2image.prepare.stores import ensure_store
    from audio2image.sweep.grid import pretrain_plan
    from audio2image.training.run import train_run

    config = load(args)
    plan = pretrain_plan(config, ensure_store(config, config.source).path)
    return _summary(train_run(config, plan.spec, args.run_dir or plan.run_dir))


def cmd_transfer(args) -> dict:
    import dataclasses

    from audio2image.prepare.stores import ensure_store
    from audio2image.sweep.grid import transfer_run_id
    from audio2image.training import distributed
    from audio2image.training.run import RunSpec, train_run

    config = load(args)
    if args.init:
        config = dataclasses.replace(config, init=args.init)  # validated like any config value
    distributed.setup()
    store = ensure_store(config, config.target) if distributed.is_main() else None
    store_path = Path(distributed.broadcast_object(str(store.path) if store else None))
    run_id = transfer_run_id(config, store_path, config.fraction, config.init, config.seed, config.freeze)
    spec = RunSpec("transfer", store_path, config.fraction, config.init, config.seed, config.freeze, run_id)
    run_dir = args.run_dir or config.experiment_dir / "transfer" / run_id
    return _summary(train_run(config, spec, run_dir))


def cmd_sweep(args) -> dict:
    from audio2image.sweep import run_sweep

    return run_sweep(load(args))


def cmd_report(args) -> dict:
    from audio2image.report.report import build_report

    return {k: str(v) for k, v in build_report(args.run_dir).items()}


def cmd_run(args) -> dict:
    config = load(args)
    from audio2image.report.report import build_report
    from audio2image.sweep import run_sweep

    summary = run_sweep(config)
    report = build_report(config.experiment_dir)
    return {**summary, "report": str(report["markdown"]), "html": str(report["html"])}


def _summary(result: dict) -> dict:
    return {k: result.get(k) for k in ("status", "message", "best_epoch", "val", "test", "wall_seconds")}


# --- parser ------------------------------------------------------------------------------------------------------
def _config_arguments(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        parser.add_argument("config", nargs="?", help=CONFIG_HELP + " (default: demo)")
    else:
        parser.add_argument("--config", help=CONFIG_HELP + " (default: demo)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a config key")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio2image",
        description="Does pretraining a network on audio help it learn images? Pretrain a ResNet-18 on music "
                    "auto-tagging (MagnaTagATune), transfer it to image classification (Caltech-256) at several "
                    "fractions of the training data, compare with random initialisation over seeds, report.",
        epilog="Start with `audio2image run`: the whole pipeline on built-in synthetic data.")
    parser.add_argument("--version", action="version", version=f"audio2image {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write a synthetic dataset in the real on-disk format")
    synth_kinds = synth.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    s = synth_kinds.add_parser("mtat", help="MagnaTagATune-format MP3 clips with audible tags")
    s.add_argument("out", type=Path, help="dataset root to write")
    s.add_argument("--clips", type=int, default=400, help="number of clips (default 400)")
    s.add_argument("--seconds", type=float, default=29.1, help="clip length in seconds (default 29.1)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    s = synth_kinds.add_parser("caltech256", help="Caltech-256-format JPEG tree with learnable classes")
    s.add_argument("out", type=Path, help="dataset root to write")
    s.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    s.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    synth.set_defaults(func=cmd_synth)

    download = commands.add_parser("download", help="download a real dataset (resumable, verified)")
    kinds = download.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    d = kinds.add_parser("mtat", help="MagnaTagATune: three zip parts + two CSVs, sha256-verified, unzipped")
    d.add_argument("dir", type=Path, help="dataset root to fill")
    d.add_argument("--mirror", help="base URL to download from instead of the official host")
    d = kinds.add_parser("caltech256", help="Caltech-256: the tar from data.caltech.edu, md5-verified, extracted")
    d.add_argument("dir", type=Path, help="dataset root to fill")
    d.add_argument("--url", help="URL of 256_ObjectCategories.tar instead of the official one")
    download.set_defaults(func=cmd_download)

    inspect = commands.add_parser("inspect", help="check a dataset root and print what is in it")
    kinds = inspect.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    i = kinds.add_parser("mtat", help="files present, split counts per protocol, top-50 tags (no decoding)")
    i.add_argument("root", type=Path)
    i = kinds.add_parser("caltech256", help="classes, images per class, stray entries, undecodable images")
    i.add_argument("root", type=Path)
    i.add_argument("--no-decode", action="store_true", help="do not try to decode every image")
    i.add_argument("--exclude-clutter", action="store_true", help="leave out 257.clutter")
    i.add_argument("--workers", type=int, default=2, help="processes for decoding (default 2)")
    inspect.set_defaults(func=cmd_inspect)

    prepare = commands.add_parser("prepare", help="decode a dataset once into a memory-mapped training store")
    kinds = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    p = kinds.add_parser("mtat", help="log-mel spectrograms, fp16, one array per split")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--features", choices=("recipe", "seed"), default="recipe",
                   help="recipe: 16 kHz, n_fft 512, hop 256, 128 mels, dB; seed: 22,050 Hz, n_fft 2048, "
                        "hop 512, 128 mels, power (default recipe)")
    p.add_argument("--split", choices=("standard", "full", "seed"), default="standard",
                   help="standard: 0-b/c/d-f, clips with a top-50 tag; full: same folders, all clips; "
                        "seed: 0-b/c-d/e-f (default standard)")
    p.add_argument("--clip-seconds", type=float, default=29.1, help="pad or crop every clip to this (29.1)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    p = kinds.add_parser("caltech256", help="RGB uint8 images of one size, one array per split")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, default=256, help="side of the stored square images (default 256)")
    p.add_argument("--resize", choices=("center", "squash"), default="center",
                   help="center: short side to SIZE, centre crop; squash: straight to SIZE x SIZE, as the seed")
    p.add_argument("--split", choices=("stratified", "seed"), default="stratified",
                   help="stratified 60/20/20 per class, or the seed's unstratified 60/20/20")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--exclude-clutter", action="store_true", help="leave out 257.clutter")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    prepare.set_defaults(func=cmd_prepare)

    pretrain = commands.add_parser("pretrain", help="train on the source dataset (one run)")
    _config_arguments(pretrain)
    pretrain.add_argument("--run-dir", type=Path, help="run folder (default: OUT_DIR/NAME/pretrain)")
    pretrain.set_defaults(func=cmd_pretrain)

    transfer = commands.add_parser("transfer", help="train on the target dataset from an init (one run); "
                                                    "runs under torchrun for several GPUs")
    _config_arguments(transfer)
    transfer.add_argument("--init", help="random | imagenet | audio:RUN_DIR | image:RUN_DIR | checkpoint:PATH")
    transfer.add_argument("--run-dir", type=Path, help="run folder (default: OUT_DIR/NAME/transfer/RUN_ID)")
    transfer.set_defaults(func=cmd_transfer)

    sweep = commands.add_parser("sweep", help="pretrain, then every fraction x init x seed x freeze; resumable")
    _config_arguments(sweep, positional=True)
    sweep.set_defaults(func=cmd_sweep)

    report = commands.add_parser("report", help="statistics, figures, report.md and report.html of an experiment")
    report.add_argument("run_dir", type=Path, help="the experiment folder (OUT_DIR/NAME)")
    report.set_defaults(func=cmd_report)

    run = commands.add_parser("run", help="the whole pipeline: data, stores, pretraining, sweep, report")
    _config_arguments(run, positional=True)
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) and "=" in args.config:  # `run key=value` with no config file
        args.overrides.insert(0, args.config)
        args.config = None
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        sys.exit("audio2image: interrupted; run the same command again to resume")
    except Exception as error:
        if not _is_user_error(error):
            raise
        print(f"audio2image: error: {error}", file=sys.stderr)
        sys.exit(2)
    if isinstance(result, str):
        print(result)
    elif result is not None:
        print(json.dumps(result, indent=2, default=str))


USER_ERRORS = {"ConfigError", "InitError", "DownloadError", "AnnotationError", "FileNotFoundError",
               "NotADirectoryError", "StoreMismatchError"}


def _is_user_error(error: Exception) -> bool:
    """Problems with the user's input get one line; anything else is a bug and keeps its traceback.

    Matched by class name so that reporting an error does not import torch.
    """
    return type(error).__name__ in USER_ERRORS or (
        isinstance(error, (ValueError, RuntimeError)) and str(error).startswith("config key"))
