"""Physical properties of a potential, next to a reference: what to check before trusting a fit.

Mean errors on test frames can look excellent while a crystal's ground state sits far off or its
stiffness is half the reference. :func:`crystal_properties` computes, for a crystal and any ASE
calculator (an mlff model, EMT, a DFT code):

- the energy-volume curve (cell scaled uniformly, ions relaxed where the structure has free
  coordinates), fitted by a Birch-Murnaghan equation of state: equilibrium volume, lattice
  constant, energy per atom and bulk modulus;
- for cubic crystals, the elastic constants C11, C12 and C44, and for hexagonal ones (hcp,
  wurtzite) C11, C12, C13, C33 and C44, from stresses at +-``strain`` (central differences) with
  the ions relaxed at each strain (the relaxed-ion constants DFT codes report);
- for cells that are not cubic, the shape is relaxed at each volume too (c/a of hexagonal
  crystals, reported as ``c_over_a``), so that phases compare at their own equilibria (hcp
  against fcc);
- optionally, phonon frequencies at high-symmetry points (finite displacements in a supercell,
  ASE's ``Phonons``), for fcc elements the intrinsic stacking fault energy (hcp: the basal I2
  fault) and for fcc, hcp and bcc ones the unstable stacking fault energy, for element crystals
  the vacancy formation energy, and for fcc, bcc and hcp elements the vacancy's migration
  energies and the surface energies (:mod:`mlff.physics.defects`), and for element crystals
  with other elements as solutes their substitution, solution, solute-vacancy binding and
  exchange energies (:mod:`mlff.physics.solutes`).

:func:`compare` sets a model's numbers beside a reference's (computed with the reference
calculator, or read from a JSON file of an earlier :func:`crystal_properties` run with DFT) and
gives each property's error (:mod:`mlff.physics.report`). Units: Å, eV/atom, GPa, THz, eV (vacancy
and its migration, solutes), mJ/m^2 (planar defects and surfaces).
"""


from .cells import lattice_kind, relax
from .crystal import (GPA, SPECIAL_POINTS, crystal_properties, cubic_elastic_constants, equation_of_state,
                      hexagonal_elastic_constants, mechanical_instability, phonon_frequencies, stiffness_matrix)
from .defects import (FACETS, HOPS, MJ_PER_M2, SLIP_PLANES, UnstableCrystal, cubic_element, defect_energies,
                      element_lattice, is_element, is_fcc_element, plane_column, slip_vector, stacking_fault_curve,
                      stacking_fault_energy, stacking_faults, surface_cells, surface_energy,
                      unstable_stacking_fault_energy, VacancyCells, vacancy_cells, vacancy_energies, vacancy_hop,
                      vacancy_hops, vacancy_supercell)
from .report import (ELASTIC, HEXAGONAL, MIGRATIONS, SCALARS, SURFACES, UNITS, add_solution_energies, compare,
                     comparison_table, is_solute_key, parse_crystal, phase_energies, phase_table, plot_report,
                     read_reference, reference_calculator, scalar_keys, solution_table, structure_name, unit)
from .solutes import SOLUTE_PREFIXES, check_solutes, solute_energies, solute_keys, solute_steps, solution_energies

__all__ = ["ELASTIC", "FACETS", "GPA", "HEXAGONAL", "HOPS", "MIGRATIONS", "MJ_PER_M2", "SCALARS", "SLIP_PLANES",
           "SOLUTE_PREFIXES", "SPECIAL_POINTS", "SURFACES", "UNITS", "UnstableCrystal", "VacancyCells",
           "add_solution_energies",
           "check_solutes", "compare", "comparison_table", "crystal_properties", "cubic_elastic_constants",
           "cubic_element", "defect_energies", "element_lattice", "equation_of_state", "hexagonal_elastic_constants",
           "is_element", "is_fcc_element", "is_solute_key", "lattice_kind", "mechanical_instability", "parse_crystal",
           "phase_energies", "phase_table", "phonon_frequencies", "plane_column", "plot_report", "read_reference",
           "reference_calculator", "relax", "scalar_keys", "slip_vector", "solute_energies", "solute_keys",
           "solute_steps", "solution_energies", "solution_table", "stacking_fault_curve", "stacking_fault_energy",
           "stacking_faults", "stiffness_matrix", "structure_name", "surface_cells", "surface_energy", "unit",
           "unstable_stacking_fault_energy", "vacancy_cells", "vacancy_energies", "vacancy_hop", "vacancy_hops",
           "vacancy_supercell"]
