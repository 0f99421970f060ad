/* pair_style mlff: an mlff model file evaluated on local + ghost atoms with libtorch.

   compute() = build the graph (pair_mlff_graph.cpp: one cutoff of ghosts for the halo exchange,
               num_layers cutoffs for the halo shell)
             -> call the model (pair_mlff_model.cpp: layer by layer with feature exchanges, or one
                call of its forward, docs/model-file.md)
             -> scatter energy, forces (ghosts included; newton on sends them home) and virials. */

#include "pair_mlff_model.h"

#include "blas_binding.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "exceptions.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/cuda.h>

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

PairMLFF::PairMLFF(LAMMPS *lmp) :
    Pair(lmp), device_request("cpu"), halo_request("auto"), exchange(false), r_cut(0.0), num_layers(0),
    min_distance(0.6), comm_width(0)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  ghostneigh = 1;                  // halo shell: message passing needs the ghosts' neighbours
  no_virial_fdotr_compute = 1;     // the model returns the exact virial
  centroidstressflag = CENTROID_AVAIL;
  nextra = NDEVIATIONS;            // the committee's spread, for compute pair
  pvector = new double[nextra];
  for (int k = 0; k < nextra; k++) pvector[k] = 0.0;
  tune_allocator();
  const char *timing_env = std::getenv("MLFF_TIMING");
  timing = timing_env && std::strcmp(timing_env, "0") != 0 && timing_env[0] != '\0';
  const BlasBinding blas = rebind_torch_blas();
  // an internal detail a user need not see on every run; MLFF_VERBOSE=1 reports it
  const char *verbose_env = std::getenv("MLFF_VERBOSE");
  const bool verbose = verbose_env && std::strcmp(verbose_env, "0") != 0 && verbose_env[0] != '\0';
  if (verbose && blas.rebound > 0 && comm->me == 0)
    utils::logmesg(lmp,
                   "mlff: bound {} of libtorch's BLAS calls (e.g. {}) back to libtorch's own BLAS; LAMMPS's "
                   "reference BLAS had taken them over (MLFF_KEEP_BLAS_BINDING=1 keeps it)\n",
                   blas.rebound, blas.example);
}

PairMLFF::~PairMLFF()
{
  delete[] pvector;
  if (out_file) fclose(out_file);
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

static const char *USAGE = "pair_style mlff [device cpu|cuda|auto] [min_distance D] [halo exchange|shell] "
                            "[graph host|device|cells|auto] [compiled yes|no|auto] [chunk N|auto] [committee_every N] [relative L] [out_file FILE]";

void PairMLFF::settings(int narg, char **arg)
{
  device_request = "cpu";
  halo_request = "auto";
  graph_request = "auto";
  min_distance = 0.6;
  committee_every = 1;
  chunk_atoms = CHUNK_AUTO;
  compiled_request = "auto";
  relative_level = 1.0;
  out_path.clear();
  if (out_file) {    // a new pair_style command: a new out_file (or none)
    fclose(out_file);
    out_file = nullptr;
  }
  for (int iarg = 0; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (key != "device" && key != "min_distance" && key != "halo" && key != "graph" && key != "committee_every" &&
        key != "relative" && key != "out_file" && key != "chunk" && key != "compiled")
      error->all(FLERR, "Unknown pair_style mlff keyword '{}': use {}", key, USAGE);
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style mlff: '{}' needs a value ({})", key, USAGE);
    const std::string value = arg[iarg + 1];
    if (key == "compiled") {
      if (value != "yes" && value != "no" && value != "auto")
        error->all(FLERR,
                   "pair_style mlff: compiled must be yes (the layers `mlff lammps compile model.pt` built on "
                   "this machine), no (TorchScript) or auto (compiled where built), not '{}'",
                   value);
      compiled_request = value;
    } else if (key == "chunk") {
      chunk_atoms = value == "auto" ? CHUNK_AUTO : utils::inumeric(FLERR, value, false, lmp);
      if (chunk_atoms < 0 && value != "auto")
        error->all(FLERR, "pair_style mlff: chunk must be auto (whole layers, chunks where they do not fit), 0 "
                          "(whole layers) or a number of atoms per chunk, not {}", value);
    } else if (key == "committee_every") {
      committee_every = utils::inumeric(FLERR, value, false, lmp);
      if (committee_every < 1)
        error->all(FLERR, "pair_style mlff: committee_every must be >= 1 (steps between committee evaluations)");
    } else if (key == "relative") {
      relative_level = utils::numeric(FLERR, value, false, lmp);
      if (relative_level <= 0.0)
        error->all(FLERR, "pair_style mlff: relative must be > 0 (eV/Å, added to the force norm)");
    } else if (key == "out_file") {
      out_path = value;
    } else if (key == "min_distance") {
      min_distance = utils::numeric(FLERR, value, false, lmp);
      if (min_distance < 0.0) error->all(FLERR, "pair_style mlff: min_distance must be >= 0 (Å)");
    } else if (key == "halo") {
      if (value != "exchange" && value != "shell")
        error->all(FLERR,
                   "pair_style mlff: unknown halo mode '{}': use 'halo exchange' (ghost features sent "
                   "between layers) or 'halo shell' (ghosts recomputed)",
                   value);
      halo_request = value;
    } else if (key == "graph") {
      if (value != "host" && value != "device" && value != "cells" && value != "auto")
        error->all(FLERR,
                   "pair_style mlff: unknown graph mode '{}': use 'graph device' (LAMMPS's neighbour list kept "
                   "on the model's device between re-neighbourings), 'graph cells' (found there by a cell list, "
                   "no LAMMPS list), 'graph host' (built on the host every step) or 'graph auto'",
                   value);
      graph_request = value;
    } else {
      device_request = value;
      if (device_request != "cpu" && device_request != "cuda" && device_request != "auto")
        error->all(FLERR, "pair_style mlff: unknown device '{}': use cpu, cuda or auto", value);
    }
  }
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

// pair_coeff * * model.pt [more.pt ...] Elem1 Elem2 ... (model files, then one element per atom type)
void PairMLFF::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style mlff needs: pair_coeff * * model.pt <one element per atom type ({} types)>",
               ntypes);
  const int nmodels = narg - 2 - ntypes;
  if (nmodels < 1)
    error->all(FLERR,
               "pair_coeff * * {} lists {} element(s) but the box has {} atom type(s): give exactly one "
               "element symbol per atom type, in type order",
               arg[2], narg - 3, ntypes);
  model = load_model(arg[2]);
  r_cut = model->r_cut;
  num_layers = model->num_layers;
  committee.clear();
  for (int k = 1; k < nmodels; k++) {
    committee.push_back(load_model(arg[2 + k]));
    check_member(*committee.back());
    num_layers = std::max(num_layers, committee.back()->num_layers);
  }
  if (!committee.empty() && comm->me == 0)
    utils::logmesg(lmp, "mlff: committee of {} models: {} drives the dynamics; the others run every {} step(s)\n",
                   nmodels, model->path, committee_every);
  map_types(&arg[2 + nmodels], ntypes);
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

std::unique_ptr<PairMLFF::Model> PairMLFF::load_model(const std::string &path)
{
  if (!std::ifstream(path).good())
    error->all(FLERR,
               "mlff model file '{}' not found or not readable: check the path given to pair_coeff (pair_coeff "
               "* * model.pt [more model files for a committee], then one element per atom type: the box has {})",
               path, atom->ntypes);

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

  torch::jit::ExtraFilesMap extra{{"format_version", ""}, {"species", ""},      {"r_cut", ""},
                                  {"num_layers", ""},     {"dtype", ""},        {"mlff_version", ""},
                                  {"capabilities", ""}};
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
  // what the file can do: its declared capabilities (space-separated); files exported before the
  // declaration existed are probed for the halo methods instead
  if (!extra["capabilities"].empty()) {
    std::istringstream declared(extra["capabilities"]);
    for (std::string c; declared >> c;) {
      loaded->has_halo = loaded->has_halo || c == "halo_exchange";
      loaded->has_chunked = loaded->has_chunked || c == "chunked";
      loaded->has_edge_gradients = loaded->has_edge_gradients || c == "edge_gradients";
      loaded->has_last_layer_chunked = loaded->has_last_layer_chunked || c == "last_layer_chunked";
    }
    if (loaded->has_edge_gradients && !loaded->module.find_method("halo_edge_gradients").has_value())
      error->all(FLERR,
                 "'{}' declares the capability edge_gradients but has no halo_edge_gradients method: the file is "
                 "corrupt; re-export it with `mlff deploy`",
                 path);
    if (loaded->has_last_layer_chunked && !loaded->module.find_method("halo_last_layer_chunked").has_value())
      error->all(FLERR,
                 "'{}' declares the capability last_layer_chunked but has no halo_last_layer_chunked method: the file "
                 "is corrupt; re-export it with `mlff deploy`",
                 path);
    if (loaded->has_chunked && !loaded->module.find_method("halo_layer_grad").has_value())
      error->all(FLERR,
                 "'{}' declares the capability chunked but has no chunked methods: the file is corrupt; "
                 "re-export it with `mlff deploy`",
                 path);
    if (loaded->has_halo && !loaded->module.find_method("halo_layer").has_value())
      error->all(FLERR,
                 "'{}' declares the capability halo_exchange but has no halo methods: the file is corrupt; "
                 "re-export it with `mlff deploy`",
                 path);
  } else {
    loaded->has_halo = loaded->module.find_method("halo_layer").has_value();
  }
  if (loaded->has_halo) loaded->feature_dim = (int) loaded->module.run_method("halo_feature_dim").toInt();
  std::istringstream species(extra["species"]);
  for (std::string s; species >> s;) loaded->species.push_back(s);
  loaded->r_cut = utils::numeric(FLERR, extra["r_cut"], false, lmp);
  loaded->num_layers = utils::inumeric(FLERR, extra["num_layers"], false, lmp);

  if (comm->me == 0)
    utils::logmesg(lmp, "mlff: loaded {} (mlff {}, {} internally, r_cut {} Å, {} layers) on {}\n", path,
                   extra["mlff_version"], extra["dtype"], loaded->r_cut, loaded->num_layers, device.str());
  if (loaded->has_halo) load_compiled(*loaded);
  return loaded;
}

/* A committee shares one graph: its members need the first model's species (in its order) and cutoff. */
void PairMLFF::check_member(const Model &member)
{
  std::string first, other;
  for (const auto &s : model->species) first += " " + s;
  for (const auto &s : member.species) other += " " + s;
  if (member.species != model->species || member.r_cut != model->r_cut)
    error->all(FLERR,
               "pair_coeff: committee member '{}' has species{} and r_cut {} Å, but '{}' has species{} and r_cut "
               "{} Å: a committee needs models of the same species and cutoff (e.g. trained with different seeds)",
               member.path, other, member.r_cut, model->path, first, model->r_cut);
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

  // halo exchange (one cutoff of ghosts, features exchanged after each layer) where the model file
  // has it; halo shell (num_layers cutoffs of ghosts, recomputed) otherwise or on request
  bool all_halo = true;
  comm_width = std::max(model->feature_dim, 1);
  for (const auto *m : members()) {
    if (halo_request == "exchange" && !m->has_halo)
      error->all(FLERR,
                 "pair_style mlff halo exchange: '{}' cannot run layer by layer (its capabilities lack "
                 "halo_exchange: an older mlff wrote it); re-export it (mlff deploy {} -o new.pt) or use "
                 "'halo shell'",
                 m->path, m->path);
    if (chunk_atoms > 0 && !m->has_chunked)
      error->all(FLERR,
                 "pair_style mlff chunk: '{}' cannot evaluate in chunks of atoms (an older mlff wrote it); "
                 "re-export it (mlff deploy {} -o new.pt) or remove 'chunk'",
                 m->path, m->path);
    all_halo = all_halo && m->has_halo;
    comm_width = std::max(comm_width, m->feature_dim);
  }
  exchange = all_halo && halo_request != "shell";
  if ((graph_request == "device" || graph_request == "cells") && !exchange)
    error->all(FLERR, "pair_style mlff graph {} needs halo exchange (the halo shell's graph is built on the "
                      "host): use 'halo exchange' or 'graph host'", graph_request);
  cells = exchange && graph_request == "cells";
  resident = cells || (exchange && (graph_request == "device" || (graph_request == "auto" && model->device.is_cuda())));
  if (compiled_request == "yes") {
    if (!exchange)
      error->all(FLERR, "pair_style mlff compiled yes: the compiled layers run in the halo exchange; remove 'halo "
                        "shell' or use 'compiled no'");
    if (chunk_atoms > 0)
      error->all(FLERR, "pair_style mlff compiled yes runs whole layers and chunk N bounds memory by splitting "
                        "them: use one of the two");
    for (const auto *m : members())    // per rank: each rank reads its own cache (error->one)
      if (m->layer_forward.empty())
        error->one(FLERR,
                   "pair_style mlff compiled yes: this machine has no compiled layers of '{}' for {}: run `mlff "
                   "lammps compile {} --device {}` first (minutes, once), or use 'compiled auto' or 'compiled no'",
                   m->path, m->device.is_cuda() ? "cuda" : "cpu", m->path, m->device.is_cuda() ? "cuda" : "cpu");
  }
  use_compiled = false;    // where some model has compiled layers loaded (load_compiled)
  for (const auto *m : members()) use_compiled = use_compiled || !m->layer_forward.empty();
  use_compiled = use_compiled && compiled_request != "no" && exchange && chunk_atoms <= 0;
  kept.reset();    // a new run: the candidates are built anew at its first step
  kept_step = -1;
  // the committee's forces on ghosts go home in one reverse comm: 3 values per member
  const int committee_width = committee.empty() ? 0 : 3 * (int) (committee.size() + 1);
  if (!out_path.empty() && !out_file && comm->me == 0) {
    out_file = fopen(out_path.c_str(), "w");
    if (!out_file)
      error->one(FLERR, "pair_style mlff: cannot write out_file '{}': check the folder exists and is writable",
                 out_path);
    fprintf(out_file, "# step max_devi_f min_devi_f avg_devi_f devi_e max_devi_f_relative "
                      "(eV/Å, eV/Å, eV/Å, eV, 1; relative = deviation / (|mean force| + %g eV/Å))\n",
            relative_level);
    fflush(out_file);
  }
  if (exchange) {
    ghostneigh = 0;
    comm_forward = std::max(comm_width, 2);    // update_owners sends (rank, index)
    comm_reverse = std::max(comm_forward, committee_width);
    share_comm_sizes();
    if (!cells) neighbor->add_request(this, NeighConst::REQ_FULL);    // graph cells needs none
    if (comm->me == 0)
      utils::logmesg(lmp, "mlff: halo exchange: ghosts within {} Å, {} features per atom exchanged between "
                     "layers; graph built on the {}\n", r_cut + neighbor->skin, model->feature_dim,
                     cells ? "device by a cell list once per re-neighbouring"
                           : resident ? "device once per re-neighbouring" : "host every step");
    return;
  }
  ghostneigh = 1;
  comm_forward = 0;
  comm_reverse = committee_width;
  share_comm_sizes();
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);

  // exact message passing across ranks and periodic images: ghosts up to num_layers * r_cut
  const double shell = num_layers * r_cut + neighbor->skin;
  if (comm->cutghostuser < shell) {
    comm->cutghostuser = shell;
    if (comm->me == 0)
      utils::logmesg(lmp, "mlff: halo shell: ghost cutoff set to {} Å ({} layers x {} Å + skin {} Å)\n", shell,
                     num_layers, r_cut, neighbor->skin);
  }
}

/* Inside pair_style hybrid/overlay, LAMMPS sizes its communication buffers from the hybrid's
   comm_forward/comm_reverse, which the hybrid takes from its sub-styles when the pair_style command is
   read, before pair_coeff loads the model whose feature width sets ours. Raise the parent's sizes to
   ours (Comm is initialised after the pair styles), or the per-layer exchange overruns the buffers. */
void PairMLFF::share_comm_sizes()
{
  Pair *parent = force->pair;
  if (parent == nullptr || parent == this) return;
  parent->comm_forward = std::max(parent->comm_forward, comm_forward);
  parent->comm_reverse = std::max(parent->comm_reverse, comm_reverse);
}

double PairMLFF::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  cutghost[i][j] = cutghost[j][i] = r_cut;
  return r_cut;
}

void PairMLFF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal;
  if (nlocal == 0) {    // an empty subdomain owns no energy, so it exerts no force
    if (exchange) update_owners();
    Graph empty;
    Result none;
    evaluate(*model, empty, none);    // its part in the exchanges and reductions
    if (committee_due()) evaluate_committee(empty, none);
    return;
  }

  Graph host_graph;
  Graph &g = resident ? kept_graph : host_graph;
  Result r;
  if (timing) {
    synchronize_device();
    phase_mark = std::chrono::steady_clock::now();
    timed_calls++;
  }
  if (exchange) {
    if (update_owners()) {
      const torch::Tensor rows = torch::tensor(std::vector<int64_t>(senders.begin(), senders.end()),
                                               torch::TensorOptions().dtype(torch::kInt64));
      for (auto *m : members()) m->senders = rows.to(m->device);
    }
    if (resident) {
      try {
        build_resident_graph();
      } catch (const LAMMPSException &) {    // overlapping atoms: LAMMPS's own error, as it is
        throw;
      } catch (const std::exception &e) {
        if (out_of_memory(e.what()))
          error->one(FLERR, "mlff: out of {} memory selecting the edges of {} local and {} ghost atoms on the "
                     "device ({}): use 'graph host' in pair_style mlff (the host selects them and only they go up), "
                     "or spread the atoms over more ranks and GPUs", model->device.str(), nlocal,
                     (int64_t) kept_graph.atoms.size() - nlocal, error_line(e.what()));
        error->one(FLERR, "mlff: selecting the edges on {} failed: {}", model->device.str(), error_line(e.what()));
      }
    } else
      build_halo_graph(g);
  } else
    build_shell_graph(g);
  phase_end(GRAPH);
  evaluate(*model, g, r);
  scatter_back(g, r);
  phase_end(SCATTER);
  if (committee_due()) evaluate_committee(g, r);
}

void PairMLFF::synchronize_device()
{
  if (model && model->device.is_cuda()) torch::cuda::synchronize(model->device.index());
}

void PairMLFF::phase_end(Phase phase)
{
  if (!timing) return;
  synchronize_device();
  const auto now = std::chrono::steady_clock::now();
  phase_seconds[phase] += std::chrono::duration<double>(now - phase_mark).count();
  phase_mark = now;
}

/* MLFF_TIMING=1: ms per step in each phase, the mean and the maximum over ranks; then reset. */
void PairMLFF::finish()
{
  if (use_compiled) {    // collective, as the timing's reductions: every rank, idle ones too
    long counts[2] = {compiled_calls, halo_calls}, total[2] = {0, 0};
    MPI_Allreduce(counts, total, 2, MPI_LONG, MPI_SUM, world);
    if (comm->me == 0 && total[1] > 0)
      utils::logmesg(lmp, "mlff: compiled layers ran {} of {} model evaluations (all ranks){}\n", total[0], total[1],
                     total[0] < total[1] ? "; the others ran TorchScript (fewer than 2 local atoms, edges or "
                                           "neighbours per atom, or no compiled layers for that model)"
                                         : "");
    compiled_calls = halo_calls = 0;
  }
  if (!timing) return;    // every rank takes part in the reductions, idle ones too
  static const char *names[NPHASES] = {"graph", "upload", "model", "exchange", "download", "scatter"};
  double mean[NPHASES], most[NPHASES];
  long steps = 0;
  MPI_Allreduce(&timed_calls, &steps, 1, MPI_LONG, MPI_MAX, world);
  for (int k = 0; k < NPHASES; k++) phase_seconds[k] *= 1e3 / (double) std::max(1L, steps);
  MPI_Allreduce(phase_seconds, mean, NPHASES, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(phase_seconds, most, NPHASES, MPI_DOUBLE, MPI_MAX, world);
  if (comm->me == 0 && steps > 0) {
    std::string line = fmt::format("mlff timing, ms per step over {} steps (mean/max over {} ranks):", steps,
                                   comm->nprocs);
    for (int k = 0; k < NPHASES; k++) line += fmt::format(" {} {:.2f}/{:.2f}", names[k], mean[k] / comm->nprocs, most[k]);
    utils::logmesg(lmp, line + "\n");
  }
  for (int k = 0; k < NPHASES; k++) phase_seconds[k] = 0.0;
  timed_calls = 0;
}

/* energy, forces on local and ghost atoms, virials: into LAMMPS's arrays */
void PairMLFF::scatter_back(const Graph &g, const Result &r)
{
  const int nlocal = atom->nlocal;
  const int64_t natoms = (int64_t) g.atoms.size();
  const torch::Tensor &forces = r.forces;
  const double energy = r.energy.item<double>();
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
    const auto E = r.atomic_energy.accessor<double, 1>();
    for (int i = 0; i < nlocal; i++) eatom[i] += E[i];
  }
  if (vflag_global) {
    const auto W = r.virial.accessor<double, 2>();
    virial[0] += W[0][0];
    virial[1] += W[1][1];
    virial[2] += W[2][2];
    virial[3] += 0.5 * (W[0][1] + W[1][0]);
    virial[4] += 0.5 * (W[0][2] + W[2][0]);
    virial[5] += 0.5 * (W[1][2] + W[2][1]);
  }
  if (vflag_atom || cvflag_atom) {
    const auto V = r.atomic_virial.accessor<double, 3>();
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
