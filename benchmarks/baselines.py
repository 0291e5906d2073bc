"""Where the seed's baseline scripts live: ../shared/baselines beside the repository checkout."""
import sys
from pathlib import Path


def seed_script(name: str) -> Path:
    """The path of a seed baseline script (e.g. "seed_mel.py"); exits with a message when it is absent."""
    path = Path(__file__).resolve().parents[2] / "shared/baselines" / name
    if not path.is_file():
        sys.exit(f"seed baseline not found: expected {path} (the shared/baselines folder beside the repository "
                 "checkout)")
    return path
