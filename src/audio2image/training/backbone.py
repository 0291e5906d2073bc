"""A backbone: one of timm's architectures, named as timm names it, and everything the package asks of it.

The model describes itself and nothing outside this module names its layers:

- its **stages** are timm's coarse `group_matcher` groups in order (ResNet: conv1 + bn1, layer1 ... layer4; a ViT:
  the patch and position embeddings, then one block each, the last with the final norm). An init's depth `@K`,
  `freeze=stages:K` and the report's words count them;
- its **head** is the classifier its pretrained config names; anything else the matcher leaves out (ConvNeXt's
  head.norm) belongs to the last stage, so that all stages together are the whole backbone;
- its **first layer** (the pretrained config's `first_conv`) takes 3 channels (images, or spectrograms repeated)
  or 1 (spectrograms summed): weights crossing between them are summed over RGB or repeated and divided by 3;
- a model with a fixed input grid (a ViT) is built for its input: the spectrogram crop (mels x frames) or the
  image; its position embedding is resampled when weights cross input sizes.

Nothing is downloaded, ever: the hub is switched off before timm is imported, and published weights are read
from a local file (training/published.py).

    >>> backbone = Backbone("vit_tiny_patch16_224", in_chans=1, input_size=(128, 63))
    >>> model = backbone.build(num_outputs=50, seed=0)
    >>> describe("resnet18")["stages"]
    ['conv1 + bn1', 'layer1', 'layer2', 'layer3', 'layer4']
"""
from __future__ import annotations

import difflib
import functools
import os
from dataclasses import asdict, dataclass

os.environ["HF_HUB_OFFLINE"] = "1"  # before timm imports huggingface_hub: no call of ours may reach the network

import timm  # noqa: E402
import torch  # noqa: E402
from timm.layers import PatchEmbed, resample_abs_pos_embed  # noqa: E402
from timm.models._manipulate import group_with_matcher  # noqa: E402
from torch import nn  # noqa: E402

from audio2image.config_checks import ConfigError  # noqa: E402

_UNMATCHED = "\0unmatched"  # a name no group matcher matches: it marks the group timm gives the leftovers


@dataclass(frozen=True)
class Backbone:
    """One architecture for one kind of input: timm's name, input channels, input size (height, width), for a
    patch-embedding model the patch stride (0: the patch size, no overlap), and further arguments of timm's
    model (`backbone_args`: ("drop_path_rate", 0.1), ...)."""

    name: str = "resnet18"
    in_chans: int = 3
    input_size: tuple[int, int] = (224, 224)
    patch_stride: int = 0
    args: tuple = ()

    def build(self, num_outputs: int, seed: int) -> nn.Module:
        """The model with a fresh `num_outputs` head; its random weights depend only on `seed`."""
        check_name(self.name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _create(self.name, **self.kwargs(num_outputs))
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.padding == (0, 0) and max(module.stride) > 1:
                module.register_forward_pre_hook(_unread_cut)
        return model

    def kwargs(self, num_outputs: int) -> dict:
        """timm.create_model's arguments for this input (also used to load published weights into it)."""
        kwargs = {**dict(self.args), "num_classes": num_outputs, "in_chans": self.in_chans}
        if takes_input_size(self.name):
            kwargs["img_size"] = tuple(self.input_size)
            if self.patch_stride:
                kwargs["embed_layer"] = functools.partial(StridedPatchEmbed, stride=self.patch_stride)
        elif self.patch_stride:
            raise ConfigError(f"config key 'audio_patch_stride': {self.patch_stride} is not allowed; {self.name} "
                                "has no patch embedding (it applies to ViT-like backbones); set it to 0")
        return kwargs

    def record(self, model: nn.Module) -> dict:
        """What a checkpoint keeps of the model's input, for loading its weights into another input later."""
        position = position_embedding(model)
        return {**asdict(self), "input_size": list(self.input_size), "args": dict(self.args),
                "grid": list(position[1]) if position else None}


def _unread_cut(conv: nn.Conv2d, args: tuple):
    """The rows and columns of an unpadded strided convolution's input that no output reads, cut off first: the
    same result, and it sidesteps torch 2.14.1's bf16 CPU convolution, which returns wrong values (NaN among them)
    for a 2 x 2, stride-2 convolution over an input 3 wide (ConvNeXt's downsampling of a 63-frame crop)."""
    x = args[0]
    keep = [(size - k) // s * s + k for size, k, s in zip(x.shape[-2:], conv.kernel_size, conv.stride)]
    if keep != list(x.shape[-2:]):
        return (x[..., :keep[0], :keep[1]], *args[1:])
    return None


class StridedPatchEmbed(PatchEmbed):
    """timm's patch embedding with overlapping patches (AST: 16 x 16 patches every 10 pixels)."""

    def __init__(self, *args, stride: int, **kwargs):
        self.stride = (stride, stride)
        super().__init__(*args, **kwargs)
        self.proj.stride = self.stride

    def _init_img_size(self, img_size):
        img_size, _, _ = super()._init_img_size(img_size)
        grid = tuple((size - patch) // step + 1 for size, patch, step in zip(img_size, self.patch_size, self.stride))
        return img_size, grid, grid[0] * grid[1]

    def feat_ratio(self, as_scalar=True):
        return max(self.stride) if as_scalar else self.stride

    def dynamic_feat_size(self, img_size):
        return tuple((size - patch) // step + 1 for size, patch, step in zip(img_size, self.patch_size, self.stride))


# --- names ---------------------------------------------------------------------------------------------------------
def check_name(name: str) -> None:
    """ConfigError unless timm knows `name` (an architecture, optionally with a pretrained tag)."""
    if timm.is_model(name):
        if "." not in name or name in timm.list_pretrained(name):
            return
        tags = ", ".join(timm.list_pretrained(name.split(".")[0] + ".*")) or "none"
        raise ConfigError(f"config key 'backbone': {name!r} is not allowed; timm has no such pretrained tag "
                            f"(its tags: {tags})")
    near = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(near)}?" if near else "see timm.list_models() for the architectures"
    raise ConfigError(f"config key 'backbone': {name!r} is not a timm architecture; {hint}")


def _create(name: str, **kwargs) -> nn.Module:
    """timm's model, never with downloaded weights; arguments it does not take are the user's backbone_args."""
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as error:
        raise ConfigError(f"config key 'backbone_args': {name} does not take these arguments "
                          f"({' '.join(str(error).split())}); see its class in timm") from error


@functools.lru_cache(maxsize=None)
def _skeleton(name: str, args: tuple = ()) -> nn.Module:
    """The architecture without weights (meta tensors): its names, groups and config, at no cost."""
    check_name(name)
    with torch.device("meta"):
        return _create(name, **dict(args), num_classes=2)


@functools.lru_cache(maxsize=None)
def takes_input_size(name: str) -> bool:
    """Whether the architecture is built for one input size (a ViT's position grid); a CNN takes any."""
    return isinstance(getattr(_skeleton(name), "patch_embed", None), PatchEmbed)


# --- stages --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stages:
    """The stage (0-based) of every state-dict key of an architecture, its head's keys, and words for each."""

    of: dict  # key -> stage; the head's keys -> len(words)
    head: frozenset
    words: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.words)

    def stage_of(self, key: str) -> int:
        """The key's stage; the head (and a key this architecture does not have) is past the last stage."""
        return self.of.get(key, len(self.words))


@functools.lru_cache(maxsize=None)
def stages(name: str, args: tuple = ()) -> Stages:
    """The stages of an architecture (built with `args`), without building it."""
    return stages_of_model(_skeleton(name, args))


def stages_of_model(model: nn.Module) -> Stages:
    """The stages of a built model: its coarse group matcher's groups over its own tensors."""
    keys = list(model.state_dict())
    classifiers = model.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    head = frozenset(k for k in keys if any(k.startswith(c + ".") for c in classifiers))
    group = group_with_matcher([(k, k) for k in [*keys, _UNMATCHED]], model.group_matcher(coarse=True),
                               reverse=True)
    groups = sorted({group[k] for k in keys if k not in head and group[k] != group[_UNMATCHED]})
    rank = {g: i for i, g in enumerate(groups)}
    of = {k: len(groups) if k in head else rank.get(group[k], len(groups) - 1) for k in keys}
    words = tuple(_words([k for k in keys if of[k] == i], of) for i in range(len(groups)))
    return Stages(of, head, words)


def _words(keys: list[str], of: dict) -> str:
    """A stage's modules in a few words: their top-level names ("conv1 + bn1"), two levels deep for a
    container whose parts lie in several stages ("blocks.11 + norm", "stages.3 + head.norm")."""
    spread: dict[str, set] = {}
    for key, stage in of.items():
        spread.setdefault(key.split(".")[0], set()).add(stage)
    names: list[str] = []
    for key in keys:
        parts = key.split(".")
        name = ".".join(parts[:2]) if len(parts) > 2 and len(spread[parts[0]]) > 1 else parts[0]
        if name not in names:
            names.append(name)
    return " + ".join(names)


def describe(name: str, args: tuple = ()) -> dict:
    """The plain facts about an architecture that the report and config checks read without building it."""
    model, parts = _skeleton(name, args), stages(name, args)
    return {"backbone": name, **({"args": dict(args)} if args else {}), "stages": list(parts.words),
            "head": sorted({k.rsplit(".", 1)[0] for k in parts.head}), "first_layer": first_layer(model),
            "outputs": [*output_names(model), POOLED], "tokens": takes_input_size(name)}


# --- the first layer and the position embedding: what crossing inputs changes ----------------------------------------
def first_layer(model: nn.Module) -> str:
    """The state-dict key of the weights of the layer that sees the input (a conv stem, a patch embedding)."""
    name = model.pretrained_cfg.get("first_conv")
    return f"{name[0] if isinstance(name, (tuple, list)) else name}.weight"


def position_embedding(model: nn.Module) -> tuple[str, tuple[int, int], int] | None:
    """(key, grid, prefix tokens) of a learned position embedding laid on a grid of patches, as timm's ViTs have
    one; None for a model without (CNNs)."""
    embedding, patches = getattr(model, "pos_embed", None), getattr(model, "patch_embed", None)
    if not isinstance(embedding, nn.Parameter) or not hasattr(patches, "grid_size"):
        return None
    prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 0)
    return "pos_embed", tuple(patches.grid_size), prefix


def fit(model: nn.Module, state: dict, grid: list | None = None) -> dict:
    """`state` (another model of the same architecture, built for another input) made to fit `model`: its first
    layer summed over RGB (3 -> 1 channel, as AST and timm do) or repeated and divided by 3 (1 -> 3), its
    position embedding resampled from `grid` (None: a square grid) to the model's. Other tensors as they are."""
    state, own = dict(state), model.state_dict()
    key = first_layer(model)
    if key in state and state[key].dim() == 4 and state[key].shape[1] != own[key].shape[1]:
        state[key] = adapt_channels(state[key], own[key].shape[1])
    position = position_embedding(model)
    if position and position[0] in state and state[position[0]].shape != own[position[0]].shape:
        key, new_grid, prefix = position
        state[key] = resample_abs_pos_embed(state[key], new_size=list(new_grid), num_prefix_tokens=prefix,
                                            old_size=list(grid) if grid else None)
    return state


def adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A first layer's weights [out, in, h, w] for `channels` inputs: summed (to 1) or repeated and scaled (from 1),
    so that an input with its channels alike gives the same response."""
    have = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if have == 1:
        return weight.repeat(1, channels, 1, 1) / channels
    raise ConfigError(f"first-layer weights with {have} input channels cannot serve {channels}")


# --- what the model computes, stage by stage (CKA) -------------------------------------------------------------------
POOLED = "pooled"


def output_names(model: nn.Module) -> list[str]:
    """The model's intermediate outputs, named by the module that makes each (timm's feature_info)."""
    if not hasattr(model, "forward_intermediates"):
        return []
    return [info["module"] for info in getattr(model, "feature_info", [])]


def stage_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each intermediate output (timm's `forward_intermediates`: feature maps; a ViT's patch tokens, prefix tokens
    left out, on their grid) and the pooled features the head sees, each flattened to [items, features]."""
    names = output_names(model)
    if names:
        final, intermediates = model.forward_intermediates(x)
        outputs = dict(zip(names, intermediates))
    else:
        final, outputs = model.forward_features(x), {}
    outputs[POOLED] = model.forward_head(final, pre_logits=True)
    return {name: value.flatten(1) for name, value in outputs.items()}


# --- normalisation layers (the statistics control resets them) -------------------------------------------------------
def _norm_classes() -> tuple[type, ...]:
    import inspect

    import timm.layers.norm as norm
    import timm.layers.norm_act as norm_act

    own = [cls for module in (norm, norm_act) for cls in vars(module).values()
           if inspect.isclass(cls) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__]
    return (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm, *own)


NORMS = _norm_classes()


def is_norm(module: nn.Module) -> bool:
    """Whether `module` is a normalisation layer (batch, layer, group, RMS norm, timm's and torch's)."""
    return isinstance(module, NORMS)
