"""Audio pretraining: the recipe preset against the seed's own choices, on the same synthetic data and budget.

Both runs pretrain ResNet-18 on the demo's synthetic MagnaTagATune (configs/demo.yaml: its clips, epochs,
Adam 1e-3, batch 16), through the project's own pretraining (`pretrain_plan` + `train_run`, as
`audio2image pretrain` does). Only the audio preset differs:
  - recipe: 16 kHz log-mel (dB), per-band standardisation, random crops (audio_crop_seconds) + SpecAugment, evaluation averaged
    over 4 evenly spaced crops, cosine schedule with warm-up, the standard 0-b / c / d-f split;
  - seed: the seed's 22,050 Hz power mel of whole clips stacked as [mel, frequency-masked, time-masked], no
    normalisation, its plateau scheduler (mode "max" stepped on the validation loss); run twice: on the
    recipe's split (so that both are scored on the same validation clips) and on the seed's own 0-b / c-d / e-f.
Prints each model's validation and test macro ROC-AUC and PR-AUC; the last line compares the two presets on the
same validation clips: `audio_presets valid ROC-AUC: recipe X.XXX vs seed Y.YYY`.

Run: .venv/bin/python benchmarks/audio_presets.py [--out runs/audio-presets] [key=value ...]
(extra key=value pairs apply to every run, e.g. pretrain_epochs=4 for a quicker look)
"""
from __future__ import annotations

import argparse

ORIGINAL_PRESET = {"audio_features": "original", "audio_crop_seconds": 0, "audio_specaugment": False,
                   "audio_normalize": False, "pretrain_schedule": "original-plateau", "pretrain_warmup_epochs": 0}
RUNS = {"recipe": {}, "seed": ORIGINAL_PRESET, "seed-own-split": {**ORIGINAL_PRESET, "audio_split": "original"}}


def pretrain(overrides: dict) -> dict:
    from audio2image.cli import config_path
    from audio2image.config import load_config
    from audio2image.prepare.stores import ensure_store
    from audio2image.sweep.grid import pretrain_plan
    from audio2image.training.run import train_run

    config = load_config(config_path("demo"), [f"{key}={value}" for key, value in overrides.items()])
    plan = pretrain_plan(config, ensure_store(config, "source").path)
    return train_run(config, plan.spec, plan.run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/audio-presets", help="where the runs are written")
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    args = parser.parse_args()
    shared = dict(item.split("=", 1) for item in args.overrides)
    shared.update(out_dir=args.out, progress="false", data_dir=".cache/audio2image")
    results = {}
    for preset, overrides in RUNS.items():
        result = pretrain({**shared, **{k: str(v).lower() for k, v in overrides.items()}, "name": preset})
        results[preset] = result
        print(f"{preset}: status {result['status']}, best epoch {result['best_epoch']}, "
              f"validation ROC-AUC {result['val']['roc_auc']:.3f} PR-AUC {result['val']['pr_auc']:.3f}, "
              f"test ROC-AUC {result['test']['roc_auc']:.3f} PR-AUC {result['test']['pr_auc']:.3f}")
    print(f"audio_presets valid ROC-AUC: recipe {results['recipe']['val']['roc_auc']:.3f} "
          f"vs seed {results['seed']['val']['roc_auc']:.3f}")


if __name__ == "__main__":
    main()
