/* pair_style mlff: where this machine keeps a model file's compiled layers (see compiled_cache.h). */

#include "compiled_cache.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

namespace {

/* SHA-256 (FIPS 180-4), streaming. */
class Sha256 {
 public:
  void update(const unsigned char *data, size_t n)
  {
    for (size_t i = 0; i < n; i++) {
      block[fill++] = data[i];
      if (fill == 64) {
        compress();
        fill = 0;
      }
    }
    length += n;
  }

  std::string hex()
  {
    const uint64_t bits = length * 8;
    const unsigned char pad = 0x80, zero = 0;
    update(&pad, 1);
    while (fill != 56) update(&zero, 1);
    unsigned char size[8];
    for (int i = 0; i < 8; i++) size[i] = (unsigned char) (bits >> (56 - 8 * i));
    update(size, 8);
    static const char *digits = "0123456789abcdef";
    std::string out;
    for (uint32_t word : h)
      for (int shift = 28; shift >= 0; shift -= 4) out += digits[(word >> shift) & 0xf];
    return out;
  }

 private:
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char block[64];
  size_t fill = 0;
  uint64_t length = 0;

  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress()
  {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t) block[4 * i] << 24 | (uint32_t) block[4 * i + 1] << 16 | (uint32_t) block[4 * i + 2] << 8 |
          (uint32_t) block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
};

/* mlff.aoti.machine()["flags"]: the first 16 hex digits of SHA-256 of /proc/cpuinfo's first "flags"
   line, newline included ("" where there is none). */
std::string cpu_flags_digest()
{
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0) {
      flags = line + "\n";
      break;
    }
  return mlff_cache::sha256_hex(flags).substr(0, 16);
}

}    // namespace

namespace mlff_cache {

std::string sha256_hex(const std::string &data)
{
  Sha256 sha;
  sha.update(reinterpret_cast<const unsigned char *>(data.data()), data.size());
  return sha.hex();
}

std::string sha256_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  Sha256 sha;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), (std::streamsize) buffer.size());
    sha.update(reinterpret_cast<const unsigned char *>(buffer.data()), (size_t) in.gcount());
  }
  return sha.hex();
}

std::string cache_dir()
{
  const char *root = std::getenv("MLFF_CACHE_DIR");
  if (root && root[0]) return root;
  const char *xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && xdg[0]) return std::string(xdg) + "/mlff";
  const char *home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/mlff";
}

std::string compiled_folder(const std::string &model_path, const std::string &device, const std::string &torch_version)
{
  const std::string text =
      sha256_file(model_path) + "|" + device + "|" + torch_version + "|" + cpu_flags_digest() + "|" + std::to_string(PROTOCOL);
  return cache_dir() + "/lammps-" + sha256_hex(text).substr(0, 24);
}

std::map<std::string, std::string> read_manifest(const std::string &folder)
{
  std::map<std::string, std::string> entries;
  std::ifstream in(folder + "/manifest.txt");
  for (std::string line; std::getline(in, line);) {
    const size_t space = line.find(' ');
    if (space != std::string::npos) entries[line.substr(0, space)] = line.substr(space + 1);
  }
  return entries;
}

}    // namespace mlff_cache
