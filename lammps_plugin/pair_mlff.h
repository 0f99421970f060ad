/* pair_style mlff: runs an mlff model file (TorchScript) on local + ghost atoms.
   The model's forward is the engine contract of docs/model-file.md. */
#ifndef MLFF_PAIR_MLFF_H
#define MLFF_PAIR_MLFF_H

#include "pair.h"

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
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  struct Model;                     // libtorch state, kept out of this header
  std::unique_ptr<Model> model;
  std::string device_request;       // "cpu", "cuda" or "auto"
  std::vector<int> type_to_species; // LAMMPS type (1..ntypes) -> model species index
  double r_cut;
  int num_layers;
  double min_distance;              // Å: closer pairs stop the run (overlapping atoms)

  struct Graph {                    // the model's input, see build_graph()
    std::vector<int> atoms;         // node -> LAMMPS atom index (locals first, unchanged)
    std::vector<int64_t> edges;     // (2, nedges) row-major: centers then neighbours
    int64_t nedges = 0;
    std::vector<double> positions;  // (natoms, 3)
    std::vector<int64_t> species;   // (natoms,)
  };

  void allocate();
  void build_graph(Graph &);
  void check_closest_pair(int i, int j, double rsq);
  void load_model(const std::string &path);
  void map_types(char **elements, int nelements);
};

}    // namespace LAMMPS_NS

#endif
