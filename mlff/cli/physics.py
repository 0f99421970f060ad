"""``mlff physics MODEL CRYSTAL... [--reference emt|model.pt] [--reference-values ref.json]``:
lattice constant, energy, bulk modulus, elastic constants (phonons, stacking faults, vacancies and
their migration, surfaces) of a fitted potential beside a reference; the energies of crystals of one
composition relative to the lowest; figures."""

from __future__ import annotations

import argparse


_HOP_NAMES = {"vacancy_migration": "migration", "vacancy_migration_basal": "basal migration",
              "vacancy_migration_out_of_basal": "out-of-basal migration"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by mlff deploy / mlff train")
    parser.add_argument("crystals", nargs="+", metavar="CRYSTAL",
                        help="NAME:STRUCTURE:A near equilibrium (Cu:fcc:3.61, Si:diamond:5.47; hexagonal "
                             "NAME:STRUCTURE:A[:C], Mg:hcp:3.21:5.21) or a structure file; cubic and "
                             "hexagonal cells get elastic constants")
    parser.add_argument("--reference", metavar="CALC",
                        help="compute the same properties with 'emt' or another model file")
    parser.add_argument("--reference-values", metavar="JSON",
                        help="reference properties from a JSON file (e.g. computed once with your DFT code "
                             "through mlff.physics.crystal_properties, or an earlier --json output)")
    parser.add_argument("--phonons", nargs="*", metavar="POINT", default=None,
                        help="also phonon frequencies at these high-symmetry points (default G X)")
    parser.add_argument("--stacking-fault", action="store_true",
                        help="also the stacking fault energies (mJ/m^2): the intrinsic fault of fcc elements and "
                             "the basal I2 fault of hcp elements, and the unstable fault (the top of the slip's "
                             "energy curve) of fcc, hcp and bcc elements")
    parser.add_argument("--defects", action="store_true",
                        help="also the vacancy formation energy (eV) of element crystals, and of fcc, bcc and hcp "
                             "elements the vacancy's migration energies (eV; hcp: within and out of the basal plane) "
                             "and the surface energies (mJ/m^2) of fcc (111, 100), bcc (110, 100) and hcp (0001, "
                             "10-10)")
    parser.add_argument("--solutes", nargs="+", metavar="ELEMENT", default=(),
                        help="also these elements as solutes in each fcc, bcc and hcp element crystal (eV): "
                             "substitution, binding to a vacancy next to them and the barrier of exchanging with it, "
                             "and with the solute's own crystal among the CRYSTALs (e.g. Mg:hcp:3.19:5.18) the "
                             "solution energy")
    parser.add_argument("--no-relax", action="store_true", help="keep the ions (and the cell's shape) fixed under strain")
    parser.add_argument("--json", metavar="FILE", help="write the properties and the comparison as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write a figure per crystal (E-V curve, elastic constants)")
    parser.add_argument("--device", default="cpu")


def _bar(desc: str):
    """A progress bar over one crystal's relaxations and calculations, on a terminal only (quiet
    in logs and pipes): a crystal with its elastic constants and phonons takes tens of seconds."""
    import sys

    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=not sys.stderr.isatty())
        bar.set_postfix_str(what, refresh=False)
        bar.update(1)
        if done == total:
            bar.close()

    return progress


def run(args: argparse.Namespace) -> int:
    from ..calculators import MLFFCalculator
    from ..files import write_json
    from ..physics import (ELASTIC, HOPS, MIGRATIONS, SLIP_PLANES, SURFACES, add_solution_energies, compare,
                           comparison_table, crystal_properties, element_lattice, is_element, lattice_kind,
                           parse_crystal, phase_energies, phase_table, plot_report, read_reference,
                           reference_calculator, scalar_keys, solution_table, unit)

    if args.reference and args.reference_values:
        raise ValueError("give either --reference or --reference-values, not both")
    calc = MLFFCalculator(args.model, device=args.device)
    for solute in args.solutes:  # before any computing: a crystal's properties take minutes
        if solute not in calc.model.species:
            raise ValueError(f"solute {solute} is not among the model's elements {list(calc.model.species)}: "
                             "choose solutes the model was trained on")
    reference = reference_calculator(args.reference, args.device) if args.reference else None
    phonons = () if args.phonons is None else (tuple(args.phonons) or ("G", "X"))
    records = []
    for text in args.crystals:
        atoms = parse_crystal(text)
        here = phonons if lattice_kind(atoms) == "cubic" else ()
        if phonons and not here:
            print(f"{text}: no phonons (the high-symmetry points are those of a conventional cubic cell)")
        fault = args.stacking_fault and element_lattice(atoms) in SLIP_PLANES
        if args.stacking_fault and not fault:
            print(f"{text}: no stacking fault energy (computed for fcc, hcp and bcc elements)")
        defects = args.defects and is_element(atoms)
        if args.defects and not defects:
            print(f"{text}: no defect energies (computed for element crystals)")
        hosts = element_lattice(atoms) in HOPS
        solutes = [x for x in args.solutes if hosts and x not in atoms.get_chemical_symbols()]
        if args.solutes and not hosts:
            print(f"{text}: no solutes (computed in fcc, bcc and hcp element crystals)")
        options = dict(phonons=here, relax=not args.no_relax, stacking_fault=fault, defects=defects, solutes=solutes)
        ours = crystal_properties(atoms, calc, progress=_bar(f"{text}, model"), **options)
        record = {"crystal": text, "formula": ours["formula"], "model": ours}
        theirs = None
        if reference is not None:
            theirs = crystal_properties(atoms, reference, progress=_bar(f"{text}, reference"), **options)
        elif args.reference_values:
            theirs = read_reference(args.reference_values, ours["formula"], text)
            if theirs is None:
                print(f"{text}: no reference for {ours['formula']} of this structure in {args.reference_values}")
            elif theirs.get("matched_by") == "formula":
                print(f"{text}: the reference record for {ours['formula']} names no crystal, so it was matched by "
                      f"formula alone; add \"crystal\": \"{text}\" to it if it is this structure")
        if theirs is not None:
            record["reference"] = theirs
            record["comparison"] = compare(ours, theirs)
            print(comparison_table(record["comparison"], f"{text} ({ours['formula']})"))
            alone = [key for key in scalar_keys(ours) if key not in record["comparison"]]
            if alone:  # computed here, but the reference has no value to set beside them
                print("  no reference value for: " + ", ".join(f"{key} {ours[key]:.4g} {unit(key)}".rstrip()
                                                             for key in alone))
        else:
            print(f"{text} ({ours['formula']}): a0 {ours['lattice_constant']:.4f} Å"
                  + (f", c/a {ours['c_over_a']:.4f}" if "c_over_a" in ours else "")
                  + f", E0 {ours['energy']:.4f} eV/atom, B {ours['bulk_modulus']:.1f} GPa"
                  + "".join(f", {k} {ours[k]:.1f} GPa" for k in ELASTIC if k in ours)
                  + (f", stacking fault {ours['stacking_fault']:.1f} mJ/m^2" if "stacking_fault" in ours else "")
                  + (f", unstable stacking fault {ours['unstable_stacking_fault']:.1f} mJ/m^2"
                     if "unstable_stacking_fault" in ours else "")
                  + (f", vacancy {ours['vacancy']:.3f} eV ({ours['vacancy_sites']} sites)" if "vacancy" in ours else "")
                  + "".join(f", {_HOP_NAMES[k]} {ours[k]:.3f} eV" for k in MIGRATIONS if k in ours)
                  + "".join(f", surface ({k[8:]}) {ours[k]:.0f} mJ/m^2" for k in SURFACES if k in ours)
                  + "".join(f", {k.replace('_', ' ')} {ours[k]:.3f} eV" for k in scalar_keys(ours)
                            if k.startswith(("solute_", "substitution_"))))
        for whose, values in (("model", ours), ("reference", theirs)):
            if values is not None and values.get("defects_skipped"):
                print(f"{text}: no defect energies for the {whose}: {values['defects_skipped']}")
            for solute, reason in ((values or {}).get("solutes_skipped") or {}).items():
                print(f"{text}: {solute} for the {whose}: {reason}")
        records.append(record)
    for host, solute in add_solution_energies(records):
        print(f"{host}: no solution energy of {solute}: give {solute}'s own crystal too (e.g. {solute}:hcp:A:C or "
              f"{solute}:fcc:A), whose energy per atom it is measured from")
    solutions = solution_table(records)
    if solutions:
        print(solutions)
    phases = phase_energies(records)
    if phases:
        print(phase_table(phases))
    if args.plot:
        for path in plot_report(records, args.plot):
            print(f"wrote {path}")
    if args.json:
        write_json(args.json, {"model_file": args.model, "crystals": records, "phases": phases})
    return 0
