"""Whole sweeps with backbones other than ResNet-18, in both directions: a ConvNeXt (layer norm, layer scale) and
a ViT (its position grid crossing from 32 x 32 images to 128-mel crops and back), each with the inits random,
pretrained, @2 and -stats, frozen and not, per-stage CKA (on the image target: the synthetic audio one has too few
validation clips for it), and a report in the backbone's own words."""
from __future__ import annotations

import csv
import json

import pytest
import torch

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
        f"out_dir={tmp_path}", f"data_dir={data_dir}", f"name={backbone}-{source}", f"backbone={backbone}",
        *sides, f"inits={inits}", "freezes=none,linear", "fractions=1.0", "seeds=0", "transfer_epochs=1",
        f"cka_items={cka_items}"])
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


@pytest.mark.slow
def test_the_ast_config_asks_its_question_with_local_deit_weights_and_a_positive_control(tmp_path, data_dir):
    """configs/ast.yaml as written but for the data's size: ImageNet DeiT weights (here a stand-in file) into a
    one-channel ViT with overlapping patches on spectrograms, against random, with an audio folder as the control."""
    from safetensors.torch import save_file
    from test_directions import audio_folder, tagging_clips

    from audio2image.training.backbone import Backbone

    weights = tmp_path / "deit_tiny.safetensors"
    save_file(Backbone("deit_tiny_patch16_224").build(1000, 3).state_dict(), str(weights))
    control = audio_folder(tmp_path / "other-audio", tagging_clips())
    config = load_config("configs/ast.yaml", [
        f"out_dir={tmp_path}", f"data_dir={data_dir}", "synthetic=true", "target_root=", f"control_root={control}",
        f"imagenet_weights={weights}", "synth_clips=48", "synth_seconds=3", "audio_clip_seconds=3",
        "audio_crop_seconds=1", "audio_eval_crops=2", "pretrain_epochs=1", "transfer_epochs=1",
        "pretrain_batch_size=16", "transfer_batch_size=16", "fractions=1.0", "seeds=0", "transfer_lrs=0.001",
        "cka_items=0", "workers=1", "progress=false"])
    summary = run_sweep(config)
    assert summary["finished"] == summary["runs"] == 5
    build_report(config.experiment_dir)
    report = (config.experiment_dir / "report.md").read_text()
    assert "Does a deit_tiny_patch16_224 (timm) pretrained on" in report and "## Positive control" in report
    result = json.loads(next((config.experiment_dir / "transfer").glob("*/result.json")).read_text())
    assert result["status"] == "completed"
    best = torch.load(next((config.experiment_dir / "pretrain").glob("control-*/best.pt")), weights_only=True)
    assert best["backbone"]["in_chans"] == 1 and best["backbone"]["grid"] == [12, 5]  # (128-16)//10+1, (63-16)//10+1
