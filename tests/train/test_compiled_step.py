"""The compiled training step (``compile: true``): the same training as the eager step, to
round-off, in float64, with the final stage's weights, frames' loss weights, mixed labels and a
fallback batch."""

import json

import pytest
import torch

from mlff.aoti import CompileError
from mlff.train.config import TrainConfig
from mlff.train.trainer import Trainer


def _config(cu_files, out, **overrides):
    train, valid = cu_files
    options = {
        "train_file": str(train), "valid_file": str(valid),
        # one interaction layer: the step's graph (two backward passes unfolded) compiles in 47 s
        # instead of 113 s here; the compiled copy and the compiled LAMMPS layers compile two
        "model": {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64",
                  "num_layers": 1},
        # 40 frames in batches of 3: the last batch is one structure, outside the compiled domain
        "max_epochs": 3, "batch_size": 3, "learning_rate": 0.01, "seed": 1, "final_stage": 0.34, "test_fraction": 0.0,
        "output_dir": str(out), "progress": False, "tensorboard": "off",
        "config_type_weights": {"vacancy": 4.0, "surface": 0.0},  # frames' loss weights (4, 0 and 1)
    }
    options.update(overrides)
    return TrainConfig.from_dict(options)


@pytest.fixture(scope="module")
def trained(cu_files, tmp_path_factory):
    torch.set_num_threads(1)
    runs = {}
    for compile_ in (False, True):
        trainer = Trainer(_config(cu_files, tmp_path_factory.mktemp(f"compile_{compile_}"), compile=compile_))
        trainer.run()
        runs[compile_] = trainer
    return runs


def test_compiled_training_equals_eager_training(trained):
    eager, compiled = trained[False], trained[True]
    assert compiled.compile_policy.compiled is not None and eager.compile_policy.compiled is None
    # the Cu slice mixes frames with and without stress; the last epoch is the final stage
    assert compiled.state.in_final_stage and compiled.state.epoch == 3
    assert compiled.compile_policy.eager_steps == 3  # the one-structure batch of each epoch
    eager_params = dict(eager.model.named_parameters())
    for name, value in compiled.model.named_parameters():
        assert torch.allclose(value, eager_params[name], rtol=0, atol=1e-10), name
    assert abs(compiled.state.best_loss - eager.state.best_loss) <= 1e-10 * abs(eager.state.best_loss)


def test_compiled_step_is_reused_by_a_resumed_run(trained, cu_files, capsys):
    out = trained[True].out
    packages = sorted((out / "compiled").glob("step-*.pt2"))
    assert len(packages) == 1
    before = packages[0].stat().st_mtime_ns
    trainer = Trainer(_config(cu_files, out, compile=True, max_epochs=4))
    trainer.run()
    assert "reusing" in capsys.readouterr().out
    assert packages[0].stat().st_mtime_ns == before and trainer.state.epoch == 4


def test_compile_auto_compiles_long_runs_only(trained, cu_files, tmp_path, monkeypatch, capsys):
    # a short run (the default compile: auto) trains eagerly
    assert trained[False].config.compile is False
    short = Trainer(_config(cu_files, tmp_path / "short", max_epochs=2, compile="auto"))
    short.run()
    assert short.compile_policy.compiled is None and "compile: auto" not in capsys.readouterr().out
    # with no time left to gain, a run counts as long: it compiles (here: reuses the package) once
    # 5 steps are timed, during its first epoch
    monkeypatch.setattr("mlff.train.config.AUTO_COMPILE_SECONDS", 0.0)
    trainer = Trainer(_config(cu_files, trained[True].out, compile="auto", max_epochs=5))
    start = trainer.state.epoch
    trainer.run()
    assert "compile: auto: about" in capsys.readouterr().out
    summary = json.loads((trained[True].out / "training_summary.json").read_text())
    assert summary["compiled_step"]["from_epoch"] == start and trainer.state.epoch == 5


def test_compile_refuses_what_it_cannot_compile(cu_files, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="batch_size is 1"):
        _config(cu_files, tmp_path / "a", compile=True, batch_size=1)
    e3nn = {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "tp_backend": "e3nn"}
    trainer = Trainer(_config(cu_files, tmp_path / "b", compile=True, model=e3nn))
    with pytest.raises(CompileError, match="fused convolution"):
        trainer.run()
    # compile: auto says why and trains eagerly
    monkeypatch.setattr("mlff.train.config.AUTO_COMPILE_SECONDS", 0.0)
    trainer = Trainer(_config(cu_files, tmp_path / "c", compile="auto", model=e3nn, max_epochs=1))
    trainer.run()
    assert trainer.compile_policy.compiled is None and trainer.state.epoch == 1
    assert "compile: auto: training eagerly: the compiled step needs the fused convolution" in capsys.readouterr().out


def test_a_corrupt_cached_package_is_a_clear_error(trained, cu_files, tmp_path, monkeypatch, capsys):
    package = next((trained[True].out / "compiled").glob("step-*.pt2"))
    (tmp_path / "compiled").mkdir()
    (tmp_path / "compiled" / package.name).write_bytes(b"not a package")
    with pytest.raises(CompileError, match="cannot load the compiled training step .* delete it"):
        Trainer(_config(cu_files, tmp_path, compile=True, max_epochs=1)).run()
    monkeypatch.setattr("mlff.train.config.AUTO_COMPILE_SECONDS", 0.0)
    trainer = Trainer(_config(cu_files, tmp_path, compile="auto", max_epochs=1))
    trainer.run()  # auto trains eagerly and says why
    assert trainer.compile_policy.compiled is None and trainer.state.epoch == 1
    assert "compile: auto: training eagerly: cannot load" in capsys.readouterr().out
