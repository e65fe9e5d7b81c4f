// Byte-level helpers shared by the JSON reader and writer: finding the next
// byte of a string that needs attention eight bytes at a time, and checking
// one UTF-8 sequence (Unicode 15, table 3-7: no overlongs, no surrogates,
// nothing above U+10FFFF).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace switchboard::core::json {

// Eight bytes (little-endian, the first in the low byte) with the top bit of
// each that is a quote, a backslash, a control character (< 0x20) or not
// ASCII (>= 0x80) set. Borrows only ever flag bytes after a truly flagged
// one, so the lowest flag is exact (higher ones may be false).
inline std::uint64_t special_byte_flags(std::uint64_t word) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  const std::uint64_t quote = word ^ (ones * '"');
  const std::uint64_t backslash = word ^ (ones * '\\');
  // A byte is flagged when it is zero after the xor, below 0x20, or has its
  // top bit set.
  return (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | (word - ones * 0x20) |
          word) &
         highs;
}

// The index of the first byte in [from, size) that is a quote, a backslash,
// a control character (< 0x20) or not ASCII (>= 0x80); `size` if none.
inline std::size_t find_special_byte(const std::uint8_t* data, std::size_t from,
                                     std::size_t size) noexcept {
  std::size_t at = from;
  while (at + 8 <= size) {
    std::uint64_t word;
    std::memcpy(&word, data + at, 8);
    const std::uint64_t flags = special_byte_flags(word);
    if (flags != 0) return at + static_cast<std::size_t>(__builtin_ctzll(flags) / 8);
    at += 8;
  }
  for (; at < size; ++at) {
    const std::uint8_t byte = data[at];
    if (byte == '"' || byte == '\\' || byte < 0x20 || byte >= 0x80) return at;
  }
  return size;
}

// The length (2..4) of the well-formed UTF-8 sequence starting at data[at]
// (whose first byte is >= 0x80), with its code point in `code_point`; 0 when
// the sequence is ill-formed or cut short by `size`.
inline std::size_t utf8_sequence(const std::uint8_t* data, std::size_t at, std::size_t size,
                                 std::uint32_t& code_point) noexcept {
  const std::uint8_t lead = data[at];
  std::size_t length;
  std::uint8_t low = 0x80;
  std::uint8_t high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code_point = lead & 0x1Fu;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code_point = lead & 0x0Fu;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code_point = lead & 0x07u;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (size - at < length) return 0;
  const std::uint8_t second = data[at + 1];
  if (second < low || second > high) return 0;
  code_point = (code_point << 6) | (second & 0x3Fu);
  for (std::size_t i = 2; i < length; ++i) {
    const std::uint8_t next = data[at + i];
    if ((next & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3Fu);
  }
  return length;
}

}  // namespace switchboard::core::json
