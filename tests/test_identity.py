"""Run identities say what determines a result, not where things live: moving data_dir (the cache of datasets and
stores) changes no store's name and no run's id, and an experiment made when it did still has its runs found
finished after the upgrade."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from audio2image.config import config_hash, keys_for, load_config
from audio2image.prepare.store import MANIFEST, STORE_VERSION
from audio2image.prepare.stores import dataset_root, ensure_store, store_path
from audio2image.sweep.grid import plan_transfer, pretrain_identity, pretrain_plan, transfer_plan
from audio2image.training.files import finished_result
from stores import make_audio_store, make_image_store


TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def tiny(tmp_path, data_dir, *overrides):
    return load_config(TINY, [f"out_dir={tmp_path / 'runs'}", f"data_dir={data_dir}",
                                             "fractions=1.0", "inits=random,audio", "seeds=0", *overrides])


def ids(config) -> dict:
    source, target = store_path(config, "source"), store_path(config, "target")
    return {"stores": (source.name, target.name), "pretrain": pretrain_plan(config, source).spec.run_id,
            "transfer": [run.run_dir.name for run in transfer_plan(config, target)]}


def test_moving_data_dir_keeps_store_names_and_run_ids(tmp_path, monkeypatch):
    here = ids(tiny(tmp_path, tmp_path / "cache"))
    assert ids(tiny(tmp_path, tmp_path / "elsewhere" / "cache")) == here
    monkeypatch.chdir(tmp_path)  # a relative data_dir read from another folder: the same cache, the same ids
    assert ids(tiny(tmp_path, "cache")) == here
    assert ids(tiny(tmp_path, tmp_path / "cache", "transfer_epochs=3"))["transfer"] != here["transfer"]


def test_deterministic_says_how_to_run_not_what_is_computed(tmp_path):
    """Like amp and fit_threads, deterministic changes a run's numerics, not its meaning: no run id or store name
    changes with it (result.json records it)."""
    here = ids(tiny(tmp_path, tmp_path / "cache"))
    assert ids(tiny(tmp_path, tmp_path / "cache", "deterministic=true")) == here


def test_a_dataset_folder_outside_data_dir_still_names_its_store(tmp_path):
    """Two folders of one kind of dataset are two datasets: their stores (and runs) differ."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    one, two = (tiny(tmp_path, tmp_path / "cache", f"target_root={tmp_path / name}") for name in "ab")
    assert store_path(one, "target").name != store_path(two, "target").name


def former_store(config, side: str, make) -> str:
    """A complete store where earlier versions put it: named by a hash of its keys and its folder's absolute path
    (written out here as that version computed it)."""
    dataset = config.dataset(side)
    values = {key: getattr(config, key) for key in dataset.store_keys}
    values["root"] = str(dataset_root(config, side).resolve())
    path = store_path(config, side).parent / f"{dataset.name}-{config_hash(values)}"
    make(path)
    manifest = json.loads((path / MANIFEST).read_text())  # made by the current rules: nothing to bring up to date
    (path / MANIFEST).write_text(json.dumps({**manifest, "store_version": STORE_VERSION}))
    return path.name


def finished(run_dir, run_id: str, **identity) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, **identity}))
    (run_dir / "result.json").write_text(json.dumps({"status": "completed", "run": {"run_id": run_id}}))
    torch.save({"model": {"w": torch.zeros(1)}}, run_dir / "best.pt")


def test_an_experiment_made_under_former_store_names_is_found_finished(tmp_path, monkeypatch):
    config = tiny(tmp_path, tmp_path / "cache")
    names = {"source": former_store(config, "source", make_audio_store),
             "target": former_store(config, "target", make_image_store)}
    assert names["target"] != store_path(config, "target").name  # the cache's place was in the name
    # the experiment as the earlier version made it: its ids hash the former store names
    pretrain_id = config_hash(pretrain_identity(config, tmp_path / names["source"], "source"))
    made = pretrain_plan(config, store_path(config, "source"))
    finished(made.run_dir, pretrain_id, stage="pretrain", seed=0)
    old = {}
    for init in ("random", "audio"):
        planned = plan_transfer(config, tmp_path / names["target"], 1.0, init, 0, "none")
        finished(planned.run_dir, planned.spec.run_id, stage="transfer")
        old[init] = planned.run_dir.name
    assert old["audio"] != old["random"] and pretrain_id != made.spec.run_id

    stores = {side: ensure_store(config, side).path for side in ("source", "target")}  # renamed, not prepared
    assert {side: path.name for side, path in stores.items()} == {side: store_path(config, side).name
                                                                  for side in stores}
    assert not any((stores["target"].parent / name).exists() for name in names.values())
    pretraining = pretrain_plan(config, stores["source"])
    assert pretraining.spec.run_id == pretrain_id
    # what the sweep compares before taking it for another experiment's pretraining
    assert json.loads((pretraining.run_dir / "run.json").read_text())["run_id"] == pretraining.spec.run_id
    runs = transfer_plan(config, stores["target"])
    assert [run.run_dir.name for run in runs] == [old["random"], old["audio"]]
    assert all(finished_result(run.run_dir) is not None for run in runs)
    queued = []
    monkeypatch.setattr("audio2image.sweep.executors.execute_jobs", lambda jobs, config: queued.extend(jobs))
    from audio2image.sweep.executors import execute

    execute([pretraining, *runs], config)
    assert queued == []  # nothing is trained again
    grown = transfer_plan(tiny(tmp_path, tmp_path / "cache", "seeds=0,1"), stores["target"])
    assert len({run.run_dir.name for run in grown} - set(old.values())) == 2  # new cells: new ids


def test_a_label_column_at_its_default_keeps_store_names_and_run_ids(tmp_path):
    """The label column keys came after folder stores existed: at their default a store keeps the name it had (its
    keys hashed without them), and so do the runs made from it; another column is another store, and other runs."""
    (tmp_path / "sounds").mkdir(), (tmp_path / "images").mkdir()
    sides = ("source=audiofolder", f"source_root={tmp_path / 'sounds'}", "target=imagefolder",
             f"target_root={tmp_path / 'images'}")
    config = tiny(tmp_path, tmp_path / "cache", *sides)
    for side in ("source", "target"):
        dataset = config.dataset(side)
        values = {key: getattr(config, key) for key in dataset.store_keys if not key.endswith("_label_column")}
        values["root"] = str(dataset_root(config, side).resolve())
        assert store_path(config, side).name == f"{dataset.name}-{config_hash(values)}"  # as named before the keys
    assert not [key for key in keys_for("audio", "pretrain") + keys_for("image", "transfer") if "label_col" in key]
    here = ids(config)
    audio = ids(tiny(tmp_path, tmp_path / "cache", *sides, "audio_label_column=genre"))
    assert audio["stores"][0] != here["stores"][0] and audio["stores"][1] == here["stores"][1]
    assert audio["pretrain"] != here["pretrain"]
    image = ids(tiny(tmp_path, tmp_path / "cache", *sides, "image_label_column=genre"))
    assert image["stores"] == (here["stores"][0], image["stores"][1]) != here["stores"]
    assert image["pretrain"] == here["pretrain"] and not set(image["transfer"]) & set(here["transfer"])


def test_trackers_change_no_store_name_or_run_id(tmp_path):
    """Trackers (training/trackers.py) say how a run is watched, not what it computes."""
    here = ids(tiny(tmp_path, tmp_path / "cache"))
    watched = tiny(tmp_path, tmp_path / "cache", "trackers=tensorboard,mlflow,wandb", "wandb_project=elsewhere",
                   f"mlflow_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert ids(watched) == here
    assert ids(tiny(tmp_path, tmp_path / "cache", "tensorboard=true")) == here  # the former flag, folded in
