"""Files written atomically get the mode a plain open() gives (0666 less the umask), so that a group can read an
experiment's results where the umask lets it."""
from __future__ import annotations

import os
import stat

import pytest

from audio2image.util import atomic_write_text, write_json


@pytest.fixture
def umask():
    """Set the process's umask for a test; the previous one is restored after it."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "report.md", "# report\n")
    write_json(tmp_path / "result.json", {"status": "completed"})
    with open(tmp_path / "plain.txt", "w") as handle:  # what the atomic writes must match
        handle.write("x")
    assert mode(tmp_path / "report.md") == mode(tmp_path / "result.json") == mode(tmp_path / "plain.txt") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "report.md", "result.json"]  # no leftovers


def test_a_file_made_0600_by_an_earlier_version_gets_the_umasks_mode_when_rewritten(tmp_path, umask):
    """Results written as 0600 by earlier versions become readable when the sweep rewrites them."""
    path = tmp_path / "results.csv"
    path.write_text("old\n")
    path.chmod(0o600)
    umask(0o022)
    atomic_write_text(path, "new\n")
    assert mode(path) == 0o644 and path.read_text() == "new\n"


def test_torch_checkpoints_follow_the_umask(tmp_path, umask):
    import torch

    from audio2image.training.saving import _save

    umask(0o027)
    _save(tmp_path / "best.pt", {"model": {"w": torch.zeros(2)}})
    assert mode(tmp_path / "best.pt") == 0o640
