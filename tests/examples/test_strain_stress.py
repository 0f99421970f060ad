"""The seed article's inductive-bias claim, as a short run of examples/symmetry/strain_stress.py."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "symmetry" / "strain_stress.py"


def test_naive_net_fails_off_axis_equivariant_net_does_not(tmp_path):
    spec = importlib.util.spec_from_file_location("strain_stress", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table, models, strains = module.run_experiment(steps=2000)
    naive, equivariant = table["naive MLP"], table["equivariant"]
    assert naive["x stretch (seen)"] < 0.05  # it does learn what it saw...
    for unseen in ("y stretch", "z stretch", "rotated x stretch"):
        assert naive[unseen] > 0.3  # ...and fails elsewhere
        assert equivariant[unseen] < 1e-3  # the equivariant one generalises
        assert equivariant[unseen] < 10 * equivariant["x stretch (seen)"] + 1e-6
        gated = table["equivariant + gate"]
        assert abs(gated[unseen] - gated["x stretch (seen)"]) < 1e-6  # same error in every direction
    module.plot(models, strains, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
