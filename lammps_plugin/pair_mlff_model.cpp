/* pair_style mlff: calling the model, in either halo mode (see pair_mlff.h). Both fill a Result
   with float64 CPU tensors on the graph's nodes; pair_mlff.cpp scatters it back into LAMMPS. */

#include "pair_mlff_model.h"

#include "compiled_cache.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "exceptions.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <sstream>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/headeronly/version.h>

using namespace LAMMPS_NS;

namespace {

const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
const auto i64 = torch::TensorOptions().dtype(torch::kInt64);

torch::Tensor on_cpu(const torch::Tensor &t)
{
  return t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
}

/* |x_b[j] - x_a[i]|^2 for each pair (i[e], j[e]), from positions stored by component (3, n):
   flat gathers and products, no reduction over rows of 3 */
torch::Tensor squared_distances(const torch::Tensor &xyz_a, const torch::Tensor &i, const torch::Tensor &xyz_b,
                                const torch::Tensor &j)
{
  torch::Tensor rsq;
  for (int k = 0; k < 3; k++) {
    const torch::Tensor d = xyz_b[k].index_select(0, j) - xyz_a[k].index_select(0, i);
    rsq = k == 0 ? d * d : rsq.addcmul_(d, d);
  }
  return rsq;
}

}    // namespace

std::string LAMMPS_NS::error_line(const char *text)
{
  const std::string s(text);
  std::string line = first_line(text);
  if (s.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    std::istringstream lines(s);
    std::string last;
    for (std::string l; std::getline(lines, l);)
      if (l.find("Error: ") != std::string::npos && l.find_first_of(" \t") != 0) last = l;
    if (!last.empty()) line = last.substr(last.find("Error: ") + 7);
  }
  const std::string check = "err == 0. ";    // c10's "[enforce fail at FILE:LINE] err == 0. " prefix
  if (line.rfind("[enforce fail", 0) == 0 && line.find(check) != std::string::npos)
    line = line.substr(line.find(check) + check.size());
  return line;
}

bool LAMMPS_NS::out_of_memory(const char *text)
{
  const std::string s(text);
  for (const char *marker : {"out of memory", "can't allocate memory", "not enough memory", "std::bad_alloc"})
    if (s.find(marker) != std::string::npos) return true;
  return false;
}

/* The model's compiled layers, where this machine built them for its device (`mlff lammps compile`;
   the folder is found from the file's content, see compiled_cache.h). Absent: TorchScript runs. */
void PairMLFF::load_compiled(Model &m)
{
  if (compiled_request == "no") return;
  const std::string kind = m.device.is_cuda() ? "cuda" : "cpu";
  const std::string torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
      "." + std::to_string(TORCH_VERSION_PATCH);
  const std::string folder = mlff_cache::compiled_folder(m.path, kind, torch_version);
  const auto manifest = mlff_cache::read_manifest(folder);
  if (manifest.empty()) {
    if (comm->me == 0)
      utils::logmesg(lmp, "mlff: {} runs its layers as TorchScript: `mlff lammps compile {}{}` builds compiled "
                     "ones for this machine (once), which pair_style mlff then uses\n",
                     m.path, m.path, kind == "cuda" ? " --device cuda" : "");
    return;
  }
  auto entry = [&](const char *key) {
    const auto it = manifest.find(key);
    return it == manifest.end() ? std::string() : it->second;
  };
  if (entry("protocol") != std::to_string(mlff_cache::PROTOCOL) || entry("num_layers") != std::to_string(m.num_layers))
    error->one(FLERR, "the compiled layers in {} do not match '{}' (protocol {}, {} layers): delete the folder and "
               "run `mlff lammps compile {}` again", folder, m.path, entry("protocol"), entry("num_layers"), m.path);
  if (compiled_request == "auto" && entry("faster") != "yes") {
    if (comm->me == 0)
      utils::logmesg(lmp, "mlff: {} runs its layers as TorchScript: its compiled layers ran at {}x TorchScript's "
                     "speed when `mlff lammps compile` timed them here (atoms:ratio {}{}; 'compiled yes' runs them "
                     "all the same)\n",
                     m.path, entry("speedup"), entry("speedups"),
                     entry("margin").empty() ? "" : "; compiled auto runs them from " + entry("margin") + "x");
    return;
  }
  try {
    const c10::DeviceIndex index = m.device.is_cuda() ? m.device.index() : -1;
    for (int k = 0; k < m.num_layers; k++) {
      for (const char *pass : {"forward", "backward"}) {
        const std::string package = folder + "/layer" + std::to_string(k) + "_" + pass + ".pt2";
        auto loader = std::make_unique<Model::Compiled>(package, "model", false, 1, index);
        (std::string(pass) == "forward" ? m.layer_forward : m.layer_backward).push_back(std::move(loader));
      }
    }
  } catch (const std::exception &e) {
    error->one(FLERR, "cannot load the compiled layers in {} ({}): delete the folder and run `mlff lammps compile "
               "{}` again, or use 'compiled no'", folder, first_line(e.what()), m.path);
  }
  m.compiled_folder = folder;
  if (comm->me == 0)
    utils::logmesg(lmp, "mlff: {} runs the compiled layers built on this machine for {} ({})\n", m.path, kind, folder);
}

void PairMLFF::parallel_over(int n, const std::function<void(int, int)> &fn)
{
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) { fn((int) begin, (int) end); });
}

/* graph cells: the candidate edges (pairs within r_cut + skin, local centers) found on the model's
   device from the positions of every local and ghost atom, when LAMMPS has rebuilt its ghosts. The
   atoms are binned over their bounding box in bins at least half of r_cut + skin thick (fewer,
   thicker ones where the box is mostly empty), and each local atom is compared with the atoms of
   the 5 x 5 x 5 bins around it (half-width bins compare about 0.6x the pairs of full-width ones),
   MAX_CELL_PAIRS slots of the bins at once, each bin counted as full as the fullest (the empty
   slots are dropped before any distance is computed). The candidates come out sorted by center;
   the ghosts they reach become nodes nlocal, nlocal + 1, ... in the order of their LAMMPS indices,
   and only that list (one index per ghost node) comes back to the host, for the exchange and the
   scatter-back. */
static constexpr int64_t MAX_CELL_PAIRS = int64_t(1) << 22;    // ~200 MB of indices and distances

void PairMLFF::find_cell_candidates(Graph &g)
{
  const torch::Device device = model->device;
  const int64_t nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  const double cut = r_cut + neighbor->skin;
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::from_blob(atom->x[0], {nall, 3}, f64).to(device, false, true);
  const torch::Tensor low = std::get<0>(x.min(0)), span = std::get<0>(x.max(0)) - low;
  const torch::Tensor span_host = span.cpu();
  int64_t nb[3];
  for (int k = 0; k < 3; k++)
    nb[k] = std::max<int64_t>(1, (int64_t) std::floor(std::min(2.0 * span_host[k].item<double>() / cut, 1e6)));
  while (nb[0] * nb[1] * nb[2] > 8 * nall + 1024) {    // thicker bins still hold every pair within cut
    int64_t &widest = nb[std::max_element(nb, nb + 3) - nb];
    widest = (widest + 1) / 2;
  }
  const int64_t nbins = nb[0] * nb[1] * nb[2];
  const torch::Tensor bins = torch::tensor({nb[0], nb[1], nb[2]}, i64).to(device);
  const torch::Tensor scaled = torch::where(span > 0, (x - low) / span.clamp_min(1e-300), torch::zeros_like(x));
  const torch::Tensor bin = torch::minimum((scaled * bins.to(torch::kFloat64)).floor().to(torch::kInt64), bins - 1);
  const torch::Tensor linear = (bin.select(1, 0) * nb[1] + bin.select(1, 1)) * nb[2] + bin.select(1, 2);

  // the atoms in bin order: bin b's atoms are rows [starts[b], starts[b] + counts[b]) of the sorted
  // positions; the last bin (nbins) is the empty one that offsets outside the grid look in
  const torch::Tensor order = linear.argsort();
  const torch::Tensor counts = torch::cat({torch::bincount(linear, {}, nbins), torch::zeros({1}, i64.device(device))});
  const int64_t slots = std::max<int64_t>(1, counts.max().item<int64_t>());
  const torch::Tensor starts = counts.cumsum(0) - counts;
  // positions by component (3, n), for squared_distances
  const torch::Tensor sorted_x = x.index_select(0, order).t().contiguous();
  const torch::Tensor local_x = x.narrow(0, 0, nlocal).t().contiguous();

  std::vector<int64_t> around;
  for (int a = -2; a <= 2; a++)
    for (int b = -2; b <= 2; b++)
      for (int c = -2; c <= 2; c++) around.insert(around.end(), {a, b, c});
  const int64_t noffsets = (int64_t) around.size() / 3;
  const torch::Tensor offsets = torch::from_blob(around.data(), {noffsets, 3}, i64).to(device, false, true);
  const torch::Tensor slot = torch::arange(slots, i64.device(device));
  const double cutsq = cut * cut;
  const int64_t chunk = std::max<int64_t>(1, MAX_CELL_PAIRS / (noffsets * slots));
  std::vector<torch::Tensor> centers, neighbours;
  for (int64_t start = 0; start < nlocal; start += chunk) {
    const int64_t n = std::min(chunk, nlocal - start);
    const torch::Tensor i = torch::arange(start, start + n, i64.device(device));
    const torch::Tensor cell = bin.narrow(0, start, n).unsqueeze(1) + offsets;    // (n, noffsets, 3)
    const torch::Tensor inside = ((cell >= 0) & (cell < bins)).all(-1);
    const torch::Tensor key = (cell.select(2, 0) * nb[1] + cell.select(2, 1)) * nb[2] + cell.select(2, 2);
    const torch::Tensor rows = torch::where(inside, key, nbins).flatten();
    // the occupied slots of the 125 bins around each atom: their rows of the sorted positions (in
    // the order of a padded table of the bins' atoms, without its padding) and their centres
    const torch::Tensor valid = slot < counts.index_select(0, rows).view({n, noffsets, 1});
    const torch::Tensor sorted_j = (starts.index_select(0, rows).view({n, noffsets, 1}) + slot).masked_select(valid);
    const torch::Tensor center = torch::repeat_interleave(i, valid.view({n, -1}).sum(1), 0, sorted_j.size(0));
    const torch::Tensor rsq = squared_distances(local_x, center, sorted_x, sorted_j);
    const torch::Tensor j = order.index_select(0, sorted_j);
    const torch::Tensor keep = (rsq < cutsq) & (j != center);
    centers.push_back(center.masked_select(keep));
    neighbours.push_back(j.masked_select(keep));
  }
  const torch::Tensor center = nlocal ? torch::cat(centers) : torch::zeros({0}, i64.device(device));
  const torch::Tensor neighbour = nlocal ? torch::cat(neighbours) : torch::zeros({0}, i64.device(device));

  // nodes: locals keep their index, the ghosts reached follow in the order of their LAMMPS index
  torch::Tensor reached = torch::zeros({nall}, torch::TensorOptions().dtype(torch::kBool).device(device));
  reached.index_fill_(0, neighbour, true);
  const torch::Tensor ghosts = reached.narrow(0, nlocal, nall - nlocal).nonzero().flatten() + nlocal;
  torch::Tensor node = torch::full({nall}, -1, i64.device(device));
  node.narrow(0, 0, nlocal).copy_(torch::arange(nlocal, i64.device(device)));
  node.index_copy_(0, ghosts, torch::arange(nlocal, nlocal + ghosts.size(0), i64.device(device)));
  kept->center = center;
  kept->neighbour = node.index_select(0, neighbour);

  const torch::Tensor ghosts_host = ghosts.to(torch::kCPU).contiguous();
  const int64_t *ghost = ghosts_host.data_ptr<int64_t>();
  g.atoms.resize(nlocal + ghosts_host.size(0));
  for (int64_t n = 0; n < nlocal; n++) g.atoms[n] = (int) n;
  for (int64_t n = 0; n < ghosts_host.size(0); n++) g.atoms[nlocal + n] = (int) ghost[n];
  g.edges.clear();    // the candidates stay on the device
  g.nedges = 0;
  fill_positions(g);
  split_ghosts(g);
}

/* graph device: at the first step after LAMMPS rebuilt its lists, the candidate graph (every pair of
   the list) and its node lists go up (graph cells: they are found on the device); every step, the
   nodes' positions and species go up and the edges within r_cut are selected on the device, in the
   candidates' order (graph device: the host graph's order, same edges, same sums). One
   synchronisation: the number of edges kept (and, with min_distance, the closest pair, read in the
   same copy). */
void PairMLFF::build_resident_graph()
{
  Graph &g = kept_graph;
  const torch::Device device = model->device;
  auto up = [&](std::vector<int64_t> &v) {
    return torch::from_blob(v.data(), {(int64_t) v.size()}, i64).to(device, /*non_blocking=*/false, /*copy=*/true);
  };
  if (!kept || kept_step != owners_step) {
    kept = std::make_unique<Resident>();
    kept->device = device;
    if (cells)
      find_cell_candidates(g);
    else {
      build_halo_graph(g, /*candidates=*/true);
      const torch::Tensor pairs = torch::from_blob(g.edges.data(), {2, g.nedges}, i64).to(device, false, true);
      kept->center = pairs[0];
      kept->neighbour = pairs[1];
      std::vector<int64_t>().swap(g.edges);    // on the device from now on
    }
    kept->self_nodes = up(g.self_nodes);
    kept->self_owner = up(g.self_owner);
    kept->remote_nodes = up(g.remote_nodes);
    kept_step = owners_step;
  } else
    fill_positions(g);
  const int64_t natoms = (int64_t) g.atoms.size();
  kept->positions = torch::from_blob(g.positions.data(), {natoms, 3}, f64).to(device, false, true);
  kept->species = up(g.species);

  torch::NoGradGuard no_grad;
  const torch::Tensor xyz = kept->positions.t().contiguous();
  const torch::Tensor rsq = squared_distances(xyz, kept->center, xyz, kept->neighbour);
  const torch::Tensor keep = torch::nonzero(rsq < r_cut * r_cut).flatten();
  kept->edges = torch::stack({kept->center.index_select(0, keep), kept->neighbour.index_select(0, keep)});
  if (min_distance <= 0.0 || keep.size(0) == 0) return;
  const torch::Tensor kept_rsq = rsq.index_select(0, keep);
  const torch::Tensor k = kept_rsq.argmin().unsqueeze(0);
  const torch::Tensor closest = torch::cat({kept_rsq.index_select(0, k),
                                            kept->edges.index_select(1, k).flatten().to(torch::kFloat64)})
                                    .cpu();
  const double closest_rsq = closest[0].item<double>();
  if (closest_rsq >= min_distance * min_distance) return;
  check_closest_pair(g.atoms[(int64_t) closest[1].item<double>()], g.atoms[(int64_t) closest[2].item<double>()],
                     closest_rsq);
}

/* One evaluation of `model` on this rank's graph (an empty graph: a rank without atoms, which still
   takes part in the exchanges). With chunk auto (the default), whole layers run until they do not
   fit: then every rank evaluates the step again, a rank that ran out of memory in chunks of the
   largest power of two below its local atoms, halved while they still do not fit, down to
   MIN_CHUNK_ATOMS; that rank keeps its chunk for later steps. With compiled auto (the default), a
   rank whose compiled layers fail (AOTInductor reports an allocation failure on a GPU only as a
   failed run) evaluates the step again with TorchScript, and keeps to it. A rank that failed
   part-way makes the exchanges its neighbours wait for with zero rows, and on several ranks one
   reduction per evaluation tells every rank whether to evaluate again (collective). */
void PairMLFF::evaluate(Model &model, Graph &g, Result &r)
{
  const bool idle = g.atoms.empty(), automatic = chunks_automatically(model);
  const bool agree = comm->nprocs > 1 && (automatic || compiled_request == "auto");    // the same on every rank
  const int64_t nlocal = atom->nlocal;
  int64_t chunk = chunk_atoms > 0 ? chunk_atoms : 0;
  if (automatic && model.chunk > 0 && nlocal > model.chunk) chunk = model.chunk;
  bool done = idle;    // this rank's results are in r (halo shell: they stand when another rank retries)
  for (;;) {
    int failed = NONE;
    std::string why;
    forward_done = reverse_done = 0;
    compiled_call = false;
    try {
      if (!done || exchange) {
        if (idle)
          idle_exchanges(model);
        else if (exchange)
          evaluate_halo(model, g, r, chunk);
        else
          evaluate_shell(model, g, r, chunk);
        done = true;
      }
    } catch (const LAMMPSException &) {    // the plugin's own errors, as they are
      throw;
    } catch (const std::exception &e) {
      const bool memory = out_of_memory(e.what());
      why = error_line(e.what());
      if (compiled_call && !memory && compiled_request == "auto") {
        model.compiled_off = true;
        failed = COMPILED;
      } else if (!memory) {
        error->one(FLERR, "mlff model evaluation failed ({}): {}", model.path, why);
      } else if (!automatic || (chunk > 0 && chunk <= MIN_CHUNK_ATOMS)) {
        no_room(model, g, why, chunk);
      } else {    // the largest power of two below the local atoms, then halves
        int64_t next = MIN_CHUNK_ATOMS;
        while (chunk == 0 && next * 2 < nlocal) next *= 2;
        chunk = model.chunk = chunk == 0 ? next : std::max(MIN_CHUNK_ATOMS, chunk / 2);
        failed = MEMORY;
      }
      done = false;
      if (exchange) idle_exchanges(model);    // the exchanges the other ranks wait for
    }
    int any = failed;
    if (agree) MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, world);
    if (!any) return;
    report_retry(model, (Retry) failed, chunk, why);
    if (exchange) done = idle;    // what went through the exchanges is void: every rank again
  }
}

/* chunk auto applies: the model has chunked methods, and 'compiled yes' (whole layers regardless)
   was not asked for. The same on every rank. */
bool PairMLFF::chunks_automatically(const Model &model) const
{
  return chunk_atoms == CHUNK_AUTO && model.has_chunked && compiled_request != "yes";
}

/* After an evaluation failed on some rank and runs again: rank 0 says on how many ranks, why, and
   how they go on (collective on several ranks). */
void PairMLFF::report_retry(const Model &model, Retry retry, int64_t chunk, const std::string &why)
{
  int counts[2] = {retry == MEMORY, retry == COMPILED}, ranks[2] = {counts[0], counts[1]};
  long most[2] = {retry == MEMORY ? (long) atom->nlocal : 0L, retry == MEMORY ? (long) chunk : 0L};
  long largest[2] = {most[0], most[1]};
  if (comm->nprocs > 1) {
    MPI_Allreduce(counts, ranks, 2, MPI_INT, MPI_SUM, world);
    MPI_Allreduce(most, largest, 2, MPI_LONG, MPI_MAX, world);
  }
  if (comm->me != 0) return;
  const std::string said = retry != NONE ? ". Rank 0's error: " + why : "";
  if (ranks[0] > 0)
    utils::logmesg(lmp,
                   "mlff: {} ran out of {} memory at step {} on {} of {} rank(s), up to {} local atoms: evaluating "
                   "the step again, {} in chunks of {} atoms from now on (chunk auto; 'chunk N' sets the size, "
                   "'chunk 0' stops instead){}\n",
                   model.path, model.device.str(), update->ntimestep, ranks[0], comm->nprocs, largest[0],
                   ranks[0] > 1 ? "those ranks" : "that rank", largest[1], retry == MEMORY ? said : "");
  if (ranks[1] > 0)
    utils::logmesg(lmp,
                   "mlff: the compiled layers of {} failed at step {} on {} of {} rank(s): evaluating the step "
                   "again, {} with TorchScript from now on (compiled auto; 'compiled yes' stops instead){}\n",
                   model.path, update->ntimestep, ranks[1], comm->nprocs, ranks[1] > 1 ? "those ranks" : "that rank",
                   retry == COMPILED ? said : "");
}

/* Out of memory in the model: an error that says what bounds it (chunk N; smaller chunks; more ranks). */
void PairMLFF::no_room(const Model &model, const Graph &g, const std::string &why, int64_t chunk)
{
  const int64_t nlocal = atom->nlocal, nghost = (int64_t) g.atoms.size() - nlocal;
  int64_t suggest = MIN_CHUNK_ATOMS;    // a quarter of the local atoms, as a power of two
  while (suggest * 8 <= nlocal) suggest *= 2;
  std::string fix;
  if (chunk > 0 && chunk <= MIN_CHUNK_ATOMS)
    fix = "spread the atoms over more ranks and GPUs";
  else if (chunk > 0)
    fix = fmt::format("use a smaller chunk (e.g. chunk {}) or spread the atoms over more ranks and GPUs",
                      std::max<int64_t>(MIN_CHUNK_ATOMS, std::min<int64_t>(suggest, chunk / 2)));
  else
    fix = fmt::format("add 'chunk {}' to pair_style mlff{} (each layer then runs on that many atoms at a time and "
                      "is recomputed for the forces: bounded memory, about 1.5x the time){}{}, or spread the atoms over "
                      "more ranks and GPUs",
                      suggest, compiled_request == "yes" ? " instead of 'compiled yes'" : "",
                      model.has_chunked ? "" : " after re-exporting the model with this mlff (mlff deploy OLD.pt -o "
                                               "NEW.pt)",
                      chunk_atoms == 0 && model.has_chunked ? " or 'chunk auto' instead of 'chunk 0' (chunks only "
                                                              "where whole layers do not fit)" : "");
  error->one(FLERR, "mlff: out of {} memory evaluating {} local and {} ghost atoms with {} ({}): {}",
             model.device.str(), nlocal, nghost, model.path, why, fix);
}

/* halo shell: one call of the model's forward (the engine contract) on the whole ghost shell. */
void PairMLFF::evaluate_shell(Model &model, Graph &g, Result &r, int64_t chunk)
{
  const int64_t natoms = (int64_t) g.atoms.size();
  const torch::Device device = model.device;
  std::vector<torch::jit::IValue> inputs{
      torch::from_blob(g.positions.data(), {natoms, 3}, f64).to(device),
      torch::from_blob(g.edges.data(), {2, g.nedges}, i64).to(device),
      torch::zeros({g.nedges, 3}, f64.device(device)),
      torch::from_blob(g.species.data(), {natoms}, i64).to(device),
      (int64_t) atom->nlocal};
  phase_end(UPLOAD);
  // run the scripted graph as written: the JIT's optimising executor (autodiff subgraphs) keeps
  // more intermediates alive and is no faster for this model (see docs/benchmarks/2026-11_performance.md)
  torch::jit::GraphOptimizerEnabledGuard plain_executor(false);
  if (chunk > 0) inputs.insert(inputs.begin() + 5, chunk);    // before total_charge
  const auto out = (chunk > 0 ? model.module.get_method("forward_chunked")(inputs) : model.module.forward(inputs))
                       .toGenericDict();
  phase_end(MODEL);
  auto result = [&](const char *key) { return on_cpu(out.at(key).toTensor()); };
  r.energy = result("energy");
  r.atomic_energy = result("atomic_energy");
  r.forces = result("forces");
  r.virial = result("virial");
  r.atomic_virial = result("atomic_virial");
  phase_end(DOWNLOAD);
}

/* halo exchange: the model's halo_* methods layer by layer (mlff/modelfile/halo.py is the same
   sequence in Python), with the ghost features sent forward after each layer and their gradients
   sent back before each layer's backward. Tensors cross host <-> device once per exchange. */
void PairMLFF::evaluate_halo(Model &model, Graph &g, Result &r, int64_t chunk)
{
  torch::jit::Module &m = model.module;
  const torch::Device device = model.device;
  const int64_t num_layers = model.num_layers;
  const int64_t nlocal = atom->nlocal, natoms = (int64_t) g.atoms.size(), nghost = natoms - nlocal;
  torch::jit::GraphOptimizerEnabledGuard plain_executor(false);
  torch::AutoGradMode grad_mode(true);

  auto index = [&](std::vector<int64_t> &v) {
    return torch::from_blob(v.data(), {(int64_t) v.size()}, i64).to(device, /*non_blocking=*/false, /*copy=*/true);
  };
  // graph device: already there (a copy only for a committee member on another device)
  const torch::Tensor positions = resident ? kept->positions.to(device)
                                           : torch::from_blob(g.positions.data(), {natoms, 3}, f64).to(device);
  const torch::Tensor edges = resident ? kept->edges.to(device)
                                       : torch::from_blob(g.edges.data(), {2, g.nedges}, i64).to(device);
  const torch::Tensor species = resident ? kept->species.to(device) : index(g.species);
  const torch::Tensor self_nodes = resident ? kept->self_nodes.to(device) : index(g.self_nodes);
  const torch::Tensor self_owner = resident ? kept->self_owner.to(device) : index(g.self_owner);
  const torch::Tensor remote_nodes = resident ? kept->remote_nodes.to(device) : index(g.remote_nodes);
  const bool remote = comm->nprocs > 1;    // collective: every rank takes part in the comm
  phase_end(UPLOAD);

  // in chunks, with a file that can recompute them (halo_edge_gradients), the edges' embedding keeps
  // no autograd graph either: only the layers' chunks hold one, one at a time
  const bool edges_recomputed = chunk > 0 && model.has_edge_gradients;
  torch::Tensor vec, sh, radial;
  {
    torch::AutoGradMode grad_mode(!edges_recomputed);
    const auto edge_terms = m.run_method("halo_edges", positions, edges, species, nlocal).toTuple();
    vec = edge_terms->elements()[0].toTensor();
    sh = edge_terms->elements()[1].toTensor();
    radial = edge_terms->elements()[2].toTensor();
  }

  // compiled layers: the edges' dense layout per centre (mlff.nn.tensor_product.dense_rows), passed
  // in since a compiled graph takes its sizes from its inputs' shapes; every size must be >= 2
  std::vector<torch::Tensor> layer_args;    // after x: species, edges, sh, radial, rows, slot, width, local
  if (use_compiled && chunk == 0 && !model.compiled_off && !model.layer_forward.empty() && nlocal >= 2 &&
      edges.size(1) >= 2) {
    torch::NoGradGuard no_grad;
    const torch::Tensor center = edges[0];
    const torch::Tensor counts = torch::bincount(center, {}, nlocal);
    const int64_t k_max = counts.max().item<int64_t>();
    const torch::Tensor has_edges = counts > 0;
    const torch::Tensor rows = torch::nonzero(has_edges).flatten();
    const torch::Tensor row_of_node = has_edges.to(torch::kInt64).cumsum(0) - 1;
    const torch::Tensor start = counts.cumsum(0) - counts;
    const torch::Tensor position = torch::arange(center.size(0), center.options()) - start.index_select(0, center);
    const torch::Tensor slot = row_of_node.index_select(0, center) * k_max + position;
    if (k_max >= 2 && rows.size(0) >= 2)
      layer_args = {species.contiguous(), edges.contiguous(), sh.detach().contiguous(), radial.detach().contiguous(),
                    rows, slot, torch::empty({k_max}, center.options().dtype(torch::kInt8)),
                    species.narrow(0, 0, nlocal).contiguous()};
  }
  const bool compiled = compiled_call = !layer_args.empty();
  auto with_x = [&](const torch::Tensor &x) {
    std::vector<torch::Tensor> args{x.detach().contiguous()};
    args.insert(args.end(), layer_args.begin(), layer_args.end());
    return args;
  };

  // forward: layer k's local rows, then its ghost rows from their owners
  std::vector<torch::Tensor> inputs{m.run_method("halo_embed", species).toTensor()}, outputs, sums;
  std::vector<double> buffer;
  // chunk: each layer without an autograd graph, `chunk` local atoms at a time; the backward
  // recomputes it chunk by chunk (halo_layer_grad), so one chunk's graph is alive at a time.
  // compiled: whole layers without a graph; each backward starts from the layer's saved neighbour sums.
  const bool chunked = chunk > 0;
  const bool recompute = chunked || compiled;
  // in chunks, the last layer and the readout with their backward at once, each chunk's gradient
  // right after its forward (the layer runs once): (atomic energies, grad_x, grad_sh, grad_radial)
  c10::intrusive_ptr<c10::ivalue::Tuple> fused;
  for (int64_t k = 0; k < num_layers; k++) {
    if (chunked && model.has_last_layer_chunked && k + 1 == num_layers) {
      fused = m.run_method("halo_last_layer_chunked", inputs[k], species, edges, sh, radial, nlocal, chunk).toTuple();
      break;
    }
    torch::Tensor y;
    if (compiled) {    // (y, the neighbour sums its backward starts from)
      std::vector<torch::Tensor> out = model.layer_forward[k]->run(with_x(inputs[k]));
      y = out[0];
      sums.push_back(out[1]);
    } else
      y = chunked ? m.run_method("halo_layer_chunked", k, inputs[k], species, edges, sh, radial, nlocal, chunk).toTensor()
                  : m.run_method("halo_layer", k, inputs[k], species, edges, sh, radial, nlocal).toTensor();
    outputs.push_back(y);
    if (k + 1 == num_layers) break;
    phase_end(MODEL);
    // images of local atoms: a copy on the device; atoms of other ranks: through the host
    const torch::Tensor ghost = torch::empty({nghost, y.size(1)}, y.options().requires_grad(false));
    ghost.index_copy_(0, self_nodes, y.detach().index_select(0, self_owner));
    if (remote) {
      const torch::Tensor host = on_cpu(y.index_select(0, model.senders));
      forward_features(g, host.data_ptr<double>(), (int) y.size(1), buffer);
      const int64_t nremote = (int64_t) g.remote_atoms.size();
      ghost.index_copy_(0, remote_nodes,
                        torch::from_blob(buffer.data(), {nremote, y.size(1)}, f64).to(device, y.scalar_type()));
    }
    phase_end(EXCHANGE);
    inputs.push_back(m.run_method("halo_join", y, ghost).toTensor());
    if (recompute) outputs.back() = torch::Tensor();    // the backward recomputes from the inputs alone
  }
  // grad_sh, grad_radial: the edge features' gradients summed over the layers (starting from the fused
  // last layer's: fresh tensors)
  torch::Tensor atomic_energy, output, grad, grad_sh, grad_radial;
  if (fused) {
    atomic_energy = fused->elements()[0].toTensor();
    grad_sh = fused->elements()[2].toTensor();
    grad_radial = fused->elements()[3].toTensor();
  } else {
    grad_sh = torch::zeros_like(sh);
    grad_radial = torch::zeros_like(radial);
    // chunked or compiled: the last layer's output as a leaf, for the readout's gradient
    torch::Tensor last = recompute ? m.run_method("halo_join", outputs.back(), outputs.back().narrow(0, 0, 0)).toTensor()
                                   : outputs.back();
    atomic_energy = m.run_method("halo_energy", last, species.narrow(0, 0, nlocal)).toTensor();
    output = atomic_energy;
    grad = torch::ones_like(atomic_energy);
    if (recompute) {
      grad = m.run_method("halo_grad", atomic_energy, grad, last, true, sh, radial).toTuple()->elements()[0].toTensor();
      outputs.clear();    // the layers' outputs: what follows recomputes from their inputs
    }
  }

  // backward, layer by layer: the gradient on ghost features goes home before the layer below
  for (int64_t k = num_layers - 1; k >= 0; k--) {
    torch::Tensor grad_x;
    if (fused) {    // the last layer's, from its one pass
      grad_x = fused->elements()[1].toTensor();
      fused.reset();
    } else if (compiled) {    // layer 0: (grad_sh, grad_radial); the others: (grad_x, grad_sh, grad_radial)
      std::vector<torch::Tensor> args = with_x(inputs[k]);
      args.push_back(sums[k]);
      args.push_back(grad.to(inputs[k].scalar_type()).contiguous());
      const std::vector<torch::Tensor> grads = model.layer_backward[k]->run(args);
      const size_t first = k > 0 ? 1 : 0;
      if (k > 0) grad_x = grads[0];
      grad_sh.add_(grads[first]);
      grad_radial.add_(grads[first + 1]);
    } else {
      const auto grads =
          chunked ? m.run_method("halo_layer_grad", k, inputs[k], species, edges, sh, radial, nlocal, chunk, grad, k > 0)
                        .toTuple()
                  : m.run_method("halo_grad", output, grad, inputs[k], k > 0, sh, radial).toTuple();
      grad_x = grads->elements()[0].toTensor();
      grad_sh.add_(grads->elements()[1].toTensor());
      grad_radial.add_(grads->elements()[2].toTensor());
    }
    inputs[k] = torch::Tensor();    // done with this layer (what holds memory is released as the backward goes down)
    if (compiled) sums[k] = torch::Tensor();
    if (k == 0) break;
    phase_end(MODEL);
    const torch::Tensor grad_ghost = grad_x.narrow(0, nlocal, nghost);
    grad = grad_x.narrow(0, 0, nlocal).index_add(0, self_owner, grad_ghost.index_select(0, self_nodes));
    if (remote) {
      const torch::Tensor host = on_cpu(grad_ghost.index_select(0, remote_nodes));
      reverse_gradients(g, host.data_ptr<double>(), (int) grad_x.size(1), buffer);
      const int64_t nsend = model.senders.size(0);
      grad = grad.index_add(0, model.senders,
                            torch::from_blob(buffer.data(), {nsend, grad_x.size(1)}, f64).to(device, grad_x.scalar_type()));
    }
    phase_end(EXCHANGE);
    if (!recompute) output = outputs[k - 1];
  }
  c10::intrusive_ptr<c10::ivalue::Tuple> derived;
  if (edges_recomputed) {
    // the embedding recomputed in blocks of about one chunk's edges, with only the edges' gradients alive
    sh = radial = torch::Tensor();
    const int64_t per_atom = (edges.size(1) + std::max<int64_t>(nlocal, 1) - 1) / std::max<int64_t>(nlocal, 1);
    const int64_t edge_block = std::max<int64_t>(MIN_EDGE_BLOCK, chunk * per_atom);
    derived = m.run_method("halo_edge_gradients", positions, edges, species, grad_sh, grad_radial, natoms, edge_block)
                  .toTuple();
  } else
    derived = m.run_method("halo_outputs", vec, sh, radial, grad_sh, grad_radial, edges, natoms).toTuple();
  phase_end(MODEL);
  r.atomic_energy = on_cpu(atomic_energy);
  r.energy = r.atomic_energy.sum();
  r.forces = on_cpu(derived->elements()[0].toTensor());
  r.virial = on_cpu(derived->elements()[1].toTensor());
  r.atomic_virial = on_cpu(derived->elements()[2].toTensor());
  phase_end(DOWNLOAD);
  halo_calls++;
  if (compiled) compiled_calls++;
}
