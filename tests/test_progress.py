"""The bar over an epoch's batches: drawn, with its ETA, where stderr is a terminal; nothing at all otherwise (logs,
CI, tests)."""
from __future__ import annotations

import io
import re
import sys
import time

import pytest

from audio2image.config import load_config
from audio2image.training.run import RunSpec, train_run
from audio2image.util import batch_bar
from stores import make_image_store


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def watched(monkeypatch):
    monkeypatch.delenv("AUDIO2IMAGE_QUIET", raising=False)  # tests run quiet (conftest.py); a person would not


def slow(count: int):
    """Batches that take long enough for the bar to be redrawn with its rate and ETA."""
    for index in range(count):
        time.sleep(0.03)
        yield index


def test_a_terminal_gets_a_bar_with_its_eta_and_a_file_nothing(watched):
    terminal, file = Terminal(), io.StringIO()
    for stream in (terminal, file):
        with batch_bar(slow(40), total=40, desc="epoch 2/5", stream=stream) as batches:
            assert sum(batches) == sum(range(40))  # every batch, in order
    assert file.getvalue() == ""
    drawn = terminal.getvalue()
    assert drawn.startswith("\repoch 2/5:") and re.search(r" [1-9]\d?/40 \[\d\d:\d\d<\d\d:\d\d", drawn)  # elapsed<ETA
    with batch_bar(range(3), total=3, desc="off", enabled=False, stream=terminal) as batches:
        assert list(batches) == [0, 1, 2]
    assert "off" not in terminal.getvalue()


def config(*overrides):
    return load_config("configs/tiny.yaml", ["transfer_epochs=1", "progress=true", *overrides])


@pytest.mark.parametrize("tty", [True, False])
def test_training_draws_the_bar_only_on_a_terminal(tmp_path, monkeypatch, watched, tty):
    stream = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    store = make_image_store(tmp_path / "store")
    result = train_run(config(), RunSpec("transfer", store), tmp_path / "run")
    assert result["status"] == "completed"
    text = stream.getvalue()
    assert ("\repoch 1/1:" in text and "/3 [" in text) == tty  # 48 items in batches of 16
    assert ("\r" in text or "batch" in text) == tty
    assert re.search(r"[\n\r]  epoch 1/1: train loss", text)  # the epoch's line either way: the bar cleared first
    if tty:  # progress=false: no bar on a terminal either
        monkeypatch.setattr(sys, "stderr", quiet := Terminal())
        train_run(config("progress=false"), RunSpec("transfer", store, seed=1), tmp_path / "quiet")
        assert "\r" not in quiet.getvalue() and "train loss" in quiet.getvalue()
