/* libtorch's BLAS calls, bound back to libtorch's own BLAS inside LAMMPS.

   The LAMMPS library exports reference (unoptimised) Fortran BLAS/LAPACK routines of its own
   (dgemm_, dgemv_, ddot_, ...). libtorch_cpu exports MKL's versions under the same names and calls
   them through its PLT, so the dynamic linker binds those calls to the first definition in the
   process's global scope: LAMMPS's, because `lmp` links liblammps and loads the plugin (and
   libtorch) later. Every float64 matrix product of the model then runs in reference BLAS
   (a float64 model runs several times slower in LAMMPS than in Python, docs/lammps.md; float32
   uses sgemm_, which LAMMPS lacks). This rewrites libtorch_cpu's GOT slots of exactly those symbols, the ones it
   defines itself but that resolve into liblammps, to its own definitions. Python is unaffected
   (torch is loaded first there) and left alone. MLFF_KEEP_BLAS_BINDING=1 opts out. */

#include "blas_binding.h"

#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#define MLFF_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define MLFF_R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define MLFF_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define MLFF_R_GLOB_DAT R_AARCH64_GLOB_DAT
#endif

namespace {

struct Search {
  const char *library;      // substring of the object to repair
  const char *interposer;   // substring of the object whose definitions are unwanted
  BlasBinding result;
};

// Fortran BLAS/LAPACK-style names: lower-case letters and digits, ending in one underscore
bool fortran_name(const char *name)
{
  const size_t n = std::strlen(name);
  if (n < 3 || n > 16 || name[n - 1] != '_' || name[n - 2] == '_') return false;
  for (size_t k = 0; k + 1 < n; k++)
    if (!((name[k] >= 'a' && name[k] <= 'z') || (name[k] >= '0' && name[k] <= '9'))) return false;
  return true;
}

#if defined(MLFF_R_JUMP_SLOT)
ElfW(Addr) absolute(ElfW(Addr) value, ElfW(Addr) base)
{
  return value < base ? value + base : value;    // glibc relocates most d_ptr entries in place
}

void write_slot(void **slot, void *target, const ElfW(Phdr) *phdr, int phnum, ElfW(Addr) base)
{
  const uintptr_t address = reinterpret_cast<uintptr_t>(slot);
  bool relro = false;
  for (int p = 0; p < phnum; p++)
    if (phdr[p].p_type == PT_GNU_RELRO && address >= base + phdr[p].p_vaddr &&
        address < base + phdr[p].p_vaddr + phdr[p].p_memsz)
      relro = true;
  const uintptr_t page = (uintptr_t) sysconf(_SC_PAGESIZE);
  void *start = reinterpret_cast<void *>(address & ~(page - 1));
  if (relro && mprotect(start, page, PROT_READ | PROT_WRITE) != 0) return;
  *slot = target;
  if (relro) mprotect(start, page, PROT_READ);
}

int visit(struct dl_phdr_info *info, size_t, void *data)
{
  auto *search = static_cast<Search *>(data);
  if (!info->dlpi_name || !std::strstr(info->dlpi_name, search->library)) return 0;
  const ElfW(Addr) base = info->dlpi_addr;
  const ElfW(Dyn) *dyn = nullptr;
  for (int p = 0; p < info->dlpi_phnum; p++)
    if (info->dlpi_phdr[p].p_type == PT_DYNAMIC)
      dyn = reinterpret_cast<const ElfW(Dyn) *>(base + info->dlpi_phdr[p].p_vaddr);
  if (!dyn) return 1;
  const ElfW(Sym) *symtab = nullptr;
  const char *strtab = nullptr;
  const ElfW(Rela) *tables[2] = {nullptr, nullptr};
  size_t sizes[2] = {0, 0};
  for (; dyn->d_tag != DT_NULL; dyn++) {
    switch (dyn->d_tag) {
      case DT_SYMTAB: symtab = reinterpret_cast<const ElfW(Sym) *>(absolute(dyn->d_un.d_ptr, base)); break;
      case DT_STRTAB: strtab = reinterpret_cast<const char *>(absolute(dyn->d_un.d_ptr, base)); break;
      case DT_JMPREL: tables[0] = reinterpret_cast<const ElfW(Rela) *>(absolute(dyn->d_un.d_ptr, base)); break;
      case DT_PLTRELSZ: sizes[0] = dyn->d_un.d_val; break;
      case DT_RELA: tables[1] = reinterpret_cast<const ElfW(Rela) *>(absolute(dyn->d_un.d_ptr, base)); break;
      case DT_RELASZ: sizes[1] = dyn->d_un.d_val; break;
      default: break;
    }
  }
  if (!symtab || !strtab) return 1;
  search->result.found_library = true;
  for (int t = 0; t < 2; t++) {
    if (!tables[t]) continue;
    const size_t count = sizes[t] / sizeof(ElfW(Rela));
    for (size_t r = 0; r < count; r++) {
      const ElfW(Rela) &rel = tables[t][r];
      const auto type = ELF64_R_TYPE(rel.r_info);
      if (type != MLFF_R_JUMP_SLOT && type != MLFF_R_GLOB_DAT) continue;
      const ElfW(Sym) &sym = symtab[ELF64_R_SYM(rel.r_info)];
      if (sym.st_shndx == SHN_UNDEF || ELF64_ST_TYPE(sym.st_info) != STT_FUNC) continue;
      const char *name = strtab + sym.st_name;
      if (!fortran_name(name)) continue;
      void *global = dlsym(RTLD_DEFAULT, name);
      void *own = reinterpret_cast<void *>(base + sym.st_value);
      if (!global || global == own) continue;
      Dl_info where;
      if (!dladdr(global, &where) || !where.dli_fname || !std::strstr(where.dli_fname, search->interposer)) continue;
      write_slot(reinterpret_cast<void **>(base + rel.r_offset), own, info->dlpi_phdr, info->dlpi_phnum, base);
      if (search->result.rebound == 0 || std::strcmp(name, "dgemm_") == 0) search->result.example = name;
      search->result.rebound++;
    }
  }
  return 1;
}
#endif

}    // namespace

BlasBinding rebind_torch_blas()
{
  Search search{"libtorch_cpu.so", "liblammps", {}};
  const char *keep = std::getenv("MLFF_KEEP_BLAS_BINDING");
  if (keep && std::strcmp(keep, "0") != 0) return search.result;
#if defined(MLFF_R_JUMP_SLOT)
  dl_iterate_phdr(visit, &search);
#endif
  return search.result;
}
