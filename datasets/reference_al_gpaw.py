"""Write datasets/al_gpaw_reference.json: the physical properties of fcc aluminium with the same
DFT settings as datasets/al_gpaw.extxyz (GPAW, PBE, 300 eV, k-point density 2.5 per Å^-1), in the
form `mlff physics --reference-values` reads:

    mlff physics model.pt Al:fcc:4.04 --reference-values datasets/al_gpaw_reference.json

The equation of state (lattice constant, energy per atom, bulk modulus) on the 1-atom primitive
cell; C11, C12 and C44 with the ions relaxed at each strain (``mlff.physics``) on the 4-atom cubic
cell at the fitted lattice constant; the equations of state of bcc and simple cubic Al (the
relative phase energies). The labels' k-point density is coarse (datasets/README.md, *Label
noise*), and so is this reference: its equations of state are what a fit to that set can
reproduce, but at this density the stresses of 0.5 % strains are noise (it gave C11 = -7 GPa and
C44 = -210 GPa), so the elastic constants are left out of the file. Records already in the file
are kept. Runs with Debian's GPAW under the system Python:

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_al_gpaw.py
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # mlff.physics needs only ASE and NumPy

from ase.build import bulk  # noqa: E402

from gpaw_labels import write_reference  # noqa: E402


def main():
    phases = [bulk("Al", "bcc", a=3.24, cubic=True), bulk("Al", "sc", a=2.73)]  # Al2, Al: other cubic phases of the set
    out = os.path.join(HERE, "al_gpaw_reference.json")
    write_reference(bulk("Al", "fcc", a=4.04), lambda a: bulk("Al", "fcc", a=a, cubic=True), 4, out,
                    kpt_density=2.5, ecut=300.0, phases=phases)
    with open(out) as handle:
        data = json.load(handle)
    for record in data["crystals"]:
        reference = record["reference"]
        if [name for name in ("C11", "C12", "C44") if reference.pop(name, None) is not None]:  # all three popped
            reference["method"] = reference["method"].replace("; relaxed-ion elastic constants", "") + (
                "; no elastic constants: at this k-point density the stresses of 0.5 % strains are noise")
    with open(out, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
