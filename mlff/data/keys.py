"""Names of the fields of an atomic-data dictionary (a ``Dict[str, Tensor]``).

Every tensor that flows between the data layer, the model and the engines is stored under one of
these keys. Shapes use ``n`` for atoms, ``E`` for directed edges and ``G`` for graphs (structures) in
a batch. Real-valued inputs are float64 at every boundary; the model casts to its own dtype inside.
"""

from typing import Final

# --- inputs --------------------------------------------------------------------------------------
POSITIONS_KEY: Final[str] = "positions"  # (n, 3) float | Cartesian positions, Å
SPECIES_KEY: Final[str] = "species"  # (n,) int64 | index into the model's species list
EDGE_INDEX_KEY: Final[str] = "edge_index"  # (2, E) int64 | [center i, neighbour j], both directions
EDGE_SHIFT_KEY: Final[str] = "edge_shift"  # (E, 3) float | Å; r_ij = pos[j] - pos[i] + shift_ij
EDGE_LENGTH_KEY: Final[str] = "edge_length"  # (E,) float64 | Å; |r_ij|, optional (from_ase(..., edge_lengths=True)), for checks
BATCH_KEY: Final[str] = "batch"  # (n,) int64 | graph (structure) index of each atom
PTR_KEY: Final[str] = "ptr"  # (G + 1,) int64 | atoms of graph g are ptr[g]:ptr[g+1]
NUM_LOCAL_KEY: Final[str] = "n_local"  # () int64 | atoms [0, n_local) own energy; the rest are ghosts
CELL_KEY: Final[str] = "cell"  # (G, 3, 3) float | lattice vectors as rows, Å (zeros if none)
PBC_KEY: Final[str] = "pbc"  # (G, 3) bool | periodicity along each lattice vector
TOTAL_CHARGE_KEY: Final[str] = "total_charge"  # (G,) float | e; the charges of the dipole head sum to it
# optional dense per-centre layout of edges already sorted by centre (mlff.nn.dense_rows), given by
# engines that run a compiled model (whose graph cannot derive shapes from values); no ghosts
DENSE_ROWS_KEY: Final[str] = "dense_rows"  # (R,) int64 | the atoms that centre at least one edge
DENSE_SLOT_KEY: Final[str] = "dense_slot"  # (E,) int64 | row * K + position of each edge in its row
DENSE_WIDTH_KEY: Final[str] = "dense_width"  # (K,) any | only its length K (most edges of one centre) is read
# optional: evaluate the layers in chunks of this many atoms, recomputing each chunk's forward in the
# backward (inference only): peak memory bounded by one chunk's graph instead of all layers' graphs
CHUNK_ATOMS_KEY: Final[str] = "chunk_atoms"  # () int64 | atoms per chunk; 0 or absent: one pass

# --- outputs -------------------------------------------------------------------------------------
ENERGY_KEY: Final[str] = "energy"  # (G,) float64 | total energy of local atoms, eV
ATOMIC_ENERGY_KEY: Final[str] = "atomic_energy"  # (n,) float64 | eV; zero for ghost atoms
FORCES_KEY: Final[str] = "forces"  # (n, 3) float64 | -dE/dr, eV/Å; ghosts included
VIRIAL_KEY: Final[str] = "virial"  # (G, 3, 3) float64 | W = -sum_ij r_ij (x) dE/dr_ij, eV
ATOMIC_VIRIAL_KEY: Final[str] = "atomic_virial"  # (n, 3, 3) float64 | per-atom share of W, eV
STRESS_KEY: Final[str] = "stress"  # (G, 3, 3) float64 | -W / V, eV/Å^3 (ASE sign convention)
# optional heads (ModelConfig.dipole, ModelConfig.outputs)
DIPOLE_KEY: Final[str] = "dipole"  # (G, 3) float64 | e Å; sum_i q_i r_i + sum_i mu_i over local atoms
CHARGES_KEY: Final[str] = "charges"  # (n,) float64 | e; per-atom charges, summing to total_charge
ATOMIC_DIPOLES_KEY: Final[str] = "atomic_dipoles"  # (n, 3) float64 | e Å; per-atom dipoles mu_i
ATOMIC_PREFIX: Final[str] = "atomic_"  # per-atom value of an output `name` is f"atomic_{name}"

# --- labels (training targets, same units as the outputs) ----------------------------------------
REF_ENERGY_KEY: Final[str] = "ref_energy"  # (G,) float64 | eV
REF_FORCES_KEY: Final[str] = "ref_forces"  # (n, 3) float64 | eV/Å
REF_STRESS_KEY: Final[str] = "ref_stress"  # (G, 3, 3) float64 | eV/Å^3, ASE sign convention
HAS_STRESS_KEY: Final[str] = "has_stress"  # (G,) float64 | 1 where the frame has a stress label
REF_DIPOLE_KEY: Final[str] = "ref_dipole"  # (G, 3) float64 | e Å
HAS_DIPOLE_KEY: Final[str] = "has_dipole"  # (G,) float64 | 1 where the frame has a dipole label
LOSS_WEIGHT_KEY: Final[str] = "loss_weight"  # (G,) float64 | the frame's factor on its loss terms (1: plain)
