"""Inits, for every backbone family: the grammar of their names, transfer depth (exactly the first K stages),
freezing (exactly the first K stages stop) and the weight-statistics control (nothing pretrained survives)."""
from __future__ import annotations

import pytest
import torch

from audio2image.training.backbone import Backbone, is_norm, stages
from audio2image.training.initspec import parse_init
from audio2image.training.inits import initialise
from audio2image.training.model import InitError, build_model, freeze, train_mode

# one backbone per family, each at a small input: a CNN with batch norm, one with layer norm and layer scale, a
# depthwise CNN with squeeze-excitation, and a ViT (position embedding, class token)
FAMILIES = ("resnet18", "convnext_atto", "efficientnet_b0", "vit_tiny_patch16_224")


def backbone(name: str) -> Backbone:
    return Backbone(name, 3, (32, 32))


@pytest.fixture(scope="module", params=FAMILIES)
def pretrained(request, tmp_path_factory):
    """A pretraining run folder of one family whose every tensor differs from any fresh init and is not constant:
    another scale and offset than the architecture's init, noise on top, batch-norm statistics drawn."""
    run_dir = tmp_path_factory.mktemp(request.param)
    model = build_model(50, seed=123, backbone=backbone(request.param))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5, generator=generator)
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.01
            parameter.mul_(1.7).add_(0.01).add_(noise)
    torch.save({"model": model.state_dict(), "backbone": backbone(request.param).record(model)}, run_dir / "best.pt")
    return request.param, run_dir, model.state_dict()


def fresh(name: str, seed: int) -> dict:
    return build_model(10, seed, backbone(name)).state_dict()


@pytest.mark.parametrize("init", ["random", "imagenet", "audio", "image@3", "audio@1", "audio@5:runs/p",
                                  "audio@13", "imagenet-stats", "audio-stats", "checkpoint:/x.pt",
                                  "checkpoint@2:/x.pt"])
def test_init_names_that_parse(init):
    spec = parse_init(init)
    assert init.startswith(spec.name)


@pytest.mark.parametrize("init", ["random@2", "random-stats", "random:/x", "imagenet:/x", "checkpoint", "audio@0",
                                  "audio@2-stats", "audio-stats@2", "foo", "Audio", ""])
def test_init_names_that_do_not(init):
    with pytest.raises(ValueError, match="is not an init"):
        parse_init(init)


def test_depth_k_carries_exactly_the_first_k_stages(pretrained):
    name, run_dir, source = pretrained
    parts = stages(name)
    for depth in sorted({1, 2, len(parts) - 1}):
        model = build_model(10, seed=4, backbone=backbone(name))
        initialise(model, f"audio@{depth}:{run_dir}", seed=4)
        random, loaded = fresh(name, 4), 0
        for key, value in model.state_dict().items():
            if parts.stage_of(key) < depth:
                assert torch.equal(value, source[key]), key  # batch-norm statistics included
                loaded += 1
            else:
                assert torch.equal(value, random[key]), key  # exactly the random init of the same seed
        assert loaded == sum(1 for k in random if parts.stage_of(k) < depth) > 0
    assert all(parts.stage_of(k) == len(parts) for k in parts.head) and parts.head


def test_depth_n_is_the_full_backbone(pretrained):
    name, run_dir, _ = pretrained
    full, deep = build_model(10, 1, backbone(name)), build_model(10, 1, backbone(name))
    initialise(full, f"audio:{run_dir}", seed=1)
    initialise(deep, f"audio@{len(stages(name))}:{run_dir}", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), deep.state_dict().values()))
    with pytest.raises(InitError, match="stages"):
        initialise(deep, f"audio@{len(stages(name)) + 1}:{run_dir}", seed=1)


def test_the_statistics_control_keeps_nothing_pretrained(pretrained):
    name, run_dir, source = pretrained
    model = build_model(10, seed=2, backbone=backbone(name))
    initialise(model, f"audio-stats:{run_dir}", seed=2)
    state, random, parts = model.state_dict(), fresh(name, 2), stages(name)
    for key, value in state.items():
        if key in parts.head:
            assert torch.equal(value, random[key]), key  # the head is new
        elif value.is_floating_point():
            assert not torch.equal(value, source[key]), key  # every pretrained tensor is gone
    norms = [m for m in model.modules() if is_norm(m)]
    assert norms
    for norm in norms:  # every normalisation layer is the identity
        for parameter_name, parameter in norm.named_parameters(recurse=False):
            assert torch.all(parameter == (1.0 if parameter_name == "weight" else 0.0))
        if getattr(norm, "running_var", None) is not None:
            assert torch.all(norm.running_var == 1) and torch.all(norm.running_mean == 0)
    # each other tensor is drawn from its own statistics: the largest one's mean and spread are kept
    biggest = max((k for k in source if k not in parts.head and source[k].dim() > 1), key=lambda k: source[k].numel())
    drawn, original = state[biggest].double(), source[biggest].double()
    assert abs(drawn.mean() - original.mean()) < 5 * original.std() / original.numel() ** 0.5
    assert abs(drawn.std() / original.std() - 1) < 0.05


def test_the_statistics_control_is_seeded(pretrained):
    name, run_dir, _ = pretrained
    draws = []
    for seed in (0, 0, 1):
        model = build_model(10, seed=seed, backbone=backbone(name))
        initialise(model, f"audio-stats:{run_dir}", seed=seed)
        in_stage = {k: v for k, v in model.state_dict().items() if stages(name).stage_of(k) == 2 and v.dim() > 1}
        draws.append(max(in_stage.values(), key=torch.numel))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


@pytest.mark.parametrize("policy", ["stages:2", "linear"])
def test_freezing_stops_exactly_the_first_stages(pretrained, policy):
    """Frozen tensors, batch-norm statistics included, do not move in a training step; every other stage does."""
    name, run_dir, _ = pretrained
    parts = stages(name)
    count = 2 if policy == "stages:2" else len(parts)
    model = build_model(10, seed=3, backbone=backbone(name))
    initialise(model, f"audio:{run_dir}", seed=3)
    freeze(model, policy)
    assert {k for k, p in model.named_parameters() if not p.requires_grad} == \
        {k for k, _ in model.named_parameters() if parts.stage_of(k) < count}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    train_mode(model)
    loss = model(torch.randn(8, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    for key, value in after.items():
        if parts.stage_of(key) < count:
            assert torch.equal(value, before[key]), key
    for stage in range(count, len(parts) + 1):
        keys = [k for k in after if parts.stage_of(k) == stage and after[k].is_floating_point()]
        assert any(not torch.equal(after[k], before[k]) for k in keys), f"stage {stage} did not train"


def test_a_missing_pretraining_is_one_sentence(tmp_path):
    with pytest.raises(InitError, match="finish that pretraining first"):
        initialise(build_model(10, 0), f"audio@2:{tmp_path}")


def test_weights_of_another_backbone_are_refused_by_name(pretrained):
    name, run_dir, _ = pretrained
    other = "vit_tiny_patch16_224" if name != "vit_tiny_patch16_224" else "resnet18"
    with pytest.raises(InitError, match=f"holds a {name} backbone"):
        initialise(build_model(10, 0, backbone(other)), f"audio:{run_dir}")
