"""Write the solute energies of the Al-Mg-Si development set's DFT settings (GPAW, PBE, 300 eV,
k-point density 5 per Å^-1, Mg's 2-electron setup), in the form `mlff physics --reference-values`
reads:

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/reference_almgsi_gpaw.py     # almgsi_gpaw_k5_reference.json
    mlff physics model.pt Al:fcc:4.04 Mg:hcp:3.19:5.18 Si:diamond:5.47 --solutes Mg Si \\
        --reference-values datasets/almgsi_gpaw_k5_reference.json

fcc aluminium's equation of state, elastic constants, vacancy and its migration energy (taken
from ``al_gpaw_k5_reference.json`` when it is there: the same settings, Al's setup unchanged);
Mg and Si in it (``mlff.physics.solutes``: substitution, binding to a vacancy next to it and the
barrier of its exchange with that vacancy, in the 32-site supercell, ions relaxed); and the
equations of state of hcp Mg (c/a relaxed at each volume) and diamond Si, whose energies make the
substitutions solution energies. Records already in the file are kept, so an interrupted run
resumes; ``--solutes Si --phases Si:diamond --out part.json`` computes a part (80-95 minutes
per solute on one core, 15 for hcp Mg, 3 for diamond Si).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # mlff.physics needs only ASE and NumPy

from ase.build import bulk  # noqa: E402

from gpaw_labels import write_reference  # noqa: E402

SETUPS = {"Mg": "2"}  # as generate_almgsi_gpaw.py


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutes", nargs="+", default=["Mg", "Si"])
    parser.add_argument("--phases", nargs="*", default=["Mg:hcp", "Si:diamond"],
                        help="the solutes' own crystals to add (none: --phases)")
    parser.add_argument("--out", default=os.path.join(HERE, "almgsi_gpaw_k5_reference.json"))
    args = parser.parse_args()
    al = os.path.join(HERE, "al_gpaw_k5_reference.json")
    if not os.path.exists(args.out) and os.path.exists(al):  # fcc Al with the same settings
        with open(al) as handle:
            record = next(r for r in json.load(handle)["crystals"] if r["crystal"].startswith("Al:fcc:"))
        keep = ("volume", "energy", "bulk_modulus", "lattice_constant", "curve", "C11", "C12", "C44", "formula",
                "vacancy", "vacancy_sites", "vacancy_migration")
        record["reference"] = {key: record["reference"][key] for key in keep} | {
            "method": record["reference"]["method"].split(";")[0] + "; relaxed-ion elastic constants; vacancy in 32 "
                      "sites and its migration, ions relaxed; these from al_gpaw_k5_reference.json (Al's setup is "
                      "the same)"}
        with open(args.out, "w") as handle:
            json.dump({"crystals": [record]}, handle, indent=2)
            handle.write("\n")
    cells = {"Mg:hcp": bulk("Mg", "hcp", a=3.19, c=5.18), "Si:diamond": bulk("Si", "diamond", a=5.47, cubic=True)}
    write_reference("Al:fcc", bulk("Al", "fcc", a=4.04), lambda a: bulk("Al", "fcc", a=a, cubic=True), 4, args.out,
                    setups=SETUPS, kpt_density=5.0, ecut=300.0, solutes=args.solutes,
                    phases={name: cells[name] for name in args.phases})


if __name__ == "__main__":
    main()
