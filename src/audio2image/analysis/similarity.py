"""Per-stage representation similarity (linear CKA) between the networks of an experiment, from their weights.

After the transfer runs, each network is run on a fixed sample of the target's validation items and the outputs
of its stages are compared with linear CKA, accumulated over minibatches with the unbiased HSIC estimator
(Kornblith et al. 2019; Nguyen et al. 2021): memory stays at one minibatch of features, and each network is run
once, its per-batch Gram matrices serving every comparison it is in. The outputs compared are the backbone's own
intermediate outputs (timm's `forward_intermediates`, named by the module that makes each: ResNet's act1 and
layer1 to layer4, a ViT's blocks) and the pooled features the head sees (training/backbone.py: stage_outputs).
Feature maps are flattened (channels x positions), and a ViT's patch tokens likewise (tokens x width, its class
token left out), so CKA sees where in the input a feature fires, not only whether. Audio items are scored crop by
crop and their features averaged over the crops, as evaluation averages predictions.

Three comparisons per fraction and freeze, each per seed:
- "init vs random": a pretrained init's fine-tuned network against the random init's of the same seed;
- "before vs after": a network at its init against the same run's fine-tuned network (how far fine-tuning moved
  each stage);
- "random vs random": the random init's networks of two seeds: the baseline "as similar as two random runs".

Results are cached in E/analysis/cka.json, one entry per comparison, written after each one: an interrupted
analysis resumes, and a grown grid computes only what is new.

    >>> analyse_similarity(config, Path("runs/demo"), store)["comparisons"][0]["cka"]["layer4"]  # ResNet-18
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from audio2image.analysis.cka import centred_gram, minibatch_cka
from audio2image.config import CKA_FILE, Config
from audio2image.prepare.store import Store
from audio2image.training.inits import initialise
from audio2image.training.loader import Loader
from audio2image.training.backbone import stage_outputs
from audio2image.training.files import read_checkpoint
from audio2image.training.model import InitError, build_model
from audio2image.training.run import resolve_device
from audio2image.training.tasks import build_task
from audio2image.util import read_json_or_none, write_json

BATCH = 100  # items per minibatch: a 224 px ResNet's first output alone is 800k values per item
KINDS = ("init vs random", "before vs after", "random vs random")
BASELINE = "random"


def sample_rows(available: int, items: int) -> np.ndarray:
    """A fixed sample (the same for every network) of `items` of the split's `available` rows, sorted."""
    if items > available:
        raise ValueError(f"the target's validation split has {available} items, fewer than cka_items={items}; "
                         f"set cka_items={available} or less (or 0 to skip the similarity analysis)")
    return np.sort(np.random.default_rng(0).permutation(available)[:items])


def plan_comparisons(runs: list[dict]) -> list[dict]:
    """The comparisons among transfer runs, from their identities (run.json: fraction, init_name, seed, freeze,
    run_id): each one {"kind", "init", "fraction", "freeze", "seed", "a", "b", "key"}, a and b being
    {"run": run_id, "weights": "best" | "init"}."""
    by_cell: dict[tuple, dict] = {}
    for run in runs:
        by_cell.setdefault((run["fraction"], run["freeze"]), {}).setdefault(run["init_name"], {})[run["seed"]] = run
    planned = []
    for (fraction, freeze), inits in sorted(by_cell.items()):
        randoms = inits.get(BASELINE, {})
        for init, seeds in inits.items():
            for seed, run in sorted(seeds.items()):
                cell = {"init": init, "fraction": fraction, "freeze": freeze, "seed": seed}
                if init != BASELINE and seed in randoms:
                    planned.append(_comparison("init vs random", cell, run, "best", randoms[seed], "best"))
                planned.append(_comparison("before vs after", cell, run, "init", run, "best"))
        ordered = sorted(randoms)
        for first, second in zip(ordered, ordered[1:]):
            cell = {"init": BASELINE, "fraction": fraction, "freeze": freeze, "seed": f"{first}-{second}"}
            planned.append(_comparison("random vs random", cell, randoms[first], "best", randoms[second], "best"))
    return planned


def _comparison(kind: str, cell: dict, a: dict, a_weights: str, b: dict, b_weights: str) -> dict:
    ends = ({"run": a["run_id"], "weights": a_weights}, {"run": b["run_id"], "weights": b_weights})
    key = f"{kind}|{ends[0]['run']}:{a_weights}|{ends[1]['run']}:{b_weights}"
    return {"kind": kind, **cell, "a": ends[0], "b": ends[1], "key": key}


def analyse_similarity(config: Config, exp: Path, store: Store, run_dirs: list | None = None,
                       out: Path | None = None) -> dict:
    """CKA per stage for every planned comparison among the finished transfer runs of experiment `exp` (`run_dirs`:
    those of its results; default: every transfer run folder, tuning runs of settings not chosen included), cached
    in `out` (default: `exp`; a study's target: its own folder) as analysis/cka.json.

    Returns {"items", "comparisons": [...with "cka": {stage: value}], "problems": [...]}; a problem (a run
    without best weights, a sample larger than the validation split) is named and the rest still computed.
    """
    exp, path = Path(exp), Path(out or exp) / CKA_FILE
    cache = read_json_or_none(path) or {}
    if cache.get("items") != config.cka_items:
        cache = {"items": config.cka_items, "comparisons": {}}  # another sample: every value changes
    folders = sorted(map(Path, run_dirs)) if run_dirs is not None else sorted((exp / "transfer").glob("*/"))
    runs = [r for r in map(_identity, folders) if r is not None]
    planned, problems = plan_comparisons(runs), []
    try:
        rows = sample_rows(len(store.split("valid")), config.cka_items)
    except ValueError as error:
        problems.append(str(error))
        planned = []
    todo = [c for c in planned if c["key"] not in cache["comparisons"]]
    if todo:
        device = resolve_device(config.device)
        task = build_task(store, config, "transfer")
        networks = _NetworkGrams(exp, config, task, _Inputs(task, rows, device), device)
        for comparison in todo:
            try:
                cka = compare(networks.get(comparison["a"]), networks.get(comparison["b"]))
            except (FileNotFoundError, InitError, ValueError) as error:  # no weights; non-finite features
                problems.append(f"{comparison['kind']}, init {comparison['init']}, fraction "
                                f"{comparison['fraction']}, seed {comparison['seed']}: {error}")
                continue
            cache["comparisons"][comparison["key"]] = {**comparison, "cka": cka}
            write_json(path, cache)  # after each comparison: an interrupted analysis resumes here
    cache["problems"] = problems  # what this analysis could not compare, for the report
    write_json(path, cache)
    done = [cache["comparisons"][c["key"]] for c in planned if c["key"] in cache["comparisons"]]
    return {"items": config.cka_items, "comparisons": done, "problems": problems}


def compare(grams_a: list[dict], grams_b: list[dict]) -> dict[str, float]:
    """CKA per stage between two networks from their per-batch Gram matrices (`network_grams`) on the same
    batches."""
    return {name: round(value, 6) if math.isfinite(value) else value
            for name, value in minibatch_cka(grams_a, grams_b).items()}


@torch.no_grad()
def network_grams(model, batches) -> list[dict[str, np.ndarray]]:
    """Per batch, per stage, the centred Gram matrix of the network's features: all that CKA needs of it, a few
    MB for 1,000 items, so each network runs once however many comparisons it is in."""
    grams = []
    for x in batches:
        crops = x.shape[1] if x.dim() == 5 else 1
        features = stage_outputs(model, x.flatten(0, 1) if x.dim() == 5 else x)
        # audio: an item's features averaged over its crops, as evaluation averages its predictions
        grams.append({name: centred_gram(value.view(-1, crops, value.shape[1]).mean(1))
                      for name, value in features.items()})
    return grams


class _Inputs:
    """The sample's evaluation inputs, in minibatches of nearly equal size (the unbiased estimator needs 4 or
    more), made anew on every pass: holding 1,000 inputs of 224 px would take 600 MB."""

    def __init__(self, task, rows: np.ndarray, device):
        self.task, self.device = task, device
        parts = np.array_split(rows, max(1, math.ceil(len(rows) / BATCH)))  # larger parts first
        self.rows, self.size = np.concatenate(parts), len(parts[0])

    def __iter__(self):
        loader = Loader(self.task.store.split("valid"), self.rows, self.size, shuffle=False)
        return (self.task.inputs.eval(raw, self.device) for raw in loader)


def _identity(run_dir: Path) -> dict | None:
    """A finished transfer run's identity (from result.json), or None for a run that has not finished."""
    result = read_json_or_none(run_dir / "result.json") or {}
    run = result.get("run")
    if result.get("status") != "completed" or not run:
        return None
    return {**run, "init_name": run.get("init_name", run.get("init")), "run_dir": run_dir}


class _NetworkGrams:
    """Each network's Gram matrices by (run, weights), computed when first asked for (`network_grams`)."""

    def __init__(self, exp: Path, config: Config, task, inputs, device):
        self.exp, self.config, self.task, self.inputs, self.device = exp, config, task, inputs, device
        self.grams: dict[tuple, list[dict]] = {}
        self.skeleton = None  # one network that every run's best weights are loaded into in turn

    def get(self, end: dict) -> list[dict]:
        run_dir = self.exp / "transfer" / end["run"]
        identity = read_json_or_none(run_dir / "run.json") or {}
        # a network at its init is the same for every run of one init and seed (fractions, settings): made once
        key = ("init", identity.get("init"), identity.get("seed")) if end["weights"] == "init" else (end["run"],)
        if key not in self.grams:
            model = self._build(run_dir, identity, end["weights"])
            self.grams[key] = network_grams(model, self.inputs)
        return self.grams[key]

    def _build(self, run_dir: Path, identity: dict, weights: str):
        """The run's network at its init (seeded random weights, then the init's) or with its best weights, loaded
        whole into one reused network (drawing random weights costs more than loading them)."""
        if weights == "init":
            model = build_model(self.task.num_outputs, int(identity.get("seed", 0)), self.task.backbone)
            initialise(model, identity["init"], seed=int(identity["seed"]),
                       imagenet_weights=self.config.imagenet_weights, backbone=self.task.backbone)
            return model.to(self.device).eval()
        best = run_dir / "best.pt"
        if not best.is_file():
            raise FileNotFoundError(f"{run_dir} has no best weights (best.pt)")
        if self.skeleton is None:
            self.skeleton = build_model(self.task.num_outputs, 0, self.task.backbone).to(self.device).eval()
        self.skeleton.load_state_dict(read_checkpoint(best)["model"])  # float32, as trained
        return self.skeleton
