"""Write the physical properties of fcc aluminium with the DFT settings of one of the aluminium
sets (GPAW, PBE, 300 eV), in the form `mlff physics --reference-values` reads:

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_al_gpaw.py                    # al_gpaw_reference.json
    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_al_gpaw.py --kpt-density 5    # al_gpaw_k5_reference.json
    mlff physics model.pt Al:fcc:4.04 --reference-values datasets/al_gpaw_k5_reference.json

The equation of state (lattice constant, energy per atom, bulk modulus) on the 1-atom primitive
cell; C11, C12 and C44 with the ions relaxed at each strain (``mlff.physics``) on the 4-atom cubic
cell at the fitted lattice constant; the equations of state of bcc, simple cubic and hcp Al (the
relative phase energies; hcp with its c/a relaxed at each volume); at 5 per Å^-1 also the intrinsic
stacking fault energy (a 12-plane (111) column), the vacancy formation energy (32 sites) with its
migration energy, and the (111) and (100) surface energies. At the k-point density of ``al_gpaw.extxyz`` (2.5 per Å^-1) the stresses
of 0.5 % strains are noise (it gave C11 = -7 GPa and C44 = -210 GPa), so that file has no elastic
constants; ``--kpt-density 5`` (``al_gpaw_k5.extxyz``) keeps them. Records already in the file are
kept, so an interrupted run resumes. Runs with Debian's GPAW under the system Python.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # mlff.physics needs only ASE and NumPy

from ase.build import bulk  # noqa: E402

from gpaw_labels import write_reference  # noqa: E402

NOISY_ELASTIC_BELOW = 5.0  # k-points per Å^-1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kpt-density", type=float, default=2.5, help="k-points per Å^-1 (the data set's)")
    parser.add_argument("--out", help="default: al_gpaw_reference.json at 2.5, al_gpaw_k<density>_reference.json otherwise")
    args = parser.parse_args()
    name = "al_gpaw" if args.kpt_density == 2.5 else f"al_gpaw_k{args.kpt_density:g}"
    out = args.out or os.path.join(HERE, f"{name}_reference.json")
    # the other phases of the set: cubic, and hcp with its c/a relaxed (fcc against hcp: stacking)
    phases = {"Al:bcc": bulk("Al", "bcc", a=3.24, cubic=True), "Al:sc": bulk("Al", "sc", a=2.73),
              "Al:hcp": bulk("Al", "hcp", a=2.86)}
    write_reference("Al:fcc", bulk("Al", "fcc", a=4.04), lambda a: bulk("Al", "fcc", a=a, cubic=True), 4, out,
                    kpt_density=args.kpt_density, ecut=300.0, phases=phases,
                    stacking_fault=args.kpt_density >= NOISY_ELASTIC_BELOW,
                    defects=args.kpt_density >= NOISY_ELASTIC_BELOW)
    if args.kpt_density >= NOISY_ELASTIC_BELOW:
        return
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
