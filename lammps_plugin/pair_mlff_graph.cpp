/* pair_style mlff: the graphs the model sees, and the per-layer exchange of ghost-atom features
   (no libtorch here except through parallel_over, defined in pair_mlff_model.cpp). */

#include "pair_mlff_model.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

using namespace LAMMPS_NS;

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

void PairMLFF::fill_positions(Graph &g)
{
  double **x = atom->x;
  g.positions.resize(3 * g.atoms.size());
  g.species.resize(g.atoms.size());
  for (size_t n = 0; n < g.atoms.size(); n++) {
    for (int k = 0; k < 3; k++) g.positions[3 * n + k] = x[g.atoms[n]][k];
    g.species[n] = type_to_species[atom->type[g.atoms[n]]];
  }
}

/* The one scan of LAMMPS's neighbour list (cutoff r_cut + skin) that both graphs use: keep(j, rsq)
   for each neighbour j of atom i within r_cut. */
template <typename Keep>
static void for_each_edge(const NeighList *list, double **x, int i, double rcsq, Keep &&keep)
{
  const int *jlist = list->firstneigh[i];
  for (int jj = 0; jj < list->numneigh[i]; jj++) {
    const int j = jlist[jj] & NEIGHMASK;
    const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    const double rsq = dx * dx + dy * dy + dz * dz;
    if (rsq < rcsq) keep(j, rsq);
  }
}

/* halo exchange: the local atoms (nodes 0..nlocal-1) and the ghosts within r_cut of them, numbered
   in order of first appearance; the edges of the local centers only, sorted by center. The scan
   of LAMMPS's neighbour list (r_cut + skin) runs on torch's threads: count, then fill. With
   `candidates` (graph device) every pair of the list is kept, whatever its distance now: the pairs
   that can come within r_cut before LAMMPS rebuilds its lists, and the ghosts they reach; the
   closest pair is then checked on the device each step. */
void PairMLFF::build_halo_graph(Graph &g, bool candidates)
{
  double **x = atom->x;
  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  const double rcsq = candidates ? std::numeric_limits<double>::infinity() : r_cut * r_cut;

  // pass 1: edges per center, and each center's closest neighbour
  std::vector<int64_t> offset(nlocal + 1, 0);
  std::vector<double> closest(nlocal, rcsq);
  std::vector<int> closest_j(nlocal, -1);
  auto scan = [&](int i, auto &&keep) { for_each_edge(list, x, i, rcsq, keep); };
  parallel_over(nlocal, [&](int begin, int end) {
    for (int i = begin; i < end; i++) {
      int64_t count = 0;
      scan(i, [&](int j, double rsq) {
        count++;
        if (rsq < closest[i]) {
          closest[i] = rsq;
          closest_j[i] = j;
        }
      });
      offset[i + 1] = count;
    }
  });
  int worst = -1;
  for (int i = 0; i < nlocal; i++) {
    offset[i + 1] += offset[i];
    if (closest_j[i] >= 0 && (worst < 0 || closest[i] < closest[worst])) worst = i;
  }
  if (worst >= 0 && !candidates) check_closest_pair(worst, closest_j[worst], closest[worst]);
  g.nedges = offset[nlocal];

  // pass 2: the neighbours' LAMMPS indices, in place
  g.edges.resize(2 * g.nedges);    // (2, E) row-major: centers, then neighbours' nodes
  int64_t *center = g.edges.data(), *neighbour = g.edges.data() + g.nedges;
  parallel_over(nlocal, [&](int begin, int end) {
    for (int i = begin; i < end; i++) {
      int64_t e = offset[i];
      scan(i, [&](int j, double) {
        center[e] = i;
        neighbour[e++] = j;
      });
    }
  });

  // nodes: locals keep their index, ghosts numbered as they first appear
  std::vector<int64_t> node(ntotal, -1);
  g.atoms.resize(nlocal);
  for (int i = 0; i < nlocal; i++) {
    node[i] = i;
    g.atoms[i] = i;
  }
  for (int64_t e = 0; e < g.nedges; e++) {
    const int64_t j = neighbour[e];
    if (node[j] < 0) {
      node[j] = (int64_t) g.atoms.size();
      g.atoms.push_back((int) j);
    }
    neighbour[e] = node[j];
  }
  fill_positions(g);
  split_ghosts(g);
}

/* The graph's ghost nodes (g.atoms beyond nlocal) by owner: this rank (copied on the device) or
   another (through LAMMPS's comm); ghost_owner is update_owners'. */
void PairMLFF::split_ghosts(Graph &g)
{
  const int nlocal = atom->nlocal;
  g.self_nodes.clear();
  g.self_owner.clear();
  g.remote_nodes.clear();
  g.remote_atoms.clear();
  for (size_t n = nlocal; n < g.atoms.size(); n++) {
    const int owner = ghost_owner[g.atoms[n] - nlocal];
    if (owner >= 0) {
      g.self_nodes.push_back((int64_t) n - nlocal);
      g.self_owner.push_back(owner);
    } else {
      g.remote_nodes.push_back((int64_t) n - nlocal);
      g.remote_atoms.push_back(g.atoms[n]);
    }
  }
}

/* halo shell: message passing over num_layers layers reaches num_layers hops, so only atoms
   within num_layers hops of a local atom matter, and only those within num_layers - 1 hops need
   their own neighbours. Pruning the rest of LAMMPS's ghost shell by graph distance is exact and
   saves most of the work for small boxes. Locals keep their indices [0, nlocal). */
void PairMLFF::build_shell_graph(Graph &g)
{
  double **x = atom->x;
  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  const double rcsq = r_cut * r_cut;

  // all edges within r_cut, for local and ghost centers (LAMMPS indices)
  std::vector<int> centers, neighbours;
  for (int ii = 0; ii < list->inum + list->gnum; ii++) {
    const int i = list->ilist[ii];
    for_each_edge(list, x, i, rcsq, [&](int j, double rsq) {
      if (i < nlocal) check_closest_pair(i, j, rsq);
      centers.push_back(i);
      neighbours.push_back(j);
    });
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
  fill_positions(g);
}

/* ---- feature exchange: `features` holds one row of `comm_now` values per LAMMPS atom (local and
   ghost); LAMMPS's forward comm copies owners' rows into their ghosts' rows (several hops for
   cutoffs beyond a neighbour subdomain), the reverse comm adds ghosts' rows into their owners'. */

int PairMLFF::pack_forward_comm(int n, int *list_, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  const int w = comm_now;
  for (int i = 0; i < n; i++) std::memcpy(buf + (size_t) i * w, &features[(size_t) list_[i] * w], w * sizeof(double));
  return n * w;
}

void PairMLFF::unpack_forward_comm(int n, int first, double *buf)
{
  const int w = comm_now;
  std::memcpy(&features[(size_t) first * w], buf, (size_t) n * w * sizeof(double));
}

int PairMLFF::pack_reverse_comm(int n, int first, double *buf)
{
  const int w = comm_now;
  std::memcpy(buf, &features[(size_t) first * w], (size_t) n * w * sizeof(double));
  return n * w;
}

void PairMLFF::unpack_reverse_comm(int n, int *list_, double *buf)
{
  const int w = comm_now;
  for (int i = 0; i < n; i++) {
    double *row = &features[(size_t) list_[i] * w];
    for (int k = 0; k < w; k++) row[k] += buf[(size_t) i * w + k];
  }
}

/* Who owns each ghost, found when LAMMPS rebuilds its neighbour lists (the ghosts are chosen then,
   and stay the same atoms until the next build): a forward comm of (rank, index) from every local
   atom to its images. Ghosts owned by this rank (periodic images; all of them on one rank) take
   their features from the owner's row on the device; for the others, `senders` are the local
   atoms with images on other ranks (a reverse comm of a mark from those ghosts), the only rows
   the comm moves. Collective: every rank calls it at the same steps. */
bool PairMLFF::update_owners()
{
  if (neighbor->ago != 0 && owners_step >= 0) return false;
  owners_step = update->ntimestep;
  const int nlocal = atom->nlocal, nghost = atom->nghost, nall = nlocal + nghost, me = comm->me;
  comm_now = 2;
  features.resize((size_t) 2 * nall);
  for (int i = 0; i < nlocal; i++) {
    features[2 * i] = me;
    features[2 * i + 1] = i;
  }
  comm->forward_comm(this, 2);
  ghost_owner.resize(nghost);
  for (int j = nlocal; j < nall; j++)
    ghost_owner[j - nlocal] = (int) features[2 * j] == me ? (int) features[2 * j + 1] : -1;

  senders.clear();
  if (comm->nprocs == 1) return true;
  comm_now = 1;
  features.assign(nall, 0.0);
  for (int j = nlocal; j < nall; j++) features[j] = ghost_owner[j - nlocal] < 0 ? 1.0 : 0.0;
  comm->reverse_comm(this, 1);
  for (int i = 0; i < nlocal; i++)
    if (features[i] != 0.0) senders.push_back(i);
  return true;
}

/* Other ranks' part of the forward exchange: `rows` (the senders' rows, `width` values each) ->
   `remote`: the rows of the graph's ghost nodes owned elsewhere (g.remote_atoms). Rows of local
   atoms that are not senders are never read by the comm, so they are not written. */
void PairMLFF::forward_features(const Graph &g, const double *rows, int width, std::vector<double> &remote)
{
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost, w = comm_now = width;
  features.resize((size_t) nall * w);    // no zero fill: sender rows are written, ghost rows received
  for (size_t s = 0; s < senders.size(); s++)
    std::memcpy(&features[(size_t) senders[s] * w], rows + s * width, width * sizeof(double));
  comm->forward_comm(this, w);
  forward_done++;
  remote.resize(g.remote_atoms.size() * width);
  for (size_t n = 0; n < g.remote_atoms.size(); n++)
    std::memcpy(&remote[n * width], &features[(size_t) g.remote_atoms[n] * w], width * sizeof(double));
}

/* Other ranks' part of the reverse exchange: `remote` (gradients on the graph's ghost nodes owned
   elsewhere) -> `rows` (one per sender): what each sender receives from its images on other
   ranks. The comm packs every ghost row and adds into sender rows (and, between hops, into ghost
   rows), so those start at zero (images owned here are summed on the device instead); other
   local rows are untouched. */
void PairMLFF::reverse_gradients(const Graph &g, const double *remote, int width, std::vector<double> &rows)
{
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost, w = comm_now = width;
  features.resize((size_t) nall * w);
  std::fill(features.begin() + (size_t) nlocal * w, features.end(), 0.0);
  for (int i : senders) std::fill_n(&features[(size_t) i * w], w, 0.0);
  for (size_t n = 0; n < g.remote_atoms.size(); n++)
    std::memcpy(&features[(size_t) g.remote_atoms[n] * w], remote + n * width, width * sizeof(double));
  comm->reverse_comm(this, w);
  reverse_done++;
  rows.resize(senders.size() * width);
  for (size_t s = 0; s < senders.size(); s++)
    std::memcpy(&rows[s * width], &features[(size_t) senders[s] * w], width * sizeof(double));
}

/* The exchanges of `m`'s evaluation that this rank has not made yet, with zero rows: a rank that
   owns no atoms (all of them; after update_owners, which the caller makes once per step), or one
   whose evaluation ran out of memory part-way (its neighbours wait for the rest; the step is then
   evaluated again on every rank, see evaluate in pair_mlff_model.cpp). */
void PairMLFF::idle_exchanges(const Model &m)
{
  if (comm->nprocs == 1) return;
  Graph empty;
  std::vector<double> zeros(senders.size() * m.feature_dim, 0.0), unused;
  while (forward_done + 1 < m.num_layers) forward_features(empty, zeros.data(), m.feature_dim, unused);
  while (reverse_done + 1 < m.num_layers) reverse_gradients(empty, zeros.data(), m.feature_dim, unused);
}
