#include "core/etf/atom_text.hpp"

#include <cstring>

#include "core/etf/tags.hpp"

namespace switchboard::core::etf {

bool is_long_ascii(const std::uint8_t* bytes, std::size_t count) noexcept {
  std::size_t i = 0;
  // Eight bytes per step: atom names and node names are usually plain ASCII.
  for (; i + 8 <= count; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    if ((word & 0x8080808080808080ull) != 0) return false;
  }
  for (; i < count; ++i) {
    if (bytes[i] >= 0x80) return false;
  }
  return true;
}

bool validate_utf8(const std::uint8_t* bytes, std::size_t count, std::size_t& characters) noexcept {
  std::size_t chars = 0;
  std::size_t i = 0;
  while (i < count) {
    const std::uint8_t lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      ++chars;
      continue;
    }
    std::size_t length;
    std::uint32_t code;
    if ((lead & 0xe0) == 0xc0) {
      length = 2;
      code = lead & 0x1fu;
    } else if ((lead & 0xf0) == 0xe0) {
      length = 3;
      code = lead & 0x0fu;
    } else if ((lead & 0xf8) == 0xf0) {
      length = 4;
      code = lead & 0x07u;
    } else {
      return false;
    }
    if (count - i < length) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const std::uint8_t next = bytes[i + k];
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3fu);
    }
    static constexpr std::uint32_t kSmallestForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kSmallestForLength[length]) return false;
    if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += length;
    ++chars;
  }
  characters = chars;
  return true;
}

void latin1_to_utf8(const std::uint8_t* latin1, std::size_t count, Text& out) {
  out.clear();
  out.reserve(count * 2);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t c = latin1[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
}

std::size_t utf8_to_latin1(std::string_view text, std::uint8_t* out) noexcept {
  std::size_t written = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<std::uint8_t>(text[i]);
    if (c < 0x80) {
      out[written++] = c;
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < text.size()) {
      const auto next = static_cast<std::uint8_t>(text[++i]);
      out[written++] = static_cast<std::uint8_t>(((c & 0x03u) << 6) | (next & 0x3fu));
    } else {
      return npos;
    }
  }
  return written;
}

bool is_valid_atom_text(std::string_view text) noexcept {
  if (text.size() > kMaxAtomUtf8Bytes) return false;
  std::size_t characters = 0;
  return validate_utf8(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(),
                       characters) &&
         characters <= kMaxAtomCharacters;
}

}  // namespace switchboard::core::etf
