"""What a training run can be trusted to do: one run per output folder, species only from training
data, valid JSON, no temporary file left behind, distances checked."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from ase.io import read, write

from mlff.cli.main import main as mlff_main
from mlff.files import atomic_path, dumps_json, remove_stale_temporaries, write_json
from mlff.train import TrainConfig, load_config, train
from mlff.train.run_lock import LOCK_NAME, RunLock, RunLockedError

_HOLD = """
import sys, time
from mlff.train.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(directory, env):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_the_same_folder_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, make_config, env):
    config = make_config(tmp_path / "cu.yaml", max_epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    proc = _holder(run, env)
    try:
        res = subprocess.run([sys.executable, "-m", "mlff.cli.main", "train", str(config)], capture_output=True,
                             text=True, env=env, timeout=300)
        assert res.returncode == 1
        assert f"is being trained by pid {proc.pid}" in res.stderr and "choose another output_dir" in res.stderr
        assert not (run / "metrics.csv").exists()  # refused before anything was written
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: the kernel releases the lock
        proc.wait()
        proc.stdout.close()
    RunLock(run).acquire().release()
    assert (run / LOCK_NAME).exists()


def test_the_lock_is_held_for_the_run_and_released_after(tmp_path, make_config):
    config = load_config(make_config(tmp_path / "cu.yaml", max_epochs=1))
    from mlff.train.trainer import Trainer

    trainer = Trainer(config)
    with pytest.raises(RunLockedError, match="is being trained by pid"):
        RunLock(config.output_dir).acquire()
    trainer.lock.release()
    RunLock(config.output_dir).acquire().release()


def test_an_element_only_in_validation_data_is_an_error(tmp_path, make_config, cu_files):
    frames = read(cu_files[1], ":")
    frames[3].numbers[0] = 8  # O
    write(tmp_path / "valid.extxyz", frames)
    config = make_config(tmp_path / "cu.yaml", valid_file=str(tmp_path / "valid.extxyz"), max_epochs=1)
    with pytest.raises(ValueError, match=r"valid.extxyz:3: element\(s\) \['O'\] occur only in the validation or test data"):
        train(load_config(config))
    listed = make_config(tmp_path / "cu2.yaml", species=["Cu", "O"], max_epochs=1)
    with pytest.raises(ValueError, match=r"species \['O'\] occur in no training frame"):
        train(load_config(listed))


def test_negative_distances_are_refused():
    with pytest.raises(ValueError, match="min_distance is a distance in Å and must be >= 0"):
        TrainConfig(train_file="x.extxyz", min_distance=-1)


def test_json_outputs_are_strict_json(tmp_path):
    document = {"loss": float("inf"), "nan": float("nan"), "value": np.float64(1.5), "list": [float("-inf"), 2.0]}
    write_json(tmp_path / "a.json", document)

    def refuse(name):
        raise ValueError(name)

    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse) == \
        {"loss": None, "nan": None, "value": 1.5, "list": [None, 2.0]}
    assert json.loads(dumps_json(document), parse_constant=refuse)["loss"] is None


def test_no_temporary_file_survives(tmp_path, model_file, env):
    # an interrupted write (an exception, or SIGTERM turned into SystemExit by the CLI) removes its temporary
    for error in (OSError("disk full"), SystemExit(143)):
        with pytest.raises(type(error)):
            with atomic_path(tmp_path / "out.pt") as tmp:
                with open(tmp, "w") as handle:
                    handle.write("partial")
                raise error
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a kill -9 cannot be caught: the next writer into the folder removes the dead process's temporary
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".model.pt.{dead}.abcd1234.tmp").write_text("left by a killed deploy")
    alive = tmp_path / f".other.pt.{os.getpid()}.abcd1234.tmp"  # a live writer's: kept
    alive.write_text("being written")
    assert mlff_main(["deploy", str(model_file), "-o", str(tmp_path / "model.pt")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "model.pt"]
    assert remove_stale_temporaries(tmp_path) == []


def test_sigterm_during_deploy_leaves_no_temporary(tmp_path, model_file, env):
    """`mlff deploy` stopped by SIGTERM while it writes: no temporary beside the target."""
    script = ("import sys, time, torch\n"
              "real = torch.jit.save\n"
              "def slow(*a, **k):\n"
              "    real(*a, **k); print('saving', flush=True); time.sleep(60)\n"
              "torch.jit.save = slow\n"
              "from mlff.cli.main import main\n"
              f"sys.exit(main(['deploy', {str(model_file)!r}, '-o', {str(tmp_path / 'new.pt')!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "saving"
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    proc.stdout.close()
    assert list(tmp_path.iterdir()) == []
