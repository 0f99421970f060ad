"""Write datasets/si_gpaw_reference.json: the physical properties of diamond silicon with the same
DFT settings as datasets/si_gpaw.extxyz (GPAW, PBE, 300 eV, k-point density 5 per Å^-1), in the
form `mlff physics --reference-values` reads:

    mlff physics model.pt Si:diamond:5.47 --reference-values datasets/si_gpaw_reference.json

The equation of state (lattice constant, energy per atom, bulk modulus) on the 2-atom primitive
cell; C11, C12 and C44 with the ions relaxed at each strain (``mlff.physics``) on the 8-atom cubic
cell at the fitted lattice constant; the equations of state of fcc, bcc and simple cubic Si (the
relative phase energies). Records already in the file are kept. Runs with Debian's GPAW under the
system Python:

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_si_gpaw.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # mlff.physics needs only ASE and NumPy

from ase.build import bulk  # noqa: E402

from gpaw_labels import write_reference  # noqa: E402


def main():
    phases = {"Si:fcc": bulk("Si", "fcc", a=3.87, cubic=True), "Si:bcc": bulk("Si", "bcc", a=3.08, cubic=True),
              "Si:sc": bulk("Si", "sc", a=2.53)}  # the other cubic phases of the data set
    write_reference("Si:diamond", bulk("Si", "diamond", a=5.47), lambda a: bulk("Si", "diamond", a=a, cubic=True), 8,
                    os.path.join(HERE, "si_gpaw_reference.json"), kpt_density=5.0, ecut=300.0, phases=phases)


if __name__ == "__main__":
    main()
