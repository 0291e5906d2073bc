"""The config: YAML + key=value overrides, typed coercion, validation messages, bundled configs, hashing, CLI errors."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from audio2image.config import Config, ConfigError, config_hash, from_dict, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "src/audio2image/configs"
BUNDLED = ("demo", "original", "recipe", "tiny")


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# --- reading and overriding --------------------------------------------------------------------------------------
def test_defaults_without_a_file():
    assert load_config() == Config()
    assert load_config(None, []) == Config()


def test_yaml_values_and_overrides_are_coerced(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"name": "x", "transfer_epochs": 3, "pretrain_lr": 1, "amp": False,
                                            "fractions": [0.25, 1], "seeds": [4, 5]})
    config = load_config(path, ["transfer_epochs=7", "transfer_lr=0.125", "amp=true", "channels_last=no",
                                "pretrain_weight_decay=1e-3", "source_root=/data/mtat", "seed=11"])
    assert config.name == "x"
    assert config.transfer_epochs == 7 and type(config.transfer_epochs) is int
    assert config.pretrain_lr == 1.0 and type(config.pretrain_lr) is float  # int in YAML -> float field
    assert config.transfer_lr == 0.125 and type(config.transfer_lr) is float
    assert config.amp is True and config.channels_last is False
    assert config.pretrain_weight_decay == pytest.approx(1e-3)
    assert config.source_root == "/data/mtat"
    assert config.seed == 11
    assert config.fractions == [0.25, 1.0] and all(type(v) is float for v in config.fractions)
    assert config.seeds == [4, 5]
    # the overrides win over the file, the file over the defaults
    assert load_config(path).transfer_epochs == 3 and load_config(path).amp is False


@pytest.mark.parametrize("raw", ["0.1,0.5", "[0.1, 0.5]", "[0.1,0.5]", " 0.1 , 0.5 "])
def test_list_overrides_in_both_spellings(raw):
    assert load_config(None, [f"fractions={raw}"]).fractions == [0.1, 0.5]


def test_list_overrides_of_each_kind():
    config = load_config(None, ["seeds=0,1,2,3", "inits=[random, imagenet, audio:runs/x/pretrain]",
                                "freezes=none,stages:2,linear"])
    assert config.seeds == [0, 1, 2, 3] and all(type(s) is int for s in config.seeds)
    assert config.inits == ["random", "imagenet", "audio:runs/x/pretrain"]
    assert config.freezes == ["none", "stages:2", "linear"]
    # a single value is a one-element list
    assert load_config(None, ["seeds=5"]).seeds == [5]
    assert load_config(None, ["fractions=1"]).fractions == [1.0]


def test_list_as_string_in_yaml(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"seeds": "3,4", "fractions": "[0.5, 1.0]"})
    config = load_config(path)
    assert config.seeds == [3, 4] and config.fractions == [0.5, 1.0]


def test_dashed_override_keys():
    config = load_config(None, ["--transfer-lr=0.5", "pretrain-epochs=2"])
    assert config.transfer_lr == 0.5 and config.pretrain_epochs == 2


def test_empty_string_value_and_null():
    assert load_config(None, ["target_root="]).target_root == ""
    assert load_config(None, ["slurm_partition=gpu"]).slurm_partition == "gpu"


def test_string_keys_keep_the_literal_text():
    assert load_config(None, ["name=1.10"]).name == "1.10"
    assert load_config(None, ["name=007"]).name == "007"
    assert load_config(None, ["name=on"]).name == "on"
    with pytest.raises(ConfigError, match="checkpoint:PATH"):  # YAML reads `checkpoint:` as a mapping
        load_config(None, ["init=checkpoint:"])


# --- errors ------------------------------------------------------------------------------------------------------
def test_unknown_key_names_it_and_suggests_close_names(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["transfer_lrr=0.1"])
    message = str(info.value)
    assert "'transfer_lrr'" in message and "'transfer_lr'" in message and "did you mean" in message
    with pytest.raises(ConfigError, match="pretrain_epoch.*did you mean.*'pretrain_epochs'"):
        load_config(write_yaml(tmp_path / "c.yaml", {"pretrain_epoch": 3}))
    with pytest.raises(ConfigError, match="'zzzz'") as info:
        load_config(None, ["zzzz=1"])
    assert "did you mean" not in str(info.value)


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["transfer_lr"])


@pytest.mark.parametrize("override, key, allowed", [
    ("transfer_lr=abc", "transfer_lr", "number"),
    ("transfer_epochs=2.5", "transfer_epochs", "whole number"),
    ("transfer_epochs=abc", "transfer_epochs", "whole number"),
    ("transfer_epochs=true", "transfer_epochs", "whole number"),
    ("amp=maybe", "amp", "true or false"),
    ("seeds=0,x", "seeds", "whole number"),
    ("fractions=0.5,abc", "fractions", "number"),
    ("audio_features=mp3", "audio_features", "recipe, original"),
    ("audio_split=other", "audio_split", "standard, full, original"),
    ("image_augment=flip", "image_augment", "crop-flip, original, none"),
    ("device=tpu", "device", "auto, cpu, cuda, mps"),
    ("executor=dask", "executor", "local, ray, slurm"),
    ("fraction=0", "fraction", "(0, 1]"),
    ("fraction=1.5", "fraction", "(0, 1]"),
    ("fraction=-0.1", "fraction", "(0, 1]"),
    ("fractions=0.5,2", "fractions", "(0, 1]"),
    ("fractions=[]", "fractions", "at least one"),
    ("freeze=stages:two", "freeze", "stages:K with K from 0 to the backbone's stage count"),  # K > N: check_backbone
    ("freeze=all", "freeze", "none, original, linear"),
    ("freezes=none,stages:-1", "freezes", "stages:K"),
    ("init=foo", "init", "random, imagenet, audio, image"),
    ("init=random:runs/x", "init", "checkpoint:PATH"),
    ("inits=random,bar", "inits", "random, imagenet"),
    ("seeds=0,1,0", "seeds", "must not repeat"),
    ("inits=random,random", "inits", "must not repeat"),
    ("fractions=0.5,0.50", "fractions", "must not repeat"),
    ("transfer_lr=0", "transfer_lr", "greater than 0"),
    ("workers=0", "workers", "greater than 0"),
    ("transfer_weight_decay=-1", "transfer_weight_decay", "0 or more"),
    ("transfer_label_smoothing=1", "transfer_label_smoothing", "below 1"),
    ("audio_crop_seconds=40", "audio_crop_seconds", "audio_clip_seconds"),
    ("source=esc50", "source", "mtat, caltech256, imagefolder, audiofolder"),
    ("target=cifar", "target", "mtat, caltech256, imagefolder, audiofolder"),
    ("audio_task=regression", "audio_task", "auto, tagging, classification"),
    ("pretrain_label_smoothing=1", "pretrain_label_smoothing", "below 1"),
    ("pretrain_label_smoothing=-0.1", "pretrain_label_smoothing", "0 or more"),
    ("audio_features=original", "audio_normalize", "audio_normalize=false"),
    ("audio_features=seed", "audio_normalize", "audio_normalize=false"),  # the old name, mapped before validation
    ("image_split=unstratified", "image_split", "choose one of stratified, original"),
    ("pretrain_schedule=plateau", "pretrain_schedule", "choose one of cosine, constant, original-plateau"),
    ("freezes=none,sed", "freezes", "use none, original, linear or stages:K"),
    ("cka_items=2", "cka_items", "at least 4"),
    ("cka_items=-1", "cka_items", "0 or more"),
    ("convergence_share=0", "convergence_share", "(0, 1]"),
    ("convergence_share=1.5", "convergence_share", "(0, 1]"),
    ("inits=random,audio@0", "inits", "@K"),  # K beyond the backbone's stages: test_backbone.py
    ("inits=random,random-stats", "inits", "-stats"),
])
def test_bad_values_name_the_key_and_what_is_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"'{key}'" in message
    assert allowed in message


def test_source_equal_to_target_is_refused_unless_two_folders():
    for same in (["source=caltech256", "target=caltech256"],
                 ["source=audiofolder", "target=audiofolder", "source_root=/d/a", "target_root=/d/a/"],
                 ["source=imagefolder", "target=imagefolder", "source_root=/d/a"]):
        with pytest.raises(ConfigError, match="'target'.*same dataset as source.*source_root and target_root"):
            load_config(None, same)
    two = load_config(None, ["source=audiofolder", "target=audiofolder", "source_root=/d/a", "target_root=/d/b"])
    assert (two.source_root, two.target_root) == ("/d/a", "/d/b")
    swapped = load_config(None, ["source=caltech256", "target=mtat"])
    assert (swapped.source, swapped.target) == ("caltech256", "mtat")


@pytest.mark.parametrize("key", ["mtat_root", "caltech256_root"])
def test_renamed_root_keys_say_what_replaced_them(key):
    with pytest.raises(ConfigError, match=f"'{key}' is gone: use source_root or target_root"):
        load_config(None, [f"{key}=/data/x"])


def test_original_features_without_normalisation_are_accepted():
    config = load_config(None, ["audio_features=original", "audio_normalize=false"])
    assert config.audio_features == "original" and not config.audio_normalize


def test_valid_edge_values_are_accepted():
    config = load_config(None, ["fraction=1", "freeze=stages:5", "init=audio:runs/a/pretrain",
                                "inits=random,imagenet,image,checkpoint:/x/best.pt", "freezes=stages:0,original",
                                "transfer_label_smoothing=0", "audio_crop_seconds=0"])
    assert config.fraction == 1.0 and config.freeze == "stages:5"


def test_bad_value_in_yaml_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'image_size'.*greater than 0"):
        load_config(write_yaml(tmp_path / "c.yaml", {"image_size": 0}))
    with pytest.raises(ConfigError, match="'seeds'.*whole number"):
        load_config(write_yaml(tmp_path / "d.yaml", {"seeds": [0, 1.5]}))


def test_missing_or_non_mapping_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == Config()


def test_malformed_yaml_is_a_config_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("override", ["transfer_weight_decay=.nan", "transfer_label_smoothing=.nan",
                                      "transfer_lr=.inf", "audio_clip_seconds=.inf"])
def test_non_finite_numbers_are_refused(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_from_dict_with_base_replaces_only_given_keys():
    base = load_config(None, ["name=base", "transfer_epochs=3"])
    changed = from_dict({"transfer_lr": "0.5"}, base)
    assert changed.transfer_lr == 0.5 and changed.name == "base" and changed.transfer_epochs == 3
    with pytest.raises(ConfigError, match="'fraction'"):
        from_dict({"fraction": 2}, base)


# --- values renamed from `seed` (the seed experiment's) to `original` ---------------------------------------------
RENAMED = [("audio_features", "seed", "original"), ("audio_split", "seed", "original"),
           ("image_split", "seed", "original"), ("image_augment", "seed", "original"),
           ("pretrain_schedule", "seed-plateau", "original-plateau"),
           ("transfer_schedule", "seed-plateau", "original-plateau"), ("freeze", "seed", "original")]


@pytest.mark.parametrize("key, old, new", RENAMED)
def test_old_values_become_the_new_ones_with_a_note(tmp_path, capsys, key, old, new):
    extra = {"audio_normalize": False} if key == "audio_features" else {}
    note = f"{key}={old} is now {key}={new} (the original experiment's "
    by_override = load_config(None, [f"{key}={old}", *(f"{k}={v}" for k, v in extra.items())])
    assert capsys.readouterr().err.count(note) == 1
    by_file = load_config(write_yaml(tmp_path / "c.yaml", {key: old, **extra}))
    assert capsys.readouterr().err.count(note) == 1
    by_new = load_config(write_yaml(tmp_path / "n.yaml", {key: new, **extra}))
    assert capsys.readouterr().err == ""  # the new value: no note
    assert getattr(by_override, key) == getattr(by_file, key) == new
    assert by_override == by_file == by_new  # validation, saving and run identities see only the new value
    save_config(by_file, tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())[key] == new


def test_old_values_in_lists_are_mapped_one_by_one(tmp_path, capsys):
    assert load_config(None, ["freezes=none,seed,linear"]).freezes == ["none", "original", "linear"]
    assert "freezes=seed is now freezes=original" in capsys.readouterr().err
    assert load_config(write_yaml(tmp_path / "c.yaml", {"freezes": ["seed"]})).freezes == ["original"]
    with pytest.raises(ConfigError, match="'freezes'.*must not repeat"):
        load_config(None, ["freezes=seed,original"])  # the same policy twice, under both names


def test_old_config_name_gives_the_renamed_config(capsys):
    from audio2image.cli import CONFIG_DIR, config_path

    assert config_path("original") == CONFIG_DIR / "original.yaml"
    assert capsys.readouterr().err == ""
    assert config_path("seed") == CONFIG_DIR / "original.yaml"
    assert "config seed is now original" in capsys.readouterr().err
    assert config_path(str(CONFIG_DIR / "seed.yaml")) == CONFIG_DIR / "original.yaml"  # configs/seed.yaml too
    assert "config seed is now original" in capsys.readouterr().err


def test_prepare_options_take_old_values(capsys):
    from audio2image.cli import build_parser

    args = build_parser().parse_args(["prepare", "mtat", "root", "out", "--features", "seed", "--split", "seed"])
    assert (args.features, args.split) == ("original", "original")
    err = capsys.readouterr().err
    assert "audio_features=seed is now audio_features=original" in err
    assert "audio_split=seed is now audio_split=original" in err
    assert build_parser().parse_args(["prepare", "caltech256", "root", "out", "--split", "seed"]).split == "original"
    assert build_parser().parse_args(["prepare", "caltech256", "root", "out"]).split == "stratified"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "caltech256", "root", "out", "--split", "seeds"])
    assert "invalid choice: 'seeds' (choose from 'stratified', 'original')" in capsys.readouterr().err


# --- bundled configs, saving, hashing -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_configs_load(name):
    path = CONFIGS / f"{name}.yaml"
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert config.name == raw["name"] == name
    for key, value in raw.items():  # every key in the file is used as written
        assert getattr(config, key) == value, key


def test_bundled_configs_differ_where_they_should():
    original, recipe = load_config(CONFIGS / "original.yaml"), load_config(CONFIGS / "recipe.yaml")
    assert original.audio_features == "original" and recipe.audio_features == "recipe"
    assert original.seeds == [0] and len(recipe.seeds) > 1
    assert load_config(CONFIGS / "tiny.yaml").synthetic and load_config(CONFIGS / "demo.yaml").synthetic


@pytest.mark.parametrize("name", BUNDLED)
def test_save_then_load_round_trips(tmp_path, name):
    config = load_config(CONFIGS / f"{name}.yaml", ["fractions=0.05,1", "inits=random,audio:runs/p", "control="])
    save_config(config, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again == config
    assert again.to_dict() == config.to_dict()
    assert set(yaml.safe_load((tmp_path / "saved.yaml").read_text())) == {f.name for f in dataclasses.fields(Config)}


def test_config_hash_is_stable_and_order_free():
    values = Config().to_dict()
    reordered = dict(reversed(list(values.items())))
    assert list(reordered) != list(values)
    assert config_hash(values) == config_hash(reordered)
    assert config_hash(values) == config_hash(Config().to_dict())
    assert len(config_hash(values)) == 12 and int(config_hash(values), 16) >= 0
    assert config_hash({**values, "transfer_lr": 0.051}) != config_hash(values)
    assert config_hash({**values, "seeds": [0, 1]}) != config_hash(values)
    assert config_hash({"a": 1}) != config_hash({"a": 2}) != config_hash({"b": 1})
    # the hash is a pure function of the values: pinned, so that an accidental change of it (which would orphan
    # every finished run directory) is noticed
    assert config_hash({"a": 1, "b": [0.5, "x"]}) == config_hash({"b": [0.5, "x"], "a": 1}) == "d9dda6d0c61c"


# --- one-line CLI errors -------------------------------------------------------------------------------------------
def _cli_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    return {
        "unknown key": (["run", "nosuch=1"], "unknown config key 'nosuch'"),
        "bad number": (["run", "transfer_lr=abc"], "'transfer_lr'"),
        "bad choice": (["run", "audio_features=mp3"], "'audio_features'"),
        "missing config": (["run", str(tmp / "missing.yaml")], "missing.yaml"),
        "prepare missing root": (["prepare", "mtat", "/nonexistent", str(tmp / "x")], "/nonexistent"),
        "inspect missing root": (["inspect", "caltech256", "/nonexistent"], "/nonexistent"),
        "unknown dataset": (["run", "source=esc50"], "'source'"),
        "folder dataset without root": (["run", "tiny", "target=imagefolder"], "'target_root' is empty"),
        "bad prepare option": (["prepare", "imagefolder", str(tmp), str(tmp / "y"), "--size", "0"], "--size"),
        "audiofolder without labels": (["inspect", "audiofolder", str(tmp)], "labels.csv"),
    }


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Run every case at once (each start imports torch for a few seconds): name -> (returncode, stdout, stderr)."""
    tmp = tmp_path_factory.mktemp("cli")
    cases = _cli_cases(tmp)
    running = {name: subprocess.Popen([sys.executable, "-m", "audio2image", *argv], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=tmp)
               for name, (argv, _) in cases.items()}
    results = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        results[name] = (process.returncode, out, err)
    return tmp, cases, results


@pytest.mark.slow  # ten interpreter starts, run at once
@pytest.mark.parametrize("name", ["unknown key", "bad number", "bad choice", "missing config", "prepare missing root",
                                  "inspect missing root", "unknown dataset", "folder dataset without root",
                                  "bad prepare option", "audiofolder without labels"])
def test_cli_user_errors_are_one_line(cli_results, name):
    tmp, cases, results = cli_results
    code, out, err = results[name]
    expected = cases[name][1]
    lines = err.strip("\n").splitlines()
    assert "Traceback" not in err
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("audio2image: error: ")
    assert expected in lines[0]
    assert out == ""
    if name == "prepare missing root":
        assert not (tmp / "x").exists()  # nothing written for a failed preparation


@pytest.mark.parametrize("key", ["seeds", "fractions", "inits", "transfer_lrs", "pretrain_seeds"])
def test_an_empty_list_is_named_itself(key):
    """`seeds=` once failed on tune_seeds (which must not exceed the number of seeds): the message names the
    empty key."""
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"{key}="])
    assert str(error.value).startswith(f"config key '{key}': [] is not allowed; give at least one value")


# --- audio2image config ----------------------------------------------------------------------------------------------
def test_the_config_command_prints_the_resolved_config_as_a_run_saves_it(tmp_path, capsys):
    from audio2image.cli import main

    main(["config", "tiny", "seeds=0,1", "amp=false"])
    printed = capsys.readouterr().out
    config = load_config(CONFIGS / "tiny.yaml", ["seeds=0,1", "amp=false"])
    save_config(config, tmp_path / "config.yaml")
    assert printed == (tmp_path / "config.yaml").read_text()
    values = yaml.safe_load(printed)
    assert list(values) == [field.name for field in dataclasses.fields(Config)]  # every key, in Config's order
    assert (values["seeds"], values["synth_clips"], values["amp"]) == ([0, 1], 48, False)


@pytest.mark.parametrize("bad", ["sedes=1", "transfer_lr=abc", "inits=random,audio@9"])
def test_the_config_command_refuses_what_run_refuses_in_the_same_words(tmp_path, capsys, bad):
    """A bad key or value, and what the backbone cannot do (ResNet-18 has 5 stages), as `run` says it."""
    from audio2image.cli import main

    said = []
    for command in ("config", "run"):
        with pytest.raises(SystemExit) as code:
            main([command, "tiny", f"out_dir={tmp_path}", f"data_dir={tmp_path}", bad])
        said.append((code.value.code, capsys.readouterr()))
    (code, first), (_, second) = said
    assert code == 2 and first.out == "" and first.err == second.err and len(first.err.splitlines()) == 1
    assert repr(bad.split("=")[0]) in first.err
    assert not any(tmp_path.iterdir())  # run stopped before any work
