"""Project the seed's whole sweep onto this machine from measured runs: how long its pretraining and its transfer
grid would take with the project's pipeline here.

The seed (../shared/FACTS.md): pretraining 12 epochs over MTAT's 18,706 training clips (3,502 validation);
transfer to Caltech-256 with a 60/20/20 split (18,364 training images, 6,121 validation), 6 fractions (0.05,
0.15, 0.30, 0.50, 0.70, 1.0) x 2 inits x 15 epochs, validation every epoch. A measured run gives seconds per item
from its steady-state epochs (the first, which holds compilation and warm-up, is left out when there are more),
counting training and validation items alike; validation is cheaper than training, so the projection is an upper
bound. Only the epochs are projected (not preparation, which a sweep does once per dataset).

Run: python benchmarks/seed_sweep_time.py --transfer RUN_DIR [--pretrain RUN_DIR]
The last line: `seed sweep projected: X.X min (pretraining P.P + transfer T.T)`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

SEED_PRETRAIN = {"epochs": 12, "train": 18706, "val": 3502}
SEED_TRANSFER = {"epochs": 15, "train": 18364, "val": 6121, "fractions": (0.05, 0.15, 0.30, 0.50, 0.70, 1.0),
                 "inits": 2}


def seconds_per_item(run_dir: Path) -> tuple[float, int]:
    """Seconds per (training or validation) item over the run's steady-state epochs; and how many epochs."""
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = json.loads((run_dir / "result.json").read_text())
    steady = epochs[1:] or epochs
    items = result["train_items"] + result["val_items"]
    return sum(e["seconds"] for e in steady) / (len(steady) * items), len(steady)


def projection(transfer: float, pretrain: float | None) -> dict:
    """Seconds for the seed's transfer grid and pretraining at the given seconds per item (pretraining: None)."""
    t = SEED_TRANSFER
    items = t["inits"] * t["epochs"] * sum(f * t["train"] + t["val"] for f in t["fractions"])
    p = SEED_PRETRAIN
    return {"transfer": transfer * items,
            "pretrain": None if pretrain is None else pretrain * p["epochs"] * (p["train"] + p["val"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfer", type=Path, required=True, help="a finished transfer run's folder")
    parser.add_argument("--pretrain", type=Path, help="a finished pretraining run's folder")
    args = parser.parse_args()
    transfer, n = seconds_per_item(args.transfer)
    print(f"transfer: {1 / transfer:.0f} items/s over {n} steady epochs of {args.transfer}")
    pretrain = None
    if args.pretrain is not None and (args.pretrain / "result.json").exists():
        pretrain, n = seconds_per_item(args.pretrain)
        print(f"pretraining: {1 / pretrain:.0f} clips/s over {n} steady epochs of {args.pretrain}")
    times = projection(transfer, pretrain)
    p = times["pretrain"]
    print(f"seed sweep projected: {(times['transfer'] + (p or 0)) / 60:.1f} min (pretraining "
          f"{'not measured' if p is None else f'{p / 60:.1f}'} + transfer {times['transfer'] / 60:.1f})")


if __name__ == "__main__":
    main()
