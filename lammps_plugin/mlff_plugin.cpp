// Registers `pair_style mlff` with LAMMPS (loaded by `plugin load` or LAMMPS_PLUGIN_PATH).
#include "lammpsplugin.h"
#include "pair_mlff.h"

using namespace LAMMPS_NS;

static Pair *pair_mlff_creator(LAMMPS *lmp)
{
  return new PairMLFF(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = MLFF_LAMMPS_VERSION;    // must equal the host's LAMMPS_VERSION
  plugin.style = "pair";
  plugin.name = "mlff";
  plugin.info = "mlff equivariant machine-learned potential (TorchScript model file)";
  plugin.author = "mlff developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &pair_mlff_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
