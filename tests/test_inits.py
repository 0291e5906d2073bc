"""Inits: the grammar of their names, transfer depth (the first K stages) and the weight-statistics control."""
from __future__ import annotations

import pytest
import torch

from audio2image.training.initspec import STAGES, parse_init
from audio2image.training.inits import initialise, stage_of
from audio2image.training.model import HEAD, InitError, build_model


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pretraining run folder whose weights (and batch-norm statistics) differ from any fresh init."""
    run_dir = tmp_path_factory.mktemp("pretrain")
    model = build_model(50, seed=123)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if "running" in name:
                buffer.uniform_(0.5, 1.5)
        for parameter in model.parameters():
            parameter.mul_(1.7).add_(0.01)  # another scale and offset than torchvision's init
    torch.save({"model": model.state_dict()}, run_dir / "best.pt")
    return run_dir, model.state_dict()


def fresh(seed: int):
    return build_model(10, seed).state_dict()


@pytest.mark.parametrize("init", ["random", "imagenet", "audio", "image@3", "audio@1", "audio@5:runs/p",
                                  "imagenet-stats", "audio-stats", "checkpoint:/x.pt", "checkpoint@2:/x.pt"])
def test_init_names_that_parse(init):
    spec = parse_init(init)
    assert init.startswith(spec.name)


@pytest.mark.parametrize("init", ["random@2", "random-stats", "random:/x", "imagenet:/x", "checkpoint", "audio@0",
                                  "audio@6", "audio@2-stats", "audio-stats@2", "foo", "Audio", ""])
def test_init_names_that_do_not(init):
    with pytest.raises(ValueError, match="is not an init"):
        parse_init(init)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_depth_k_carries_exactly_the_first_k_stages(pretrained, depth):
    run_dir, source = pretrained
    model = build_model(10, seed=4)
    initialise(model, f"audio@{depth}:{run_dir}", seed=4)
    random = fresh(4)
    loaded = 0
    for key, value in model.state_dict().items():
        if stage_of(key) < depth:
            assert torch.equal(value, source[key]), key  # batch-norm statistics included
            loaded += 1
        else:
            assert torch.equal(value, random[key]), key  # exactly the random init of the same seed
    assert loaded == sum(1 for k in random if stage_of(k) < depth) > 0
    assert all(stage_of(k) == len(STAGES) for k in HEAD)


def test_depth_5_is_the_full_backbone(pretrained):
    run_dir, _ = pretrained
    full, deep = build_model(10, seed=1), build_model(10, seed=1)
    initialise(full, f"audio:{run_dir}", seed=1)
    initialise(deep, f"audio@5:{run_dir}", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), deep.state_dict().values()))


def test_statistics_control_matches_each_tensor_and_resets_batchnorm(pretrained):
    run_dir, source = pretrained
    model = build_model(10, seed=2)
    initialise(model, f"audio-stats:{run_dir}", seed=2)
    state, random = model.state_dict(), fresh(2)
    convs = [k for k, v in source.items() if k.endswith(".weight") and v.dim() == 4]
    assert len(convs) == 20  # every conv of ResNet-18's backbone
    for key in convs:
        drawn, original = state[key].double(), source[key].double()
        n = original.numel()
        # the sample mean is within 5 standard errors, the sample std within 5% (1x1 convs have few values: 10%)
        assert abs(drawn.mean() - original.mean()) < 5 * original.std() / n ** 0.5, key
        assert abs(drawn.std() / original.std() - 1) < (0.05 if n > 4000 else 0.1), key
        assert not torch.equal(state[key], source[key])  # drawn, not copied: no features carried
    for key, value in state.items():
        if key.endswith(("bn1.weight", "bn2.weight", "downsample.1.weight")) or key == "bn1.weight":
            assert torch.all(value == 1), key
        elif key.endswith(("running_var",)):
            assert torch.all(value == 1), key
        elif key.endswith(("running_mean",)) or (key.endswith(".bias") and key not in HEAD):
            assert torch.all(value == 0), key
    for key in HEAD:
        assert torch.equal(state[key], random[key])


def test_statistics_control_is_seeded(pretrained):
    run_dir, _ = pretrained
    draws = []
    for seed in (0, 0, 1):
        model = build_model(10, seed=seed)
        initialise(model, f"audio-stats:{run_dir}", seed=seed)
        draws.append(model.state_dict()["layer2.0.conv1.weight"])
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_a_missing_pretraining_is_one_sentence(tmp_path):
    with pytest.raises(InitError, match="finish that pretraining first"):
        initialise(build_model(10, 0), f"audio@2:{tmp_path}")
