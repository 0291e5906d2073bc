"""Several targets in one study: pretrained once for all of them, each target tuned, run and reported on its own
(its files in E/targets/<slug>/), E/results.csv with every target's rows; killed and rerun, grown by a target, a
control serving its own modality only; the checks of `targets`; the plan per target."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from audio2image import load_gains, load_results
from audio2image.config import ConfigError, load_config
from audio2image.prepare.stores import store_path
from audio2image.report.read import read_results
from audio2image.sweep import run_sweep
from audio2image.sweep.grid import transfer_plan
from audio2image.sweep.plan import format_plan, plan_experiment
from audio2image.sweep.results import write_results
from audio2image.targets import one_target, target_slugs, target_views

# one pretraining per side and seed; one setting, one seed, one fraction: each target's runs are its inits
STUDY = ["name=study", "control=caltech256", "inits=random,audio,control", "fractions=1.0", "seeds=0",
         "transfer_epochs=1", "cka_items=4"]


def sound_folder(root: Path) -> Path:
    """An audio folder of 3 classes (a tone each), 6 clips of 2-3 s per class, with a split column."""
    rng = np.random.default_rng(0)
    lines = ["path,labels,split"]
    for label in range(3):
        for k, split in enumerate(["train"] * 3 + ["valid"] * 2 + ["test"]):
            t = np.arange(8000 * (2 + k % 2)) / 8000
            wave = 0.3 * np.sin(2 * np.pi * 300 * (label + 1) * t) + 0.05 * rng.standard_normal(t.size)
            path = root / f"class{label}" / f"clip{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, wave.astype(np.float32), 8000)
            lines.append(f"class{label}/clip{k}.wav,sound{label},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def picture_folder(root: Path) -> Path:
    """An image folder of 2 classes (a colour each), 5 small images per class."""
    for label, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        for k in range(5):
            Image.new("RGB", (24, 20), tuple(c + 7 * k for c in colour)).save(root / f"class{label}" / f"{k}.png")
    return root


def study_config(root: Path, *targets: str):
    return load_config("configs/tiny.yaml", [f"out_dir={root / 'runs'}", f"data_dir={root / 'data'}", *STUDY,
                                             f"targets={','.join(targets)}"])


class Recorder:
    """The runs each sweep executes (executors.execute_run, by run folder) and what it logs."""

    def __init__(self, monkeypatch):
        from audio2image.sweep import executors

        self.real, self.calls, self.lines, self.die_at = executors.execute_run, [], [], None
        monkeypatch.setattr(executors, "execute_run", self.execute_run)
        monkeypatch.setattr("audio2image.sweep.log", self.lines.append)
        # the plan's time is not what is tested here (test_plan.py calibrates): seconds per item, without timing
        monkeypatch.setattr("audio2image.sweep.costs.calibrate", lambda *args: {"train": 1e-3, "eval": 1e-3})

    def execute_run(self, config_values, spec_values, run_dir, wait=True):
        self.calls.append(Path(run_dir))
        if len(self.calls) == self.die_at:  # killed in its first validation: the run is left unfinished
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("audio2image.training.run.evaluate", _killed)
                return self.real(config_values, spec_values, run_dir, wait)
        return self.real(config_values, spec_values, run_dir, wait)

    def sweep(self, config, die_at=None) -> list[Path]:
        """The runs this sweep executed; with `die_at`, the sweep is killed during that run."""
        start, self.die_at = len(self.calls), die_at
        try:
            run_sweep(config)
        except KeyboardInterrupt:
            assert die_at is not None
        return self.calls[start:]


def _killed(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.slow
def test_a_study_end_to_end(tmp_path, monkeypatch):
    """One study, made once (under xdist each test of a module fixture may make it again), checked part by part."""
    study = run_study(tmp_path, Recorder(monkeypatch))
    pretrained_once_and_each_targets_files_kept(study)
    killed_mid_study_it_resumed_without_training_a_run_twice(study)
    grown_it_ran_only_the_new_targets_cells(study)
    the_control_served_the_targets_of_its_own_modality_only(study)
    the_plan_and_the_sweeps_first_line_counted_runs_per_target(study)


def run_study(root: Path, recorder: Recorder) -> dict:
    """A study of an image and an audio target from one audio source and an image control: killed during the
    audio target's first run and rerun, reported; then grown by a third target (an image folder)."""
    from audio2image.report import build_report

    sounds, pictures = sound_folder(root / "sounds"), picture_folder(root / "pictures")
    two = study_config(root, "caltech256", f"audiofolder:{sounds}")
    killed = recorder.sweep(two, die_at=6)  # 2 pretraining runs, 3 of caltech256, then the audio target's first
    resumed = recorder.sweep(two)
    build_report(two.experiment_dir)
    alone = build_report(two.experiment_dir / "targets" / "audiofolder")  # one target's report, in its folder
    first = {"results": read_results(two.experiment_dir / "results.csv"),
             "report": (two.experiment_dir / "report.md").read_text(), "log": list(recorder.lines),
             "frame": load_results(two.experiment_dir), "gains": load_gains(two.experiment_dir),
             "alone": alone["markdown"].read_text()}
    three = study_config(root, "caltech256", f"audiofolder:{sounds}", f"imagefolder:{pictures}")
    planned = plan_experiment(three)
    grown = recorder.sweep(three)
    return {"root": root, "config": two, "grown_config": three, "sounds": sounds, "killed": killed,
            "resumed": resumed, "grown": grown, "planned": planned, "first": first}


def pretrained_once_and_each_targets_files_kept(study: dict) -> None:
    experiment = study["config"].experiment_dir
    executed = study["killed"] + study["resumed"]
    pretraining = [run for run in executed if run.parent.name == "pretrain"]
    assert sorted(run.name for run in pretraining) == ["control-seed0", "source-seed0"]  # once each, for both
    rows, audio = study["first"]["results"], f"audiofolder:{study['sounds']}"
    assert [row["target"] for row in rows] == ["caltech256"] * 3 + [audio] * 2
    assert {row["dataset"] for row in rows if row["target"] == audio} == {"audiofolder"}
    assert len({row["run_id"] for row in rows}) == 5 and {row["status"] for row in rows} == {"completed"}
    for slug, count in (("caltech256", 3), ("audiofolder", 2)):
        folder = experiment / "targets" / slug
        for name in ("config.yaml", "selection.json", "datasets.json", "analysis/cka.json"):
            assert (folder / name).is_file(), (slug, name)
        assert len(read_results(folder / "results.csv")) == count
    assert not (experiment / "selection.json").exists()  # each target chose its own settings
    report = study["first"]["report"]
    assert report.index("## Across targets") < report.index("## caltech256") < report.index(f"## {audio}")
    assert "### The answer" in report and "Conclusion: " in report and "Hartung-Knapp-Sidik-Jonkman" in report
    assert (experiment / "figures" / "across_targets.png").is_file()
    for figure in ("targets/caltech256/figures/verdicts.png", "targets/audiofolder/figures/verdicts.png"):
        assert f"]({figure})" in report and (experiment / figure).is_file()
    alone = study["first"]["alone"]
    assert alone.startswith("# study: does pretraining on mtat help audiofolder?") and "## Across" not in alone
    assert "| 100% | audio | 0 | none | completed |" in alone and "no result any more" not in alone
    frame, gains = study["first"]["frame"], study["first"]["gains"]  # pandas: each target's rows, named
    transfers = frame[frame.stage == "transfer"]
    assert transfers.groupby("target").size().to_dict() == {"caltech256": 3, audio: 2}
    assert set(transfers.run_dir.map(lambda d: Path(d).parent)) == {experiment / "transfer"}
    assert (frame.stage == "pretrain").sum() == 2 and gains.columns[0] == "target"
    assert sorted(zip(gains.target, gains.init)) == [(audio, "audio"), ("caltech256", "audio"),
                                                     ("caltech256", "control")]


def killed_mid_study_it_resumed_without_training_a_run_twice(study: dict) -> None:
    killed, resumed = study["killed"], study["resumed"]
    assert len(killed) == 6 and resumed[0] == killed[-1]  # the killed run first, then the runs not started
    assert not set(killed[:-1]) & set(resumed)  # nothing finished is trained again
    assert len(resumed) == 2 and all(run.parent.name == "transfer" for run in resumed)
    with open(study["config"].experiment_dir / "results.csv") as handle:
        ids = [row["run_id"] for row in csv.DictReader(handle)]
    assert len(ids) == len(set(ids))


def grown_it_ran_only_the_new_targets_cells(study: dict) -> None:
    grown, experiment = study["grown"], study["config"].experiment_dir
    assert len(grown) == 3 and all(run.parent.name == "transfer" for run in grown)  # random, audio, control
    rows = read_results(experiment / "results.csv")
    new = [row for row in rows if row["target"].startswith("imagefolder:")]
    assert {row["run_id"] for row in new} == {run.name for run in grown}
    assert len(rows) == 8 and (experiment / "targets" / "imagefolder" / "selection.json").is_file()


def the_control_served_the_targets_of_its_own_modality_only(study: dict) -> None:
    rows = study["first"]["results"]
    assert {row["init"] for row in rows if row["dataset"] == "caltech256"} == {"random", "audio", "control"}
    assert {row["init"] for row in rows if row["dataset"] == "audiofolder"} == {"random", "audio"}
    audio = study["first"]["report"].split(f"## audiofolder:{study['sounds']}")[1].split("\n## ")[0]
    assert "This target has no positive control of its own" in audio and "`control` init was not run" in audio
    caltech = study["first"]["report"].split("## caltech256")[1].split("\n## ")[0]
    assert "no positive control of its own" not in caltech


def the_plan_and_the_sweeps_first_line_counted_runs_per_target(study: dict) -> None:
    audio = f"audiofolder:{study['sounds']}"
    first = study["first"]["log"][0]
    assert first.startswith("plan: 2 pretraining, 0 tuning, 5 final runs (0 finished)")
    assert f"caltech256: 3 runs, {audio}: 2 runs;" in first
    planned = study["planned"]
    targets = planned["runs"]["targets"]
    assert [(name, row["runs"], row["finished"]) for name, row in targets.items()] == [
        ("caltech256", 3, 3), (audio, 2, 2), (f"imagefolder:{study['root'] / 'pictures'}", 3, 0)]
    assert planned["runs"]["pretraining"]["finished"] == 2 and planned["runs"]["to_train"] == 3
    assert f"caltech256: 3 runs (3 done), {audio}: 2 runs (2 done), imagefolder:" in planned["summary"]
    text = format_plan(planned)
    assert "targets caltech256, " in text.splitlines()[0] and "per target: runs (finished)" in text


@pytest.mark.parametrize("overrides, message", [
    (["targets=caltech256,imagefoldr:x"], "'imagefoldr' is not a dataset (did you mean imagefolder"),
    (["targets=caltech256,imagefolder:a,imagefolder:./a"], "'imagefolder:./a' is not allowed; it is the same "
                                                            "target as 'imagefolder:a'"),
    (["targets=caltech256,audiofolder:x", "synthetic=false", "source_root=s"],
     "'caltech256' is not allowed; it names no folder and synthetic is false; give it as caltech256:PATH"),
    (["targets=caltech256,imagefolder"], "imagefolder has no synthetic version; give its folder as imagefolder:PATH"),
    (["targets=caltech256,mtat"], "'mtat' is not allowed; it is the same dataset as source"),
    (["targets=caltech256,audiofolder:x", "target_root=y"], "config key 'target_root'"),
    (["targets=audiofolder:x,audiofolder:y", "control=caltech256", "inits=random,control"],
     "config key 'control': 'caltech256' is not allowed; it is image data and no target is"),
])
def test_bad_targets_are_one_line_naming_the_key_and_entry(overrides, message):
    with pytest.raises(ConfigError, match="config key") as error:
        load_config("configs/tiny.yaml", overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_missing_target_folder_names_its_entry(tmp_path):
    config = study_config(tmp_path, "caltech256", f"imagefolder:{tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match=r"config key 'targets', entry 'imagefolder:.*nowhere'"):
        run_sweep(config)
    assert not config.experiment_dir.exists()


def test_one_entry_is_that_target_and_two_targets_never_share_a_run(tmp_path):
    one = study_config(tmp_path, f"imagefolder:{tmp_path}:a")  # the root holds a ':' of its own
    (view,) = target_views(one)
    assert (view.config.target, view.config.target_root, view.folder) == ("imagefolder", f"{tmp_path}:a",
                                                                          one.experiment_dir)
    assert one_target(one, "audio2image transfer") == view.config
    with pytest.raises(ConfigError, match="audio2image transfer works on one target, and 2 are given; use one "
                                          "target's config .*targets/caltech256/config.yaml"):
        one_target(study_config(tmp_path, "caltech256", f"imagefolder:{tmp_path}"), "audio2image transfer")
    assert target_slugs(["caltech256", "imagefolder:a", "imagefolder:b"])[0] == "caltech256"
    assert len(set(target_slugs(["imagefolder:a", "imagefolder:b", "imagefolder:a/"]))) == 2
    study = study_config(tmp_path, "caltech256", f"imagefolder:{tmp_path / 'a'}", f"imagefolder:{tmp_path / 'b'}")
    ids = [{run.run_dir.name for run in transfer_plan(view.config, store_path(view.config, "target"))}
           for view in target_views(study)]
    assert all(len(found) == 3 for found in ids) and len(set.union(*ids)) == 9
    from audio2image.training.trackers import describe_run

    run = transfer_plan(target_views(study)[2].config, tmp_path / "store")[0]  # trackers tell the targets apart
    tags = describe_run(run.config, run.spec, run.run_dir, {"dataset": "imagefolder"}).tags
    assert tags["target"] == f"imagefolder:{tmp_path / 'b'}"


def test_results_are_read_with_and_without_the_target_column(tmp_path):
    import json

    run = tmp_path / "transfer" / "r0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"status": "completed", "run": {
        "run_id": "r0", "stage": "transfer", "dataset": "caltech256", "fraction": 1.0, "init": "random", "seed": 0,
        "freeze": "none"}, "test": {"top1": 0.5}}))
    write_results([run], tmp_path / "with.csv", "caltech256")
    lines = (tmp_path / "with.csv").read_text().splitlines()
    assert lines[0].startswith("target,run_id,") and lines[1].startswith("caltech256,r0,")
    without = [",".join(line.split(",")[1:]) for line in lines]
    (tmp_path / "without.csv").write_text("\n".join(without) + "\n")
    assert read_results(tmp_path / "with.csv")[0]["target"] == "caltech256"
    assert "target" not in read_results(tmp_path / "without.csv")[0]
    assert read_results(tmp_path / "without.csv")[0]["test_top1"] == 0.5
