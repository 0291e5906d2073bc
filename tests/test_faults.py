"""Fault injection: damaged files are named, set aside and redone; impossible settings fail before any work with
one line. Each test breaks one thing the way a kill, a full disk or a short copy would, and checks the outcome."""
from __future__ import annotations

import errno
import json

import pytest
import torch

from audio2image.cli import main
from audio2image.config import ConfigError, load_config
from audio2image.prepare.store import Store, damaged_arrays
from audio2image.training.inits import initialise
from audio2image.training.model import InitError, build_model
from audio2image.training.run import RunSpec, train_run
from audio2image.util import DatasetError
from stores import children, kill_at_validation, make_image_store


def config(*overrides):
    return load_config("configs/tiny.yaml", ["transfer_epochs=3", "image_size=32", "checkpoint_seconds=0",
                                             "precise_bn_batches=2", *overrides])


def comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "wall_seconds"}


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_image_store(tmp_path_factory.mktemp("faults") / "image")


def test_a_half_written_checkpoint_is_set_aside_and_the_run_starts_over(store, tmp_path, monkeypatch):
    whole = train_run(config(), RunSpec("transfer", store, seed=1), tmp_path / "whole")
    kill_at_validation(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_run(config(), RunSpec("transfer", store, seed=1), tmp_path / "run")
    monkeypatch.undo()
    truncate(tmp_path / "run" / "checkpoint.pt")
    again = train_run(config(), RunSpec("transfer", store, seed=1), tmp_path / "run")
    assert comparable(again) == comparable(whole)
    assert (tmp_path / "run" / "checkpoint.pt.damaged").exists()
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # no doubled epoch lines from the attempt that was set aside


def test_a_finished_run_with_damaged_best_weights_is_redone(store, tmp_path, capsys):
    first = train_run(config(), RunSpec("transfer", store, seed=2), tmp_path / "run")
    truncate(tmp_path / "run" / "best.pt", keep=0.3)
    again = train_run(config(), RunSpec("transfer", store, seed=2), tmp_path / "run")
    assert comparable(again) == comparable(first)
    assert (tmp_path / "run" / "best.pt.damaged").exists() and (tmp_path / "run" / "result.json.damaged").exists()
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert "best.pt is damaged" in capsys.readouterr().err


def test_damaged_weights_named_by_an_init_are_one_clear_error(tmp_path):
    run_dir = tmp_path / "pretrain"
    run_dir.mkdir()
    torch.save({"model": build_model(5, 0).state_dict()}, run_dir / "best.pt")
    truncate(run_dir / "best.pt")
    with pytest.raises(InitError) as error:
        initialise(build_model(3, 0), f"audio:{run_dir}")
    assert str(run_dir / "best.pt") in str(error.value) and "does not load" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_store_cut_short_is_refused_by_training_and_prepared_anew(tmp_path, capsys):
    from audio2image.datasets.synth import synth_caltech256
    from audio2image.prepare.images import prepare_caltech256

    root, out = tmp_path / "caltech", tmp_path / "store"
    synth_caltech256(root, classes=3, per_class=10, workers=1, progress=False, min_side=40, max_side=60)
    prepare_caltech256(root, out, size=32, workers=1, progress=False)
    truncate(out / "train.x.npy", keep=0.6)
    assert damaged_arrays(out) and "train.x.npy" in damaged_arrays(out)[0]
    with pytest.raises(DatasetError) as error:
        Store(out).split("train")
    assert "damaged" in str(error.value) and "audio2image prepare caltech256" in str(error.value)
    manifest = prepare_caltech256(root, out, size=32, workers=1, progress=False)
    assert not damaged_arrays(out) and manifest["splits"]["train"]["count"] == len(Store(out).split("train"))
    assert (out / "train.x.npy.damaged").exists() and "is damaged" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, words", [
    (["name="], "config key 'name'"),
    (["name=a/b"], "config key 'name'"),
    (["device=cuda"] if not torch.cuda.is_available() else ["device=mps"], "config key 'device'"),
    (["inits=random,imagenet", "imagenet_weights=/nonexistent/resnet18.pth"], "resnet18.pth is not a file"),
    (["backbone=resnet181"], "did you mean resnet18"),
    (["inits=random,audio@6"], "resnet18 has 5 stages"),
    (["executor=slurm"], "reaches no Slurm"),
])
def test_impossible_settings_fail_before_any_work(tmp_path, capsys, overrides, words):
    if overrides == ["device=mps"] and torch.backends.mps.is_available():
        pytest.skip("this machine has every device")
    if overrides == ["executor=slurm"]:
        import shutil

        if shutil.which("sbatch"):
            pytest.skip("this machine reaches Slurm")
    with pytest.raises(SystemExit) as code:
        main(["sweep", "tiny", f"out_dir={tmp_path / 'runs'}", f"data_dir={tmp_path / 'data'}", *overrides])
    err = capsys.readouterr().err
    assert code.value.code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing was synthesised or prepared


def test_report_refuses_a_folder_that_is_not_an_experiment(tmp_path, capsys):
    for folder in (tmp_path / "missing", tmp_path):
        with pytest.raises(SystemExit):
            main(["report", str(folder)])
        assert "is not an experiment folder" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_a_full_disk_is_one_line_naming_where(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "store" / "train.x.npy.partial"))

    monkeypatch.setattr("audio2image.prepare.images.prepare_caltech256", full)
    with pytest.raises(SystemExit) as code:
        main(["prepare", "caltech256", str(tmp_path), str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "no space left on the disk holding" in err and "MB free" in err and "resumes" in err


def test_bad_names_are_config_errors():
    with pytest.raises(ConfigError):
        load_config(None, ["name=.."])


def test_inspect_and_prepare_agree_on_a_png_named_jpg(tmp_path):
    from PIL import Image

    from audio2image.datasets.caltech256 import inspect_caltech256
    from audio2image.datasets.synth import synth_caltech256
    from audio2image.prepare.images import prepare_caltech256

    root = tmp_path / "caltech"
    synth_caltech256(root, classes=2, per_class=6, workers=1, progress=False, min_side=40, max_side=60)
    impostor = next((root / "256_ObjectCategories").glob("001.*/*.jpg"))
    Image.new("RGB", (50, 50), (200, 10, 10)).save(impostor, format="PNG")
    inspected = inspect_caltech256(root, decode=True, workers=1)
    manifest = prepare_caltech256(root, tmp_path / "store", size=32, workers=1, progress=False)
    named = str(impostor.relative_to(root))
    assert [(u["path"], u["reason"]) for u in inspected["undecodable"]] == [(named, "not a JPEG (format PNG)")]
    assert [(s["item"], s["reason"]) for s in manifest["skipped"]] == [(named, "not a JPEG (format PNG)")]


def test_a_full_disk_while_saving_weights_is_the_os_error_it_is(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from audio2image.training import saving as run

    def zip_writer_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(run.torch, "save", zip_writer_fails)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(10, 10, 0))
    with pytest.raises(OSError) as error:
        run._save(tmp_path / "checkpoint.pt", {"model": {}})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "checkpoint.pt")
    assert not list(tmp_path.iterdir())  # no partial file left behind
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(10, 0, 2**40))
    with pytest.raises(RuntimeError):  # room enough: another fault, raised as it is
        run._save(tmp_path / "checkpoint.pt", {"model": {}})


def test_symlink_loops_in_caltech256_are_listed_not_followed(tmp_path):
    from audio2image.datasets.caltech256 import inspect_caltech256
    from audio2image.datasets.synth import synth_caltech256
    from audio2image.prepare.images import prepare_caltech256

    root = tmp_path / "caltech"
    synth_caltech256(root, classes=2, per_class=5, workers=1, progress=False, min_side=40, max_side=60)
    category = next((root / "256_ObjectCategories").glob("001.*"))
    (category / "self").symlink_to("self")  # ELOOP
    (root / "256_ObjectCategories" / "999.loop").symlink_to("999.loop")
    inspected = inspect_caltech256(root, decode=False)
    manifest = prepare_caltech256(root, tmp_path / "store", size=32, workers=1, progress=False)
    for strays in (inspected["strays"], manifest["strays"]):
        assert any("self (Too many levels of symbolic links)" in s for s in strays), strays
    assert sum(split["count"] for split in manifest["splits"].values()) == 10


def sigterm_after(monkeypatch, calls: int) -> None:
    """As if SIGTERM arrived at the `calls`-th time the training loop asks (it asks after every step and epoch)."""
    asked = []

    def requested():
        asked.append(1)
        return len(asked) >= calls

    monkeypatch.setattr("audio2image.training.run.requested", requested)


@pytest.mark.parametrize("copy_seconds, stopped_after", [(0.0, 1), (1e9, 2)])
def test_sigterm_stops_the_run_with_a_consistent_checkpoint(store, tmp_path, monkeypatch, copy_seconds,
                                                             stopped_after):
    """Mid-epoch with the last epoch end's state kept in memory (long epochs), or at the end of a short epoch:
    either way the checkpoint written is an epoch end's, and the resumed run is the uninterrupted one."""
    from audio2image.training import saving
    from audio2image.training.preemption import EXIT_CODE, Preempted

    rare = ("checkpoint_seconds=1e9",)  # only SIGTERM writes a checkpoint
    whole = train_run(config(*rare), RunSpec("transfer", store, seed=4), tmp_path / "whole")
    monkeypatch.setattr(saving, "COPY_SECONDS", copy_seconds)
    sigterm_after(monkeypatch, 6)  # epoch 1 has 2 steps + 1 epoch-end question: the 6th is in epoch 2
    with pytest.raises(Preempted) as stop:
        train_run(config(*rare), RunSpec("transfer", store, seed=4), tmp_path / "run")
    assert stop.value.code == EXIT_CODE
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["epoch"] == stopped_after
    monkeypatch.undo()
    again = train_run(config(*rare), RunSpec("transfer", store, seed=4), tmp_path / "run")
    assert comparable(again) == comparable(whole)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


@pytest.mark.slow
def test_a_real_sigterm_ends_the_process_resumably(tmp_path):
    import subprocess
    import sys
    import time

    from audio2image.training.preemption import EXIT_CODE

    def transfer(out):
        return subprocess.Popen([sys.executable, "-m", "audio2image", "transfer", "--config", "tiny", "--init",
                                 "random", f"out_dir={out}", f"data_dir={tmp_path / 'data'}", "transfer_epochs=8",
                                 "checkpoint_seconds=1e9", "fraction=1.0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    assert transfer(tmp_path / "whole").wait(timeout=300) == 0  # also prepares the shared store
    process = transfer(tmp_path / "killed")
    lines = lambda: list((tmp_path / "killed").glob("tiny/transfer/*/metrics.jsonl"))  # noqa: E731
    deadline = time.time() + 120
    while not lines() and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(__import__("signal").SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_CODE and "SIGTERM" in err
    (run,) = (tmp_path / "killed" / "tiny" / "transfer").iterdir()
    assert (run / "checkpoint.pt").exists() and not (run / "result.json").exists()
    assert transfer(tmp_path / "killed").wait(timeout=300) == 0
    results = [json.loads(next((tmp_path / out).glob("tiny/transfer/*/result.json")).read_text())
               for out in ("whole", "killed")]
    assert [comparable({**r, "pid": 0}) for r in results][0] == comparable({**results[1], "pid": 0})


def task_of(controller_pid: int, timeout: float = 60) -> int:
    """The pid of the task a submitit local job's controller started (its one child)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        started = children(controller_pid)
        if started:
            return started[0]
        time.sleep(0.01)
    raise AssertionError("submitit's controller started no task")


@pytest.mark.slow
def test_submitit_requeues_a_preempted_run_which_resumes(store, tmp_path):
    """SIGUSR2 is submitit's preemption and timeout signal, sent to the job's task (as Slurm does; the local
    LocalJob._interrupt signals its controller instead, which dies of it). The run writes its checkpoint and hands
    the signal to submitit, which requeues the same call: the controller starts the task again, and it resumes to
    the uninterrupted result, each epoch once in metrics.jsonl."""
    import os
    import signal
    import time

    submitit = pytest.importorskip("submitit")
    from audio2image.sweep.executors import execute_run

    settings = config("checkpoint_seconds=1e9", "transfer_epochs=8")  # only the signal writes a checkpoint
    spec = RunSpec("transfer", store, seed=4)
    whole = train_run(settings, spec, tmp_path / "whole")
    executor = submitit.LocalExecutor(folder=tmp_path / "slurm")
    executor.update_parameters(timeout_min=30)
    job = executor.submit(execute_run, settings.to_dict(), dict(vars(spec), store=str(store)), str(tmp_path / "run"))
    task = task_of(job._process.pid)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(task, signal.SIGUSR2)
    result = job.result()
    log = job.stderr() or ""
    assert "Requeued" in (job.stdout() or "") + log, log[-2000:]
    assert result["pid"] != task  # finished by the task started again
    assert comparable({**result, "pid": 0, "host": ""}) == comparable({**whole, "pid": 0, "host": ""})
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, 9))
