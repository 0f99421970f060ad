/* pair_style mlff: where this machine keeps a model file's compiled layers (no libtorch here).

   `mlff lammps compile model.pt` (mlff/modelfile/compiled_layers.py) builds them into the per-user
   cache under a folder named by SHA-256 of "<sha256 of the file>|<cpu|cuda>|<torch x.y.z>|<CPU flags
   digest>|<protocol>"; this finds the same folder from the same parts. */
#ifndef MLFF_COMPILED_CACHE_H
#define MLFF_COMPILED_CACHE_H

#include <map>
#include <string>

namespace mlff_cache {

constexpr int PROTOCOL = 2;    // the compiled functions' signatures (compiled_layers.PROTOCOL)

std::string sha256_hex(const std::string &data);
// "" if the file cannot be read
std::string sha256_file(const std::string &path);
// $MLFF_CACHE_DIR, else $XDG_CACHE_HOME/mlff, else $HOME/.cache/mlff
std::string cache_dir();
// the folder of `model_path`'s compiled layers for `device` ("cpu" or "cuda") and torch `torch_version`
std::string compiled_folder(const std::string &model_path, const std::string &device, const std::string &torch_version);
// the `key value` lines of <folder>/manifest.txt; empty if the folder is incomplete or absent
std::map<std::string, std::string> read_manifest(const std::string &folder);

}    // namespace mlff_cache

#endif
