// A strict RFC 8259 reader: one pass over the bytes, no recursion (an explicit
// stack of open containers), every string checked as UTF-8, calling a
// handler for each value so the caller builds whatever it likes directly
// (Erlang terms in the NIF, nothing at all in `validate`).
//
// The handler provides:
//   void null_value();  void boolean(bool);  void integer(std::int64_t);
//   void floating(double);
//   bool big_integer(std::string_view text);   // an integer outside int64, sign included
//   void string(std::string_view text, bool in_input, std::size_t at);
//   bool key(std::string_view text, bool in_input, std::size_t at);
//   void end_array(std::size_t count);   // the last `count` values form an array
//   void end_object(std::size_t pairs);  // the last `pairs` keys and values form an object
// `in_input` says `text` lies in the input (a string without escapes); else
// it is the reader's scratch buffer, valid until the next call. `at` is the
// offset of the opening quote. A handler returning false stops the parse
// with ParseErrc::rejected at the token's offset.
//
// Why not simdjson (Debian's 3.0, measured in native_tests/bench_json.cpp on
// gateway payloads): parsing and visiting every value, it runs at 0.8x to
// 1.6x this reader's speed depending on the payload and the run, and
// parsing is the small part of a decode (building the terms costs several
// times more), so it would gain little. It would also cost what the NIF
// needs: its errors carry no byte offset, integers beyond 64 bits are an
// error (we keep them exact), strings are always copied into its own
// buffer (ours stay sub-binaries of the input when they have no escapes),
// the input must first be copied into a padded buffer, and it cannot stop
// on a work budget to move to a dirty scheduler.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/json/parse_error.hpp"
#include "core/json/text_scan.hpp"

namespace switchboard::core::json {

class Reader {
 public:
  template <class Handler>
  ParseError parse(Handler& handler, std::string_view input, const ParseLimits& limits);

 private:
  struct Frame {
    bool object;
    std::uint32_t count;
  };

  template <class Handler>
  bool value(Handler& handler);
  template <class Handler>
  bool string_value(Handler& handler, bool is_key);
  template <class Handler>
  bool number(Handler& handler);
  bool literal(std::string_view word);
  bool escape(std::size_t& at);

  void skip_whitespace() noexcept {
    while (pos_ < size_) {
      const std::uint8_t byte = data_[pos_];
      if (byte != ' ' && byte != '\n' && byte != '\r' && byte != '\t') return;
      ++pos_;
    }
  }
  bool fail(ParseErrc reason, std::size_t offset, std::size_t length = 0) noexcept {
    error_ = {reason, offset, length};
    return false;
  }
  bool unexpected() noexcept {
    return pos_ >= size_ ? fail(ParseErrc::unexpected_end, size_)
                         : fail(ParseErrc::unexpected_byte, pos_);
  }

  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t pos_ = 0;
  std::size_t work_ = 0;
  ParseLimits limits_;
  ParseError error_;
  std::vector<Frame> frames_;
  std::string scratch_;
};

template <class Handler>
ParseError Reader::parse(Handler& handler, std::string_view input, const ParseLimits& limits) {
  data_ = reinterpret_cast<const std::uint8_t*>(input.data());
  size_ = input.size();
  pos_ = 0;
  limits_ = limits;
  error_ = {};
  frames_.clear();
  if (size_ > limits_.max_size) return {ParseErrc::max_size, 0, 0};
  work_ = size_;
  if (work_ > limits_.work_budget) return {ParseErrc::out_of_budget, 0, 0};

  skip_whitespace();
  if (!value(handler)) return error_;
  // Each pass of this loop closes or continues the innermost container.
  for (;;) {
    skip_whitespace();
    if (frames_.empty()) {
      if (pos_ != size_) return {ParseErrc::unexpected_byte, pos_, 0};
      return {};
    }
    Frame& frame = frames_.back();
    ++frame.count;
    if (pos_ >= size_) return {ParseErrc::unexpected_end, size_, 0};
    const std::uint8_t byte = data_[pos_];
    if (byte == ',') {
      ++pos_;
      skip_whitespace();
      if (frame.object) {
        if (pos_ >= size_ || data_[pos_] != '"') {
          unexpected();
          return error_;
        }
        if (!string_value(handler, true)) return error_;
        skip_whitespace();
        if (pos_ >= size_ || data_[pos_] != ':') {
          unexpected();
          return error_;
        }
        ++pos_;
        skip_whitespace();
      }
      if (!value(handler)) return error_;
    } else if (byte == (frame.object ? '}' : ']')) {
      ++pos_;
      const std::size_t count = frame.count;
      const bool object = frame.object;
      frames_.pop_back();
      if (object) {
        handler.end_object(count);
      } else {
        handler.end_array(count);
      }
    } else {
      return {ParseErrc::unexpected_byte, pos_, 0};
    }
  }
}

// Reads one value at pos_ (whitespace already skipped). An opening bracket
// pushes a frame and reads the container's first value too, or closes it
// at once when it is empty.
template <class Handler>
bool Reader::value(Handler& handler) {
  for (;;) {
    if (pos_ >= size_) return fail(ParseErrc::unexpected_end, size_);
    const std::uint8_t byte = data_[pos_];
    switch (byte) {
      case '"':
        return string_value(handler, false);
      case '{':
      case '[': {
        const bool object = byte == '{';
        if (frames_.size() >= limits_.max_depth) return fail(ParseErrc::max_depth, pos_);
        ++pos_;
        skip_whitespace();
        if (pos_ < size_ && data_[pos_] == (object ? '}' : ']')) {
          ++pos_;
          if (object) {
            handler.end_object(0);
          } else {
            handler.end_array(0);
          }
          return true;
        }
        frames_.push_back({object, 0});
        if (object) {
          if (pos_ >= size_ || data_[pos_] != '"') return unexpected();
          if (!string_value(handler, true)) return false;
          skip_whitespace();
          if (pos_ >= size_ || data_[pos_] != ':') return unexpected();
          ++pos_;
          skip_whitespace();
        }
        continue;  // the container's first value
      }
      case 't':
        if (!literal("true")) return false;
        handler.boolean(true);
        return true;
      case 'f':
        if (!literal("false")) return false;
        handler.boolean(false);
        return true;
      case 'n':
        if (!literal("null")) return false;
        handler.null_value();
        return true;
      default:
        if (byte == '-' || (byte >= '0' && byte <= '9')) return number(handler);
        return fail(ParseErrc::unexpected_byte, pos_);
    }
  }
}

inline bool Reader::literal(std::string_view word) {
  for (std::size_t i = 0; i < word.size(); ++i, ++pos_) {
    if (pos_ >= size_) return fail(ParseErrc::unexpected_end, size_);
    if (data_[pos_] != static_cast<std::uint8_t>(word[i])) {
      return fail(ParseErrc::unexpected_byte, pos_);
    }
  }
  return true;
}

// The string at pos_ (its opening quote). Strings without escapes are handed
// over in place; the others are decoded into scratch_.
template <class Handler>
bool Reader::string_value(Handler& handler, bool is_key) {
  const std::size_t quote = pos_;
  const std::size_t start = pos_ + 1;
  std::size_t at = start;
  bool copied = false;
  for (;;) {
    const std::size_t next = find_special_byte(data_, at, size_);
    if (copied) scratch_.append(reinterpret_cast<const char*>(data_ + at), next - at);
    at = next;
    if (at >= size_) return fail(ParseErrc::unexpected_end, size_);
    const std::uint8_t byte = data_[at];
    if (byte == '"') break;
    if (byte >= 0x80) {
      std::uint32_t code_point;
      const std::size_t length = utf8_sequence(data_, at, size_, code_point);
      if (length == 0) return fail(ParseErrc::invalid_utf8, at);
      if (copied) scratch_.append(reinterpret_cast<const char*>(data_ + at), length);
      at += length;
      continue;
    }
    if (byte < 0x20) return fail(ParseErrc::unexpected_byte, at);
    // A backslash: from here on the string is built in scratch_.
    if (!copied) {
      scratch_.assign(reinterpret_cast<const char*>(data_ + start), at - start);
      copied = true;
    }
    if (!escape(at)) return false;
  }
  pos_ = at + 1;
  const std::string_view text =
      copied ? std::string_view(scratch_)
             : std::string_view(reinterpret_cast<const char*>(data_ + start), at - start);
  if (is_key) {
    if (!handler.key(text, !copied, quote)) return fail(ParseErrc::rejected, quote);
  } else {
    handler.string(text, !copied, quote);
  }
  return true;
}

namespace detail {
inline int hex_value(std::uint8_t byte) noexcept {
  if (byte >= '0' && byte <= '9') return byte - '0';
  if (byte >= 'a' && byte <= 'f') return byte - 'a' + 10;
  if (byte >= 'A' && byte <= 'F') return byte - 'A' + 10;
  return -1;
}
inline void append_utf8(std::string& out, std::uint32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}
}  // namespace detail

// Decodes the escape whose backslash is at `at` into scratch_ and moves `at`
// past it.
inline bool Reader::escape(std::size_t& at) {
  const std::size_t backslash = at;
  if (at + 1 >= size_) return fail(ParseErrc::unexpected_end, size_);
  const std::uint8_t kind = data_[at + 1];
  char plain;
  switch (kind) {
    case '"':
      plain = '"';
      break;
    case '\\':
      plain = '\\';
      break;
    case '/':
      plain = '/';
      break;
    case 'b':
      plain = '\b';
      break;
    case 'f':
      plain = '\f';
      break;
    case 'n':
      plain = '\n';
      break;
    case 'r':
      plain = '\r';
      break;
    case 't':
      plain = '\t';
      break;
    case 'u': {
      auto read_hex = [&](std::size_t from, std::uint32_t& unit) {
        unit = 0;
        for (std::size_t i = 0; i < 4; ++i) {
          if (from + i >= size_) return fail(ParseErrc::unexpected_end, size_);
          const int digit = detail::hex_value(data_[from + i]);
          if (digit < 0) {
            return fail(ParseErrc::invalid_escape, backslash, from + i + 1 - backslash);
          }
          unit = (unit << 4) | static_cast<std::uint32_t>(digit);
        }
        return true;
      };
      std::uint32_t unit;
      if (!read_hex(at + 2, unit)) return false;
      at += 6;
      if (unit >= 0xDC00 && unit <= 0xDFFF) return fail(ParseErrc::lone_surrogate, backslash, 6);
      if (unit >= 0xD800 && unit <= 0xDBFF) {
        // A high surrogate must be followed by an escaped low one.
        if (at + 1 >= size_ || data_[at] != '\\' || data_[at + 1] != 'u') {
          return fail(ParseErrc::lone_surrogate, backslash, 6);
        }
        std::uint32_t low;
        if (!read_hex(at + 2, low)) return false;
        if (low < 0xDC00 || low > 0xDFFF) return fail(ParseErrc::lone_surrogate, backslash, 6);
        at += 6;
        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
      }
      detail::append_utf8(scratch_, unit);
      return true;
    }
    default:
      return fail(ParseErrc::invalid_escape, backslash, 2);
  }
  scratch_.push_back(plain);
  at += 2;
  return true;
}

// A number at pos_: RFC 8259's grammar exactly (no leading zeros, no `+`,
// digits on both sides of a `.`). Integers of up to 18 digits are read here;
// longer ones go to the handler as text; anything with a fraction or an
// exponent is a double (overflow is an error, underflow rounds to zero).
template <class Handler>
bool Reader::number(Handler& handler) {
  const std::size_t start = pos_;
  bool negative = false;
  if (data_[pos_] == '-') {
    negative = true;
    ++pos_;
  }
  if (pos_ >= size_) return fail(ParseErrc::unexpected_end, size_);
  const std::size_t digits_start = pos_;
  std::uint64_t magnitude = 0;
  if (data_[pos_] == '0') {
    ++pos_;
  } else if (data_[pos_] >= '1' && data_[pos_] <= '9') {
    while (pos_ < size_ && data_[pos_] >= '0' && data_[pos_] <= '9') {
      magnitude = magnitude * 10 + (data_[pos_] - '0');  // wraps harmlessly past 19 digits
      ++pos_;
    }
  } else {
    return fail(ParseErrc::unexpected_byte, pos_);
  }
  const std::size_t digit_count = pos_ - digits_start;
  bool is_float = false;
  if (pos_ < size_ && data_[pos_] == '.') {
    is_float = true;
    ++pos_;
    if (pos_ >= size_) return fail(ParseErrc::unexpected_end, size_);
    if (data_[pos_] < '0' || data_[pos_] > '9') return fail(ParseErrc::unexpected_byte, pos_);
    while (pos_ < size_ && data_[pos_] >= '0' && data_[pos_] <= '9') ++pos_;
  }
  if (pos_ < size_ && (data_[pos_] == 'e' || data_[pos_] == 'E')) {
    is_float = true;
    ++pos_;
    if (pos_ < size_ && (data_[pos_] == '+' || data_[pos_] == '-')) ++pos_;
    if (pos_ >= size_) return fail(ParseErrc::unexpected_end, size_);
    if (data_[pos_] < '0' || data_[pos_] > '9') return fail(ParseErrc::unexpected_byte, pos_);
    while (pos_ < size_ && data_[pos_] >= '0' && data_[pos_] <= '9') ++pos_;
  }
  const char* first = reinterpret_cast<const char*>(data_ + start);
  const char* last = reinterpret_cast<const char*>(data_ + pos_);
  if (is_float) {
    double result;
    const auto [end, ec] = std::from_chars(first, last, result);
    if (ec == std::errc::result_out_of_range) {
      // from_chars reports underflow and overflow alike: strtod tells them
      // apart (a tiny value rounds to zero or a subnormal, a huge one is inf).
      std::string token(first, last);
      result = std::strtod(token.c_str(), nullptr);
      if (std::isinf(result)) return fail(ParseErrc::number_too_large, start);
    } else if (ec != std::errc() || end != last) {
      return fail(ParseErrc::unexpected_byte, start);  // unreachable: the grammar was checked
    }
    handler.floating(result);
    return true;
  }
  if (digit_count <= 18) {
    const auto value = static_cast<std::int64_t>(magnitude);
    handler.integer(negative ? -value : value);
    return true;
  }
  if (digit_count > limits_.max_integer_digits) {
    return fail(ParseErrc::number_too_large, start);
  }
  // Converting n digits costs about (n / 19)^2 limb operations.
  const std::size_t limbs = digit_count / 19 + 1;
  work_ += limbs * limbs;
  if (work_ > limits_.work_budget) return fail(ParseErrc::out_of_budget, start);
  if (!handler.big_integer(std::string_view(first, static_cast<std::size_t>(last - first)))) {
    return fail(ParseErrc::rejected, start);
  }
  return true;
}

// A handler that ignores every value: reading with it only validates.
struct NullHandler {
  void null_value() {}
  void boolean(bool) {}
  void integer(std::int64_t) {}
  void floating(double) {}
  bool big_integer(std::string_view) { return true; }
  void string(std::string_view, bool, std::size_t) {}
  bool key(std::string_view, bool, std::size_t) { return true; }
  void end_array(std::size_t) {}
  void end_object(std::size_t) {}
};

}  // namespace switchboard::core::json
