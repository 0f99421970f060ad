/* pair_style mlff: libtorch state and outputs shared by pair_mlff.cpp and pair_mlff_model.cpp. */
#ifndef MLFF_PAIR_MLFF_MODEL_H
#define MLFF_PAIR_MLFF_MODEL_H

#include "pair_mlff.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

struct PairMLFF::Model {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  std::vector<std::string> species;
  std::string path;
  bool has_halo = false;     // the file can run layer by layer (capability halo_exchange: halo_* methods)
  bool has_chunked = false;  // capability chunked: forward_chunked, halo_layer_chunked, halo_layer_grad
  bool has_edge_gradients = false;  // capability edge_gradients: halo_edge_gradients (chunks keep no edge graph)
  bool has_last_layer_chunked = false;  // capability last_layer_chunked: halo_last_layer_chunked (run once)
  int feature_dim = 0;       // values per atom exchanged between layers
  int64_t chunk = 0;         // chunk auto: the chunk this rank settled on (0: whole layers have fitted)
  int num_layers = 0;
  double r_cut = 0.0;        // Å
  torch::Tensor senders;     // PairMLFF::senders on the device: the rows the exchanges move
  // compiled layers (`mlff lammps compile`, mlff/modelfile/compiled_layers.py), or none: per layer
  // its forward on the local atoms and its backward (recomputing it), built on this machine
  using Compiled = torch::inductor::AOTIModelPackageLoader;
  std::vector<std::unique_ptr<Compiled>> layer_forward, layer_backward;
  std::string compiled_folder;
  bool compiled_off = false;  // compiled auto: its compiled layers failed here once; TorchScript from then on
};

/* graph device: LAMMPS's neighbour list (cutoff r_cut + skin) of the local atoms as candidate edges
   on the model's device, with the halo exchange's node lists, uploaded when LAMMPS rebuilds its
   lists (graph cells: the same pairs, found on the device by find_cell_candidates); the positions,
   species and the edges within r_cut (selected there) are this step's. */
struct PairMLFF::Resident {
  torch::Device device{torch::kCPU};
  torch::Tensor center, neighbour;                    // (ncandidates,) node indices, sorted by center
  torch::Tensor self_nodes, self_owner, remote_nodes; // as in Graph
  torch::Tensor positions, species, edges;            // (natoms, 3) float64, (natoms,), (2, nedges)
};

/* float64 on the CPU, contiguous: energy (), atomic_energy (nlocal), forces (natoms, 3) on the
   graph's nodes, virial (3, 3), atomic_virial (natoms, 3, 3). */
struct PairMLFF::Result {
  torch::Tensor energy, atomic_energy, forces, virial, atomic_virial;
};

/* The first line of an exception's message (libtorch appends a C++ stack trace). */
inline std::string first_line(const char *text)
{
  const std::string s(text);
  return s.substr(0, s.find('\n'));
}

/* The line of an exception's message that says what failed: TorchScript's interpreter puts its
   traceback first and the error ("RuntimeError: ...") last; libtorch's own errors put it first. */
std::string error_line(const char *text);

/* Whether an exception's message says that an allocation failed (CUDA's or the CPU allocator's). */
bool out_of_memory(const char *text);

}    // namespace LAMMPS_NS

#endif
