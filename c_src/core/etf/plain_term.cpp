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

// Inputs long enough to nest deeper than max_depth keep a stack of open
// containers; plain payloads are shallow, deeper ones take the decoder's path.
constexpr std::size_t kMaxPlainDepth = 64;

// What read_term returns for a term that is not plain (or not readable).
constexpr std::uint64_t kNotPlain = ~std::uint64_t{0};

std::uint32_t load_u32(const std::uint8_t* at) noexcept {
  return (std::uint32_t{at[0]} << 24) | (std::uint32_t{at[1]} << 16) | (std::uint32_t{at[2]} << 8) |
         std::uint32_t{at[3]};
}

bool is_literal_atom(const std::uint8_t* name, std::size_t length) noexcept {
  const std::string_view text(reinterpret_cast<const char*>(name), length);
  return text == "true" || text == "false" || text == "nil";
}

bool finite_double(const std::uint8_t* at) noexcept {
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < 8; ++i) bits = (bits << 8) | at[i];
  return std::isfinite(std::bit_cast<double>(bits));
}

// An atom with an ASCII name of at most kMaxAtomCharacters, `left` bytes
// from its tag to the end of the input: its size in bytes times 2, plus 1
// when it is true, false or nil; 0 for any other atom. Out of line (atoms are
// rare in payloads) and returning a value, so that the scan's own state stays
// in registers.
[[gnu::noinline]] std::size_t read_atom(const std::uint8_t* p, std::size_t left) noexcept {
  const bool small =
      p[0] == tag_byte(Tag::small_atom_latin1) || p[0] == tag_byte(Tag::small_atom_utf8);
  const std::size_t header = small ? 2 : 3;
  if (left < header) return 0;
  const std::size_t length = small ? p[1] : (std::size_t{p[1]} << 8) | p[2];
  if (length > kMaxAtomCharacters || left - header < length || !is_ascii(p + header, length)) {
    return 0;
  }
  return (header + length) * 2 + (is_literal_atom(p + header, length) ? 1 : 0);
}

// Reads the header of the plain term whose tag is at `pos` (pos < end) and
// moves pos past the term, children excepted. Returns how many terms the
// term holds (a list's tail included), or kNotPlain. A length may move pos
// past `end`: the caller checks. With kCareful every read is checked against
// `end`; without, the caller guarantees 9 bytes from pos (a tag and the
// longest fixed part, a float's), the common case, with no check at all.
template <bool kCareful>
[[gnu::always_inline]] inline std::uint64_t read_term(const std::uint8_t* base, std::size_t end,
                                                      std::size_t& pos, PlainTerm& plain) noexcept {
  const std::uint8_t* p = base + pos;
  const std::size_t left = end - pos;
  const auto has = [left](std::size_t bytes) { return !kCareful || left >= bytes; };
  // Binaries first, outside the switch: most of a payload's terms, one
  // well-predicted branch instead of an indirect jump.
  if (p[0] == tag_byte(Tag::binary)) [[likely]] {
    if (!has(5)) return kNotPlain;
    const std::size_t size = load_u32(p + 1);
    plain.longest_binary = std::max(plain.longest_binary, size);
    pos += 5 + size;
    return 0;
  }
  switch (static_cast<Tag>(p[0])) {
    case Tag::map: {
      if (!has(5)) return kNotPlain;
      const std::uint32_t pairs = load_u32(p + 1);
      if (pairs > kMaxPlainMapPairs) return kNotPlain;
      pos += 5;
      return std::uint64_t{pairs} * 2;
    }
    case Tag::small_integer:
      if (!has(2)) return kNotPlain;
      pos += 2;
      return 0;
    case Tag::small_big: {
      if (!has(3)) return kNotPlain;
      const std::size_t length = p[1];
      if (length - 1 > 7) return kNotPlain;  // 1 to 8 bytes
      pos += 3 + length;
      return 0;
    }
    case Tag::nil:
      pos += 1;
      return 0;
    case Tag::list: {
      if (!has(5)) return kNotPlain;
      const std::uint32_t length = load_u32(p + 1);
      // OTP reads a list of length 0 as its tail alone, an oddity left to the
      // decoder.
      if (length == 0) return kNotPlain;
      pos += 5;
      return std::uint64_t{length} + 1;
    }
    case Tag::integer:
      if (!has(5)) return kNotPlain;
      pos += 5;
      return 0;
    case Tag::small_tuple:
      if (!has(2)) return kNotPlain;
      pos += 2;
      return p[1];
    case Tag::large_tuple:
      if (!has(5)) return kNotPlain;
      pos += 5;
      return load_u32(p + 1);
    case Tag::string:
      if (!has(3)) return kNotPlain;
      pos += 3 + ((std::size_t{p[1]} << 8) | p[2]);
      return 0;
    case Tag::new_float:
      if (!has(9) || !finite_double(p + 1)) return kNotPlain;
      pos += 9;
      return 0;
    case Tag::atom_latin1:
    case Tag::atom_utf8:
    case Tag::small_atom_latin1:
    case Tag::small_atom_utf8: {
      const std::size_t atom = read_atom(p, left);
      if (atom == 0) return kNotPlain;
      pos += atom / 2;
      plain.only_literal_atoms = plain.only_literal_atoms && (atom & 1) != 0;
      return 0;
    }
    default:
      return kNotPlain;
  }
}

// Where the input cannot nest deeper than max_depth: counts the terms still
// to read, the end being all the scan needs (no stack, no depth).
std::optional<PlainTerm> scan_shallow(std::span<const std::uint8_t> bytes,
                                      std::size_t begin) noexcept {
  const std::uint8_t* const base = bytes.data();
  const std::size_t end = bytes.size();
  PlainTerm plain{0, 0, true};
  std::uint64_t pending = 1;  // terms still to read
  std::size_t pos = begin;
  for (; end >= 9 && pos <= end - 9;) {
    const std::uint64_t children = read_term<false>(base, end, pos, plain);
    if (children == kNotPlain) return std::nullopt;
    pending += children - 1;
    if (pending == 0) break;
  }
  while (pending != 0 && pos < end) {
    const std::uint64_t children = read_term<true>(base, end, pos, plain);
    if (children == kNotPlain) return std::nullopt;
    pending += children - 1;
  }
  if (pending != 0 || pos > end) return std::nullopt;
  plain.end = pos;
  return plain;
}

// Keeps a stack of the terms still to read in each open container.
std::optional<PlainTerm> scan_nested(std::span<const std::uint8_t> bytes, std::size_t begin,
                                     std::size_t max_depth) noexcept {
  const std::uint8_t* const base = bytes.data();
  const std::size_t end = bytes.size();
  const std::size_t depth_limit = std::min(max_depth, kMaxPlainDepth);
  std::uint64_t remaining[kMaxPlainDepth];
  std::size_t depth = 0;
  std::size_t pos = begin;
  PlainTerm plain{0, 0, true};
  for (;;) {
    if (pos >= end) return std::nullopt;
    const std::uint64_t children = read_term<true>(base, end, pos, plain);
    if (children == kNotPlain) return std::nullopt;
    if (children != 0) {
      if (depth >= depth_limit) return std::nullopt;
      remaining[depth++] = children;
      continue;
    }
    // A term is complete, and with it every container it was the last child of.
    while (depth != 0 && --remaining[depth - 1] == 0) --depth;
    if (depth == 0) {
      if (pos > end) return std::nullopt;
      plain.end = pos;
      return plain;
    }
  }
}

}  // namespace

std::optional<PlainTerm> scan_plain_term(std::span<const std::uint8_t> bytes, std::size_t begin,
                                         std::size_t max_depth) noexcept {
  if (begin >= bytes.size()) return std::nullopt;
  // A container with a term in it takes 2 bytes or more, and the innermost
  // term 1: more than max_depth of them open at once take 2 * max_depth + 3
  // bytes or more. Shorter inputs need no depth count.
  const std::size_t length = bytes.size() - begin;
  if ((length - 1) / 2 <= max_depth) return scan_shallow(bytes, begin);
  return scan_nested(bytes, begin, max_depth);
}

}  // namespace switchboard::core::etf
