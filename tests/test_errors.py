"""Every error that is the user's to fix is a UserError (one line from the command line), and keeps the built-in
class that code catching it before still catches."""
from __future__ import annotations

import subprocess
import sys

import pytest

from audio2image.config_checks import ConfigError
from audio2image.datasets.archives import UnsafeArchiveError
from audio2image.datasets.download import DownloadError
from audio2image.datasets.mtat import AnnotationError
from audio2image.errors import UserError
from audio2image.sweep import PretrainingFailed
from audio2image.training.model import InitError
from audio2image.util import DatasetError


@pytest.mark.parametrize("error, also", [
    (ConfigError, ValueError), (InitError, RuntimeError), (DownloadError, RuntimeError),
    (UnsafeArchiveError, RuntimeError), (AnnotationError, ValueError), (DatasetError, ValueError),
    (PretrainingFailed, Exception),
])
def test_every_error_of_the_user_is_a_user_error(error, also):
    assert issubclass(error, UserError) and issubclass(error, also)


def test_the_errors_module_imports_without_torch():
    code = "import sys, audio2image.errors\nassert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
