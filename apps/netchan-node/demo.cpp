#include "demo.hpp"

#include <array>

#include <openssl/sha.h>

namespace demo {

namespace {

size_t leading_zero_bits(const unsigned char* digest, size_t size) {
  size_t bits = 0;
  for (size_t i = 0; i < size; ++i) {
    if (digest[i] == 0) {
      bits += 8;
      continue;
    }
    for (unsigned mask = 0x80; (digest[i] & mask) == 0; mask >>= 1)
      ++bits;
    break;
  }
  return bits;
}

} // namespace

bool solves(const job& j, uint64_t nonce) {
  std::array<uint64_t, 3> input{j.id, j.seed, nonce};
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()),
         sizeof(input), digest);
  return leading_zero_bits(digest, sizeof(digest)) >= j.difficulty;
}

uint64_t solve(const job& j) {
  uint64_t nonce = 0;
  while (!solves(j, nonce))
    ++nonce;
  return nonce;
}

} // namespace demo
