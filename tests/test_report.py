"""build_report on fake but well-formed experiment folders: full, partial, and with no results."""
import csv
import json
import math
import re

import pytest
import torch
import torchvision
import yaml
from PIL import Image

from audio2image.config import from_dict, save_config
from audio2image.report import build_report, stats
from audio2image.report.read import read_config
from audio2image.report.report import _configuration, read_results, render_html, transfer_curves
from audio2image.report.results import _ci, _gain_ci, gains_section, transfer_section
from audio2image.report.text import CLIPPED_NOTE, pct
from audio2image.training.backbone import describe

HEADER = ["run_id", "stage", "dataset", "fraction", "init", "seed", "freeze", "status", "best_epoch", "epochs_run",
          "val_loss", "val_top1", "val_top5", "val_mean_class_acc", "test_loss", "test_top1", "test_top5",
          "test_mean_class_acc", "wall_seconds"]
SECTIONS = ["## The answer", "## Conclusion", "## Inits", "## Configuration summary", "## Pretraining",
            "## Settings chosen on validation", "## Transfer results", "## Gain over random init", "## Positive control",
            "## Data efficiency", "## What transfers", "## Validation curves", "## Seed-style chart",
            "## First-layer filters", "## Runs"]
EPOCHS = 4


def resnet_state(outputs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Linear(512, outputs)
    return model.state_dict()


def accuracy(fraction, init, seed) -> float:
    """Accuracy rising linearly in log fraction, an init's gain, and a fixed pseudo-random seed effect."""
    gain = {"random": 0.0, "audio": 0.03, "imagenet": 0.25, "control": 0.2}[init]
    noise = 0.015 * math.sin(1000 * fraction + 7 * seed + len(init))  # run-to-run noise, the same on every call
    return 0.2 + 0.1 * math.log2(fraction * 8) + gain + 0.01 * seed + noise


def make_experiment(root, fractions=(0.25, 1.0), inits=("random", "audio"), seeds=(0, 1), skip=(), extra=None):
    """An experiment folder as the sweep writes it; `skip` holds (fraction, init, seed) runs left out."""
    exp = root / "exp"
    (exp / "pretrain" / "source-seed0").mkdir(parents=True)
    config = {"name": "fixture", "source": "mtat", "target": "caltech256", "fractions": list(fractions),
              "inits": list(inits), "seeds": list(seeds), "freezes": ["none"], "pretrain_epochs": EPOCHS,
              "transfer_epochs": EPOCHS, "pretrain_optimizer": "sgd", "pretrain_lr": 0.05,
              "transfer_optimizer": "sgd", "transfer_lr": 0.05, "audio_features": "recipe", "image_size": 64,
              "audio_split": "standard", "image_split": "stratified", "synthetic": True, "imagenet_weights": "",
              **(extra or {})}
    (exp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    write_pretrain(exp / "pretrain" / "source-seed0")
    rows = []
    for fraction in fractions:
        for init in inits:
            for seed in seeds:
                if (fraction, init, seed) not in skip:
                    rows.append(write_transfer_run(exp, fraction, init, seed))
    with open(exp / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return exp


def write_pretrain(folder):
    lines = [{"epoch": e, "lr": 0.05, "train_loss": 0.3 - 0.03 * e, "val_loss": 0.28 - 0.02 * e,
              "val_roc_auc": 0.7 + 0.04 * e, "val_pr_auc": 0.2 + 0.03 * e, "seconds": 1.0} for e in range(1, 5)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    result = {"status": "completed", "message": "", "task": "tagging", "selection_metric": "val_roc_auc",
              "best_epoch": 4, "epochs_run": 4, "val": {"loss": 0.2, "roc_auc": 0.86, "pr_auc": 0.32},
              "test": {"loss": 0.21, "roc_auc": 0.85, "pr_auc": 0.31}, "wall_seconds": 10.0,
              "run": {"stage": "pretrain", "dataset": "mtat", "modality": "audio", "seed": 0, "run_id": "pretrain"}}
    (folder / "result.json").write_text(json.dumps(result))
    torch.save({"model": resnet_state(50, 1), "epoch": 4}, folder / "best.pt")


def write_transfer_run(exp, fraction, init, seed) -> dict:
    run_id = f"f{fraction}-{init}-s{seed}-none"
    folder = exp / "transfer" / run_id
    folder.mkdir(parents=True)
    final = accuracy(fraction, init, seed)
    lines = [{"epoch": e, "lr": 0.05, "train_loss": 3.0 / e, "train_top1": final * e / EPOCHS, "val_loss": 3.2 / e,
              "val_top1": final * e / EPOCHS, "val_top5": min(1.0, 2 * final * e / EPOCHS),
              "val_mean_class_acc": final * e / EPOCHS, "seconds": 1.0} for e in range(1, EPOCHS + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    loaded = f"audio:{exp / 'pretrain' / 'source-seed0'}" if init == "audio" else init  # as the sweep resolves it
    ident = {"stage": "transfer", "dataset": "caltech256", "modality": "image", "fraction": fraction,
             "init": loaded, "init_name": init, "seed": seed, "freeze": "none", "run_id": run_id}
    val = {"loss": 1.0, "top1": final, "top5": min(1.0, 2 * final), "mean_class_acc": final}
    test = {"loss": 1.1, "top1": final - 0.005, "top5": min(1.0, 2 * final), "mean_class_acc": final - 0.01}
    result = {"status": "completed", "message": "", "task": "classification", "selection_metric": "val_top1",
              "best_epoch": EPOCHS, "epochs_run": EPOCHS, "val": val, "test": test, "wall_seconds": 4.0,
              "run": ident}
    (folder / "result.json").write_text(json.dumps(result))
    return {"run_id": run_id, "stage": "transfer", "dataset": "caltech256", "fraction": fraction, "init": init,
            "seed": seed, "freeze": "none", "status": "completed", "best_epoch": EPOCHS, "epochs_run": EPOCHS,
            **{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()},
            "wall_seconds": 4.0}


def assert_pngs_ok(paths):
    for path in paths:
        assert path.stat().st_size > 8_000, path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 200
            assert len(image.convert("L").getcolors(1 << 16) or range(1000)) > 20  # not a blank canvas


def assert_self_contained(text: str):
    assert "data:image/png;base64," in text
    assert not re.search(r"https?://|<script|<link|@import|url\(", text)
    for src in re.findall(r'src="([^"]*)"', text):
        assert src.startswith("data:image/png;base64,")


def test_full_report(tmp_path):
    exp = make_experiment(tmp_path)
    out = build_report(exp)
    assert out["markdown"].is_file() and out["html"].is_file()
    assert out["missing_cells"] == 0
    names = {p.name for p in out["figures"]}
    assert names == {"verdicts.png", "pretrain_curves_source.png", "accuracy_vs_fraction.png", "gain_vs_fraction.png",
                     "validation_curves.png", "seed_style_bars.png", "first_layer_filters.png", "convergence.png"}
    assert_pngs_ok(out["figures"])
    md = out["markdown"].read_text()
    positions = [md.index(s) for s in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    assert md.startswith("# fixture")
    assert "0.9129" in md and "0.824" in md and "synthetic" in md
    assert "not tested at 25%, 100% (2 seeds paired; a test needs 3)" in md  # two seeds are never a test
    # the data-efficiency table and its sentences share one verdict: here the paired gains are not significant
    assert md.count("| no clear difference | 2 |") == 2 and "gain |" not in md.split("## Data efficiency")[1]
    assert "no clear difference at 25%, 100%. No clear gain" in md
    html = out["html"].read_text()
    assert html.count("data:image/png;base64,") == len(out["figures"])
    assert_self_contained(html)
    for heading in ("Conclusion", "Data efficiency", "Runs"):
        assert re.search(rf'<h2 id="[a-z-]+">{heading}</h2>', html)
    assert "<table>" in html


def test_partial_sweep_marks_missing(tmp_path):
    imagenet = tmp_path / "imagenet.pth"
    torch.save(resnet_state(1000, 2), imagenet)
    skip = {(1.0, "audio", 1), (0.25, "imagenet", 0), (0.25, "imagenet", 1)}
    exp = make_experiment(tmp_path, inits=("random", "audio", "imagenet"), skip=skip,
                          extra={"imagenet_weights": str(imagenet)})
    # a diverged run with empty metric cells, as the sweep writes it (its folder holds its result)
    (exp / "transfer" / "x").mkdir()
    (exp / "transfer" / "x" / "result.json").write_text(json.dumps({"status": "diverged"}))
    with open(exp / "results.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["x", "transfer", "caltech256", 1.0, "audio", 1, "none", "diverged"]
                                    + [""] * (len(HEADER) - 8))
    out = build_report(exp)
    assert out["missing_cells"] == 2  # the diverged run has a row: failed, not missing
    md = out["markdown"].read_text()
    assert "| 25% | imagenet | none | missing |" in md
    assert "1 (failed)" in md
    assert "- fraction 25%, init imagenet, seed 0, freeze none" in md
    assert "imagenet init against the random init" in md
    assert "diverged" in md
    assert "no ImageNet weights" not in md
    assert_pngs_ok(out["figures"])
    assert_self_contained(out["html"].read_text())


def test_empty_results_still_report(tmp_path):
    exp = make_experiment(tmp_path, fractions=(), inits=(), seeds=())
    (exp / "results.csv").write_text(",".join(HEADER) + "\n")
    out = build_report(exp)
    md = out["markdown"].read_text()
    assert "No transfer results yet" in md
    assert all(s in md for s in SECTIONS)
    assert {p.name for p in out["figures"]} == {"pretrain_curves_source.png", "first_layer_filters.png"}
    assert_self_contained(out["html"].read_text())


def test_an_experiment_before_any_result_still_reports(tmp_path):
    """A folder with only its config (a sweep just started) reports; one without is refused (test_faults.py)."""
    save_config(from_dict({"name": "early"}), tmp_path / "config.yaml")
    out = build_report(tmp_path)
    assert "No transfer results yet" in out["markdown"].read_text()
    assert out["missing_cells"] == 6 * 2 * 3  # the default grid: fractions x inits x seeds, none run yet


def test_validation_curves_name_inits_as_the_results_do(tmp_path):
    """Curves read run folders, whose identity holds the loaded init ("audio:RUN_DIR"); figures need "audio"."""
    exp = make_experiment(tmp_path)
    curves = transfer_curves(exp, read_results(exp / "results.csv"), "val_top1")
    assert len(curves) == 8
    assert {c["init"] for c in curves} == {"random", "audio"}
    audio = next(c for c in curves if (c["init"], c["fraction"], c["seed"]) == ("audio", 1.0, 1))
    assert audio["values"][-1] == pytest.approx(accuracy(1.0, "audio", 1))


def test_read_results_types(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(",".join(HEADER) + "\nr1,transfer,caltech256,0.5,audio,2,none,diverged,,,,,,,,,,,\n")
    (row,) = read_results(path)
    assert row["fraction"] == 0.5 and row["seed"] == 2 and row["best_epoch"] is None
    assert math.isnan(row["test_top1"]) and row["status"] == "diverged"


def test_render_html_subset(tmp_path):
    md = "# T <x>\n\nA **b** `c`.\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n- one\n- two\n\n![gone](nope.png)"
    html = render_html(md, tmp_path)
    assert "<h1 id=\"t-x\">T &lt;x&gt;</h1>" in html
    assert "<strong>b</strong>" in html and "<code>c</code>" in html
    assert "<th>a</th>" in html and "<td>2</td>" in html and "---" not in html
    assert "<li>two</li>" in html and "figure missing" in html


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch, tmp_path):
    # the ImageNet panel must come only from what a test provides, never from this machine's hub cache
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


# --- configuration summary -------------------------------------------------------------------------------------------

def test_configuration_lists_only_keys_off_their_default(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(from_dict({"transfer_epochs": 2, "seeds": [0, 1]}), path)  # what the sweep writes
    text = _configuration(read_config(path), describe("resnet18"))
    keys = re.findall(r"^\| `(\w+)` \|", text, flags=re.M)
    assert keys == ["transfer_epochs", "seeds"]  # defaults (e.g. fractions, a list of floats; bools) are not listed
    assert "| `seeds` | 0, 1 | 0, 1, 2 |" in text
    assert text.endswith("The full resolved config: [config.yaml](config.yaml).")


def test_configuration_all_defaults_and_unknown_keys(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(from_dict({}), path)
    config = read_config(path)
    assert "Every key has its default value. The network: timm's resnet18, in 5 stages (conv1 + bn1; layer1; " \
        "layer2; layer3; layer4), then its head (fc). The full resolved config: [config.yaml](config.yaml)." in \
        _configuration(config, describe("resnet18"))
    older = _configuration({**config, "mixup": 0.2, "synthetic": 0}, describe("resnet18"))  # 0 is not the default
    assert re.findall(r"^\| `(\w+)` \|", older, flags=re.M) == ["synthetic", "mixup"]
    assert "(not a key of this version)" in older


# --- intervals at the edge of a metric's range -----------------------------------------------------------------------

def test_cell_interval_is_clipped_and_marked(tmp_path):
    rows = [{"fraction": 1.0, "init": init, "seed": s, "freeze": "none", "status": "completed", "test_top1": v}
            for init, values in (("random", (0.40, 0.42)), ("audio", (0.98, 1.0))) for s, v in enumerate(values)]
    cells = {c["init"]: c for c in stats.cell_table(rows, "test_top1")}
    assert cells["audio"]["ci_high"] > 1  # the stored interval stays as computed
    assert _ci(cells["audio"]) == "86.29 to 100.00†"
    assert _ci(cells["random"]) == "28.29 to 53.71"  # inside the range: no mark
    text = transfer_section({"test_top1": list(cells.values())}, ("test_top1",), tmp_path, {})
    method = text.split("\n\n")[1]
    assert "Student-t" in method and "n = 1: no interval" in method and CLIPPED_NOTE in method
    assert text.count(CLIPPED_NOTE) == 1


def test_interval_inside_the_range_has_no_mark(tmp_path):
    rows = [{"fraction": 1.0, "init": "random", "seed": s, "freeze": "none", "status": "completed",
             "test_top1": v} for s, v in enumerate((0.40, 0.41, 0.42))]
    cells = stats.cell_table(rows, "test_top1")
    assert "†" not in _ci(cells[0])
    text = transfer_section({"test_top1": cells}, ("test_top1",), tmp_path, {})
    assert "†" not in text and "Student-t" in text


def test_gain_interval_beyond_plus_minus_one_is_clipped(tmp_path):
    rows = [{"fraction": 1.0, "init": init, "seed": s, "freeze": "none", "status": "completed", "test_top1": v}
            for init, values in (("random", (0.0, 0.3)), ("audio", (1.0, 0.9))) for s, v in enumerate(values)]
    (gain,) = stats.gain_table(rows)
    assert gain["ci_low"] < -1 and gain["ci_high"] > 1
    assert _gain_ci(gain) == "-100.00† to +100.00†"
    text = gains_section({"test_top1": [gain]}, ("test_top1",), rows, tmp_path, {})
    assert "| -100.00† to +100.00† |" in text and CLIPPED_NOTE in text.split("\n\n")[1]
    assert text.count(CLIPPED_NOTE) == 1


def section_of(md: str, head: str) -> str:
    return md.split(head, 1)[1].split("\n## ", 1)[0]


def test_a_control_that_gained_and_one_that_did_not(tmp_path):
    """The control's verdict: a detectable gain says the experiment can detect one; no detectable gain says the
    experiment lacks the power, in the section and in the conclusion."""
    from audio2image.report.fairness import control_verdict

    exp = make_experiment(tmp_path, inits=("random", "audio", "control"), seeds=(0, 1, 2),
                          extra={"control": "caltech256"})
    md = build_report(exp)["markdown"].read_text()
    control = section_of(md, "## Positive control")
    assert "The positive control (control) showed a detectable gain over random at 25%, 100%" in control
    assert "The positive control (control) is detected: " in section_of(md, "## Conclusion")
    assert "so this experiment can see a gain of that size" in section_of(md, "## The answer")
    assert "pretrained on caltech256 (image classification) in this experiment: the positive control" in md
    rows = [{"fraction": f, "init": i, "seed": s, "freeze": "none", "status": "completed",
             "test_top1": 0.5 + 0.01 * s + (0.002 * (-1) ** s if i == "control" else 0.0)}
            for f in (0.25, 1.0) for i in ("random", "control") for s in (0, 1, 2)]
    weak = control_verdict(stats.gain_table(rows, "test_top1"), ["control"])
    assert "showed no detectable gain" in weak and "lacks the power to detect a gain of that size" in weak
    assert "no positive control" in control_verdict([], [])


def test_imagenet_is_the_control_of_an_image_target_only():
    from audio2image.report.fairness import control_inits

    image, audio = {"target": {"modality": "image"}}, {"target": {"modality": "audio"}}
    assert control_inits(["random", "imagenet", "imagenet@2", "control-stats"], image) == ["imagenet"]
    assert control_inits(["random", "imagenet", "control"], audio) == ["control"]


def test_selection_section_shows_each_setting_the_choice_and_the_edge(tmp_path):
    exp = make_experiment(tmp_path)
    candidates = [{"lr": lr, "weight_decay": 0.0, "seeds": [0], "values": [v], "mean": v, "diverged": 0}
                  for lr, v in ((0.01, 0.61), (0.1, 0.72))]
    cells = [{"fraction": 0.25, "init": "random", "freeze": "none", "metric": "val_top1", "candidates": candidates,
              "chosen": [0.1, 0.0], "edges": ["highest learning rate"]}]
    (exp / "selection.json").write_text(json.dumps({"settings": [[0.01, 0.0], [0.1, 0.0]], "tune_seeds": [0],
                                                    "cells": cells}))
    section = section_of(build_report(exp)["markdown"].read_text(), "## Settings chosen on validation")
    assert "| random | none | 25% | 61.00 | **72.00** | highest learning rate |" in section
    assert "Warning: random at 25% chose the highest learning rate" in section
    assert "the other settings' test metrics are never read" in section


def test_every_pretraining_run_is_listed_with_how_seeds_pair(tmp_path):
    exp = make_experiment(tmp_path, seeds=(0, 1, 2))
    second = exp / "pretrain" / "source-seed1"
    second.mkdir()
    write_pretrain(second)
    with open(exp / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["pretrain_seed"] = (0, 1, 0)[int(row["seed"])] if row["init"] == "audio" else ""
    with open(exp / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*HEADER, "pretrain_seed"])
        writer.writeheader()
        writer.writerows(rows)
    section = section_of(build_report(exp)["markdown"].read_text(), "## Pretraining")
    assert section.count("| source | mtat |") == 2
    assert "transfer seed -> pretraining seed: 0 -> 0, 1 -> 1, 2 -> 0" in section
    assert "the intervals over seeds include the spread between pretraining runs" in section


def test_runs_with_different_thread_counts_are_said_to_differ(tmp_path):
    exp = make_experiment(tmp_path)
    with open(exp / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    for k, row in enumerate(rows):
        row["threads"], row["precision"] = (1 if k % 2 else 2), "bf16"
    with open(exp / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*HEADER, "threads", "precision"])
        writer.writeheader()
        writer.writerows(rows)
    runs = section_of(build_report(exp)["markdown"].read_text(), "## Runs")
    assert "different CPU thread counts (1, 2)" in runs and "different precisions" not in runs


def test_a_deleted_run_folder_counts_as_missing(tmp_path):
    import shutil

    exp = make_experiment(tmp_path)
    shutil.rmtree(exp / "transfer" / "f1.0-audio-s1-none")
    out = build_report(exp)
    runs = section_of(out["markdown"].read_text(), "## Runs")
    assert out["missing_cells"] == 1 and "f1.0-audio-s1-none" in runs and "counted as missing" in runs


def test_the_answer_comes_first_and_every_no_difference_says_what_could_be_seen(tmp_path):
    """The verdict table and its figure come before any paragraph of more than 60 words; each "no difference"
    carries the gain its test could have detected and the seeds that would detect the effect of interest; the
    conclusion is short; the probability of improvement is shown with its interval."""
    exp = make_experiment(tmp_path, inits=("random", "audio", "control"), seeds=(0, 1, 2),
                          extra={"control": "caltech256"})
    md = build_report(exp)["markdown"].read_text()
    blocks = md.split("\n\n")
    verdicts = next(i for i, b in enumerate(blocks) if b.startswith("| init | 25% | 100% |"))
    figure = blocks.index("![Gain over random init, every init and fraction](figures/verdicts.png)")
    long = next(i for i, b in enumerate(blocks) if b[0] not in "|#!-" and len(b.split()) > 60)
    assert verdicts < figure < long
    cells = [c for line in blocks[verdicts].splitlines()[2:] for c in line.split("|")[2:-1]]
    same = [c for c in cells if "no difference" in c]
    assert same and all("could have detected ≥" in c and "seeds would detect 5.0" in c for c in same)
    assert any("**gain**" in c for c in cells)  # the fixture's control gains
    assert len(section_of(md, "## Conclusion").split()) <= 200
    assert re.search(r"\| 0\.\d\d \(0\.\d\d to [01]\.\d\d\) \|", section_of(md, "## The answer"))


def test_the_report_command_prints_plain_json(tmp_path, capsys):
    from audio2image.cli import main

    exp = make_experiment(tmp_path)
    main(["report", str(exp)])
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert "PosixPath" not in out
    assert printed["markdown"] == str(exp / "report.md") and printed["missing_cells"] == 0
    assert printed["figures"] and all(isinstance(f, str) and f.endswith(".png") for f in printed["figures"])


def test_what_transfers_suggests_inits_of_the_sources_own_modality(tmp_path):
    """An image source's depth and statistics inits are image@K and image-stats: audio@2 would be refused."""
    from audio2image.report.transfers import WhatTransfers

    config = {"source": "caltech256", "target": "mtat", "inits": ["random", "image"]}
    for analysis in (WhatTransfers.of(tmp_path, config, [], [], "test_roc_auc", "val_roc_auc", describe("resnet18")),
                     WhatTransfers.of(tmp_path, config, [], [], "test_roc_auc", "val_roc_auc", describe("resnet18"),
                                      source_modality="image")):
        text = analysis.section(tmp_path, {})
        assert "audio" not in text
        assert "add e.g. `image@2` to `inits`" in text and "add e.g. `image-stats` to `inits`" in text
        assert "An init `image@K` carries" in text and "An init `image-stats` draws" in text


def test_each_init_is_described_by_what_it_carries():
    from audio2image.report.report import init_words

    source = {"dataset": "mtat", "modality": "audio", "task": "tagging"}
    control = {"dataset": "caltech256", "modality": "image", "task": "classification"}
    resnet = describe("resnet18")

    def words(init, **kwargs):
        return init_words(init, source, control, "resnet18", described=resnet, **kwargs)

    assert words("audio@2") == ("the first 2 of the 5 stages (conv1 + bn1, layer1) of the audio pretraining on mtat "
                                "in this experiment, the rest the seed's random init")
    assert words("audio-stats") == ("random draws with each tensor's mean and std from the audio pretraining on mtat "
                                    "in this experiment (norm layers reset)")
    assert words("imagenet@3") == ("the first 3 of the 5 stages (conv1 + bn1, layer1, layer2) of resnet18's "
                                   "published weights (timm's; ImageNet for most), the rest the seed's random init")
    assert words("imagenet-stats").startswith("random draws with each tensor's mean and std from resnet18's published")
    assert words("control@1").startswith("the first 1 of the 5 stages (conv1 + bn1) of the control pretraining on "
                                         "caltech256 in this experiment")
    assert words("image@4:runs/a/pretrain/source-seed0").startswith(
        "the first 4 of the 5 stages (conv1 + bn1, layer1, layer2, layer3) of the image pretraining in "
        "runs/a/pretrain/source-seed0")
    assert words("checkpoint@2:w.pt") == ("the first 2 of the 5 stages (conv1 + bn1, layer1) of the weights in w.pt, "
                                          "the rest the seed's random init")
    assert words("checkpoint:w.pt") == "the weights in w.pt"
    # the full inits keep their words; without the backbone's description the stages go uncounted
    assert words("audio") == "pretrained on mtat (audio tagging) in this experiment (pretrain/source-*)"
    assert init_words("audio@2", source).startswith("the first 2 stages of the audio pretraining on mtat")
    for init in ("audio@2", "audio-stats", "imagenet@1", "control-stats", "checkpoint@1:w.pt"):
        assert f"pretrained {init}" not in words(init) and init.partition(":")[0] not in words(init)


def test_top5_is_left_out_where_a_task_has_five_labels_or_fewer(tmp_path):
    """Top-5 of 5 or fewer classes is always 100%: not shown in the runs or the pretraining table."""
    from pathlib import Path

    from audio2image.report.pretraining import _runs_table

    for labels, shown in ((4, False), (5, False), (6, True)):
        exp = make_experiment(tmp_path / str(labels))
        (exp / "datasets.json").write_text(json.dumps({"target": {"labels": labels}}))
        runs = section_of(build_report(exp)["markdown"].read_text(), "## Runs")
        assert ("test_top5" in runs) == shown and "test_top1" in runs
        assert "test_top5" in (exp / "results.csv").read_text()  # results.csv keeps its columns
        result = {"status": "completed", "selection_metric": "val_top1", "val": {"top1": 0.5},
                  "test": {"top1": 0.5, "top5": 1.0, "mean_class_acc": 0.5}}
        facts = {"source": {"dataset": "caltech256", "modality": "image", "task": "classification", "labels": labels}}
        text = _runs_table({"source": [(Path("source-seed0"), result)]}, facts)
        assert ("top-5" in text) == shown and "mean per-class accuracy" in text


def test_configuration_leaves_out_the_synthesis_keys_when_every_side_has_its_folder(tmp_path):
    values = {"synthetic": True, "synth_clips": 10, "source_root": "/data/mtat", "target_root": "/data/caltech256"}
    control = {"control": "caltech256", "inits": ["random", "audio", "control"]}
    for extra, listed in (({}, False), ({"target_root": ""}, True), (control, True),
                          ({**control, "control_root": "/data/other"}, False)):
        path = tmp_path / "config.yaml"
        save_config(from_dict({**values, **extra}), path)
        text = _configuration(read_config(path), describe("resnet18"))
        keys = re.findall(r"^\| `(\w+)` \|", text, flags=re.M)
        assert ("synthetic" in keys and "synth_clips" in keys) == listed, extra
        assert "source_root" in keys
        assert ("no side is synthesised" in text) == (not listed)


# --- a sweep stopped before it wrote results.csv ----------------------------------------------------------------------

def set_setting(run_dir, lr, weight_decay=0.0, top1=None):
    path = run_dir / "result.json"
    result = json.loads(path.read_text())
    result["run"].update(lr=lr, weight_decay=weight_decay, run_id=run_dir.name)
    if top1 is not None:
        result["test"]["top1"] = top1
    path.write_text(json.dumps(result))


def test_a_sweep_stopped_before_results_csv_reports_its_finished_runs(tmp_path):
    import shutil

    exp = make_experiment(tmp_path)
    (exp / "results.csv").unlink()  # written only when the sweep ends
    for gone in ("f1.0-audio-s1-none", "f1.0-random-s1-none"):
        shutil.rmtree(exp / "transfer" / gone)
    (exp / "transfer" / "f1.0-audio-s1-none").mkdir()  # the run it was killed in: no result.json
    out = build_report(exp)
    md = out["markdown"].read_text()
    assert "No transfer results yet" not in md and out["missing_cells"] == 2
    runs = section_of(md, "## Runs")
    for fraction, init, seed in [(0.25, i, s) for i in ("random", "audio") for s in (0, 1)] + [(1.0, "random", 0),
                                                                                                (1.0, "audio", 0)]:
        assert f"| f{fraction}-{init}-s{seed}-none | {pct(fraction)} | {init} | {seed} | none | completed |" in runs
    assert "This report shows a partial sweep" in runs and "6 of the grid's 8 runs have finished" in runs
    transfer = section_of(md, "## Transfer results")
    assert re.search(r"\| 25% \| audio \| none \| [\d.]+ ± [\d.]+ \| [^|]+ \| 2 \| - \|", transfer)
    assert "| 100% | audio | none |" in transfer and "1 (missing)" in transfer


def test_a_sweep_stopped_in_selection_keeps_only_each_cells_one_setting(tmp_path):
    import shutil

    exp = make_experiment(tmp_path, seeds=(0,))
    (exp / "results.csv").unlink()
    for run_dir in (exp / "transfer").iterdir():
        set_setting(run_dir, 0.05)
    tuning = exp / "transfer" / "f0.25-audio-s0-none-lr0.5"  # the same cell and seed with another setting
    shutil.copytree(exp / "transfer" / "f0.25-audio-s0-none", tuning)
    set_setting(tuning, 0.5, top1=0.99)
    stale = exp / "transfer" / "stale"  # an earlier config's run of the same cell: other transfer_epochs
    shutil.copytree(exp / "transfer" / "f1.0-random-s0-none", stale)
    set_setting(stale, 0.05)
    config = yaml.safe_load((exp / "config.yaml").read_text())
    (stale / "config.yaml").write_text(yaml.safe_dump({**config, "transfer_epochs": 9}))
    (exp / "transfer" / "f1.0-random-s0-none" / "config.yaml").write_text(yaml.safe_dump(config))

    runs = section_of(build_report(exp)["markdown"].read_text(), "## Runs")
    assert "f0.25-audio-s0-none" not in runs and "stale" not in runs  # no setting chosen yet; another config
    assert "f0.25-random-s0-none" in runs and "f1.0-random-s0-none" in runs
    assert "Left out: the runs of 1 cell that tried several settings with none chosen yet" in runs
    assert "fraction 25%, init audio, freeze none" in runs

    def cell(fraction, init):
        best = 0.5 if (fraction, init) == (0.25, "audio") else 0.05
        candidates = [{"lr": lr, "weight_decay": 0.0, "seeds": [0], "values": [v], "mean": v, "diverged": 0}
                      for lr in (0.05, 0.5) for v in [0.7 if lr == best else 0.6]]
        return {"fraction": fraction, "init": init, "freeze": "none", "metric": "val_top1",
                "candidates": candidates, "chosen": [best, 0.0], "edges": []}

    cells = [cell(f, i) for f in (0.25, 1.0) for i in ("random", "audio")]
    (exp / "selection.json").write_text(json.dumps({"settings": [[0.05, 0.0], [0.5, 0.0]], "tune_seeds": [0],
                                                    "cells": cells}))
    runs = section_of(build_report(exp)["markdown"].read_text(), "## Runs")
    assert "f0.25-audio-s0-none-lr0.5" in runs and "| f0.25-audio-s0-none |" not in runs
    assert "Left out" not in runs and "4 of the grid's 4 runs have finished" in runs


@pytest.mark.slow
def test_the_report_of_a_sweep_killed_in_its_fourth_run_shows_the_three_before(tmp_path, monkeypatch):
    """Real runs (a few seconds each): the folders as training leaves them, the killed one without its result."""
    from audio2image.config import load_config
    from audio2image.prepare.store import Store
    from audio2image.sweep import describe_store
    from audio2image.sweep.executors import execute
    from audio2image.sweep.grid import transfer_plan
    from stores import kill_at_validation, make_image_store

    store = make_image_store(tmp_path / "store")
    config = load_config("configs/tiny.yaml", [f"out_dir={tmp_path}", "name=exp", "transfer_epochs=1",
                                               "inits=random", "seeds=0,1", "fractions=0.5,1.0", "amp=false",
                                               "precise_bn_batches=1"])
    exp = config.experiment_dir
    exp.mkdir(parents=True)
    save_config(config, exp / "config.yaml")  # what the sweep writes before any run
    (exp / "datasets.json").write_text(json.dumps({"target": describe_store(Store(store))}))
    runs = transfer_plan(config, store)
    execute(runs[:3], config)
    kill_at_validation(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        execute(runs[3:], config)
    monkeypatch.undo()
    out = build_report(exp)
    md = out["markdown"].read_text()
    table = section_of(md, "## Runs")
    assert all(f"| {run.run_dir.name} |" in table for run in runs[:3]) and runs[3].run_dir.name not in table
    assert "3 of the grid's 4 runs have finished" in table and out["missing_cells"] == 1
    assert "No transfer results yet" not in md and "| 100% | random | none |" in section_of(md, "## Transfer results")


def test_a_source_read_from_its_folder_is_not_called_synthetic(tmp_path):
    exp = make_experiment(tmp_path, extra={"source_root": "/data/mtat", "target_root": "/data/caltech256"})
    section = section_of(build_report(exp)["markdown"].read_text(), "## Pretraining")
    assert "ran on synthetic data" not in section and "from short-chunk ResNet (Won et al. 2020)" in section
