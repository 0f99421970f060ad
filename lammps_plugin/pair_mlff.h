/* pair_style mlff: runs an mlff model file (TorchScript) on local + ghost atoms.

   Two ways to handle message passing across subdomains and periodic images (pair_style keyword
   `halo`):
   - exchange (default): ghosts within one cutoff; after each layer the ghosts' features are copied
     from their owners (forward comm) and, in the backward pass, the gradients on them are sent back
     (reverse comm): the model's halo_* methods, see mlff/modelfile/halo.py;
   - shell: ghosts within num_layers cutoffs, each rank recomputes them (the model's forward, the
     engine contract of docs/model-file.md); the reference, and the mode of older model files.

   With `compiled yes|auto` (auto is the default), the halo exchange runs the layers that `mlff lammps
   compile model.pt` built on this machine (AOTInductor, per device, cached per user; never taken from
   a model file): each layer's forward, which also returns its neighbour sums, and its backward from
   them (the per-edge terms recomputed, not the convolution).
   TorchScript runs the rest (edges, readout, forces) and any call whose sizes the compiled layers
   do not take (fewer than 2 local atoms, edges or neighbours).

   The graph of the halo exchange is built on the host every step (`graph host`) or kept on the model's
   device (`graph device`, the default with `device cuda`): LAMMPS's neighbour list (r_cut + skin) goes
   up once per re-neighbouring as candidate edges; each step only the positions go up and the edges
   within r_cut are selected there. With `graph cells` the candidates are found on the device too,
   by a cell list over the local and ghost positions when LAMMPS has rebuilt its ghosts, and LAMMPS
   builds no neighbour list for mlff.

   A committee (pair_coeff * * a.pt b.pt c.pt <elements>): the first model drives the dynamics; every
   `committee_every` steps the others run on the same graph and the spread of the models' forces
   and energies is published (per atom through extract_peratom for `fix pair`, globally through
   pvector for `compute pair`, optionally one line per evaluation in `out_file`).

   Sources: pair_mlff.cpp (LAMMPS interface, model loading, scatter-back), pair_mlff_model.cpp (the
   two ways to call the model), pair_mlff_graph.cpp (graphs and feature communication; no libtorch),
   pair_mlff_committee.cpp (the committee's deviations). */
#ifndef MLFF_PAIR_MLFF_H
#define MLFF_PAIR_MLFF_H

#include "pair.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairMLFF : public Pair {
 public:
  PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void finish() override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void *extract_peratom(const char *, int &) override;

  // per-layer feature exchange (halo exchange mode): rows of `features`, `comm_width` values each
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  struct Graph {                    // the model's input, see build_shell_graph / build_halo_graph
    std::vector<int> atoms;         // node -> LAMMPS atom index (locals first, unchanged)
    std::vector<int64_t> edges;     // (2, nedges) row-major: centers then neighbours
    int64_t nedges = 0;
    std::vector<double> positions;  // (natoms, 3)
    std::vector<int64_t> species;   // (natoms,)
    // halo exchange: the ghost nodes (counted from 0 = node nlocal) whose owner is on this rank
    // (self_nodes, with the owner's index in self_owner: copied on the device), and the others
    // (remote_nodes, LAMMPS indices remote_atoms: through LAMMPS's comm)
    std::vector<int64_t> self_nodes, self_owner, remote_nodes;
    std::vector<int> remote_atoms;
  };
  struct Model;                     // libtorch state, kept out of this header
  struct Result;                    // the model's outputs (tensors)
  struct Resident;                  // graph device or cells: the candidate edges and this step's tensors

 private:
  std::unique_ptr<Model> model;                    // drives the dynamics
  std::vector<std::unique_ptr<Model>> committee;   // the other members of a committee (may be empty)
  std::string device_request;       // "cpu", "cuda" or "auto"
  std::string halo_request;         // "exchange", "shell" or "auto" (exchange if the model has it)
  bool exchange;                    // the mode in use (set by init_style)
  std::string graph_request;        // "host", "device", "cells" or "auto" (device when the model runs on a GPU)
  bool resident = false;            // graph device or cells in use (set by init_style; halo exchange only)
  bool cells = false;               // graph cells in use: no LAMMPS neighbour list (set by init_style)
  std::unique_ptr<Resident> kept;   // graph device or cells: built at owners_step, refreshed every step
  Graph kept_graph;                 // its host side: nodes, ghost owners, positions (no edges: on the device)
  bigint kept_step = -1;            // the owners_step the candidates were built at
  std::vector<int> type_to_species; // LAMMPS type (1..ntypes) -> model species index
  double r_cut;
  int num_layers;
  double min_distance;              // Å: closer pairs stop the run (overlapping atoms)
  int chunk_atoms = CHUNK_AUTO;     // > 0: layers run on this many local atoms at a time, recomputed
                                    // for the forces (bounded memory: the model's chunked methods);
                                    // 0: whole layers; CHUNK_AUTO: whole layers until they run out of
                                    // memory, then chunks (see evaluate in pair_mlff_model.cpp)
  static constexpr int CHUNK_AUTO = -1;
  static constexpr int64_t MIN_CHUNK_ATOMS = 64;    // the smallest chunk chunk auto tries
  static constexpr int64_t MIN_EDGE_BLOCK = 16384;    // chunks: the fewest edges whose embedding is recomputed at once
  int forward_done = 0, reverse_done = 0;          // exchanges made in the evaluation under way
  bool compiled_call = false;                      // the evaluation under way runs compiled layers
  bool use_compiled = false;         // set by init_style: compiled layers wherever a model has them
  long compiled_calls = 0, halo_calls = 0;    // this run's evaluations in halo exchange: compiled / all
  std::string compiled_request = "auto";    // "yes", "no" or "auto": compiled layers where this machine
                                    // has built them (mlff lammps compile), TorchScript otherwise

  // committee (see pair_mlff_committee.cpp)
  enum Deviation { MAX_F, MIN_F, MEAN_F, ENERGY, MAX_F_RELATIVE, NDEVIATIONS };    // pvector slots
  int committee_every = 1;          // steps between evaluations of the committee
  double relative_level = 1.0;      // eV/Å: relative deviation = deviation / (|mean force| + level)
  std::string out_path;             // out_file: one line per evaluation ("" = none)
  FILE *out_file = nullptr;
  bigint committee_step = -1;       // the step of the last evaluation
  std::vector<double> force_deviation, relative_deviation;    // per local atom, at committee_step

  std::vector<double> features;     // (nlocal + nghost, comm_now): rows being communicated
  int comm_width;                   // values per atom of the feature exchanges (the model's)
  int comm_now = 0;                 // values per atom of the exchange under way
  std::vector<int> senders;         // local atoms with ghost images on other ranks (update_owners)
  std::vector<int> ghost_owner;     // LAMMPS ghost index - nlocal -> local owner here, or -1 (other rank)
  bigint owners_step = -1;          // the step both were found at; -1: not yet

  // MLFF_TIMING=1: wall time of each phase of compute(), the device synchronised at each boundary,
  // printed per step at the end of each run (Pair::finish). Off by default: the syncs cost time.
  enum Phase { GRAPH, UPLOAD, MODEL, EXCHANGE, DOWNLOAD, SCATTER, NPHASES };
  bool timing = false;
  double phase_seconds[NPHASES] = {};
  long timed_calls = 0;
  std::chrono::steady_clock::time_point phase_mark;
  void phase_end(Phase);            // time since the last mark goes to this phase; new mark
  void synchronize_device();

  void allocate();
  void build_shell_graph(Graph &);
  void build_halo_graph(Graph &, bool candidates = false);
  void build_resident_graph();      // graph device or cells (pair_mlff_model.cpp)
  void find_cell_candidates(Graph &);    // graph cells: the candidate edges by a cell list on the device
  void split_ghosts(Graph &);       // the graph's ghost nodes by owner (this rank or another)
  void fill_positions(Graph &);
  // fn(begin, end) over [0, n) in chunks, on torch's intra-op threads (pair_mlff_model.cpp)
  static void parallel_over(int n, const std::function<void(int, int)> &fn);
  void check_closest_pair(int i, int j, double rsq);
  bool update_owners();             // true when found anew (at neighbour-list builds); collective
  void forward_features(const Graph &, const double *rows, int width, std::vector<double> &remote);
  void reverse_gradients(const Graph &, const double *remote, int width, std::vector<double> &rows);
  void idle_exchanges(const Model &);    // the exchanges not made yet in this evaluation, with zero rows
  std::unique_ptr<Model> load_model(const std::string &path);
  void load_compiled(Model &);      // the model's compiled layers, if built here (pair_mlff_model.cpp)
  void check_member(const Model &member);
  void share_comm_sizes();
  void map_types(char **elements, int nelements);
  void evaluate(Model &, Graph &, Result &);    // collective on several ranks (chunk or compiled auto)
  bool chunks_automatically(const Model &) const;
  enum Retry { NONE, COMPILED, MEMORY };    // why an evaluation runs again (evaluate)
  void report_retry(const Model &, Retry, int64_t chunk, const std::string &why);    // collective
  [[noreturn]] void no_room(const Model &, const Graph &, const std::string &why, int64_t chunk);
  void evaluate_shell(Model &, Graph &, Result &, int64_t chunk);
  void evaluate_halo(Model &, Graph &, Result &, int64_t chunk);
  void scatter_back(const Graph &, const Result &);
  std::vector<Model *> members();    // model, then the committee's
  bool committee_due() const;
  void evaluate_committee(Graph &, const Result &);    // collective; an empty graph on idle ranks
  void publish_deviations(const std::vector<double> &forces, int members, const std::vector<double> &energies);
};

}    // namespace LAMMPS_NS

#endif
