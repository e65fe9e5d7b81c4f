// The byte values of the External Term Format, as OTP's external.h names them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace switchboard::core::etf {

inline constexpr std::uint8_t kVersionMagic = 131;

enum class Tag : std::uint8_t {
  compressed = 80,
  new_float = 70,
  bit_binary = 77,
  atom_cache_ref = 82,
  new_pid = 88,
  new_port = 89,
  newer_reference = 90,
  small_integer = 97,
  integer = 98,
  float_string = 99,
  atom_latin1 = 100,
  reference = 101,
  port = 102,
  pid = 103,
  small_tuple = 104,
  large_tuple = 105,
  nil = 106,
  string = 107,
  list = 108,
  binary = 109,
  small_big = 110,
  large_big = 111,
  new_fun = 112,
  export_fun = 113,
  new_reference = 114,
  small_atom_latin1 = 115,
  map = 116,
  fun = 117,
  atom_utf8 = 118,
  small_atom_utf8 = 119,
  v4_port = 120,
};

constexpr std::uint8_t tag_byte(Tag tag) { return static_cast<std::uint8_t>(tag); }

// Limits OTP 25 enforces when reading terms (erts/emulator/beam: atom.h, big.h,
// external.c); keeping them here lets the encoder and decoder agree.
inline constexpr std::size_t kMaxAtomCharacters = 255;
inline constexpr std::size_t kMaxAtomUtf8Bytes = 4 * kMaxAtomCharacters;
inline constexpr std::size_t kMaxStringExtLength = 0xffff;
inline constexpr std::size_t kMaxBigBytes = ((std::size_t{1} << 19) - 1) * 8;
inline constexpr std::size_t kMaxReferenceWords = 5;
inline constexpr std::uint32_t kMaxOldReferenceId = std::uint32_t{1} << 18;
inline constexpr std::uint32_t kMaxTinyCreation = 3;
inline constexpr std::size_t kMaxFunFreeVariables = 255;
// An Erlang "small" integer on a 64-bit VM: 60 bits, two's complement.
inline constexpr std::int64_t kMaxSmall = (std::int64_t{1} << 59) - 1;
inline constexpr std::int64_t kMinSmall = -(std::int64_t{1} << 59);
// Ports with numbers that fit the pre-OTP 24 layout still go out as NEW_PORT_EXT.
inline constexpr std::uint64_t kMaxNewPortExtId = 0x0fffffff;

}  // namespace switchboard::core::etf
