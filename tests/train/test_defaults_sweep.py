"""benchmarks/defaults_sweep.py: the suite's ranking arithmetic, and a sweep that trains, scores,
stores and resumes."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sweep_module():
    spec = importlib.util.spec_from_file_location("defaults_sweep", os.path.join(ROOT, "benchmarks", "defaults_sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(name, variant, seed, **scores):
    return {"set": name, "variant": variant, "seed": seed, "epochs": 1, "wall_s": 1.0, "tail_bias": 0.0, **scores}


def test_ranks_average_seeds_then_rank_each_score_with_shared_ties():
    sweep = _sweep_module()
    stored = [
        _record("a", "x", 0, **{"E MAE": 1.0, "F MAE": 5.0, "tail": 2.0}),
        _record("a", "x", 1, **{"E MAE": 3.0, "F MAE": 5.0, "tail": 2.0}),   # x: E 2.0 over its seeds
        _record("a", "y", 0, **{"E MAE": 2.5, "F MAE": 5.0, "tail": 1.0}),
        _record("b", "x", 0, **{"E MAE": 1.0, "F MAE": 1.0, "tail": 1.0, "physics": 10.0, "E0": 3.0}),
        _record("b", "y", 0, **{"E MAE": 2.0, "F MAE": 2.0, "tail": 2.0, "physics": 5.0, "E0": 4.0}),
    ]
    records = sweep.averaged(stored)
    assert records[("a", "x")]["E MAE"] == pytest.approx(2.0) and records[("a", "x")]["seeds"] == 2
    ranks = sweep.ranks(records, ["a", "b"], ["x", "y"])
    # set a: E x 1 y 2; F tie 1.5 each; tail x 2 y 1. Set b: x wins 4 of 5 scores (physics: y)
    assert ranks["x"] == (pytest.approx((1 + 1.5 + 2 + 1 + 1 + 1 + 2 + 1) / 8), 8)
    assert ranks["y"] == (pytest.approx((2 + 1.5 + 1 + 2 + 2 + 2 + 1 + 2) / 8), 8)
    table = sweep.report(records, ["a", "b"], ["x", "y"])
    ranking = table[table.index("mean rank"):]
    assert ranking.index("\nx ") < ranking.index("\ny ")  # the best variant first


def test_sweep_trains_scores_stores_and_resumes(tmp_path):
    out = tmp_path / "sweep.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "defaults_sweep.py"), "--sets", "almgsi",
               "--epochs", "1", "--seeds", "1", "--preset", "small", "--out", str(out),
               "--workdir", str(tmp_path / "work"), "--variant", "defaults", "--variant", "mse", "loss=mse"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    stored = json.loads(out.read_text())
    assert [(r["set"], r["variant"], r["options"]) for r in stored] == [("almgsi", "defaults", {}),
                                                                        ("almgsi", "mse", {"loss": "mse"})]
    for record in stored:
        assert all(record[k] > 0 for k in ("E MAE", "F MAE", "tail"))
    assert "mean rank over the suite" in first.stdout
    second = subprocess.run(command[:-3] + ["--variant", "bigger_stress", "stress_weight=1000"],
                            capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    lines = [line for line in second.stdout.splitlines() if line.startswith("almgsi  ")]
    assert len(lines) == 1 and "bigger_stress" in lines[0]  # the two stored runs were not repeated
    assert len(json.loads(out.read_text())) == 3
