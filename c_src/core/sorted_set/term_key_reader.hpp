// Walks a TermKey back into the events of the term it was built from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/sorted_set/term_key.hpp"

namespace switchboard::core {

// Receives one term depth first. Spans and string views are valid only for
// the duration of the call.
class TermVisitor {
 public:
  virtual ~TermVisitor() = default;

  // Integers that fit int64 arrive here, larger ones as big_integer.
  virtual void integer(std::int64_t value) = 0;
  virtual void big_integer(bool negative,
                           std::span<const std::uint8_t> magnitude_little_endian) = 0;
  virtual void float64(double value) = 0;
  virtual void atom(std::string_view utf8) = 0;
  virtual void binary(std::span<const std::uint8_t> bytes) = 0;
  // Only for bitstrings whose size is not a whole number of bytes; the low
  // unused bits of the last byte are zero.
  virtual void bitstring(std::span<const std::uint8_t> bytes, unsigned bits_in_last_byte) = 0;

  virtual void begin_tuple(std::size_t arity) = 0;
  virtual void end_tuple() = 0;
  // `element_count` elements follow, then end_list() for a proper list, or
  // improper_tail(), the tail term and end_list(). An empty list is nil().
  virtual void begin_list(std::size_t element_count) = 0;
  virtual void improper_tail() = 0;
  virtual void end_list() = 0;
  virtual void nil() = 0;
  // `size` keys in ascending key order, then their `size` values in the same
  // order (the layout enif_make_map_from_arrays takes).
  virtual void begin_map(std::size_t size) = 0;
  virtual void end_map() = 0;

  // A pid, port, reference or fun as its external term format bytes.
  virtual void opaque(OpaqueKind kind, std::span<const std::uint8_t> external_term) = 0;
};

// Throws std::invalid_argument if `key` is not a well-formed key.
void read_term_key(TermKeyView key, TermVisitor& visitor);

namespace detail {
// read_term_key without its shortcuts for small integers and plain binaries:
// the general decoder alone, for tests that hold the shortcuts against it.
void read_term_key_without_fast_paths(TermKeyView key, TermVisitor& visitor);
}  // namespace detail

}  // namespace switchboard::core
