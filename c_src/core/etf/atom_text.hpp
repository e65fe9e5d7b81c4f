// Atom text: OTP 25 stores atoms as UTF-8 but writes latin1 on the wire when it can.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/etf/containers.hpp"

namespace switchboard::core::etf {

bool is_long_ascii(const std::uint8_t* bytes, std::size_t count) noexcept;

// Inline for the short names most atoms have.
inline bool is_ascii(const std::uint8_t* bytes, std::size_t count) noexcept {
  if (count > 16) return is_long_ascii(bytes, count);
  std::uint8_t any = 0;
  for (std::size_t i = 0; i < count; ++i) any |= bytes[i];
  return any < 0x80;
}

// Checks UTF-8 as strictly as OTP's atom table (no overlong forms, surrogates or
// code points above U+10FFFF) and counts its characters.
bool validate_utf8(const std::uint8_t* bytes, std::size_t count, std::size_t& characters) noexcept;

// Replaces `out` with the UTF-8 form of latin1 text.
void latin1_to_utf8(const std::uint8_t* latin1, std::size_t count, Text& out);

// Writes the latin1 form of valid UTF-8 `text` to `out` (text.size() bytes are
// enough) and returns its length, or returns npos when some character is
// above U+00FF and the text has no latin1 form.
std::size_t utf8_to_latin1(std::string_view text, std::uint8_t* out) noexcept;

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

// Whether `text` can name an atom: valid UTF-8 of at most 255 characters.
bool is_valid_atom_text(std::string_view text) noexcept;

}  // namespace switchboard::core::etf
