"""Write datasets/si_gpaw_reference.json: the physical properties of diamond silicon with the same
DFT settings as datasets/si_gpaw.extxyz (GPAW, PBE, 300 eV, k-point density 5 per Å^-1), in the
form `mlff physics --reference-values` reads:

    mlff physics model.pt Si:diamond:5.47 --reference-values datasets/si_gpaw_reference.json

The equation of state (lattice constant, energy per atom, bulk modulus) on the 2-atom primitive
cell; C11, C12 and C44 with the ions relaxed at each strain (``mlff.physics``) on the 8-atom cubic
cell at the fitted lattice constant. Runs with Debian's GPAW under the system Python:

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_si_gpaw.py
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # mlff.physics needs only ASE and NumPy

from ase.build import bulk  # noqa: E402
from ase.calculators.calculator import kptdensity2monkhorstpack  # noqa: E402

from mlff.physics import cubic_elastic_constants, equation_of_state  # noqa: E402


class _Labeller:
    """A GPAW calculator with k-points for each cell (as gpaw_labels.label chooses them)."""

    def __init__(self, atoms):
        from gpaw import GPAW, PW, FermiDirac

        kpts = kptdensity2monkhorstpack(atoms, kptdensity=5.0, even=False)
        self.calc = GPAW(mode=PW(300), xc="PBE", kpts=[int(k) for k in kpts], occupations=FermiDirac(0.1),
                         symmetry={"point_group": False, "time_reversal": True}, txt=None)


def main():
    primitive = bulk("Si", "diamond", a=5.47)
    eos = equation_of_state(primitive, _Labeller(primitive).calc, relax=False)  # no free coordinates
    eos["lattice_constant"] = (8.0 * eos["volume"]) ** (1.0 / 3.0)  # of the 8-atom cubic cell
    print(f"a0 {eos['lattice_constant']:.4f} Å, E0 {eos['energy']:.4f} eV/atom, B {eos['bulk_modulus']:.1f} GPa",
          flush=True)
    cubic = bulk("Si", "diamond", a=eos["lattice_constant"], cubic=True)
    elastic = cubic_elastic_constants(cubic, _Labeller(cubic).calc, relax=True, fmax=0.005)
    print(", ".join(f"{k} {v:.1f} GPa" for k, v in elastic.items()), flush=True)
    record = {"formula": "Si8", "reference": {**eos, **elastic, "formula": "Si8",
                                              "method": "GPAW PBE, PW 300 eV, k-point density 5/Å^-1, "
                                                        "Fermi-Dirac 0.1 eV; relaxed-ion elastic constants"}}
    with open(os.path.join(HERE, "si_gpaw_reference.json"), "w") as handle:
        json.dump({"crystals": [record]}, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
