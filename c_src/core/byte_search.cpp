#include "core/byte_search.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

namespace switchboard::core {
namespace {

// How often a byte is expected in encoded terms, roughly: zero (lengths,
// small integers) and text most, bytes above 127 (outside ASCII) least.
int commonness(std::uint8_t byte) noexcept {
  if (byte == 0) return 4;
  if (byte >= 0x20 && byte < 0x7f) return 3;
  if (byte == 0xff || byte < 0x20) return 2;
  return 1;
}

std::size_t rarest_index(std::span<const std::uint8_t> needle) noexcept {
  std::size_t best = 0;
  for (std::size_t i = 1; i < needle.size(); ++i) {
    if (commonness(needle[i]) < commonness(needle[best])) best = i;
  }
  return best;
}

}  // namespace

bool contains_bytes(std::span<const std::uint8_t> haystack, std::span<const std::uint8_t> needle) {
  const std::size_t n = haystack.size();
  const std::size_t m = needle.size();
  if (m == 0 || m > n) return m == 0;
  const std::size_t k = rarest_index(needle);
  const std::uint8_t* const base = haystack.data();
  // Where needle[k] can stand: from k to n - m + k.
  const std::uint8_t* at = base + k;
  const std::uint8_t* const last = base + (n - m + k);
  // Compares allowed before the rest goes to Boyer-Moore: a sixteenth of the
  // haystack, so that the memchr path costs at most a few m per 16 bytes.
  std::size_t compares_left = n / 16 + 16;
  while (at <= last) {
    const void* found = std::memchr(at, needle[k], static_cast<std::size_t>(last - at) + 1);
    if (found == nullptr) return false;
    at = static_cast<const std::uint8_t*>(found);
    if (std::memcmp(at - k, needle.data(), m) == 0) return true;
    if (--compares_left == 0) {
      const std::uint8_t* from = at - k + 1;
      const std::boyer_moore_searcher searcher(needle.begin(), needle.end());
      return std::search(from, base + n, searcher) != base + n;
    }
    ++at;
  }
  return false;
}

}  // namespace switchboard::core
