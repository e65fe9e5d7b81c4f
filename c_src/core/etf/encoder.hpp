// EtfEncoder: appends External Term Format terms to a byte buffer, choosing the
// same tags OTP 25's term_to_binary/1 writes.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <utility>

#include "core/byte_order.hpp"
#include "core/etf/atom_text.hpp"
#include "core/etf/byte_buffer.hpp"
#include "core/etf/tags.hpp"

namespace switchboard::core::etf {

// Big-endian stores (the wire format is big-endian throughout), by the one
// byte-order helper.
inline void store_u16(std::uint8_t* at, std::uint16_t value) noexcept {
  store_big_endian(at, value);
}
inline void store_u32(std::uint8_t* at, std::uint32_t value) noexcept {
  store_big_endian(at, value);
}
inline void store_u64(std::uint8_t* at, std::uint64_t value) noexcept {
  store_big_endian(at, value);
}

// Containers are written as a header followed by their elements: a list header
// of length n is followed by n elements and then the tail (usually nil()); a
// map header of n pairs by key, value, key, value... The encoder does not
// check that the caller writes the promised number of elements.
class EtfEncoder {
 public:
  EtfEncoder() = default;
  explicit EtfEncoder(std::size_t reserve_bytes) : out_(reserve_bytes) {}

  void version() { out_.push_back(kVersionMagic); }

  void small_integer(std::uint8_t value) {
    std::uint8_t* at = out_.extend(2);
    at[0] = tag_byte(Tag::small_integer);
    at[1] = value;
  }
  void integer(std::int32_t value) {
    std::uint8_t* at = out_.extend(5);
    at[0] = tag_byte(Tag::integer);
    store_u32(at + 1, static_cast<std::uint32_t>(value));
  }
  // The canonical form: SMALL_INTEGER_EXT for 0..255, INTEGER_EXT when it
  // fits 32 bits, SMALL_BIG_EXT otherwise.
  void int64(std::int64_t value) {
    if (value >= 0 && value <= 255) {
      small_integer(static_cast<std::uint8_t>(value));
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
      integer(static_cast<std::int32_t>(value));
    } else {
      const bool negative = value < 0;
      const std::uint64_t magnitude =
          negative ? ~static_cast<std::uint64_t>(value) + 1 : static_cast<std::uint64_t>(value);
      small_big_from_magnitude(negative, magnitude);
    }
  }
  void uint64(std::uint64_t value);
  // SMALL_BIG_EXT (or LARGE_BIG_EXT past 255 bytes) from a little-endian
  // magnitude, written as given; canonical output wants no trailing zero bytes
  // and a value outside int64 (use int64() for those).
  void big_integer(bool negative, std::span<const std::uint8_t> magnitude);

  void float64(double value) {
    std::uint8_t* at = out_.extend(9);
    at[0] = tag_byte(Tag::new_float);
    store_u64(at + 1, std::bit_cast<std::uint64_t>(value));
  }

  // `utf8` must be valid atom text (is_valid_atom_text). OTP 25 writes
  // ATOM_EXT in latin1 whenever every character is below U+0100, and
  // SMALL_ATOM_UTF8_EXT / ATOM_UTF8_EXT only for the others.
  void atom(std::string_view utf8) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(utf8.data());
    if (utf8.size() <= kMaxAtomCharacters && is_ascii(bytes, utf8.size())) {
      std::uint8_t* at = out_.extend(3 + utf8.size());
      at[0] = tag_byte(Tag::atom_latin1);
      store_u16(at + 1, static_cast<std::uint16_t>(utf8.size()));
      copy_bytes(at + 3, bytes, utf8.size());
    } else {
      non_ascii_atom(utf8);
    }
  }

  void binary(std::span<const std::uint8_t> bytes) {
    std::uint8_t* at = out_.extend(5 + bytes.size());
    at[0] = tag_byte(Tag::binary);
    store_u32(at + 1, static_cast<std::uint32_t>(bytes.size()));
    copy_bytes(at + 5, bytes.data(), bytes.size());
  }
  void binary(std::string_view bytes) {
    binary({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  }
  // BIT_BINARY_EXT; `bits_in_last_byte` is 1..8 and the unused low bits of the
  // last byte are written as zero, as OTP does.
  void bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits_in_last_byte);
  // STRING_EXT: a list of at most 65535 small integers, one byte each.
  void string(std::span<const std::uint8_t> bytes);

  void list_header(std::uint32_t length) { header32(Tag::list, length); }
  void nil() { out_.push_back(tag_byte(Tag::nil)); }
  void tuple_header(std::uint32_t arity) {
    if (arity <= 255) {
      std::uint8_t* at = out_.extend(2);
      at[0] = tag_byte(Tag::small_tuple);
      at[1] = static_cast<std::uint8_t>(arity);
    } else {
      header32(Tag::large_tuple, arity);
    }
  }
  void map_header(std::uint32_t pairs) { header32(Tag::map, pairs); }

  // Node names must be valid atom text. OTP 25 writes NEW_PID_EXT, NEWER_REFERENCE_EXT,
  // and NEW_PORT_EXT unless the port number needs more than 28 bits (V4_PORT_EXT).
  void pid(std::string_view node, std::uint32_t id, std::uint32_t serial, std::uint32_t creation);
  void port(std::string_view node, std::uint64_t id, std::uint32_t creation);
  void reference(std::string_view node, std::uint32_t creation, std::span<const std::uint32_t> ids);
  void export_fun(std::string_view module, std::string_view function, std::uint32_t arity);

  // Splices already-encoded term bytes (no version byte): pre-encoded fragments,
  // NEW_FUN_EXT passed through from a decoder.
  void raw(std::span<const std::uint8_t> encoded) { out_.append(encoded); }

  // Compresses the whole term (the buffer must hold exactly one term after the
  // version byte) as COMPRESSED with zlib at `level` 1-9, keeping the result
  // only when it is no larger than the plain form, as term_to_binary(T,
  // [{compressed, Level}]) does. Level 0 leaves the term as it is. Returns
  // whether the buffer now holds the compressed form.
  bool compress(int level);

  std::span<const std::uint8_t> bytes() const noexcept { return out_.bytes(); }
  std::size_t size() const noexcept { return out_.size(); }
  ByteBuffer& buffer() noexcept { return out_; }
  ByteBuffer take() noexcept { return std::move(out_); }
  void clear() noexcept { out_.clear(); }

 private:
  void header32(Tag tag, std::uint32_t value) {
    std::uint8_t* at = out_.extend(5);
    at[0] = tag_byte(tag);
    store_u32(at + 1, value);
  }
  // Inline: 64-bit ids (snowflakes) take this path on every encode.
  void small_big_from_magnitude(bool negative, std::uint64_t magnitude) {
    const auto count = static_cast<std::size_t>((64 - std::countl_zero(magnitude) + 7) / 8);
    std::uint8_t* at = out_.extend(3 + 8);
    at[0] = tag_byte(Tag::small_big);
    at[1] = static_cast<std::uint8_t>(count);
    at[2] = negative ? 1 : 0;
    // Little-endian digits; the bytes past `count` are zero and given back.
    for (std::size_t i = 0; i < 8; ++i) at[3 + i] = static_cast<std::uint8_t>(magnitude >> (8 * i));
    out_.truncate(out_.size() - (8 - count));
  }
  void non_ascii_atom(std::string_view utf8);

  ByteBuffer out_;
};

}  // namespace switchboard::core::etf
