"""audio2image: does pretraining a network on audio help it learn images?

The package follows the data: datasets (raw files) -> prepare (training stores) -> training (checkpoints and
transfer runs) -> sweep (results) -> report. An experiment's results as pandas DataFrames (report/frames.py):

    >>> import audio2image
    >>> audio2image.load_results("runs/demo")  # also load_curves, load_gains
"""
from __future__ import annotations


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, the one place it is written); from a source tree
    that is not installed, pyproject.toml's own line."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audio2image")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _version()
# pandas and the report's modules load on first use, so that `import audio2image` (and the CLI) stays quick
_FRAMES = ("load_results", "load_curves", "load_gains")
__all__ = ["__version__", *_FRAMES]


def __getattr__(name: str):
    if name in _FRAMES:
        from audio2image.report import frames

        return getattr(frames, name)
    raise AttributeError(f"module 'audio2image' has no attribute {name!r}")
