// What the JSON reader refuses and where, and the limits it enforces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace switchboard::core::json {

// Every reason has a stable snake_case name (parse_error_name) that the glue
// hands to Elixir as the DecodeError's reason; never rename one.
enum class ParseErrc : std::uint8_t {
  ok,
  unexpected_byte,   // a byte that cannot continue a JSON text here
  unexpected_end,    // the input ends inside a value (offset = input size)
  invalid_escape,    // a backslash not followed by one of RFC 8259's escapes
  lone_surrogate,    // a \u escape of a surrogate without its other half
  invalid_utf8,      // a string holding bytes that are not well-formed UTF-8
  max_depth,         // more nested arrays and objects than ParseLimits::max_depth
  max_size,          // the input is longer than ParseLimits::max_size
  number_too_large,  // an integer of more than max_integer_digits digits, or a float overflow
  out_of_budget,     // the work budget ran out (the caller retries where time is unlimited)
  rejected,          // the handler refused a value (its own reason)
};

std::string_view parse_error_name(ParseErrc reason) noexcept;

struct ParseLimits {
  // Arrays and objects open at once; the outermost is depth 1.
  std::size_t max_depth = 512;
  std::size_t max_size = std::size_t{64} << 20;
  // Decimal digits of one integer. Turning digits into a binary integer costs
  // the square of their count; 4300 is Python's limit for the same reason.
  std::size_t max_integer_digits = 4300;
  // Work units (about one per input byte, more for big integers) a parse may
  // spend before it stops with out_of_budget; unlimited by default.
  std::size_t work_budget = SIZE_MAX;
};

struct ParseError {
  ParseErrc reason = ParseErrc::ok;
  // The 0-based byte offset where the offending token starts: the unexpected
  // byte, the backslash of a bad escape, the first byte of a malformed UTF-8
  // sequence, the bracket that is one level too deep, the number's first
  // byte, the input size at an unexpected end; 0 for max_size.
  std::size_t offset = 0;
  // The offending token's length where it is more than one byte (an escape
  // sequence: `\x`, `\uD800`), else 0.
  std::size_t length = 0;
  explicit operator bool() const noexcept { return reason != ParseErrc::ok; }
};

}  // namespace switchboard::core::json
