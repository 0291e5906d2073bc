"""`audio2image keys`: every config key with its type, default and meaning, read from the config's own definitions;
the unknown-key message and the training commands' help point to it."""
from __future__ import annotations

import dataclasses

import pytest

from audio2image.cli import main
from audio2image.config import Config, ConfigError, load_config
from audio2image.config_keys import describe_keys, key_docs


def test_every_key_is_described_in_its_section_and_order():
    docs = key_docs()
    assert list(docs) == [field.name for field in dataclasses.fields(Config)]
    assert [key for key, (section, _, text) in docs.items() if not (section and text)] == []
    # a key's own comment; the comment lines right above a key without one; a comment block heading keys
    assert docs["data_dir"] == ("what and where", "", "synthetic datasets and prepared stores")
    assert docs["pretrain_seeds"][2].startswith("pretraining runs per pretrained side; transfer seed number i")
    assert docs["fraction"][1] == "one transfer run" and docs["seeds"][1].startswith("the sweep grid")
    assert docs["checkpoint_seconds"][1] == ""  # the sub-section ended with the key described above it


def test_the_listing_gives_each_keys_type_default_and_allowed_values():
    text = describe_keys()
    assert "  transfer_lrs = 0.01,0.03,0.1  (list of float, comma-separated)\n      the learning rates tried" in text
    assert "  audio_features = recipe  (str; one of recipe | original)\n" in text
    assert '  control = ""  (str; one of "" | mtat | caltech256 ' in text
    assert "  amp = true  (bool)\n" in text
    assert all(f"\n  {field.name} = " in text for field in dataclasses.fields(Config))


def test_shown_defaults_read_back_as_the_defaults():
    """What the listing shows as a default can be written as an override and gives the default."""
    lines = [line.strip() for line in describe_keys().splitlines() if line.startswith("  ") and line[2] not in " #"]
    shown = {line.split(" = ")[0]: line.split(" = ")[1].split("  (")[0] for line in lines}
    overrides = [f"{key}={value}" for key, value in shown.items() if value != '""']
    assert load_config(None, overrides) == Config()


def test_a_word_narrows_the_listing():
    text = describe_keys("batch")
    assert "pretrain_batch_size = 64" in text and "precise_bn_batches = 50" in text and "seeds = " not in text
    assert "no config key" in describe_keys("nosuchword")


def test_the_command_and_the_pointers_to_it(capsys):
    main(["keys", "warmup"])
    printed = capsys.readouterr().out
    assert "pretrain_warmup_epochs = 1  (int)" in printed and "transfer_lr =" not in printed
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "audio2image keys" in capsys.readouterr().out
    for key, hint in (("nosuch", ""), ("transfer_lrr", "did you mean 'transfer_lr'")):
        with pytest.raises(ConfigError) as error:
            load_config(None, [f"{key}=1"])
        assert hint in str(error.value) and "`audio2image keys` lists every key" in str(error.value)
