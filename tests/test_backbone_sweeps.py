"""Whole sweeps with backbones other than ResNet-18, in both directions: a ConvNeXt (layer norm, layer scale) and
a ViT (its position grid crossing from 32 x 32 images to 128-mel crops and back), each with the inits random,
pretrained, @2 and -stats, frozen and not, per-stage CKA (on the image target: the synthetic audio one has too few
validation clips for it), and a report in the backbone's own words."""
from __future__ import annotations

import csv
import json

import pytest

from audio2image.config import load_config
from audio2image.report import build_report
from audio2image.sweep import run_sweep
from audio2image.training.backbone import describe

CASES = [("convnext_atto", "audio"), ("convnext_atto", "image"), ("vit_tiny_patch16_224", "audio"),
         ("vit_tiny_patch16_224", "image")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")  # the synthetic datasets and stores, made once for all four sweeps


@pytest.mark.slow
@pytest.mark.parametrize("backbone, source", CASES)
def test_a_sweep_with_another_backbone_runs_and_reports_in_its_words(tmp_path, data_dir, backbone, source):
    sides = ["source=mtat", "target=caltech256"] if source == "audio" else ["source=caltech256", "target=mtat"]
    cka_items = 8 if source == "audio" else 0
    inits = f"random,{source},{source}@2,{source}-stats"
    config = load_config("configs/tiny.yaml", [
        f"out_dir={tmp_path}", f"data_dir={data_dir}", f"name={backbone}-{source}", f"backbone={backbone}", *sides,
        f"inits={inits}", "freezes=none,linear", "fractions=1.0", "seeds=0", "transfer_epochs=1", f"cka_items={cka_items}"])
    summary = run_sweep(config)
    assert summary["finished"] == summary["runs"] == 8
    exp = config.experiment_dir
    with open(exp / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["init"], r["freeze"]) for r in rows} == {(i, f) for i in inits.split(",") for f in ("none", "linear")}
    assert all(r["status"] == "completed" for r in rows)
    described = describe(backbone)
    assert json.loads((exp / "backbone.json").read_text()) == described

    build_report(exp)
    report = (exp / "report.md").read_text()
    count = len(described["stages"])
    assert f"Does a {backbone} (timm) pretrained on" in report
    assert f"carries the first K of the {count} stages of the pretrained {backbone}" in report
    assert f"Transfer depth ({', '.join(described['stages'][:2])} only)" in report
    figures = {p.name for p in (exp / "figures").glob("*.png")}
    assert {"gain_by_depth.png", "first_layer_filters.png"} <= figures
    if cka_items:
        cka = json.loads((exp / "analysis" / "cka.json").read_text())
        assert cka["problems"] == [] and cka["comparisons"]
        assert all(list(c["cka"]) == described["outputs"] for c in cka["comparisons"].values())
        header = next(line for line in report.splitlines() if line.startswith("| comparison | init |"))
        assert header.split("|")[3].strip() == described["outputs"][0] and "pooled" in header
        assert "cka_by_stage.png" in figures
    layer = described["first_layer"].removesuffix(".weight")
    assert f"filters of {backbone}'s first layer ({layer})" in report
