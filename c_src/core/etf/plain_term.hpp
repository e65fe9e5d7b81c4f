// scan_plain_term: where a term built only from plain data ends, found
// without decoding it.
//
// Plain data is the part of the format where OTP 25's binary_to_term/1 and
// EtfDecoder read the same terms and refuse the same inputs: integers
// (SMALL_INTEGER_EXT, INTEGER_EXT, SMALL_BIG_EXT of 1 to 8 bytes), finite
// NEW_FLOAT_EXT, atoms with ASCII names, BINARY_EXT, STRING_EXT, NIL_EXT,
// LIST_EXT with at least one element, tuples, and maps of at most 32 pairs
// (flat maps, whose equal keys both refuse). Anything else ends the scan
// without a result: other tags, larger maps, deeper nesting than allowed,
// malformed or truncated input. A caller that gets no result decodes with
// EtfDecoder, which says precisely what and where the problem is.
//
// The scan is one switch per term (binaries, most of a payload, before it);
// its cost is the chain of dependent loads of the terms' lengths. An input
// too short to hold more than max_depth containers open at once is scanned
// by counting the terms still to read, without a stack of containers: the
// NIF's inputs (at most 511 bytes, max_depth 512 by default) all are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace switchboard::core::etf {

struct PlainTerm {
  std::size_t end;             // offset just past the term
  std::size_t longest_binary;  // bytes in its longest BINARY_EXT (0 when none)
  bool only_literal_atoms;     // its atoms (if any) are all true, false or nil
};

// Largest map scan_plain_term accepts, in pairs.
inline constexpr std::uint32_t kMaxPlainMapPairs = 32;

// The plain term that starts at `begin` in `bytes` (after any version byte),
// with at most `max_depth` containers open at once as DecodeLimits counts
// them; nullopt when the term there is not plain.
std::optional<PlainTerm> scan_plain_term(std::span<const std::uint8_t> bytes, std::size_t begin,
                                         std::size_t max_depth) noexcept;

}  // namespace switchboard::core::etf
