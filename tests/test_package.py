"""The package: its version, in one place (pyproject.toml), its citation file, and how its processes end."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

import audio2image

ROOT = Path(__file__).resolve().parents[1]


def pyproject_version() -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def test_the_version_is_pyprojects():
    assert audio2image.__version__ == pyproject_version()


def test_citation_cff_is_valid_and_of_this_version():
    """The fields CFF 1.2.0 requires (cff-version, message, title, authors), with their types, and the version."""
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert isinstance(cff["message"], str) and cff["message"] and isinstance(cff["title"], str) and cff["title"]
    assert cff["authors"] == [{"name": "audio2image contributors"}]  # an entity: a name, no given or family name
    assert cff["license"] == "MIT" and cff["type"] == "software"
    assert cff["version"] == audio2image.__version__ == pyproject_version()


def test_a_process_skips_the_exit_collection_once_however_often_asked():
    """The CLI and every job a worker runs ask for it (util.skip_exit_collection); it is registered once."""
    import subprocess
    import sys

    code = ("import atexit\nfrom audio2image.util import skip_exit_collection\nbefore = atexit._ncallbacks()\n"
            "skip_exit_collection(); skip_exit_collection()\nprint(atexit._ncallbacks() - before)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "1"
