/* pair_style mlff: an mlff model file evaluated on local + ghost atoms with libtorch.

   compute() = build tensors (build_graph: atoms within num_layers hops of a local atom, full
               edge list of the centers within num_layers - 1 hops, positions, species)
             -> call the model (docs/model-file.md)
             -> scatter energy, forces (ghosts included; newton on sends them home) and virials. */

#include "pair_mlff.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <fstream>
#include <sstream>

using namespace LAMMPS_NS;

static constexpr int MLFF_FORMAT_VERSION = 1;

struct PairMLFF::Model {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  std::vector<std::string> species;
  std::string path;
};

/* Keep freed large blocks in glibc's heap: each step allocates and frees the same few hundred MB
   of per-edge tensors, and fresh mmap pages cost one page fault per 4 KiB (see mlff/runtime.py,
   which does the same for Python). MLFF_TUNE_MALLOC=0 or glibc's MALLOC_* variables opt out. */
static void tune_allocator()
{
#if defined(__GLIBC__)
  const char *flag = std::getenv("MLFF_TUNE_MALLOC");
  if ((flag && std::strcmp(flag, "0") == 0) || std::getenv("MALLOC_MMAP_MAX_") ||
      std::getenv("MALLOC_TRIM_THRESHOLD_") || std::getenv("MALLOC_MMAP_THRESHOLD_"))
    return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);  // never trim: the next step needs the same pages
#endif
}

static std::string first_line(const char *text)
{
  std::string s(text);
  return s.substr(0, s.find('\n'));
}

PairMLFF::PairMLFF(LAMMPS *lmp) :
    Pair(lmp), device_request("cpu"), r_cut(0.0), num_layers(0), min_distance(0.6)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  ghostneigh = 1;                  // message passing needs the neighbours of ghost atoms
  no_virial_fdotr_compute = 1;     // the model returns the exact virial
  centroidstressflag = CENTROID_AVAIL;
  tune_allocator();
}

PairMLFF::~PairMLFF()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairMLFF::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

// pair_style mlff [device cpu|cuda|auto] [min_distance D]
void PairMLFF::settings(int narg, char **arg)
{
  device_request = "cpu";
  min_distance = 0.6;
  for (int iarg = 0; iarg < narg; iarg += 2) {
    const bool known = strcmp(arg[iarg], "device") == 0 || strcmp(arg[iarg], "min_distance") == 0;
    if (!known)
      error->all(FLERR,
                 "Unknown pair_style mlff keyword '{}': use pair_style mlff [device cpu|cuda|auto] "
                 "[min_distance D]",
                 arg[iarg]);
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style mlff: '{}' needs a value", arg[iarg]);
    if (strcmp(arg[iarg], "min_distance") == 0) {
      min_distance = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (min_distance < 0.0) error->all(FLERR, "pair_style mlff: min_distance must be >= 0 (Å)");
      continue;
    }
    device_request = arg[iarg + 1];
    if (device_request != "cpu" && device_request != "cuda" && device_request != "auto")
      error->all(FLERR, "pair_style mlff: unknown device '{}': use cpu, cuda or auto", device_request);
  }
}

/* Overlapping atoms: the model would return a meaningless energy (or NaN forces). Stop with the
   atom IDs and the step instead (pair_style mlff min_distance D, default 0.6 Å; 0 disables). */
void PairMLFF::check_closest_pair(int i, int j, double rsq)
{
  if (rsq >= min_distance * min_distance) return;
  const tagint ti = atom->tag[i], tj = atom->tag[j];
  const double d = std::sqrt(rsq);
  if (ti == tj)
    error->one(FLERR,
               "mlff: atom ID {} is {:.3f} Å from its own periodic image at step {} (closer than "
               "min_distance {} Å): the box is too small",
               ti, d, update->ntimestep, min_distance);
  error->one(FLERR,
             "mlff: atoms ID {} and {} are {:.3f} Å apart at step {} (closer than min_distance {} Å): "
             "overlapping atoms; fix the structure, shorten the time step, or lower "
             "'pair_style mlff min_distance'",
             std::min(ti, tj), std::max(ti, tj), d, update->ntimestep, min_distance);
}

/* A model pushed far outside its data may return inf/NaN: the local atoms (graph nodes < nlocal)
   whose forces are not finite (at most 10), or an empty list. */
static std::vector<int64_t> nonfinite_rows(const torch::Tensor &forces, int64_t nlocal)
{
  const torch::Tensor bad = torch::nonzero(~torch::isfinite(forces.narrow(0, 0, nlocal)).all(1)).flatten();
  const int64_t count = std::min<int64_t>(bad.size(0), 10);
  std::vector<int64_t> rows(count);
  for (int64_t k = 0; k < count; k++) rows[k] = bad[k].item<int64_t>();
  return rows;
}

// pair_coeff * * model.pt Elem1 Elem2 ... (one element per atom type)
void PairMLFF::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style mlff needs: pair_coeff * * model.pt <one element per atom type ({} types)>",
               ntypes);
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff * * {} lists {} element(s) but the box has {} atom type(s): give exactly one "
               "element symbol per atom type, in type order",
               arg[2], narg - 3, ntypes);
  load_model(arg[2]);
  map_types(&arg[3], ntypes);
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairMLFF::load_model(const std::string &path)
{
  if (!std::ifstream(path).good())
    error->all(FLERR, "mlff model file '{}' not found or not readable: check the path given to pair_coeff",
               path);

  torch::Device device(torch::kCPU);
  if (device_request != "cpu") {
    if (!torch::cuda::is_available()) {
      if (device_request == "cuda")
        error->all(FLERR,
                   "pair_style mlff device cuda: this libtorch has no CUDA support or sees no GPU; install "
                   "a CUDA build of torch and rebuild the plugin (mlff lammps build), or use device cpu");
    } else {
      // one GPU per rank, chosen by the rank within the node
      MPI_Comm node;
      int node_rank;
      MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
      MPI_Comm_rank(node, &node_rank);
      MPI_Comm_free(&node);
      device = torch::Device(torch::kCUDA, node_rank % (int) torch::cuda::device_count());
    }
  }

  torch::jit::ExtraFilesMap extra{{"format_version", ""}, {"species", ""}, {"r_cut", ""},
                                  {"num_layers", ""},     {"dtype", ""},   {"mlff_version", ""}};
  auto loaded = std::make_unique<Model>();
  try {
    loaded->module = torch::jit::load(path, device, extra);
  } catch (const std::exception &e) {
    error->all(FLERR,
               "cannot read mlff model file '{}': it is corrupt or not a TorchScript file ({}); "
               "re-export it with `mlff deploy`",
               path, first_line(e.what()));
  }
  if (extra["format_version"].empty() || extra["species"].empty() || extra["r_cut"].empty())
    error->all(FLERR,
               "'{}' is a TorchScript file but not an mlff model (no mlff metadata): export models with "
               "mlff.deploy or `mlff deploy`",
               path);
  if (extra["format_version"] != std::to_string(MLFF_FORMAT_VERSION))
    error->all(FLERR,
               "'{}' has model-file format version {} (written by mlff {}), but this plugin reads version "
               "{}: rebuild the plugin with that mlff (mlff lammps build) or re-export the model",
               path, extra["format_version"], extra["mlff_version"], MLFF_FORMAT_VERSION);

  loaded->module.eval();
  loaded->device = device;
  loaded->path = path;
  std::istringstream species(extra["species"]);
  for (std::string s; species >> s;) loaded->species.push_back(s);
  r_cut = utils::numeric(FLERR, extra["r_cut"], false, lmp);
  num_layers = utils::inumeric(FLERR, extra["num_layers"], false, lmp);
  model = std::move(loaded);

  if (comm->me == 0)
    utils::logmesg(lmp, "mlff: loaded {} (mlff {}, {} internally, r_cut {} Å, {} layers) on {}\n", path,
                   extra["mlff_version"], extra["dtype"], r_cut, num_layers, device.str());
}

void PairMLFF::map_types(char **elements, int ntypes)
{
  const auto &species = model->species;
  std::string known;
  for (const auto &s : species) known += (known.empty() ? "" : " ") + s;
  type_to_species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    auto it = std::find(species.begin(), species.end(), std::string(elements[t - 1]));
    if (it == species.end())
      error->all(FLERR,
                 "pair_coeff: element '{}' (atom type {}) is not in the mlff model, which knows: {}; fix the "
                 "element list or use a model trained on this element",
                 elements[t - 1], t, known);
    type_to_species[t] = (int) (it - species.begin());
    if (comm->me == 0)
      utils::logmesg(lmp, "mlff: atom type {} -> {} (model species {})\n", t, elements[t - 1],
                     type_to_species[t]);
  }
}

void PairMLFF::init_style()
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlff requires 'units metal' (eV, Å, ps) but this input uses units {}",
               update->unit_style);
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style mlff requires newton_pair on (forces on ghost atoms are sent back to their "
               "owners): remove 'newton off' from the input");
  if (atom->tag_enable == 0)
    error->all(FLERR, "pair_style mlff requires atom IDs: remove 'atom_modify id no' from the input");
  if (!model) error->all(FLERR, "pair_style mlff: no model loaded; use pair_coeff * * model.pt <elements>");

  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);

  // exact message passing across ranks and periodic images: ghosts up to num_layers * r_cut
  const double shell = num_layers * r_cut + neighbor->skin;
  if (comm->cutghostuser < shell) {
    comm->cutghostuser = shell;
    if (comm->me == 0)
      utils::logmesg(lmp, "mlff: ghost cutoff set to {} Å ({} layers x {} Å + skin {} Å)\n", shell,
                     num_layers, r_cut, neighbor->skin);
  }
}

double PairMLFF::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  cutghost[i][j] = cutghost[j][i] = r_cut;
  return r_cut;
}

/* The graph the model sees. Message passing over num_layers layers reaches num_layers hops, so only
   atoms within num_layers hops of a local atom matter, and only those within num_layers - 1 hops
   need their own neighbours. Pruning the rest of LAMMPS's ghost shell by graph distance is exact
   and saves most of the work for small boxes. Locals keep their indices [0, nlocal). */
void PairMLFF::build_graph(Graph &g)
{
  double **x = atom->x;
  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  const double rcsq = r_cut * r_cut;

  // all edges within r_cut, for local and ghost centers (LAMMPS indices)
  std::vector<int> centers, neighbours;
  for (int ii = 0; ii < list->inum + list->gnum; ii++) {
    const int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq < rcsq) {
        if (i < nlocal) check_closest_pair(i, j, rsq);
        centers.push_back(i);
        neighbours.push_back(j);
      }
    }
  }

  // graph distance (hops) from the local atoms, up to num_layers
  std::vector<int> hops(ntotal, -1);
  std::fill(hops.begin(), hops.begin() + nlocal, 0);
  for (int level = 1; level <= num_layers; level++)
    for (size_t e = 0; e < centers.size(); e++)
      if (hops[centers[e]] == level - 1 && hops[neighbours[e]] < 0) hops[neighbours[e]] = level;

  g.atoms.clear();
  std::vector<int64_t> node(ntotal, -1);
  for (int i = 0; i < ntotal; i++)
    if (hops[i] >= 0) {
      node[i] = (int64_t) g.atoms.size();
      g.atoms.push_back(i);
    }
  g.edges.clear();
  std::vector<int64_t> second;
  for (size_t e = 0; e < centers.size(); e++)
    if (hops[centers[e]] >= 0 && hops[centers[e]] < num_layers) {
      g.edges.push_back(node[centers[e]]);
      second.push_back(node[neighbours[e]]);
    }
  g.nedges = (int64_t) second.size();
  g.edges.insert(g.edges.end(), second.begin(), second.end());    // (2, E) row-major

  g.positions.resize(3 * g.atoms.size());
  g.species.resize(g.atoms.size());
  for (size_t n = 0; n < g.atoms.size(); n++) {
    for (int k = 0; k < 3; k++) g.positions[3 * n + k] = x[g.atoms[n]][k];
    g.species[n] = type_to_species[atom->type[g.atoms[n]]];
  }
}

void PairMLFF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal;
  if (nlocal == 0) return;    // an empty subdomain owns no energy, so it exerts no force

  // ---- build tensors (moved to the model's device once per step; a no-op on the CPU)
  Graph g;
  build_graph(g);
  const int64_t natoms = (int64_t) g.atoms.size();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const torch::Device device = model->device;
  std::vector<torch::jit::IValue> inputs{
      torch::from_blob(g.positions.data(), {natoms, 3}, f64).to(device),
      torch::from_blob(g.edges.data(), {2, g.nedges}, i64).to(device),
      torch::zeros({g.nedges, 3}, f64.device(device)),
      torch::from_blob(g.species.data(), {natoms}, i64).to(device),
      (int64_t) nlocal};

  // ---- call the model
  torch::jit::IValue output;
  try {
    // run the scripted graph as written: the JIT's optimising executor (autodiff subgraphs) keeps
    // more intermediates alive and is no faster for this model (see docs/performance.md)
    torch::jit::GraphOptimizerEnabledGuard plain_executor(false);
    output = model->module.forward(inputs);
  } catch (const std::exception &e) {
    error->one(FLERR, "mlff model evaluation failed: {}", first_line(e.what()));
  }
  const auto out = output.toGenericDict();
  auto result = [&](const char *key) { return out.at(key).toTensor().to(torch::kCPU).contiguous(); };

  // ---- scatter back: forces on local and ghost atoms, energies, virials
  const torch::Tensor forces = result("forces");
  const double energy = result("energy").item<double>();
  const std::vector<int64_t> bad = nonfinite_rows(forces, nlocal);
  if (!bad.empty() || !std::isfinite(energy) || !torch::isfinite(forces).all().item<bool>()) {
    std::string ids;
    for (int64_t row : bad) ids += " " + std::to_string(atom->tag[g.atoms[row]]);
    error->one(FLERR,
               "mlff: the model's output is not finite at step {} ({}): the structure is far outside "
               "what the model was fitted to (overlapping or exploding atoms?)",
               update->ntimestep, bad.empty() ? std::string("energy or ghost-atom forces") : "forces of atom ID(s)" + ids);
  }
  const auto F = forces.accessor<double, 2>();
  double **f = atom->f;
  for (int64_t n = 0; n < natoms; n++)
    for (int k = 0; k < 3; k++) f[g.atoms[n]][k] += F[n][k];

  if (eflag_global) eng_vdwl += energy;
  if (eflag_atom) {
    const torch::Tensor atomic_energy = result("atomic_energy");
    const auto E = atomic_energy.accessor<double, 1>();
    for (int i = 0; i < nlocal; i++) eatom[i] += E[i];
  }
  if (vflag_global) {
    const torch::Tensor w = result("virial");
    const auto W = w.accessor<double, 2>();
    virial[0] += W[0][0];
    virial[1] += W[1][1];
    virial[2] += W[2][2];
    virial[3] += 0.5 * (W[0][1] + W[1][0]);
    virial[4] += 0.5 * (W[0][2] + W[2][0]);
    virial[5] += 0.5 * (W[1][2] + W[2][1]);
  }
  if (vflag_atom || cvflag_atom) {
    const torch::Tensor atomic_virial = result("atomic_virial");
    const auto V = atomic_virial.accessor<double, 3>();
    for (int64_t n = 0; n < natoms; n++) {
      const int i = g.atoms[n];
      if (vflag_atom) {
        vatom[i][0] += V[n][0][0];
        vatom[i][1] += V[n][1][1];
        vatom[i][2] += V[n][2][2];
        vatom[i][3] += 0.5 * (V[n][0][1] + V[n][1][0]);
        vatom[i][4] += 0.5 * (V[n][0][2] + V[n][2][0]);
        vatom[i][5] += 0.5 * (V[n][1][2] + V[n][2][1]);
      }
      if (cvflag_atom) {    // full 3x3: xx yy zz xy xz yz yx zx zy
        cvatom[i][0] += V[n][0][0];
        cvatom[i][1] += V[n][1][1];
        cvatom[i][2] += V[n][2][2];
        cvatom[i][3] += V[n][0][1];
        cvatom[i][4] += V[n][0][2];
        cvatom[i][5] += V[n][1][2];
        cvatom[i][6] += V[n][1][0];
        cvatom[i][7] += V[n][2][0];
        cvatom[i][8] += V[n][2][1];
      }
    }
  }
}
