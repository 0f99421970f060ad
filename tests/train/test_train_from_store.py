"""train_file: a dataset of `mlff data convert` (an ASE database) trains exactly as the file it was
converted from: the same frames in the same order, so the same split, statistics and losses; also
with `preload: false` (frames read from disk and graphs built when their batch is drawn, in a
background thread or in DataLoader worker processes)."""

import csv

import pytest

from mlff.data.store import convert
from mlff.testing import run_cli


def _losses(path):
    with open(path) as handle:
        return [{k: v for k, v in row.items() if "second" not in k and k != "lr_wall"} for row in csv.DictReader(handle)]


def test_training_from_the_database_equals_training_from_the_file(tmp_path, cu_files, make_config):
    train, _ = cu_files
    convert([train], tmp_path / "train.db")
    runs = {}
    for name, train_file, preload, workers in (("file", train, True, 0), ("db", tmp_path / "train.db", True, 0),
                                               ("db_lazy", tmp_path / "train.db", False, 0),
                                               ("db_workers", tmp_path / "train.db", False, 2)):
        (tmp_path / name).mkdir()
        config = make_config(tmp_path / name / "config.yaml", train_file=str(train_file), max_epochs=2,
                             valid_file=None, valid_fraction=0.2, test_fraction=0.1, preload=preload, data_workers=workers,
                             output_dir=str(tmp_path / name / "run"))
        res = run_cli(["train", config])
        assert res.returncode == 0, res.stderr[-3000:]
        runs[name] = _losses(tmp_path / name / "run" / "metrics.csv")
    assert len(runs["file"]) == 2 and runs["db"] == runs["file"]
    # read from disk and built when drawn: the same batches; the force scale is a running sum there
    # (nothing kept per atom), so the numbers agree to round-off
    assert runs["db_workers"] == runs["db_lazy"]  # DataLoader worker processes: the same batches
    lazy, file = runs["db_lazy"], runs["file"]
    assert [row.keys() for row in lazy] == [row.keys() for row in file]
    for a, b in zip(lazy, file):
        for key in a:
            if a[key] != b[key]:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-9), key
