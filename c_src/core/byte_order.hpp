// Byte order: the one place that knows how to swap, load and store unsigned
// integers in big-endian order (the network and ETF order, and the order in
// which byte strings compare like integers). Header-only, constexpr where
// the standard allows; compiles to single bswap/movbe instructions.
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>

namespace switchboard::core {

// std::byteswap arrives in C++23.
template <std::unsigned_integral T>
constexpr T byteswap(T value) noexcept {
  if constexpr (sizeof(T) == 1) {
    return value;
  } else if constexpr (sizeof(T) == 2) {
    return __builtin_bswap16(value);
  } else if constexpr (sizeof(T) == 4) {
    return __builtin_bswap32(value);
  } else {
    static_assert(sizeof(T) == 8, "byteswap of 1, 2, 4 or 8 bytes");
    return __builtin_bswap64(value);
  }
}

// Converts between native and big-endian order (the same swap both ways).
template <std::unsigned_integral T>
constexpr T to_big_endian(T value) noexcept {
  if constexpr (std::endian::native == std::endian::big) {
    return value;
  } else {
    return byteswap(value);
  }
}
template <std::unsigned_integral T>
constexpr T from_big_endian(T value) noexcept {
  return to_big_endian(value);
}

// sizeof(T) bytes at `bytes`, most significant first (no alignment needed).
template <std::unsigned_integral T>
T load_big_endian(const void* bytes) noexcept {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return from_big_endian(value);
}

// Writes `value` at `out`, most significant byte first.
template <std::unsigned_integral T>
void store_big_endian(void* out, T value) noexcept {
  value = to_big_endian(value);
  std::memcpy(out, &value, sizeof(T));
}

}  // namespace switchboard::core
