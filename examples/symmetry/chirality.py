"""Parity in action: a pseudoscalar output tells CHFClBr from its mirror image; a distance-only
model (l_max = 0) cannot.

Both models are untrained (random weights): what is shown holds for *any* weights, because it
follows from how the features transform. Run: python examples/symmetry/chirality.py
"""

import numpy as np

from mlff.testing import chiral_molecule, evaluate, tiny_model

SPECIES = ["C", "H", "F", "Cl", "Br"]


def main():
    rows = []
    equivariant = tiny_model(SPECIES, l_max=1, num_layers=3, outputs={"chirality": "1x0o"}, seed=1)
    invariant = tiny_model(SPECIES, l_max=0, num_layers=3, outputs={"scalar": "1x0e"}, seed=1)
    for name, mirror in (("CHFClBr", False), ("mirror image", True)):
        atoms = chiral_molecule(mirror)
        a, b = evaluate(equivariant, atoms), evaluate(invariant, atoms)
        rows.append((name, float(a["energy"]), float(a["chirality"][0]), float(b["energy"]), float(b["scalar"][0])))
    print(f"{'molecule':<14}{'E (l_max=1)':>14}{'pseudoscalar 0o':>18}{'E (l_max=0)':>14}{'scalar 0e':>12}")
    for row in rows:
        print(f"{row[0]:<14}{row[1]:>14.6f}{row[2]:>18.6f}{row[3]:>14.6f}{row[4]:>12.6f}")
    print("energies are identical for both enantiomers (a scalar cannot tell them apart); the pseudoscalar "
          "flips sign;\nthe distance-only model gives identical numbers for both, and cannot express a "
          "pseudoscalar at all:")
    try:
        tiny_model(SPECIES, l_max=0, num_layers=3, outputs={"chirality": "1x0o"})
    except ValueError as error:
        print(f"  ValueError: {error}")
    assert np.isclose(rows[0][2], -rows[1][2]) and np.isclose(rows[0][1], rows[1][1])


if __name__ == "__main__":
    main()
