#include "core/etf/plain_term.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string_view>

#include "core/etf/atom_text.hpp"
#include "core/etf/tags.hpp"

namespace switchboard::core::etf {
namespace {

// Plain payloads are shallow; deeper ones take the decoder's path.
constexpr std::size_t kMaxPlainDepth = 64;

std::uint32_t load_u32(const std::uint8_t* at) noexcept {
  return (std::uint32_t{at[0]} << 24) | (std::uint32_t{at[1]} << 16) | (std::uint32_t{at[2]} << 8) |
         std::uint32_t{at[3]};
}

bool is_literal_atom(const std::uint8_t* name, std::size_t length) noexcept {
  const std::string_view text(reinterpret_cast<const char*>(name), length);
  return text == "true" || text == "false" || text == "nil";
}

}  // namespace

std::optional<PlainTerm> scan_plain_term(std::span<const std::uint8_t> bytes, std::size_t begin,
                                         std::size_t max_depth) noexcept {
  const std::uint8_t* const base = bytes.data();
  const std::size_t end = bytes.size();
  const std::size_t depth_limit = std::min(max_depth, kMaxPlainDepth);
  // Children still to read in each open container (a list's tail included).
  std::uint64_t remaining[kMaxPlainDepth];
  std::size_t depth = 0;
  std::size_t pos = begin;
  PlainTerm plain{0, 0, true};
  for (;;) {
    if (pos >= end) return std::nullopt;
    const std::uint8_t* p = base + pos;
    const std::size_t left = end - pos;
    std::uint64_t children = 0;
    switch (static_cast<Tag>(p[0])) {
      case Tag::binary: {
        if (left < 5) return std::nullopt;
        const std::size_t size = load_u32(p + 1);
        if (left - 5 < size) return std::nullopt;
        plain.longest_binary = std::max(plain.longest_binary, size);
        pos += 5 + size;
        break;
      }
      case Tag::small_integer:
        if (left < 2) return std::nullopt;
        pos += 2;
        break;
      case Tag::integer:
        if (left < 5) return std::nullopt;
        pos += 5;
        break;
      case Tag::small_big:
        if (left < 3 || p[1] == 0 || p[1] > 8 || left - 3 < p[1]) return std::nullopt;
        pos += 3 + std::size_t{p[1]};
        break;
      case Tag::new_float: {
        if (left < 9) return std::nullopt;
        std::uint64_t bits = 0;
        for (std::size_t i = 1; i <= 8; ++i) bits = (bits << 8) | p[i];
        if (!std::isfinite(std::bit_cast<double>(bits))) return std::nullopt;
        pos += 9;
        break;
      }
      case Tag::atom_latin1:
      case Tag::atom_utf8:
      case Tag::small_atom_latin1:
      case Tag::small_atom_utf8: {
        const bool small =
            p[0] == tag_byte(Tag::small_atom_latin1) || p[0] == tag_byte(Tag::small_atom_utf8);
        const std::size_t header = small ? 2 : 3;
        if (left < header) return std::nullopt;
        const std::size_t length = small ? p[1] : (std::size_t{p[1]} << 8) | p[2];
        if (length > kMaxAtomCharacters || left - header < length ||
            !is_ascii(p + header, length)) {
          return std::nullopt;
        }
        plain.only_literal_atoms = plain.only_literal_atoms && is_literal_atom(p + header, length);
        pos += header + length;
        break;
      }
      case Tag::string: {
        if (left < 3) return std::nullopt;
        const std::size_t length = (std::size_t{p[1]} << 8) | p[2];
        if (left - 3 < length) return std::nullopt;
        pos += 3 + length;
        break;
      }
      case Tag::nil:
        pos += 1;
        break;
      case Tag::list: {
        if (left < 5) return std::nullopt;
        const std::uint32_t length = load_u32(p + 1);
        // Every element and the tail take at least a byte. OTP reads a list of
        // length 0 as its tail alone, an oddity left to the decoder.
        if (length == 0 || left - 5 <= length) return std::nullopt;
        pos += 5;
        children = std::uint64_t{length} + 1;
        break;
      }
      case Tag::small_tuple:
      case Tag::large_tuple: {
        const bool small = p[0] == tag_byte(Tag::small_tuple);
        const std::size_t header = small ? 2 : 5;
        if (left < header) return std::nullopt;
        const std::uint32_t arity = small ? p[1] : load_u32(p + 1);
        if (left - header < arity) return std::nullopt;
        pos += header;
        children = arity;
        break;
      }
      case Tag::map: {
        if (left < 5) return std::nullopt;
        const std::uint32_t pairs = load_u32(p + 1);
        if (pairs > kMaxPlainMapPairs || (left - 5) / 2 < pairs) return std::nullopt;
        pos += 5;
        children = std::uint64_t{pairs} * 2;
        break;
      }
      default:
        return std::nullopt;
    }
    if (children != 0) {
      if (depth >= depth_limit) return std::nullopt;
      remaining[depth++] = children;
      continue;
    }
    // A term is complete, and with it every container it was the last child of.
    while (depth != 0 && --remaining[depth - 1] == 0) --depth;
    if (depth == 0) {
      plain.end = pos;
      return plain;
    }
  }
}

}  // namespace switchboard::core::etf
