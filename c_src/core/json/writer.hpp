// Writes JSON text into one growable buffer: strings escaped (and checked as
// UTF-8) in the four modes Jason offers, integers of any size, and doubles
// in the shortest form that reads back to the same value, formatted exactly
// as Erlang/OTP 25 prints them (float_to_binary(F, [short]),
// Float.to_string/1): always with a fraction or an exponent.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "core/json/text_scan.hpp"

namespace switchboard::core::json {

enum class Escape : std::uint8_t {
  json,             // `"`, `\` and control characters
  javascript_safe,  // also U+2028 and U+2029
  html_safe,        // also `<` (\u003C), `/` (\/), U+2028 and U+2029
  unicode_safe,     // also every non-ASCII character (surrogate pairs above U+FFFF)
};

class Writer {
 public:
  static constexpr std::size_t npos = SIZE_MAX;

  Writer() = default;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  Writer(Writer&& other) noexcept;
  Writer& operator=(Writer&& other) noexcept;
  ~Writer() { std::free(data_); }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::string_view view() const noexcept { return {data_, size_}; }
  void clear() noexcept { size_ = 0; }
  void truncate(std::size_t size) noexcept { size_ = size; }
  // Gives back the memory of a buffer grown past `keep` bytes.
  void shrink_to(std::size_t keep) noexcept;

  void byte(char c) {
    reserve(1);
    data_[size_++] = c;
  }
  void raw(std::string_view bytes) {
    reserve(bytes.size());
    if (!bytes.empty()) std::memcpy(data_ + size_, bytes.data(), bytes.size());
    size_ += bytes.size();
  }
  void null_value() { raw("null"); }
  void boolean(bool value) { raw(value ? std::string_view("true") : std::string_view("false")); }
  void integer(std::int64_t value);
  // An integer given as its magnitude's bytes, least significant first.
  void big_integer(bool negative, std::span<const std::uint8_t> magnitude);
  // A finite double; NaN and infinities have no JSON form (the caller's
  // check: Erlang floats are always finite).
  void floating(double value);
  // `text` quoted and escaped. Returns npos, or the offset in `text` of the
  // first byte of an ill-formed UTF-8 sequence (the output is then
  // unspecified past the size it had before the call). Inline: most
  // strings are short and plain, and a call per string was a sixth of a
  // small encode.
  std::size_t string(std::string_view text, Escape mode) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
    const std::size_t size = text.size();
    // The common case, a plain string, is sized and copied at once.
    reserve(size + 2);
    char* out = data_ + size_;
    *out++ = '"';
    std::size_t at = 0;
    if (mode != Escape::html_safe) {
      at = find_special_byte(bytes, 0, size);
      std::memcpy(out, bytes, at);
      if (at == size) {
        out[at] = '"';
        size_ += size + 2;
        return npos;
      }
    }
    size_ += 1 + at;
    return string_rest(bytes, at, size, mode);
  }

  // string() for text whose memory may be read up to the next multiple of
  // eight bytes past its end (an Erlang heap binary's bytes, in whole
  // words): copied and scanned eight bytes at a time, with no library call
  // and no byte-by-byte tail (a third of a short string's time).
  std::size_t padded_string(std::string_view text, Escape mode) {
    if constexpr (std::endian::native != std::endian::little) return string(text, mode);
    if (mode == Escape::html_safe) return string(text, mode);
    const char* bytes = text.data();
    const std::size_t size = text.size();
    // Whole words are copied: up to seven bytes past the text's end, which
    // the quote and what follows then overwrite.
    reserve(size + 2 + 8);
    char* out = data_ + size_ + 1;
    out[-1] = '"';
    std::size_t at = 0;
    while (at < size) {
      std::uint64_t word;
      std::memcpy(&word, bytes + at, 8);
      std::memcpy(out + at, &word, 8);
      std::uint64_t flags = special_byte_flags(word);
      const std::size_t left = size - at;
      if (left < 8) flags &= ~std::uint64_t{0} >> (8 * (8 - left));
      if (flags != 0) {
        at += static_cast<std::size_t>(__builtin_ctzll(flags) / 8);
        size_ += 1 + at;
        return string_rest(reinterpret_cast<const std::uint8_t*>(bytes), at, size, mode);
      }
      at += 8;
    }
    out[size] = '"';
    size_ += size + 2;
    return npos;
  }

  void reserve(std::size_t more) {
    if (capacity_ - size_ < more) grow(more);
  }

 private:
  void grow(std::size_t more);
  std::size_t escape_from(const std::uint8_t* bytes, std::size_t at, std::size_t size, Escape mode);
  // string() from the first byte that needs a look, with its closing quote.
  std::size_t string_rest(const std::uint8_t* bytes, std::size_t at, std::size_t size, Escape mode);

  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// Decimal digits (an optional leading '-' allowed) to the magnitude's bytes,
// least significant first, without leading zero bytes (empty for zero).
// Costs the square of the digit count: callers bound it.
void decimal_to_magnitude(std::string_view digits, std::basic_string<std::uint8_t>& out);

}  // namespace switchboard::core::json
