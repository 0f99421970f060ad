/* pair_style mlff: a committee's spread, the active-learning signal inside LAMMPS.

   pair_coeff * * a.pt b.pt c.pt <elements>: a.pt drives the dynamics (its forces, energy and
   virial go to LAMMPS); every `committee_every` steps b.pt, c.pt ... run on the same graph (one
   graph build; in halo-exchange mode each member makes its own feature exchanges) and every
   member's forces on ghost atoms go home in one reverse comm. Per local atom i, with F_k the force
   of member k and F the members' mean:

     deviation_i = sqrt( mean_k |F_k,i - F_i|^2 )               (eV/Å, MLFFCalculator's forces_std)
     relative_i  = deviation_i / (|F_i| + relative_level)

   and globally their max / min / mean over all atoms, the max relative deviation, and the standard
   deviation of the members' total energies (eV, MLFFCalculator's energy_std). They are published
   through extract_peratom ("force_deviation", "force_deviation_relative": `fix pair`), pvector
   (`compute pair mlff`: rank 0 holds the values, the others zeros, as compute pair sums over
   ranks) and, with out_file, one line per evaluation. */

#include "pair_mlff_model.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "update.h"

#include <cmath>
#include <cstring>
#include <limits>

using namespace LAMMPS_NS;

std::vector<PairMLFF::Model *> PairMLFF::members()
{
  std::vector<Model *> all{model.get()};
  for (auto &m : committee) all.push_back(m.get());
  return all;
}

bool PairMLFF::committee_due() const
{
  return !committee.empty() && update->ntimestep % committee_every == 0;
}

/* Collective: every rank calls it at the same steps; a rank without atoms passes an empty graph
   and still takes part in each member's exchanges, the reverse comm and the reductions. */
void PairMLFF::evaluate_committee(Graph &g, const Result &first)
{
  const int nmembers = (int) committee.size() + 1, w = 3 * nmembers;
  const int nall = atom->nlocal + atom->nghost;
  std::vector<double> rows((size_t) nall * w, 0.0), energies(nmembers, 0.0);
  auto add = [&](int k, const Result &r) {
    const auto F = r.forces.accessor<double, 2>();
    for (size_t n = 0; n < g.atoms.size(); n++)
      for (int d = 0; d < 3; d++) rows[(size_t) g.atoms[n] * w + 3 * k + d] += F[n][d];
    energies[k] = r.energy.item<double>();
  };
  if (!g.atoms.empty()) add(0, first);
  for (size_t k = 0; k < committee.size(); k++) {
    Model &member = *committee[k];
    Result r;
    evaluate(member, g, r);    // an empty graph: this rank's part in the exchanges and reductions
    if (g.atoms.empty()) continue;
    if (!torch::isfinite(r.forces).all().item<bool>() || !std::isfinite(r.energy.item<double>()))
      error->one(FLERR,
                 "mlff: committee member '{}' gives a non-finite output at step {}: the structure is far "
                 "outside what it was fitted to",
                 member.path, update->ntimestep);
    add((int) k + 1, r);
  }
  // ghost rows -> their owners (periodic images and other ranks), as LAMMPS does for atom->f
  comm_now = w;
  features.swap(rows);
  comm->reverse_comm(this, w);
  features.swap(rows);
  publish_deviations(rows, nmembers, energies);
}

void PairMLFF::publish_deviations(const std::vector<double> &rows, int nmembers, const std::vector<double> &energies)
{
  const int nlocal = atom->nlocal, w = 3 * nmembers;
  force_deviation.assign(nlocal, 0.0);
  relative_deviation.assign(nlocal, 0.0);
  double high = 0.0, low = std::numeric_limits<double>::infinity(), sum = 0.0, high_relative = 0.0;
  for (int i = 0; i < nlocal; i++) {
    const double *f = &rows[(size_t) i * w];
    double mean[3] = {0.0, 0.0, 0.0};
    for (int k = 0; k < nmembers; k++)
      for (int d = 0; d < 3; d++) mean[d] += f[3 * k + d] / nmembers;
    double variance = 0.0;
    for (int k = 0; k < nmembers; k++)
      for (int d = 0; d < 3; d++) variance += (f[3 * k + d] - mean[d]) * (f[3 * k + d] - mean[d]) / nmembers;
    const double deviation = std::sqrt(variance);
    const double norm = std::sqrt(mean[0] * mean[0] + mean[1] * mean[1] + mean[2] * mean[2]);
    force_deviation[i] = deviation;
    relative_deviation[i] = deviation / (norm + relative_level);
    high = std::max(high, deviation);
    low = std::min(low, deviation);
    sum += deviation;
    high_relative = std::max(high_relative, relative_deviation[i]);
  }
  double global[4], local_max[2] = {high, high_relative}, global_max[2];
  const double local_count = nlocal;
  MPI_Allreduce(local_max, global_max, 2, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(&low, &global[1], 1, MPI_DOUBLE, MPI_MIN, world);
  double local_sums[2] = {sum, local_count}, sums[2];
  MPI_Allreduce(local_sums, sums, 2, MPI_DOUBLE, MPI_SUM, world);
  std::vector<double> totals(nmembers);
  MPI_Allreduce(energies.data(), totals.data(), nmembers, MPI_DOUBLE, MPI_SUM, world);
  double mean_energy = 0.0, energy_variance = 0.0;
  for (double e : totals) mean_energy += e / nmembers;
  for (double e : totals) energy_variance += (e - mean_energy) * (e - mean_energy) / nmembers;
  global[0] = global_max[0];
  global[2] = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
  if (sums[1] == 0) global[1] = 0.0;
  global[3] = std::sqrt(energy_variance);

  const double values[NDEVIATIONS] = {global[0], global[1], global[2], global[3], global_max[1]};
  for (int k = 0; k < NDEVIATIONS; k++) pvector[k] = comm->me == 0 ? values[k] : 0.0;
  committee_step = update->ntimestep;
  if (out_file) {
    fprintf(out_file, "%ld %.10g %.10g %.10g %.10g %.10g\n", (long) update->ntimestep, values[MAX_F],
            values[MIN_F], values[MEAN_F], values[ENERGY], values[MAX_F_RELATIVE]);
    fflush(out_file);
  }
}

/* For `fix pair N mlff force_deviation 0` (or force_deviation_relative): per local atom, at the
   steps the committee ran. */
void *PairMLFF::extract_peratom(const char *name, int &ncol)
{
  ncol = 0;
  const bool absolute = std::strcmp(name, "force_deviation") == 0;
  if (!absolute && std::strcmp(name, "force_deviation_relative") != 0) return nullptr;
  if (committee.empty())
    error->all(FLERR,
               "pair mlff: '{}' is the spread of a committee: give several model files (pair_coeff * * a.pt "
               "b.pt c.pt <elements>) before the fix that reads it",
               name);
  if (update->whichflag != 0 && committee_step != update->ntimestep)
    error->all(FLERR,
               "pair mlff: '{}' is computed every {} steps (committee_every) but was read at step {}: make "
               "the fix's interval a multiple of committee_every",
               name, committee_every, update->ntimestep);
  if (committee_step < 0) return nullptr;
  return absolute ? force_deviation.data() : relative_deviation.data();
}
