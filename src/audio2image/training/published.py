"""A backbone's published weights (the init `imagenet`), from a local file only: .safetensors or a torch file.

By default the file is looked for where timm (the Hugging Face hub cache) or torch hub would have cached it on a
machine with internet: first for the backbone's own pretrained tag (`resnet18` means timm's default,
`resnet18.a1_in1k`), then, for a name without a tag, for the architecture's other tags in timm's order (so
torchvision's `resnet18-f37072fd.pth` in torch hub's cache serves `resnet18`). Nothing is ever downloaded.

The file is loaded as data (safetensors, or `torch.load(weights_only=True)`) and handed to timm, which applies the
architecture's own conversion (a ViT's position embedding resampled to the model's grid, for one) and loads it
strictly: a file of another architecture is refused, never half-loaded.

    >>> published_path("resnet18", "")   # where it is, or an InitError naming where to put it
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from audio2image.training.backbone import Backbone, check_name, fit, stages
from audio2image.training.model import InitError

CACHED_NAMES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a hub repository


def _tags(name: str) -> list[str]:
    """The pretrained tags a name may mean: its own, or (no tag) the default first, then the others."""
    if "." in name:
        return [name]
    default = timm.models.get_pretrained_cfg(name)
    tagged = timm.list_pretrained(name + ".*")
    first = [f"{name}.{default.tag}"] if default is not None and default.tag else []
    return first + [t for t in tagged if t not in first]


def cached_files(name: str) -> list[Path]:
    """Where timm's hub cache and torch hub's cache keep the published weights of `name`, in the order tried."""
    from huggingface_hub import constants

    places = []
    for tag in _tags(name):
        cfg = timm.models.get_pretrained_cfg(tag)
        if cfg is None:
            continue
        if cfg.hf_hub_id:
            repo = cfg.hf_hub_id if "/" in cfg.hf_hub_id.rstrip("/") else cfg.hf_hub_id + tag
            folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.rstrip("/").replace("/", "--"))
            filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else CACHED_NAMES
            places += [folder / "snapshots" / "*" / filename for filename in filenames]
        if cfg.url:
            places.append(Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name)
    return places


def published_path(name: str, configured: str = "") -> Path:
    """The file of `name`'s published weights: `configured` (imagenet_weights) or the first cached one."""
    check_name(name)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise InitError(f"init 'imagenet': imagenet_weights={configured} is not a file; give the {name} "
                            "weights file (.safetensors or .pth)")
        return path
    places = cached_files(name)
    for place in places:
        found = sorted(place.parent.parent.glob(f"*/{place.name}")) if "*" in place.parts else [place]
        found = [p for p in found if p.is_file()]
        if found:
            return found[-1]
    where = places[0] if places else Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pth"
    raise InitError(
        f"init 'imagenet': no published weights of {name} on this machine (looked at {where}"
        + (f" and {len(places) - 1} other places" if len(places) > 1 else "") + "). Nothing is downloaded: put the "
        f"file there (timm.create_model('{_tags(name)[0] if _tags(name) else name}', pretrained=True) caches it, on a "
        "machine with internet), or set imagenet_weights=PATH to a .safetensors or .pth file of it")


def read_weights(path: Path) -> dict:
    """A state dict from a weights file, as data only; an InitError naming the file when it does not load."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file: say which, not a reader's trace
        raise InitError(f"the weights file {path} does not load ({type(error).__name__}: "
                        f"{' '.join(str(error).split())[:160]}); replace it") from error
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InitError(f"the weights file {path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def published_state(model: nn.Module, backbone: Backbone, path: Path) -> dict:
    """The published weights in `model`'s shapes (for `backbone`'s input), without the head."""
    state = read_weights(path)
    parts = stages(backbone.name, backbone.args)
    outputs = next((state[k].shape[0] for k in sorted(parts.head) if k.endswith("weight") and k in state), 0)
    kwargs = {**backbone.kwargs(outputs), "in_chans": 3}
    try:
        with torch.random.fork_rng(devices=[]):
            loaded = timm.create_model(backbone.name, pretrained=True, **kwargs,
                                       pretrained_cfg_overlay={"state_dict": state, "source": "",
                                                               "num_classes": outputs})
    except (RuntimeError, KeyError, ValueError) as error:
        raise InitError(f"init 'imagenet': {path} does not fit {backbone.name} "
                        f"({' '.join(str(error).split())[:240]})") from error
    return fit(model, {k: v for k, v in loaded.state_dict().items() if k not in parts.head})
