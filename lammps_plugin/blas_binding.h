/* Bind libtorch's BLAS calls back to libtorch's own BLAS when LAMMPS's reference BLAS has taken
   them over (blas_binding.cpp). No libtorch or LAMMPS headers needed. */
#ifndef MLFF_BLAS_BINDING_H
#define MLFF_BLAS_BINDING_H

#include <string>

struct BlasBinding {
  bool found_library = false;    // libtorch_cpu is loaded in this process
  int rebound = 0;               // GOT slots rewritten
  std::string example;           // one of the symbols, e.g. dgemm_
};

BlasBinding rebind_torch_blas();

#endif
