"""Backbones: timm's models describe their stages, head and first layer; weights cross inputs (RGB images and
1-channel spectrograms of other sizes) in both directions; published weights load from local files only."""
from __future__ import annotations

import socket

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from audio2image.config import Config, from_dict
from audio2image.config_checks import ConfigError, check_backbone
from audio2image.training.backbone import Backbone, describe, stage_outputs, stages
from audio2image.training.inits import initialise
from audio2image.training.model import InitError, build_model
from audio2image.training.published import cached_files, published_path

VIT = "vit_tiny_patch16_224"


@pytest.mark.parametrize("name, count, first, last", [
    ("resnet18", 5, "conv1 + bn1", "layer4"),
    ("resnet50", 5, "conv1 + bn1", "layer4"),
    ("efficientnet_b0", 8, "conv_stem + bn1", "blocks.6 + conv_head + bn2"),
    ("convnext_atto", 5, "stem", "stages.3 + head.norm"),
    (VIT, 13, "cls_token + pos_embed + patch_embed", "blocks.11 + norm"),
])
def test_stages_are_the_matchers_groups_stem_first_and_final_group_last(name, count, first, last):
    described = describe(name)
    assert len(described["stages"]) == count
    assert described["stages"][0] == first and described["stages"][-1] == last
    parts = stages(name)
    model = build_model(3, 0, Backbone(name, 3, (32, 32)))
    # every tensor but the classifier the model's config names belongs to a stage; the head to none
    classifier = model.pretrained_cfg["classifier"]
    assert {k for k in model.state_dict() if parts.stage_of(k) == count} == \
        {k for k in model.state_dict() if k.startswith(classifier + ".")}


def test_unknown_names_get_close_matches_and_nothing_else_starts():
    with pytest.raises(ConfigError, match="did you mean resnet18"):
        check_backbone(from_dict({"backbone": "resnet181"}))
    with pytest.raises(ConfigError, match="no such pretrained tag"):
        check_backbone(from_dict({"backbone": "resnet18.nonsense"}))
    assert check_backbone(from_dict({"backbone": "resnet18.tv_in1k"}))["stages"][0] == "conv1 + bn1"


def test_depths_and_freezes_beyond_the_backbones_stages_are_refused_before_work():
    check_backbone(from_dict({"backbone": VIT, "inits": ["random", "audio@13"], "freezes": ["stages:13"]}))
    with pytest.raises(ConfigError, match="'inits'.*audio@6.*resnet18 has 5 stages"):
        check_backbone(from_dict({"inits": ["random", "audio@6"]}))
    with pytest.raises(ConfigError, match="'freezes'.*stages:6"):
        check_backbone(from_dict({"freezes": ["none", "stages:6"]}))
    with pytest.raises(ConfigError, match="audio_patch_stride.*no patch embedding"):
        check_backbone(from_dict({"audio_patch_stride": 10}))


def test_each_output_of_each_family_is_flattened_and_the_pooled_features_come_last():
    for name in ("resnet18", "convnext_atto", VIT):
        model = build_model(4, 0, Backbone(name, 1, (64, 48))).eval()
        with torch.no_grad():
            outputs = stage_outputs(model, torch.randn(3, 1, 64, 48))
        assert list(outputs) == describe(name)["outputs"]
        assert all(value.shape[0] == 3 and value.dim() == 2 for value in outputs.values())
        with torch.no_grad():
            pooled = model.forward_head(model.forward_features(torch.randn(3, 1, 64, 48)), pre_logits=True)
        assert outputs["pooled"].shape == pooled.shape
    # a ViT's outputs are its patch tokens on their grid (class token left out): 4 x 3 patches x 192
    assert outputs["blocks.0"].shape[1] == 4 * 3 * 192


def _vit_run(tmp_path, backbone: Backbone, seed: int):
    model = build_model(5, seed, backbone)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    torch.save({"model": model.state_dict(), "backbone": backbone.record(model)}, tmp_path / "best.pt")
    return model.state_dict()


def test_a_vit_pretrained_on_images_transfers_to_spectrograms_and_back(tmp_path):
    images, spectrograms = Backbone(VIT, 3, (32, 32)), Backbone(VIT, 1, (128, 63), patch_stride=10)
    (tmp_path / "image").mkdir()
    (tmp_path / "audio").mkdir()
    image_state = _vit_run(tmp_path / "image", images, 0)
    audio = build_model(7, 1, spectrograms)
    initialise(audio, f"image:{tmp_path / 'image'}", backbone=spectrograms)
    assert audio.patch_embed.grid_size == (12, 5) and audio.pos_embed.shape == (1, 1 + 12 * 5, 192)
    # the first layer summed over RGB, the class token's position kept, the rest as pretrained
    assert torch.allclose(audio.patch_embed.proj.weight, image_state["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert torch.equal(audio.pos_embed[0, 0], image_state["pos_embed"][0, 0])
    assert torch.equal(audio.blocks[3].mlp.fc1.weight, image_state["blocks.3.mlp.fc1.weight"])
    assert audio(torch.randn(2, 1, 128, 63)).shape == (2, 7)

    audio_state = _vit_run(tmp_path / "audio", spectrograms, 2)
    back = build_model(4, 3, images)
    initialise(back, f"audio:{tmp_path / 'audio'}", backbone=images)
    assert back.pos_embed.shape == (1, 1 + 2 * 2, 192)
    assert torch.allclose(back.patch_embed.proj.weight, audio_state["patch_embed.proj.weight"].repeat(1, 3, 1, 1) / 3)
    assert back(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    # the spectrogram grid (12 x 5) was resampled as such: a smooth embedding along frequency stays ordered
    ramp = torch.linspace(0, 1, 12).view(12, 1).expand(12, 5).reshape(1, 60, 1).expand(1, 60, 192)
    audio_state["pos_embed"] = torch.cat([audio_state["pos_embed"][:, :1], ramp], dim=1)
    torch.save({"model": audio_state, "backbone": spectrograms.record(build_model(5, 2, spectrograms))},
               tmp_path / "audio" / "best.pt")
    initialise(back, f"audio:{tmp_path / 'audio'}", backbone=images)
    rows = back.pos_embed[0, 1:, 0].view(2, 2)
    assert rows[0, 0] < rows[1, 0] and torch.allclose(rows[:, 0], rows[:, 1], atol=1e-5)


def test_summed_spectrogram_weights_go_into_rgb_cnns_and_rgb_into_summed(tmp_path):
    one = Backbone("convnext_atto", 1, (64, 48))
    (tmp_path / "a").mkdir()
    state = _vit_run(tmp_path / "a", one, 0)
    rgb = build_model(3, 0, Backbone("convnext_atto", 3, (32, 32)))
    initialise(rgb, f"audio:{tmp_path / 'a'}")
    assert torch.allclose(rgb.stem[0].weight, state["stem.0.weight"].repeat(1, 3, 1, 1) / 3)


def test_runs_made_before_backbones_load_into_timms_resnet18(tmp_path):
    """A pretraining run of earlier versions: torchvision's ResNet-18 state dict, no backbone record."""
    old = torchvision.models.resnet18(num_classes=50).state_dict()
    torch.save({"model": old, "epoch": 3}, tmp_path / "best.pt")
    model = build_model(10, 0)
    initialise(model, f"audio:{tmp_path}")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in old.items() if not k.startswith("fc."))


def _published(tmp_path, name: str, suffix: str):
    """A stand-in for a published file: 1000 classes, 224 px, 3 channels."""
    state = build_model(1000, 11, Backbone(name)).state_dict()
    path = tmp_path / f"{name}{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    return path, state


@pytest.mark.parametrize("name, suffix", [("resnet18", ".pth"), ("convnext_atto", ".safetensors"),
                                          (VIT, ".safetensors")])
def test_published_weights_load_from_a_file_into_any_input(tmp_path, name, suffix):
    path, state = _published(tmp_path, name, suffix)
    backbone = Backbone(name, 1, (64, 48))
    model = build_model(4, 0, backbone)
    loaded = initialise(model, "imagenet", imagenet_weights=str(path), backbone=backbone)
    assert loaded["weights"] == str(path)
    first = describe(name)["first_layer"]
    assert torch.allclose(model.state_dict()[first], state[first].sum(1, keepdim=True))
    same = [k for k in state if k != first and state[k].shape == model.state_dict()[k].shape
            and not k.startswith(model.pretrained_cfg["classifier"] + ".")]
    assert same and all(torch.equal(model.state_dict()[k], state[k]) for k in same)
    staged = build_model(4, 0, backbone)
    initialise(staged, "imagenet@2", imagenet_weights=str(path), backbone=backbone)  # @K works as for every base


def test_a_file_of_another_architecture_is_refused_not_half_loaded(tmp_path):
    path, _ = _published(tmp_path, "resnet18", ".pth")
    with pytest.raises(InitError, match="does not fit convnext_atto"):
        initialise(build_model(4, 0, Backbone("convnext_atto")), "imagenet", imagenet_weights=str(path),
                   backbone=Backbone("convnext_atto"))


def test_default_places_are_timms_hub_cache_then_torch_hubs(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    with pytest.raises(InitError, match="models--timm--resnet18.a1_in1k.*Nothing is downloaded"):
        published_path("resnet18")
    # torchvision's file in torch hub's cache serves the untagged name (timm's resnet18.tv_in1k)
    (tmp_path / "torch" / "checkpoints").mkdir(parents=True)
    old = tmp_path / "torch" / "checkpoints" / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18().state_dict(), old)
    assert published_path("resnet18") == old
    # the default tag's file in the hub cache comes first
    place = cached_files("resnet18")[0]
    hub = tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "0123abc" / place.name
    hub.parent.mkdir(parents=True)
    save_file(build_model(1000, 0).state_dict(), str(hub))
    assert published_path("resnet18") == hub
    assert published_path("resnet18.tv_in1k") == old


def test_with_sockets_blocked_nothing_tries_the_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried the network")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    for name in ("resnet18", VIT, "efficientnet_b0"):
        with pytest.raises(InitError, match="Nothing is downloaded"):
            initialise(build_model(3, 0, Backbone(name)), "imagenet", backbone=Backbone(name))
    path, _ = _published(tmp_path, VIT, ".safetensors")
    initialise(build_model(3, 0, Backbone(VIT, 3, (32, 32))), "imagenet-stats", imagenet_weights=str(path),
               backbone=Backbone(VIT, 3, (32, 32)))


def test_the_default_config_is_resnet18_and_the_backbone_is_part_of_every_runs_identity():
    from audio2image.config import keys_for

    assert Config().backbone == "resnet18"
    assert "backbone" in keys_for("audio", "pretrain") and "backbone" in keys_for("image", "transfer")
    assert "audio_channels" in keys_for("audio", "transfer") and "audio_patch_stride" in keys_for("audio", "pretrain")


def test_bf16_on_the_cpu_gives_the_fp32_result_where_a_strided_convolution_leaves_columns_unread():
    """torch 2.14.1's bf16 CPU convolution gets a 2 x 2 stride-2 convolution over an input 3 wide wrong (NaN even);
    ConvNeXt meets one on a 63-frame crop (1 s at hop 256). The backbone cuts the unread column off first."""
    model = build_model(5, 0, Backbone("convnext_atto", 3, (128, 63))).eval()
    x = torch.randn(16, 3, 128, 63)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
    assert torch.isfinite(low).all() and (low - reference).abs().max() < 0.1 * reference.abs().max()


def test_an_experiment_pretrained_with_another_backbone_is_refused_naming_it(tmp_path):
    from audio2image.config import save_config
    from audio2image.sweep import OtherPretraining, _check_same_pretraining
    from audio2image.sweep.grid import pretrain_plan
    from audio2image.util import write_json

    before = from_dict({"out_dir": str(tmp_path), "name": "e"})
    plan = pretrain_plan(before, tmp_path / "store", "source", 0)
    plan.run_dir.mkdir(parents=True)
    write_json(plan.run_dir / "run.json", {"run_id": plan.spec.run_id})
    save_config(before, plan.run_dir / "config.yaml")
    _check_same_pretraining(plan)  # the same settings: fine
    after = pretrain_plan(from_dict({"out_dir": str(tmp_path), "name": "e", "backbone": VIT}), tmp_path / "store",
                          "source", 0)
    with pytest.raises(OtherPretraining, match=f"backbone=resnet18 \\(now {VIT}\\).*name=e-2"):
        _check_same_pretraining(after)
