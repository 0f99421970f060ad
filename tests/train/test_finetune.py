"""Fine-tuning (init_from): new data lowers the error there without forgetting the old data, new
species are added with the old ones' predictions unchanged, frozen modules stay as they were."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.calculators.emt import EMT
from ase.build import bulk
from ase.io import read, write

import mlff
from mlff.cli.main import main as mlff_main
from mlff.testing import evaluate, run_cli, small_molecule, tiny_model, triclinic_cell
from mlff.train.finetune import freeze, load_pretrained, with_species

CU_DATA = Path(__file__).resolve().parents[2] / "datasets" / "cu_emt.extxyz"


def _train(config_path):
    res = run_cli(["train", config_path])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def _config(path, train, valid, **options):
    values = {"train_file": str(train), "valid_file": str(valid), "max_epochs": 6, "batch_size": 4,
              "learning_rate": 0.01, "seed": 1, "output_dir": str(Path(path).parent / "run"), "progress": False,
              "tensorboard": "off",
              "model": {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64"}}
    values.update(options)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(values))
    return path


def _forces_mae(model_path, data, tmp_path):
    out = tmp_path / "metrics.json"
    assert mlff_main(["evaluate", str(model_path), str(data), "--json", str(out), "--no-plots"]) == 0
    return json.loads(out.read_text())["forces_mae"]


@pytest.mark.parametrize("radial_species", [False, True])
@pytest.mark.parametrize("new_species", [["Cu", "O", "H"], ["Cu", "O", "C", "H"]])
def test_added_species_leave_old_predictions_unchanged(new_species, radial_species):
    model = tiny_model(species=("Cu", "O"), radial_species=radial_species)
    extended = with_species(model, new_species, seed=5).eval()
    assert extended.species == new_species
    for atoms in (triclinic_cell(3), small_molecule(1)):
        a, b = evaluate(model, atoms), evaluate(extended, atoms)
        for key in ("energy", "atomic_energy", "forces", "virial"):
            np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-12 * max(1.0, np.abs(a[key]).max()), err_msg=key)
    assert float(extended.scale_shift.shift[new_species.index("H")]) == 0.0


def test_with_species_refuses_dropping_species():
    with pytest.raises(ValueError, match=r"\['O'\] of the model are missing"):
        with_species(tiny_model(species=("Cu", "O")), ["Cu", "H"])


def test_freeze_names_the_parts(tmp_path):
    model = tiny_model()
    frozen = freeze(model, ["embedding", "layers.0"])
    assert frozen and all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="names no part of the model; choose from"):
        freeze(model, ["layer.0"])


def test_load_pretrained_reads_model_files_and_checkpoints(tmp_path):
    path = mlff.deploy(tiny_model(), tmp_path / "m.pt")
    loaded = load_pretrained(path)
    atoms = triclinic_cell(2)
    np.testing.assert_allclose(evaluate(loaded, atoms)["forces"], evaluate(tiny_model(), atoms)["forces"], atol=1e-12)
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="neither an mlff model file nor a training checkpoint"):
        load_pretrained(tmp_path / "junk.pt")


def test_finetuning_learns_new_data_without_forgetting(tmp_path):
    frames = read(CU_DATA, ":")
    old = [f for f in frames if f.info["config_type"] in ("bulk_strained", "md_1200K")]
    new = [f for f in frames if f.info["config_type"] in ("surface", "vacancy")]
    for name, subset in (("old_train", old[::6][:30]), ("old_valid", old[3::25][:10]),
                         ("new_train", new[::3][:20]), ("new_valid", new[1::7][:10])):
        write(tmp_path / f"{name}.extxyz", subset)
    base = _config(tmp_path / "base" / "cu.yaml", tmp_path / "old_train.extxyz", tmp_path / "old_valid.extxyz")
    _train(base)
    base_model = tmp_path / "base" / "run" / "model.pt"

    tuned = _config(tmp_path / "tuned" / "cu.yaml", tmp_path / "new_train.extxyz", tmp_path / "new_valid.extxyz",
                    init_from=str(base_model), learning_rate=0.003, max_epochs=5, freeze=["embedding"],
                    model={"dtype": "float64"})
    log = _train(tuned)
    assert "fine-tuning" in log and "frozen:" in log
    tuned_model = tmp_path / "tuned" / "run" / "model.pt"
    before_new, after_new = (_forces_mae(m, tmp_path / "new_valid.extxyz", tmp_path) for m in (base_model, tuned_model))
    before_old, after_old = (_forces_mae(m, tmp_path / "old_valid.extxyz", tmp_path) for m in (base_model, tuned_model))
    print(f"forces MAE (meV/Å): new data {before_new:.1f} -> {after_new:.1f}, old data {before_old:.1f} -> {after_old:.1f}")
    assert after_new < 0.9 * before_new
    assert after_old < 1.5 * before_old
    # the frozen embedding is the base model's
    a = torch.jit.load(base_model).state_dict()["potential.embedding.linear.weight"]
    b = torch.jit.load(tuned_model).state_dict()["potential.embedding.linear.weight"]
    assert torch.equal(a, b)


def test_finetuning_adds_a_species(tmp_path):
    """A Cu model fine-tuned on Cu-O structures (EMT) knows O afterwards; the Cu shift is kept."""
    cu = read(CU_DATA, "::20")
    write(tmp_path / "cu_small.extxyz", cu)
    base = _config(tmp_path / "base" / "cu.yaml", tmp_path / "cu_small.extxyz", tmp_path / "cu_small.extxyz",
                   max_epochs=1)
    _train(base)
    rng = np.random.default_rng(0)
    frames = []
    for k in range(12):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
        atoms.numbers[rng.choice(len(atoms), 3, replace=False)] = 8
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    write(tmp_path / "cuo.extxyz", frames)
    tuned = _config(tmp_path / "tuned" / "cu.yaml", tmp_path / "cuo.extxyz", tmp_path / "cuo.extxyz",
                    init_from=str(tmp_path / "base" / "run" / "best.pt"), max_epochs=2, model={"dtype": "float64"})
    log = _train(tuned)
    assert "adding ['O']" in log
    meta = mlff.read_metadata(tmp_path / "tuned" / "run" / "model.pt")
    assert meta.species == ["Cu", "O"]
    base_shift = torch.jit.load(tmp_path / "base" / "run" / "model.pt").state_dict()["potential.scale_shift.shift"]
    tuned_shift = torch.jit.load(tmp_path / "tuned" / "run" / "model.pt").state_dict()["potential.scale_shift.shift"]
    assert float(tuned_shift[0]) == pytest.approx(float(base_shift[0]), rel=1e-12)


def test_finetuning_config_without_a_model_key(tmp_path):
    """The documented fine-tuning config has no `model` key: it was always refused (the check
    compared against an old default)."""
    from mlff.train import load_config

    path = tmp_path / "tune.yaml"
    path.write_text("train_file: new.extxyz\ninit_from: model.pt\nlearning_rate: 1e-3\nmax_epochs: 20\n")
    config = load_config(path)
    assert config.finetune_overrides() == {}
    path.write_text("train_file: new.extxyz\ninit_from: model.pt\nmodel: {dtype: float64}\n")
    assert load_config(path).finetune_overrides() == {"dtype": "float64"}


def test_init_from_refuses_architecture_options(tmp_path):
    from mlff.train import TrainConfig

    with pytest.raises(ValueError, match="may only set dtype or tp_backend"):
        TrainConfig(train_file="x.extxyz", init_from="m.pt", model={"num_layers": 4})
    with pytest.raises(ValueError, match="freeze needs init_from"):
        TrainConfig(train_file="x.extxyz", freeze=["embedding"])
