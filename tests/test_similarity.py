"""Per-stage CKA between an experiment's networks: stage outputs, the plan of comparisons, values that must hold
(a network against itself), the cache (resume, growth) and bad inputs named without stopping the rest."""
from __future__ import annotations

import json

import pytest
import torch

from audio2image.analysis import similarity
from audio2image.analysis.similarity import analyse_similarity, plan_comparisons
from audio2image.config import load_config
from audio2image.prepare.store import Store
from audio2image.training.backbone import describe, stage_outputs
from audio2image.training.model import build_model
from stores import make_image_store

CLASSES = 4


def test_stage_features_are_every_stage_flattened():
    model = build_model(CLASSES, 0).eval()
    with torch.no_grad():
        features = stage_outputs(model, torch.randn(3, 3, 64, 64))
    assert list(features) == describe("resnet18")["outputs"]
    widths = {"act1": 64 * 32 * 32, "layer1": 64 * 16 * 16, "layer2": 128 * 8 * 8, "layer3": 256 * 4 * 4,
              "layer4": 512 * 2 * 2, "pooled": 512}
    assert {name: tuple(value.shape) for name, value in features.items()} == {n: (3, w) for n, w in widths.items()}
    assert torch.allclose(features["pooled"], features["layer4"].view(3, 512, 4).mean(2), atol=1e-6)


def identity(init, seed, fraction=1.0, freeze="none"):
    return {"init_name": init, "seed": seed, "fraction": fraction, "freeze": freeze,
            "run_id": f"{init}-{seed}-{fraction}"}


def test_the_plan_pairs_by_seed_and_adds_the_baselines():
    runs = [identity(init, seed) for init in ("random", "audio", "audio@2") for seed in (0, 1, 2)]
    runs.append(identity("audio", 3))  # no random run of seed 3: no "init vs random" for it
    plan = plan_comparisons(runs)
    kinds = [c["kind"] for c in plan]
    assert kinds.count("init vs random") == 6  # 2 inits x 3 seeds
    assert kinds.count("before vs after") == 10  # every run
    assert kinds.count("random vs random") == 2  # seeds 0-1, 1-2
    versus = next(c for c in plan if c["kind"] == "init vs random" and c["init"] == "audio@2" and c["seed"] == 1)
    assert versus["a"] == {"run": "audio@2-1-1.0", "weights": "best"} and versus["b"]["run"] == "random-1-1.0"
    assert len({c["key"] for c in plan}) == len(plan)


def write_run(exp, init, seed, state, name=""):
    folder = exp / "transfer" / (name or f"{init}-{seed}")
    folder.mkdir(parents=True)
    run = {"stage": "transfer", "fraction": 1.0, "init": init, "init_name": init, "seed": seed, "freeze": "none",
           "run_id": folder.name}
    (folder / "run.json").write_text(json.dumps(run))
    (folder / "result.json").write_text(json.dumps({"status": "completed", "run": run}))
    if state is not None:
        torch.save({"model": state}, folder / "best.pt")
    return folder


@pytest.fixture
def experiment(tmp_path):
    """Random-init runs whose "fine-tuned" weights are their init (so before vs after is a network against
    itself), and a "checkpoint" run whose weights are another seed's."""
    store = make_image_store(tmp_path / "store", classes=CLASSES)
    exp = tmp_path / "exp"
    for seed in (0, 1):
        write_run(exp, "random", seed, build_model(CLASSES, seed).state_dict())
    other = tmp_path / "other.pt"
    torch.save({"model": build_model(CLASSES, 9).state_dict()}, other)
    write_run(exp, f"checkpoint:{other}", 0, build_model(CLASSES, 9).state_dict(), name="checkpoint-0")
    config = load_config("configs/tiny.yaml", ["cka_items=16", "progress=false"])
    return config, exp, Store(store)


def by_kind(result, kind, init=None):
    return [c for c in result["comparisons"] if c["kind"] == kind and (init is None or c["init"] == init)]


def test_a_network_against_itself_is_1_and_two_seeds_are_not(experiment):
    config, exp, store = experiment
    result = analyse_similarity(config, exp, store)
    assert result["problems"] == [] and result["items"] == 16
    for comparison in by_kind(result, "before vs after"):
        assert all(value == pytest.approx(1.0, abs=1e-6) for value in comparison["cka"].values()), comparison
    (seeds,) = by_kind(result, "random vs random")
    assert list(seeds["cka"]) == describe("resnet18")["outputs"] and seeds["seed"] == "0-1"
    assert all(value < 0.999 for value in seeds["cka"].values())
    assert len(by_kind(result, "init vs random")) == 1


def test_the_analysis_is_cached_and_grows_with_the_grid(experiment, monkeypatch):
    config, exp, store = experiment
    first = analyse_similarity(config, exp, store)
    calls = []
    real = similarity.compare
    monkeypatch.setattr(similarity, "compare", lambda *args: calls.append(1) or real(*args))
    assert analyse_similarity(config, exp, store)["comparisons"] == first["comparisons"] and not calls
    write_run(exp, "random", 2, build_model(CLASSES, 2).state_dict())
    grown = analyse_similarity(config, exp, store)
    assert len(calls) == 2  # only the new run's before-vs-after and the new seed pair 1-2
    assert len(grown["comparisons"]) == len(first["comparisons"]) + 2


def test_a_run_without_best_weights_is_named_and_the_rest_computed(experiment):
    config, exp, store = experiment
    write_run(exp, "random", 5, None)
    result = analyse_similarity(config, exp, store)
    assert any("random-5 has no best weights (best.pt)" in problem for problem in result["problems"])
    assert len(by_kind(result, "random vs random")) == 1  # 0-1 still computed; 1-5 is not
    assert json.loads((exp / "analysis" / "cka.json").read_text())["problems"] == result["problems"]


def test_a_sample_larger_than_the_validation_split_is_a_clear_problem(experiment):
    config, exp, store = experiment
    config = load_config("configs/tiny.yaml", ["cka_items=1000", "progress=false"])
    result = analyse_similarity(config, exp, store)
    assert result["comparisons"] == []
    (problem,) = result["problems"]
    assert "validation split has 16 items, fewer than cka_items=1000" in problem and "cka_items=16" in problem


def test_half_weights_move_cka_by_less_than_a_thousandth(tmp_path):
    """Finished transfer runs keep their weight matrices in float16 (training/saving.py: half_weights); read back
    as float32, every per-stage CKA stays within 1e-3 of the float32 weights' value."""
    from audio2image.training.saving import half_weights

    store = Store(make_image_store(tmp_path / "store", classes=CLASSES))
    config = load_config("configs/tiny.yaml", ["cka_items=16", "progress=false"])
    states = []
    for seed in (0, 1):
        model = build_model(CLASSES, seed)
        with torch.no_grad():  # trained-looking weights: no zero-initialised branch, spread norm scales
            for value in model.parameters():
                value.add_(torch.randn_like(value) * 0.1 * (value.std() if value.numel() > 1 else 1))
        states.append(model.state_dict())
    values = {}
    for kept, keep in (("fp32", dict), ("fp16", half_weights)):
        exp = tmp_path / kept
        for seed, state in enumerate(states):
            write_run(exp, "random", seed, keep(state))
        result = analyse_similarity(config, exp, store)
        values[kept] = {(c["kind"], c["seed"], stage): cka for c in result["comparisons"]
                        for stage, cka in c["cka"].items()}
    assert values["fp32"].keys() == values["fp16"].keys() and len(values["fp32"]) >= 12
    delta = max(abs(values["fp16"][key] - values["fp32"][key]) for key in values["fp32"])
    assert delta < 1e-3
