#include "core/sorted_set/term_key_reader.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "core/memory.hpp"
#include "core/sorted_set/term_key_format.hpp"

namespace switchboard::core {

namespace fmt = term_key_format;

namespace {

[[noreturn]] void malformed(const char* why) {
  throw std::invalid_argument(std::string("read_term_key: malformed key: ") + why);
}

struct Number {
  bool zero = false;
  bool negative = false;
  std::uint64_t biased_exponent = 0;
  std::span<const std::uint8_t> groups;  // as stored (inverted when negative)
};

class KeyReader {
 public:
  KeyReader(TermKeyView key, TermVisitor& visitor)
      : cursor_(key.data()),
        end_(key.data() + key.comparable_size()),
        side_(key.data() + key.comparable_size()),
        side_end_(key.data() + key.size()),
        visitor_(visitor) {}

  void read() {
    read_term();
    while (!frames_.empty()) {
      Frame& frame = frames_.back();
      if (frame.remaining > 0) {
        --frame.remaining;
        if (frame.kind == Kind::list_elements) expect(fmt::kCons);
        read_term();
        continue;
      }
      switch (frame.kind) {
        case Kind::tuple:
          frames_.pop_back();
          visitor_.end_tuple();
          break;
        case Kind::map:
          frames_.pop_back();
          visitor_.end_map();
          break;
        case Kind::list_elements:
          if (peek() == fmt::kNil) {
            ++cursor_;
            frames_.pop_back();
            visitor_.end_list();
          } else {
            frame.kind = Kind::list_tail;
            frame.remaining = 1;
            visitor_.improper_tail();
          }
          break;
        case Kind::list_tail:
          frames_.pop_back();
          visitor_.end_list();
          break;
      }
    }
    if (cursor_ != end_) malformed("bytes after the term");
    if (side_ != side_end_) malformed("unused side data");
  }

 private:
  enum class Kind : std::uint8_t { tuple, map, list_elements, list_tail };
  struct Frame {
    Kind kind;
    std::uint64_t remaining;
  };

  std::uint8_t peek() const {
    if (cursor_ == end_) malformed("truncated");
    return *cursor_;
  }
  std::uint8_t next() {
    const std::uint8_t byte = peek();
    ++cursor_;
    return byte;
  }
  void expect(std::uint8_t byte) {
    if (next() != byte) malformed("unexpected byte");
  }

  // ---- primitive readers shared by skipping and decoding ----

  static const std::uint8_t* need(const std::uint8_t* at, const std::uint8_t* end,
                                  std::size_t count) {
    if (static_cast<std::size_t>(end - at) < count) malformed("truncated");
    return at + count;
  }

  static std::uint64_t read_ordered_size(const std::uint8_t*& at, const std::uint8_t* end) {
    need(at, end, 1);
    const std::uint8_t first = *at++;
    if (first < 0x80) return first;
    const std::size_t length = first - 0x80u;
    if (length == 0 || length > 8) malformed("bad size");
    need(at, end, length);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < length; ++i) value = (value << 8) | *at++;
    return value;
  }

  static std::uint64_t read_fixed(const std::uint8_t*& at, const std::uint8_t* end,
                                  std::size_t width) {
    need(at, end, width);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < width; ++i) value = (value << 8) | *at++;
    return value;
  }

  // Advances past escaped text and its terminator (or a partial-byte marker);
  // reports whether the text has escapes and the partial bit count (0: none).
  static void skip_escaped(const std::uint8_t*& at, const std::uint8_t* end, bool& has_escapes,
                           unsigned& partial_bits) {
    has_escapes = false;
    partial_bits = 0;
    while (true) {
      const auto* zero =
          static_cast<const std::uint8_t*>(std::memchr(at, 0, static_cast<std::size_t>(end - at)));
      if (zero == nullptr || zero + 1 == end) malformed("unterminated text");
      at = zero + 2;
      switch (zero[1]) {
        case fmt::kTerminator:
          return;
        case fmt::kEscapedZero:
          has_escapes = true;
          continue;
        case fmt::kPartialByte:
          need(at, end, 1);
          partial_bits = *at++;
          if (partial_bits == 0 || partial_bits > 7) malformed("bad bit count");
          return;
        default:
          malformed("bad escape");
      }
    }
  }

  static Number read_number(const std::uint8_t*& at, const std::uint8_t* end) {
    Number number;
    need(at, end, 1);
    const std::uint8_t first = *at;
    if (first == fmt::kZero) {
      ++at;
      number.zero = true;
      return number;
    }
    if (first == fmt::kHugePositive || first == fmt::kHugeNegative) {
      number.negative = first == fmt::kHugeNegative;
      const std::uint8_t invert = number.negative ? 0xFF : 0x00;
      ++at;
      need(at, end, 1);
      const std::size_t length = static_cast<std::uint8_t>(*at++ ^ invert);
      if (length == 0 || length > 8) malformed("bad exponent");
      need(at, end, length);
      for (std::size_t i = 0; i < length; ++i) {
        number.biased_exponent =
            (number.biased_exponent << 8) | static_cast<std::uint8_t>(*at++ ^ invert);
      }
    } else {
      need(at, end, 2);
      const unsigned header = (static_cast<unsigned>(at[0]) << 8) | at[1];
      at += 2;
      number.negative = header < 0x8000;
      number.biased_exponent = number.negative ? 0x7F00u - header : header - 0x8000u;
    }
    const std::uint8_t invert = number.negative ? 0xFF : 0x00;
    const std::uint8_t* groups_begin = at;
    while (true) {
      need(at, end, 1);
      const auto group = static_cast<std::uint8_t>(*at++ ^ invert);
      if ((group & 1) == 0) break;
    }
    number.groups = {groups_begin, static_cast<std::size_t>(at - groups_begin)};
    return number;
  }

  // Advances past one complete term without reporting it.
  static void skip_term(const std::uint8_t*& at, const std::uint8_t* end) {
    std::uint64_t pending = 1;
    bool has_escapes = false;
    unsigned partial_bits = 0;
    while (pending > 0) {
      --pending;
      need(at, end, 1);
      const std::uint8_t tag = *at;
      if (tag == fmt::kExactInteger || tag == fmt::kExactFloat) {
        ++at;
        read_number(at, end);
        continue;
      }
      if (fmt::is_number_start(tag)) {
        read_number(at, end);
        continue;
      }
      ++at;
      switch (tag) {
        case fmt::kAtom:
        case fmt::kBitstring:
          skip_escaped(at, end, has_escapes, partial_bits);
          break;
        case fmt::kTuple:
          pending += read_ordered_size(at, end);
          break;
        case fmt::kMap:
          pending += 2 * read_ordered_size(at, end);
          break;
        case fmt::kNil:
          break;
        case fmt::kCons:
          pending += 2;  // the element and the rest of the list
          break;
        case fmt::kPid:
          at = need(at, end, 8);
          skip_escaped(at, end, has_escapes, partial_bits);
          at = need(at, end, 4);
          break;
        case fmt::kPort:
          skip_escaped(at, end, has_escapes, partial_bits);
          at = need(at, end, 12);
          break;
        case fmt::kReference: {
          skip_escaped(at, end, has_escapes, partial_bits);
          at = need(at, end, 4);
          const std::uint64_t words = read_ordered_size(at, end);
          if (words > 0xFFFF) malformed("bad reference");
          at = need(at, end, static_cast<std::size_t>(words) * 4);
          break;
        }
        case fmt::kFun: {
          need(at, end, 1);
          const std::uint8_t kind = *at++;
          skip_escaped(at, end, has_escapes, partial_bits);
          if (kind == fmt::kExportFun) {
            skip_escaped(at, end, has_escapes, partial_bits);
            at = need(at, end, 1);
          } else {
            at = need(at, end, 8);
            pending += read_fixed(at, end, 4);
          }
          break;
        }
        default:
          malformed("unknown tag");
      }
    }
  }

  // ---- decoding ----

  fmt::NumberKind next_number_kind() {
    if (side_ == side_end_) return fmt::NumberKind::integer;  // side data left out: all integers
    const auto kind = static_cast<fmt::NumberKind>(*side_++);
    if (kind != fmt::NumberKind::integer && kind != fmt::NumberKind::float64 &&
        kind != fmt::NumberKind::negative_zero) {
      malformed("bad number kind");
    }
    return kind;
  }

  std::span<const std::uint8_t> next_side_blob() {
    std::uint64_t length = 0;
    for (unsigned shift = 0;; shift += 7) {
      if (side_ == side_end_ || shift > 56) malformed("side data truncated");
      const std::uint8_t byte = *side_++;
      length |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) break;
    }
    if (length > static_cast<std::uint64_t>(side_end_ - side_)) malformed("side data truncated");
    std::span<const std::uint8_t> blob(side_, static_cast<std::size_t>(length));
    side_ += length;
    return blob;
  }

  void report_number(const Number& number) {
    const fmt::NumberKind kind = next_number_kind();
    const std::uint8_t invert = number.negative ? 0xFF : 0x00;
    if (kind != fmt::NumberKind::integer) {
      if (number.zero) {
        visitor_.float64(kind == fmt::NumberKind::negative_zero ? -0.0 : 0.0);
        return;
      }
      // A double has at most 52 fraction bits, i.e. 8 groups.
      if (number.groups.size() > 8 || number.biased_exponent < 1 ||
          number.biased_exponent > 1023 + fmt::kExponentBias) {
        malformed("float out of range");
      }
      std::uint64_t fraction = 0;
      for (std::size_t i = 0; i < number.groups.size(); ++i) {
        const std::uint64_t bits = static_cast<std::uint8_t>(number.groups[i] ^ invert) >> 1;
        fraction |= bits << (57 - 7 * i);
      }
      if ((fraction & 0xFFF) != 0) malformed("float fraction too long");
      const std::uint64_t significand = (std::uint64_t{1} << 52) | (fraction >> 12);
      const int exponent =
          static_cast<int>(number.biased_exponent) - static_cast<int>(fmt::kExponentBias);
      const double magnitude = std::ldexp(static_cast<double>(significand), exponent - 52);
      visitor_.float64(number.negative ? -magnitude : magnitude);
      return;
    }
    if (number.zero) {
      visitor_.integer(0);
      return;
    }
    if (number.biased_exponent < fmt::kExponentBias) malformed("integer with a fraction");
    const std::uint64_t exponent = number.biased_exponent - fmt::kExponentBias;
    const std::uint64_t fraction_bits = number.groups.size() * 7;
    if (exponent <= 63 && number.groups.size() <= 9) {
      std::uint64_t fraction = 0;  // left-aligned; 9 groups hold the 63 bits an int64 needs
      for (std::size_t i = 0; i < number.groups.size(); ++i) {
        const std::uint64_t bits = static_cast<std::uint8_t>(number.groups[i] ^ invert) >> 1;
        fraction |= bits << (57 - 7 * i);
      }
      if (exponent == 0 ? fraction != 0 : (fraction << exponent) != 0) {
        malformed("integer with a fraction");
      }
      const std::uint64_t magnitude =
          (std::uint64_t{1} << exponent) | (exponent == 0 ? 0 : fraction >> (64 - exponent));
      constexpr auto kMaxPositive =
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
      if (magnitude <= kMaxPositive) {
        const auto value = static_cast<std::int64_t>(magnitude);
        visitor_.integer(number.negative ? -value : value);
        return;
      }
      if (number.negative && magnitude == kMaxPositive + 1) {
        visitor_.integer(std::numeric_limits<std::int64_t>::min());
        return;
      }
    }
    const std::size_t bytes = static_cast<std::size_t>(exponent / 8 + 1);
    magnitude_.assign(bytes, 0);
    magnitude_[static_cast<std::size_t>(exponent / 8)] |=
        static_cast<std::uint8_t>(1u << (exponent % 8));
    for (std::uint64_t i = 0; i < fraction_bits; ++i) {
      const std::uint8_t group =
          static_cast<std::uint8_t>(number.groups[static_cast<std::size_t>(i / 7)] ^ invert);
      if (((group >> (7 - i % 7)) & 1u) == 0) continue;
      if (i + 1 > exponent) malformed("integer with a fraction");
      const std::uint64_t bit = exponent - 1 - i;
      magnitude_[static_cast<std::size_t>(bit / 8)] |= static_cast<std::uint8_t>(1u << (bit % 8));
    }
    visitor_.big_integer(number.negative, magnitude_);
  }

  // Unescapes text starting at the cursor; the span points into the key when
  // there is nothing to unescape.
  std::span<const std::uint8_t> read_text(unsigned& partial_bits) {
    const std::uint8_t* begin = cursor_;
    bool has_escapes = false;
    skip_escaped(cursor_, end_, has_escapes, partial_bits);
    const std::size_t marker = partial_bits != 0 ? 3 : 2;
    const std::uint8_t* text_end = cursor_ - marker;
    if (!has_escapes) return {begin, static_cast<std::size_t>(text_end - begin)};
    text_.clear();
    for (const std::uint8_t* at = begin; at < text_end; ++at) {
      text_.push_back(*at);
      if (*at == fmt::kEscape) ++at;  // skip the 0xFF of an escaped zero
    }
    return text_;
  }

  void read_term() {
    const std::uint8_t tag = peek();
    if (tag == fmt::kExactInteger || tag == fmt::kExactFloat) {
      ++cursor_;
      report_number(read_number(cursor_, end_));
      return;
    }
    if (fmt::is_number_start(tag)) {
      report_number(read_number(cursor_, end_));
      return;
    }
    const std::uint8_t* term_begin = cursor_;
    ++cursor_;
    unsigned partial_bits = 0;
    switch (tag) {
      case fmt::kAtom: {
        const auto text = read_text(partial_bits);
        if (partial_bits != 0) malformed("atom with a partial byte");
        visitor_.atom({reinterpret_cast<const char*>(text.data()), text.size()});
        return;
      }
      case fmt::kBitstring: {
        const auto bytes = read_text(partial_bits);
        if (partial_bits == 0)
          visitor_.binary(bytes);
        else
          visitor_.bitstring(bytes, partial_bits);
        return;
      }
      case fmt::kTuple: {
        const std::uint64_t arity = read_ordered_size(cursor_, end_);
        visitor_.begin_tuple(static_cast<std::size_t>(arity));
        frames_.push_back({Kind::tuple, arity});
        return;
      }
      case fmt::kMap: {
        const std::uint64_t size = read_ordered_size(cursor_, end_);
        visitor_.begin_map(static_cast<std::size_t>(size));
        frames_.push_back({Kind::map, size * 2});
        return;
      }
      case fmt::kNil:
        visitor_.nil();
        return;
      case fmt::kCons: {
        // Count the elements first: a list is rebuilt from its length.
        std::uint64_t count = 1;
        const std::uint8_t* at = cursor_;
        skip_term(at, end_);
        while (at != end_ && *at == fmt::kCons) {
          ++at;
          skip_term(at, end_);
          ++count;
        }
        visitor_.begin_list(static_cast<std::size_t>(count));
        cursor_ = term_begin;  // the loop in read() consumes each element's cons byte
        frames_.push_back({Kind::list_elements, count});
        return;
      }
      case fmt::kReference:
      case fmt::kFun:
      case fmt::kPort:
      case fmt::kPid: {
        cursor_ = term_begin;
        skip_term(cursor_, end_);
        const OpaqueKind kind = tag == fmt::kReference ? OpaqueKind::reference
                                : tag == fmt::kFun     ? OpaqueKind::fun
                                : tag == fmt::kPort    ? OpaqueKind::port
                                                       : OpaqueKind::pid;
        visitor_.opaque(kind, next_side_blob());
        return;
      }
      default:
        malformed("unknown tag");
    }
  }

  const std::uint8_t* cursor_;
  const std::uint8_t* end_;
  const std::uint8_t* side_;
  const std::uint8_t* side_end_;
  TermVisitor& visitor_;
  std::vector<Frame, Allocator<Frame>> frames_;
  std::vector<std::uint8_t, Allocator<std::uint8_t>> text_;
  std::vector<std::uint8_t, Allocator<std::uint8_t>> magnitude_;
};

}  // namespace

void read_term_key(TermKeyView key, TermVisitor& visitor) { KeyReader(key, visitor).read(); }

}  // namespace switchboard::core
