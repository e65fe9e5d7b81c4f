// Builds a TermKey from events describing one term, in the order a walker
// meets them (depth first, left to right).
//
// Containers are opened and closed explicitly; every call that is not a
// container boundary adds one complete term. Maps take their entries in any
// order and sort them when closed. Calls that break the nesting rules throw
// std::logic_error; values no Erlang term can have throw std::invalid_argument.
//
//   builder.begin_tuple(3);
//   builder.small_int(-5);
//   builder.binary(name);
//   builder.small_int(user_id);
//   builder.end_tuple();
//   TermKey key = builder.finish();
//
// A builder is reusable after finish() or reset() and keeps its buffers, so
// one per thread avoids allocating per key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "core/memory.hpp"
#include "core/sorted_set/term_key.hpp"

namespace switchboard::core {

namespace detail {
class ExternalTermParser;
}

class TermKeyBuilder {
 public:
  TermKeyBuilder();

  void small_int(std::int64_t value);
  // A bignum as sign and magnitude; values that fit int64 become small_int.
  void big_int(bool negative, std::span<const std::uint8_t> magnitude_little_endian);
  // Finite values only (Erlang has no NaN or infinity).
  void float64(double value);
  void atom(std::string_view utf8);
  void binary(std::span<const std::uint8_t> bytes);
  // `bits_in_last_byte` (1..8) counts the significant high bits of the last
  // byte; 8 makes this a binary. Unused low bits are ignored.
  void bitstring(std::span<const std::uint8_t> bytes, unsigned bits_in_last_byte);

  void begin_tuple(std::size_t arity);
  void end_tuple();

  // Elements follow; end_list() closes a proper list (an empty one is nil).
  // For an improper list call improper_tail(), add the tail term, then
  // end_list().
  void begin_list();
  void improper_tail();
  void end_list();
  void nil();

  // `size` key/value pairs follow as key, value, key, value, in any order.
  void begin_map(std::size_t size);
  void end_map();

  // A pid, port, reference or fun given as its external term format bytes
  // (what enif_term_to_binary returns). Its ordering fields are read from
  // those bytes and the bytes themselves come back from read_term_key.
  void opaque(std::span<const std::uint8_t> external_term);
  // Any term in external term format (starting with the version byte 131).
  void external_term(std::span<const std::uint8_t> external_term);

  // The finished key; throws std::logic_error unless exactly one complete
  // term was added. Leaves the builder empty.
  TermKey finish();
  void reset() noexcept;

 private:
  friend class detail::ExternalTermParser;

  // A growable byte string. Encoding a key is mostly a few bytes at a time:
  // callers make room once per term and write through the pointer, instead
  // of paying std::vector's capacity check on every byte.
  class ByteBuffer {
   public:
    ByteBuffer() = default;
    ByteBuffer(const ByteBuffer& other);
    ByteBuffer(ByteBuffer&& other) noexcept;
    ByteBuffer& operator=(ByteBuffer other) noexcept;
    ~ByteBuffer();

    std::uint8_t* data() noexcept { return data_; }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    void clear() noexcept { size_ = 0; }
    void reserve(std::size_t capacity);
    // At least `count` writable bytes past the end; advance_to() keeps what
    // was written.
    std::uint8_t* room(std::size_t count) {
      if (capacity_ - size_ < count) grow(count);
      return data_ + size_;
    }
    void advance_to(const std::uint8_t* end) noexcept {
      size_ = static_cast<std::size_t>(end - data_);
    }
    void push_back(std::uint8_t byte) {
      *room(1) = byte;
      ++size_;
    }
    void append(const std::uint8_t* bytes, std::size_t count) {
      if (count == 0) return;
      std::memcpy(room(count), bytes, count);
      size_ += count;
    }

   private:
    void grow(std::size_t count);

    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
  };

  enum class FrameKind : std::uint8_t { tuple, list, list_tail, map, local_fun };

  struct Frame {
    FrameKind kind;
    bool exact;                 // numbers are compared with =:= (inside a map key)
    bool tail_written = false;  // list_tail: the tail term has been added
    std::size_t expected = 0;   // tuple: arity; map: 2 * size; local_fun: free variables
    std::size_t written = 0;    // terms added directly inside this frame
    std::size_t comparable_begin = 0;
    std::size_t side_begin = 0;
    std::size_t first_entry = 0;  // map: index of its first MapEntryMarks
  };

  struct MapEntryMarks {
    std::size_t key_comparable;
    std::size_t key_side;
    std::size_t value_comparable;
    std::size_t value_side;
  };

  // Called before each term is written; emits what the parent needs first
  // (a cons byte in a list) and reports whether numbers are exact here.
  bool begin_term();
  bool begin_term_in_frame();
  // Called when a term is complete.
  void end_term();

  void write_zero(bool exact, bool is_float, bool negative_zero);
  void write_number(bool exact, bool is_float, bool negative, std::uint64_t biased_exponent,
                    std::uint64_t fraction_left_aligned);
  void write_big_number(bool negative, std::span<const std::uint8_t> magnitude, bool exact);
  void write_number_header(bool negative, std::uint64_t biased_exponent);
  void write_side_number(bool is_float, bool negative_zero);
  void write_escaped(std::span<const std::uint8_t> bytes);
  void write_escaped_terminated(std::span<const std::uint8_t> bytes);
  void write_text(std::uint8_t tag, std::span<const std::uint8_t> bytes);
  void write_ordered_size(std::uint64_t value);
  void write_u32(std::uint32_t value);
  void write_u64(std::uint64_t value);
  void write_side_opaque(std::span<const std::uint8_t> external_term_body);
  void put(std::uint8_t byte) { comparable_.push_back(byte); }

  // Typed opaque terms, used by the external term parser.
  void pid(std::string_view node, std::uint32_t id, std::uint32_t serial, std::uint32_t creation);
  void port(std::string_view node, std::uint64_t id, std::uint32_t creation);
  void reference(std::string_view node, std::uint32_t creation,
                 std::span<const std::uint32_t> words);
  void export_fun(std::string_view module, std::string_view function, std::uint8_t arity);
  void begin_local_fun(std::string_view module, std::int32_t old_index, std::int32_t old_uniq,
                       std::uint32_t free_variables);
  void end_local_fun();

  void sort_map_entries(const Frame& frame);

  ByteBuffer comparable_;
  ByteBuffer side_;
  ByteBuffer scratch_;
  std::vector<Frame, Allocator<Frame>> frames_;
  std::vector<MapEntryMarks, Allocator<MapEntryMarks>> map_entries_;
  std::size_t complete_terms_ = 0;   // at top level
  std::size_t side_suppressed_ = 0;  // > 0 inside a fun's free variables
  bool side_needed_ = false;         // a float or an opaque term was written
};

}  // namespace switchboard::core
