"""An experiment's sides as its config names them, without torch: which pretrainings its inits use, and that
every folder it reads is there. The CLI asks before it imports the training stack, so a wrong folder is one line
at once; the sweep and the plan ask again for callers from Python."""
from __future__ import annotations

from audio2image.config import PRETRAINED_SIDES, Config, ConfigError
from audio2image.prepare.stores import check_roots
from audio2image.targets import is_study, target_views
from audio2image.training.initspec import PRETRAINED_RUNS, parse_init


def pretrained_side(config: Config, base: str) -> str:
    """Which of this experiment's pretrainings a bare pretrained init names: `control` the control's, the source's
    modality ("audio") the source's."""
    if base == "control":
        return "control"
    source = config.dataset("source").modality
    if base != source:
        raise ConfigError(f"config key 'inits': {base!r} names a pretrained init, but the source dataset "
                          f"{config.source} is {source}; use {source!r} or {base}:RUN_DIR")
    return "source"


def pretrained_sides(config: Config) -> list[str]:
    """The sides this experiment pretrains on: those an init of the grid uses (in full, in part, its statistics)."""
    used = {pretrained_side(config, spec.base) for spec in map(parse_init, config.inits)
            if spec.base in PRETRAINED_RUNS and not spec.path}
    return [side for side in PRETRAINED_SIDES if side in used]


def check_all_roots(config: Config) -> None:
    """Every folder the experiment reads (pretrained sides, each target) exists, or is synthesised."""
    check_roots(config, pretrained_sides(config))
    for view in target_views(config):
        check_roots(view.config, ("target",), key=f"'targets', entry {view.name!r}" if is_study(config) else "")
