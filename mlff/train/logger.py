"""The per-epoch record of a run: ``metrics.csv`` (rows beyond a resumed epoch are dropped) and
TensorBoard when it is installed (``tensorboard: auto``) or required (``on``)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Dict

from tqdm import tqdm

CSV_FIELDS = ["epoch", "lr", "train_loss", "val_loss", "energy_mae", "energy_rmse", "forces_mae",
              "forces_rmse", "stress_mae", "stress_rmse", "dipole_mae", "dipole_rmse", "seconds"]


class MetricsLog:
    def __init__(self, out: Path, resumed_epoch: int, tensorboard: str):
        self.path = out / "metrics.csv"
        rows = []
        if self.path.exists():
            with open(self.path) as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= resumed_epoch]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard != "off":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                if tensorboard == "on":
                    raise RuntimeError("tensorboard: on, but the tensorboard package is not installed; "
                                       "pip install tensorboard or set tensorboard: auto") from None

    def write(self, row: Dict[str, float]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, CSV_FIELDS).writerow({k: row.get(k, "") for k in CSV_FIELDS})
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    """An epoch's progress bar, shown only on a terminal: in a log file (a cluster job) the
    per-epoch line is the record."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not (enabled and sys.stderr.isatty()), leave=False,
                dynamic_ncols=True, mininterval=0.2)
