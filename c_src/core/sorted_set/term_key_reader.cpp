#include "core/sorted_set/term_key_reader.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "core/byte_order.hpp"
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

std::uint64_t load_little_endian(const std::uint8_t* bytes) noexcept {
  std::uint64_t word = 0;
  std::memcpy(&word, bytes, sizeof(word));
  return word;
}

// Gathers the 7-bit groups of up to eight number bytes (first byte in the
// low byte of `bytes`, already un-inverted) into one left-aligned fraction:
// the inverse of the builder's spreading.
std::uint64_t gather_groups(std::uint64_t bytes) noexcept {
  std::uint64_t x = (byteswap(bytes) >> 1) & 0x7F7F7F7F7F7F7F7Full;
  x = ((x & 0x7F007F007F007F00ull) >> 1) | (x & 0x007F007F007F007Full);
  x = ((x & 0x3FFF00003FFF0000ull) >> 2) | (x & 0x00003FFF00003FFFull);
  x = ((x & 0x0FFFFFFF00000000ull) >> 4) | (x & 0x000000000FFFFFFFull);
  return x << 8;
}

class KeyReader {
 public:
  KeyReader(TermKeyView key, TermVisitor& visitor, bool fast_paths)
      : cursor_(key.data()),
        end_(key.data() + key.comparable_size()),
        side_(key.data() + key.comparable_size()),
        side_end_(key.data() + key.size()),
        visitor_(visitor),
        fast_paths_(fast_paths) {}

  void read() {
    next_term();
    while (!frames_.empty()) {
      Frame& frame = frames_.back();
      if (frame.remaining > 0) {
        --frame.remaining;
        if (frame.kind == Kind::list_elements) expect(fmt::kCons);
        next_term();
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

  // Open containers: inline for the usual shallow keys, so reading one
  // allocates nothing; deeper nesting moves to the heap.
  class FrameStack {
   public:
    bool empty() const noexcept { return size_ == 0; }
    Frame& back() noexcept { return data_[size_ - 1]; }
    void pop_back() noexcept { --size_; }
    void push_back(Frame frame) {
      if (size_ == capacity_) grow();
      data_[size_++] = frame;
    }

   private:
    static constexpr std::size_t kInline = 16;

    void grow() {
      if (data_ == inline_) heap_.assign(inline_, inline_ + size_);
      heap_.resize(capacity_ * 2);
      data_ = heap_.data();
      capacity_ = heap_.size();
    }

    Frame inline_[kInline];
    std::vector<Frame, Allocator<Frame>> heap_;
    Frame* data_ = inline_;
    std::size_t size_ = 0;
    std::size_t capacity_ = kInline;
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

  // ---- fast paths ----
  // Each handles only well-formed input it fully understands and otherwise
  // returns false without consuming anything, leaving the term to the
  // general decoder below; so errors and edge cases are reported there.

  // An integer in the compact number form whose value fits int64 easily
  // (|value| < 2^63) with at most eight 7-bit groups.
  bool fast_integer() {
    const std::uint8_t* at = cursor_;
    const auto available = static_cast<std::size_t>(end_ - at);
    if (available < 3) return false;
    if (side_ != side_end_ && *side_ != static_cast<std::uint8_t>(fmt::NumberKind::integer)) {
      return false;
    }
    const unsigned header = (static_cast<unsigned>(at[0]) << 8) | at[1];
    const bool negative = header < 0x8000;
    const unsigned biased_exponent = negative ? 0x7F00u - header : header - 0x8000u;
    const unsigned exponent = biased_exponent - static_cast<unsigned>(fmt::kExponentBias);
    if (exponent > 62) return false;  // also catches biased exponents below the bias
    const std::uint64_t invert = negative ? ~std::uint64_t{0} : 0;
    std::uint64_t bytes = 0;
    std::size_t loaded = available - 2;
    if (loaded >= 8) {
      bytes = load_little_endian(at + 2);
      loaded = 8;
    } else {
      std::memcpy(&bytes, at + 2, loaded);
    }
    bytes ^= invert;
    // Groups end at the first byte with a clear low bit.
    std::uint64_t last = ~bytes & 0x0101010101010101ull;
    if (loaded < 8) last &= (std::uint64_t{1} << (8 * loaded)) - 1;
    if (last == 0) return false;
    const auto groups = static_cast<unsigned>(std::countr_zero(last) / 8 + 1);
    if (groups < 8) bytes &= (std::uint64_t{1} << (8 * groups)) - 1;
    const std::uint64_t fraction = gather_groups(bytes);
    if (exponent == 0 ? fraction != 0 : (fraction << exponent) != 0) return false;
    const std::uint64_t magnitude =
        (std::uint64_t{1} << exponent) | (exponent == 0 ? 0 : fraction >> (64 - exponent));
    const auto value = static_cast<std::int64_t>(magnitude);
    cursor_ = at + 2 + groups;
    if (side_ != side_end_) ++side_;
    visitor_.integer(negative ? -value : value);
    return true;
  }

  bool fast_zero() {
    if (side_ != side_end_ && *side_ != static_cast<std::uint8_t>(fmt::NumberKind::integer)) {
      return false;
    }
    ++cursor_;
    if (side_ != side_end_) ++side_;
    visitor_.integer(0);
    return true;
  }

  // A binary with no zero byte: its bytes and the terminator.
  bool fast_binary() {
    const std::uint8_t* begin = cursor_ + 1;
    const auto length = static_cast<std::size_t>(end_ - begin);
    const auto* zero = static_cast<const std::uint8_t*>(std::memchr(begin, 0, length));
    if (zero == nullptr || zero + 1 == end_ || zero[1] != fmt::kTerminator) return false;
    cursor_ = zero + 2;
    visitor_.binary({begin, static_cast<std::size_t>(zero - begin)});
    return true;
  }

  // A small integer or plain binary at the cursor, if that is what is there.
  [[gnu::always_inline]] bool fast_scalar(std::uint8_t tag) {
    if (tag == fmt::kZero) return fast_zero();
    if (tag > fmt::kHugeNegative && tag < fmt::kHugePositive) return fast_integer();
    if (tag == fmt::kBitstring) return fast_binary();
    return false;
  }

  // A tuple whose arity fits the one-byte size form. Its leading scalar
  // elements are read here, so a flat tuple of them never needs a frame.
  bool fast_tuple() {
    if (end_ - cursor_ < 2 || cursor_[1] >= 0x80) return false;
    const std::uint8_t arity = cursor_[1];
    cursor_ += 2;
    visitor_.begin_tuple(arity);
    std::uint64_t done = 0;
    while (done < arity && cursor_ != end_ && fast_scalar(*cursor_)) ++done;
    if (done == arity) {
      visitor_.end_tuple();
    } else {
      frames_.push_back({Kind::tuple, arity - done});
    }
    return true;
  }

  // Kept small and inline so the common terms skip the general decoder's
  // setup entirely.
  [[gnu::always_inline]] void next_term() {
    const std::uint8_t tag = peek();
    if (fast_paths_) {
      if (tag == fmt::kTuple ? fast_tuple() : fast_scalar(tag)) return;
    }
    read_term();
  }

  [[gnu::noinline]] void read_term() {
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
  bool fast_paths_;
  FrameStack frames_;
  std::vector<std::uint8_t, Allocator<std::uint8_t>> text_;
  std::vector<std::uint8_t, Allocator<std::uint8_t>> magnitude_;
};

}  // namespace

void read_term_key(TermKeyView key, TermVisitor& visitor) { KeyReader(key, visitor, true).read(); }

namespace detail {

void read_term_key_without_fast_paths(TermKeyView key, TermVisitor& visitor) {
  KeyReader(key, visitor, false).read();
}

}  // namespace detail

}  // namespace switchboard::core
