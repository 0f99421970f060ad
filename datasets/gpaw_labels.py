"""Shared by the GPAW generators (``generate_al_gpaw.py``, ``generate_almgsi_gpaw.py``): label a
structure with periodic PBE (energy, forces, stress) and the resumable, ordered driver that writes
the frames. Runs under the system Python with Debian's GPAW.

Settings: PBE, plane waves 300 eV (a generator may ask for more: oxides), Monkhorst-Pack k-points
of a given density per Å^-1 (at least 1 per direction; slabs 1 along the normal), Fermi-Dirac smearing 0.1 eV (energies are the
extrapolated free energies at zero smearing that GPAW reports), no point-group symmetry (rattled
cells) but time reversal (half the k-points; the same labels to 1 meV/Å, the SCF tolerance).

The k-point density sets the label noise. Densities of 2.5 (the first two GPAW sets) and 5 differ
by 0-160 meV/Å (RMS per frame, 16 frames of ``almgsi_gpaw.extxyz``) and by up to 50 meV/atom; 5
and 6.5 by 12-34 meV/Å on the worst two of them (datasets/README.md, *Label noise*). The errors
of a k-point grid too coarse for a small cell depend on the cell's shape and size, which a local
model cannot see: they are noise it cannot learn.
"""

import argparse
import functools
import os
import time

import numpy as np
from ase.calculators.calculator import kptdensity2monkhorstpack
from ase.io import read, write


def strain_and_rattle(atoms, rng, strain=True):
    """A random symmetric strain of about 2.5 % (unless ``strain`` is false: slabs), then a rattle
    of a random amplitude up to 0.15 Å, wrapped into the cell (draws from ``rng`` in this order)."""
    if strain:
        matrix = np.eye(3) + 0.025 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ (0.5 * (matrix + matrix.T)), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rng.uniform(0.0, 0.15), atoms.positions.shape)
    atoms.wrap()
    return atoms


def near_ground_state(build, a, rng):
    """A ground-state frame: ``build(a, cubic)`` at ``a`` +-1 % (primitive, or the cubic cell 30 % of
    the time), half of the frames with 0.02 Å displacements (draws from ``rng`` in this order)."""
    atoms = build(a * rng.uniform(0.99, 1.01), rng.random() < 0.3)
    if rng.random() < 0.5:
        atoms.positions += rng.normal(0.0, 0.02, atoms.positions.shape)
    return atoms


def hot(atoms, rng, low, high):
    """A liquid-like rattle on top: a random amplitude in [``low``, ``high``] Å, wrapped."""
    atoms.positions += rng.normal(0.0, rng.uniform(low, high), atoms.positions.shape)
    atoms.wrap()
    return atoms


def label(atoms, kind, setups=None, kpt_density=5.0, ecut=300.0):
    """``atoms`` with GPAW's energy, forces and stress as extxyz labels and ``config_type=kind``
    (plane-wave cutoff ``ecut`` eV)."""
    atoms.calc = calculator(atoms, setups, kpt_density, ecut, slab="slab" in kind)
    out = atoms.copy()
    out.info.pop("adsorbate_info", None)  # ase.build's slab metadata, not a label
    out.info["energy"] = atoms.get_potential_energy()
    out.arrays["forces"] = atoms.get_forces()
    out.info["stress"] = atoms.get_stress(voigt=False)
    out.info["config_type"] = kind
    return out


def _one(structure, setups, kpt_density, ecut, index):
    atoms, kind = structure(index)
    start = time.time()
    out = label(atoms, kind, setups, kpt_density, ecut)
    out.info["index"] = index
    return index, out, time.time() - start


def generate(structure, description, default_out, default_frames, setups=None, kpt_density=5.0, argv=None,
             ecut=300.0):
    """The command line of a generator: frame ``i`` is ``structure(i)`` (deterministic), labelled
    and appended in index order, so an interrupted run resumes where the file ends."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--frames", type=int, default=default_frames,
                        help=f"frames in the file (the committed set has {default_frames})")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--kpt-density", type=float, default=kpt_density,
                        help=f"Monkhorst-Pack k-points per Å^-1 (default {kpt_density})")
    parser.add_argument("--dry-run", action="store_true", help="print the structures without labelling them")
    args = parser.parse_args(argv)
    if args.dry_run:
        for index in range(args.frames):
            atoms, kind = structure(index)
            print(index, kind, atoms.get_chemical_formula(), f"{atoms.get_volume() / len(atoms):.1f} Å^3/atom")
        return 0
    done = len(read(args.out, ":")) if os.path.exists(args.out) else 0
    todo = list(range(done, args.frames))
    print(f"{done} frames in {args.out}; labelling {len(todo)} more (k-point density {args.kpt_density})", flush=True)
    work = functools.partial(_one, structure, setups, args.kpt_density, ecut)
    if args.workers > 1:
        from multiprocessing import Pool

        pool = Pool(args.workers)
        results = pool.imap(work, todo)  # in index order: the file stays ordered and resumable
    else:
        results = map(work, todo)
    for index, out, seconds in results:
        write(args.out, out, append=True)
        print(f"frame {index} {out.info['config_type']} {out.get_chemical_formula()}: {seconds:.1f} s", flush=True)
    return 0


def calculator(atoms, setups=None, kpt_density=5.0, ecut=300.0, slab=False):
    """A GPAW calculator with the labels' settings and k-points for ``atoms``'s cell (one k-point
    along the normal of a ``slab``). The physical references (``reference_*_gpaw.py``) use it on
    cells whose shape does not change much."""
    from gpaw import GPAW, PW, FermiDirac

    kpts = kptdensity2monkhorstpack(atoms, kptdensity=kpt_density, even=False)
    if slab:
        kpts[2] = 1
    extra = {"setups": setups} if setups else {}  # e.g. {"Mg": "2"}: Mg's 2-electron setup
    return GPAW(mode=PW(ecut), xc="PBE", kpts=[int(k) for k in kpts], occupations=FermiDirac(0.1),
                symmetry={"point_group": False, "time_reversal": True}, txt=None, **extra)


def write_reference(crystal, primitive, cubic, cubic_atoms, out, setups=None, kpt_density=5.0, ecut=300.0, phases=None,
                    stacking_fault=False, defects=False, solutes=()):
    """The physical reference of a cubic crystal in the form ``mlff physics --reference-values``
    reads: the equation of state on ``primitive`` (lattice constant of the cubic cell, energy per
    atom, bulk modulus), then C11, C12, C44 with the ions relaxed on ``cubic(a0)`` (a function of
    the lattice constant) with ``cubic_atoms`` atoms. ``crystal`` names it (``Al:fcc``; each record
    is named ``NAME:STRUCTURE:A``, which ``mlff physics`` matches by structure). ``phases``: other
    cells of the same element(s) near their equilibrium by name (``{"Al:bcc": atoms}``), whose
    equations of state are added (for the relative phase energies; cells that are not cubic, such
    as hcp, with their shape relaxed at each volume). ``stacking_fault``: also the intrinsic and
    unstable stacking fault energies of the (fcc) crystal, on a 12-plane (111) column.
    ``defects``: also the vacancy formation energy (the supercell ``mlff.physics`` uses, ions
    relaxed) and the surface energies of the (fcc or bcc) crystal's facets (6-plane slabs, one
    k-point along their normal). ``solutes``: element symbols whose substitution, solute-vacancy
    binding and solute migration energies in the crystal are added (``mlff.physics.solutes``, the
    vacancy's supercell, ions relaxed; the perfect supercell and the vacancy are relaxed once for
    the vacancy and every solute). Records already in ``out`` are kept, and each property is
    saved when done, so an interrupted run resumes."""
    import json

    from mlff.physics import (cubic_elastic_constants, equation_of_state, lattice_kind, stacking_fault_energy,
                              structure_name, unstable_stacking_fault_energy)

    method = (f"GPAW PBE, PW {ecut:g} eV, k-point density {kpt_density:g}/Å^-1, Fermi-Dirac 0.1 eV"
              f"{', setups ' + str(setups) if setups else ''}")
    records = []
    if os.path.exists(out):
        with open(out) as handle:
            records = json.load(handle)["crystals"]
    known = {structure_name(record.get("crystal", "")) or record["formula"] for record in records}

    def save():
        with open(out, "w") as handle:
            json.dump({"crystals": records}, handle, indent=2)
            handle.write("\n")

    formula = cubic(1.0).get_chemical_formula()
    if crystal not in known and formula not in known:
        eos = equation_of_state(primitive, calculator(primitive, setups, kpt_density, ecut), relax=False)
        eos["lattice_constant"] = (cubic_atoms * eos["volume"]) ** (1.0 / 3.0)
        print(f"{formula}: a0 {eos['lattice_constant']:.4f} Å, E0 {eos['energy']:.4f} eV/atom, "
              f"B {eos['bulk_modulus']:.1f} GPa", flush=True)
        cell = cubic(eos["lattice_constant"])
        elastic = cubic_elastic_constants(cell, calculator(cell, setups, kpt_density, ecut), relax=True, fmax=0.005)
        print(", ".join(f"{k} {v:.1f} GPa" for k, v in elastic.items()), flush=True)
        records.append({"crystal": f"{crystal}:{eos['lattice_constant']:.4g}", "formula": formula,
                        "reference": {**eos, **elastic, "formula": formula,
                                                          "method": method + "; relaxed-ion elastic constants"}})
        save()
    main = [r for r in records if structure_name(r.get("crystal", "")) == crystal or r["formula"] == formula][0]
    faults = [key for key in ("stacking_fault", "unstable_stacking_fault") if key not in main["reference"]]
    if stacking_fault and faults:
        from ase.build import fcc111

        symbol, a0 = crystal.split(":")[0], main["reference"]["lattice_constant"]
        column = fcc111(symbol, size=(1, 1, 12), a=a0, vacuum=None, periodic=True)
        # at least 8 per Å^-1: at 5 the 28 Å column gets one k-point along its normal, and Al's
        # fault came out at 60 mJ/m^2 against 119.9 at 8 (21x21x2)
        density = max(kpt_density, 8.0)
        calc = calculator(column, setups, density, ecut)
        grid = "x".join(str(k) for k in calc.parameters.kpts)
        if "stacking_fault" in faults:
            main["reference"]["stacking_fault"] = round(stacking_fault_energy(symbol, a0, calc, fmax=0.01), 1)
            main["reference"]["method"] += (f"; stacking fault on a 12-plane (111) column at k-point density "
                                            f"{density:g} ({grid}), ions relaxed")
            print(f"{crystal}: stacking fault {main['reference']['stacking_fault']:.1f} mJ/m^2", flush=True)
            save()
        if "unstable_stacking_fault" in faults:
            unstable = unstable_stacking_fault_energy(symbol, "fcc", a0, calc, fmax=0.01)
            main["reference"]["unstable_stacking_fault"] = round(unstable, 1)
            main["reference"]["method"] += (f"; unstable stacking fault: the top of the (111) <112> curve on the same "
                                            f"column ({grid}), ions relaxed normal to the planes")
            print(f"{crystal}: unstable stacking fault {unstable:.1f} mJ/m^2", flush=True)
            save()
    host = []  # the relaxed perfect supercell and vacancy: made once, for the vacancy and every solute

    def host_cells():
        from mlff.physics import vacancy_cells, vacancy_supercell

        if not host:
            cell = cubic(main["reference"]["lattice_constant"])
            probe = cell.repeat(vacancy_supercell(cell))  # the supercell's k-points
            host.append(vacancy_cells(cell, calculator(probe, setups, kpt_density, ecut), fmax=0.01))
            print(f"{crystal}: host and vacancy relaxed", flush=True)
        return host[0]

    if defects:
        _add_defects(crystal, main, cubic, setups, kpt_density, ecut, save, host_cells)
    if solutes:
        _add_solutes(crystal, main, cubic, solutes, save, host_cells)
    for name, atoms in (phases or {}).items():
        formula = atoms.get_chemical_formula()
        if name in known or formula in known:
            continue
        kind = lattice_kind(atoms)
        extra = ""
        if kind == "cubic":
            eos = equation_of_state(atoms, calculator(atoms, setups, kpt_density, ecut), relax=False)
        else:  # hcp: the shape (c/a) relaxed at each volume, to DFT's stress noise (0.005 eV per atom)
            eos = equation_of_state(atoms, calculator(atoms, setups, kpt_density, ecut), relax=True, shape=True,
                                    fmax=0.005)
            extra = "; cell shape and ions relaxed at each volume"
        print(f"{formula}: a0 {eos['lattice_constant']:.4f} Å, E0 {eos['energy']:.4f} eV/atom, "
              f"B {eos['bulk_modulus']:.1f} GPa" + (f", c/a {eos['c_over_a']:.4f}" if "c_over_a" in eos else ""),
              flush=True)
        records.append({"crystal": f"{name}:{eos['lattice_constant']:.4g}", "formula": formula,
                        "reference": {**eos, "formula": formula, "method": method + extra}})
        save()


def _add_defects(crystal, main, cubic, setups, kpt_density, ecut, save, host_cells):
    """The surface and vacancy energies of ``write_reference``'s ``defects`` (with the vacancy's
    migration energy), added to the record ``main`` one by one (``save`` after each; the vacancy,
    the costliest, last; ``host_cells()``: the relaxed perfect and vacancy cells)."""
    from mlff.physics import FACETS, cubic_element, surface_cells, surface_energy, vacancy_energies

    reference = main["reference"]
    symbol, a0 = crystal.split(":")[0], reference["lattice_constant"]
    cell = cubic(a0)
    lattice = cubic_element(cell)
    density = max(kpt_density, 8.0)  # as for the stacking fault: a metal's planar energies need it
    for facet in FACETS.get(lattice, ()):
        if f"surface_{facet}" in reference:
            continue
        column, slab = surface_cells(symbol, lattice, facet, a0)
        energy = surface_energy(symbol, lattice, facet, a0, calculator(column, setups, density, ecut),
                                fmax=0.01, slab_calc=calculator(slab, setups, density, ecut, slab=True))
        reference[f"surface_{facet}"] = round(energy, 1)
        if "surfaces" not in reference["method"]:
            reference["method"] += (f"; surfaces: 6-plane slabs with 8 Å of vacuum a side at k-point density "
                                    f"{density:g}, ions relaxed")
        print(f"{crystal}: surface ({facet}) {energy:.1f} mJ/m^2", flush=True)
        save()
    migration = lattice is not None  # vacancy_energies's default: fcc and bcc elements
    if "vacancy" not in reference or (migration and "vacancy_migration" not in reference):
        host = host_cells()  # its calculator has the supercell's k-points
        vacancy = vacancy_energies(cell, host.perfect.calc, fmax=0.01,
                                   step=lambda what: print(f"{crystal}: {what} relaxed", flush=True), cells=host)
        if "vacancy" in reference and abs(reference["vacancy"] - vacancy["vacancy"]) > 1e-3:
            print(f"{crystal}: the vacancy again, {vacancy['vacancy']:.4f} eV against {reference['vacancy']:.4f} "
                  f"before", flush=True)
        if "vacancy" not in reference:
            reference["method"] += f"; vacancy in {vacancy['vacancy_sites']} sites, ions relaxed"
        reference.update(vacancy=round(vacancy["vacancy"], 4), vacancy_sites=vacancy["vacancy_sites"])
        if migration:
            reference["vacancy_migration"] = round(vacancy["vacancy_migration"], 4)
            reference["method"] += ("; vacancy migration: a nearest-neighbour hop, the hopping atom held half-way "
                                    "and the others relaxed")
        print(f"{crystal}: vacancy {reference['vacancy']:.3f} eV ({vacancy['vacancy_sites']} sites)"
              + (f", migration {reference['vacancy_migration']:.3f} eV" if migration else ""), flush=True)
        save()


def _add_solutes(crystal, main, cubic, solutes, save, host_cells):
    """The energies of ``write_reference``'s ``solutes`` added to the record ``main``, a solute at
    a time (``save`` after each; ``host_cells()``: the relaxed perfect and vacancy cells)."""
    from mlff.physics import solute_energies

    reference = main["reference"]
    cell = cubic(reference["lattice_constant"])
    for solute in solutes:
        if f"substitution_{solute}" in reference:
            continue
        host = host_cells()  # its calculator has the supercell's k-points
        values = solute_energies(cell, [solute], host.perfect.calc, fmax=0.01,
                                 step=lambda what: print(f"{crystal}: {what} relaxed", flush=True), cells=host)
        reference.update({key: (value if key == "solute_sites" else round(value, 4)) for key, value in values.items()})
        if "solutes" not in reference["method"]:
            reference["method"] += (f"; solutes in {values['solute_sites']} sites, ions relaxed, the solute's hop held "
                                    "half-way")
        shown = ", ".join(f"{key} {value:.4f}" for key, value in values.items() if key != "solute_sites")
        print(f"{crystal}: {shown}", flush=True)
        save()
