"""A fixed float64 training run reproduces a stored reference: its metrics, every weight, the EMA
weights and the optimiser's moments after the last step.

The reference (``golden_run.json``) was written by the trainer before it was split into modules
(data preparation, run state, schedule, budget, compile policy); any change of behaviour in the
loop (the order of random draws, a step taken or skipped, the final stage, the EMA, the plateau
schedule) shows up here. On a machine with the same CPU instruction set as the one
that wrote it the run must match bit for bit (sha256 of every tensor); elsewhere, where the math
libraries may round differently, to 1e-9 relative.

Rewrite the reference only for a deliberate change of behaviour:

    MLFF_WRITE_GOLDEN=1 python -m pytest tests/train/test_golden_run.py
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from mlff.aoti import machine
from mlff.train import load_config, train
from mlff.train.checkpoint import load_checkpoint

REFERENCE = Path(__file__).with_name("golden_run.json")


def _digest(tensors) -> dict:
    """Per tensor: sha256 of its bytes, its sum and its norm (float64)."""
    out = {}
    for name, tensor in tensors:
        array = tensor.detach().cpu().contiguous().numpy()
        out[name] = {"sha256": hashlib.sha256(array.tobytes()).hexdigest()[:32],
                     "sum": float(np.sum(array, dtype=np.float64)),
                     "norm": float(np.linalg.norm(array.astype(np.float64).ravel()))}
    return out


def _run_record(tmp_path, make_config) -> dict:
    torch.set_num_threads(1)
    # 6 epochs of 10 steps: the plateau schedule, the final stage (from epoch 6), the EMA and the
    # validation all act (resuming is checked against an uninterrupted run in test_training.py)
    # the model as the reference was written (before the pair repulsion): the loop is what this
    # checks, and `none` must still give those models bit for bit
    model = {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64",
             "pair_repulsion": "none"}
    result = train(load_config(make_config(tmp_path / "golden.yaml", max_epochs=6, model=model)))
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    moments = [(f"{kind}.{i}", state[kind]) for i, state in sorted(last["optimizer"]["state"].items())
               for kind in ("exp_avg", "exp_avg_sq")]
    return {
        "machine_flags": machine()["flags"],
        "best_epoch": result.best_epoch,
        "best_metrics": result.best_metrics,
        "weights": _digest(sorted(last["model"].items())),
        "ema": _digest(sorted(last["ema"]["shadow"].items())),
        "moments": _digest(moments),
    }


def test_a_fixed_run_reproduces_the_stored_reference(tmp_path, make_config):
    got = _run_record(tmp_path, make_config)
    if os.environ.get("MLFF_WRITE_GOLDEN"):
        REFERENCE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(REFERENCE.read_text())
    assert got["best_epoch"] == want["best_epoch"]
    assert set(got["best_metrics"]) == set(want["best_metrics"])
    for key, value in want["best_metrics"].items():
        assert np.isclose(got["best_metrics"][key], value, rtol=1e-9, atol=0.0), key
    exact = got["machine_flags"] == want["machine_flags"]
    for group in ("weights", "ema", "moments"):
        assert set(got[group]) == set(want[group]), group
        for name, ref in want[group].items():
            mine = got[group][name]
            if exact:
                assert mine["sha256"] == ref["sha256"], f"{group} {name} is not bit-identical"
            for stat in ("sum", "norm"):
                assert np.isclose(mine[stat], ref[stat], rtol=1e-9, atol=1e-12), f"{group} {name} {stat}"
