"""Write datasets/mgo_gpaw_reference.json: the physical properties of rocksalt MgO with the same
DFT settings as datasets/mgo_gpaw.extxyz (``generate_mgo_gpaw.SETTINGS``), in the form
`mlff physics --reference-values` reads:

    mlff physics model.pt MgO:rocksalt:4.26 --reference-values datasets/mgo_gpaw_reference.json

The equation of state on the 2-atom primitive cell; C11, C12 and C44 with the ions relaxed on the
8-atom cubic cell at the fitted lattice constant. Runs with Debian's GPAW under the system Python:

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_mgo_gpaw.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # mlff.physics needs only ASE and NumPy

from ase.build import bulk  # noqa: E402

from generate_mgo_gpaw import A_ROCKSALT, SETTINGS  # noqa: E402
from gpaw_labels import write_reference  # noqa: E402


def main():
    write_reference("MgO:rocksalt", bulk("MgO", "rocksalt", a=A_ROCKSALT), lambda a: bulk("MgO", "rocksalt", a=a, cubic=True), 8,
                    os.path.join(HERE, "mgo_gpaw_reference.json"), **SETTINGS)


if __name__ == "__main__":
    main()
