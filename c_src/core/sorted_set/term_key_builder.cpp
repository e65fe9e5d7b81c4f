#include "core/sorted_set/term_key_builder.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/byte_order.hpp"
#include "core/sorted_set/term_key_format.hpp"

namespace switchboard::core {

namespace fmt = term_key_format;

namespace {

[[noreturn]] void misuse(const char* what) { throw std::logic_error(what); }

std::span<const std::uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// Room a number needs: an exactness tag, a header of up to 2 + 8 bytes and
// up to 10 groups, plus slack for put_groups' whole-word store.
constexpr std::size_t kNumberRoom = 32;

// Writes the 7-bit groups of a left-aligned fraction (see
// term_key_format.hpp) at `out` and returns their end. The first eight are
// spread into one word at once; it is stored whole, so `out` needs 8 bytes
// of room even when fewer groups follow.
std::uint8_t* put_groups_past_eight(std::uint8_t* out, std::uint64_t fraction,
                                    std::uint64_t invert) noexcept;

[[gnu::always_inline]] inline std::uint8_t* put_groups(std::uint8_t* out, std::uint64_t fraction,
                                                       bool negative) noexcept {
  const std::uint64_t invert = negative ? ~std::uint64_t{0} : 0;
  const unsigned significant =
      fraction == 0 ? 0 : 64u - static_cast<unsigned>(std::countr_zero(fraction));
  const unsigned groups = significant == 0 ? 1 : (significant + 6) / 7;
  // Bits 63..8 become eight 7-bit fields, one per byte, first group highest.
  std::uint64_t x = fraction >> 8;
  x = ((x & 0x00FFFFFFF0000000ull) << 4) | (x & 0x000000000FFFFFFFull);
  x = ((x & 0x0FFFC0000FFFC000ull) << 2) | (x & 0x00003FFF00003FFFull);
  x = ((x & 0x3F803F803F803F80ull) << 1) | (x & 0x007F007F007F007Full);
  const unsigned first = groups < 8 ? groups : 8;
  // The low bit of every byte but the last says "more follow".
  std::uint64_t more = 0x0101010101010101ull & ~(~std::uint64_t{0} >> (8 * (first - 1)));
  if (groups > 8) more |= 1;
  store_big_endian(out, ((x << 1) | more) ^ invert);
  out += first;
  if (groups > 8) [[unlikely]]
    out = put_groups_past_eight(out, fraction, invert);
  return out;
}

// The groups after the first eight (fractions of more than 56 bits).
std::uint8_t* put_groups_past_eight(std::uint8_t* out, std::uint64_t fraction,
                                    std::uint64_t invert) noexcept {
  std::uint64_t rest = fraction << 56;
  const auto flip = static_cast<std::uint8_t>(invert);
  do {
    const auto group = static_cast<std::uint8_t>(rest >> 57);
    rest <<= 7;
    const auto follows = static_cast<std::uint8_t>(rest != 0 ? 1 : 0);
    *out++ = static_cast<std::uint8_t>(((group << 1) | follows) ^ flip);
  } while (rest != 0);
  return out;
}

std::uint8_t* put_number_header(std::uint8_t* out, bool negative,
                                std::uint64_t biased_exponent) noexcept {
  if (biased_exponent <= fmt::kMaxCompactExponent) {
    const auto header = static_cast<std::uint16_t>(negative ? 0x7F00u - biased_exponent
                                                            : 0x8000u + biased_exponent);
    out[0] = static_cast<std::uint8_t>(header >> 8);
    out[1] = static_cast<std::uint8_t>(header & 0xFF);
    return out + 2;
  }
  const auto length = static_cast<std::uint8_t>((std::bit_width(biased_exponent) + 7) / 8);
  const std::uint8_t invert = negative ? 0xFF : 0x00;
  *out++ = negative ? fmt::kHugeNegative : fmt::kHugePositive;
  *out++ = static_cast<std::uint8_t>(length ^ invert);
  for (int shift = (length - 1) * 8; shift >= 0; shift -= 8) {
    *out++ = static_cast<std::uint8_t>(((biased_exponent >> shift) & 0xFF) ^ invert);
  }
  return out;
}

}  // namespace

// ---- byte buffers ------------------------------------------------------------

TermKeyBuilder::ByteBuffer::ByteBuffer(const ByteBuffer& other) {
  reserve(other.size_);
  append(other.data_, other.size_);
}

TermKeyBuilder::ByteBuffer::ByteBuffer(ByteBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

TermKeyBuilder::ByteBuffer& TermKeyBuilder::ByteBuffer::operator=(ByteBuffer other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  std::swap(capacity_, other.capacity_);
  return *this;
}

TermKeyBuilder::ByteBuffer::~ByteBuffer() {
  if (data_ != nullptr) core::deallocate(data_, capacity_);
}

void TermKeyBuilder::ByteBuffer::reserve(std::size_t capacity) {
  if (capacity > capacity_) grow(capacity - size_);
}

void TermKeyBuilder::ByteBuffer::grow(std::size_t count) {
  const std::size_t capacity = std::max({size_ + count, capacity_ * 2, std::size_t{64}});
  auto* data = static_cast<std::uint8_t*>(core::allocate(capacity));
  if (size_ != 0) std::memcpy(data, data_, size_);
  if (data_ != nullptr) core::deallocate(data_, capacity_);
  data_ = data;
  capacity_ = capacity;
}

TermKeyBuilder::TermKeyBuilder() {
  comparable_.reserve(64);
  side_.reserve(16);
}

void TermKeyBuilder::reset() noexcept {
  comparable_.clear();
  side_.clear();
  frames_.clear();
  map_entries_.clear();
  complete_terms_ = 0;
  side_suppressed_ = 0;
  side_needed_ = false;
}

TermKey TermKeyBuilder::finish() {
  if (!frames_.empty()) misuse("TermKeyBuilder::finish: a container is still open");
  if (complete_terms_ != 1) misuse("TermKeyBuilder::finish: a key holds exactly one term");
  const std::size_t comparable_size = comparable_.size();
  if (side_needed_) comparable_.append(side_.data(), side_.size());
  TermKey key(std::span<const std::uint8_t>(comparable_.data(), comparable_.size()),
              comparable_size);
  reset();
  return key;
}

// The common cases inline: a term at top level or inside a tuple.
[[gnu::always_inline]] inline bool TermKeyBuilder::begin_term() {
  if (frames_.empty()) {
    if (complete_terms_ != 0) misuse("TermKeyBuilder: a key holds exactly one term");
    return false;
  }
  const Frame& frame = frames_.back();
  if (frame.kind == FrameKind::tuple && frame.written != frame.expected) return frame.exact;
  return begin_term_in_frame();
}

bool TermKeyBuilder::begin_term_in_frame() {
  Frame& frame = frames_.back();
  switch (frame.kind) {
    case FrameKind::tuple:
      if (frame.written == frame.expected) misuse("TermKeyBuilder: more elements than the arity");
      return frame.exact;
    case FrameKind::list:
      put(fmt::kCons);
      return frame.exact;
    case FrameKind::list_tail:
      if (frame.tail_written) misuse("TermKeyBuilder: a list has one tail");
      return frame.exact;
    case FrameKind::map:
      if (frame.written == frame.expected) misuse("TermKeyBuilder: more map entries than the size");
      if (frame.written % 2 == 0) {
        map_entries_.push_back({comparable_.size(), side_.size(), 0, 0});
        return true;  // OTP orders map keys with =:=
      }
      map_entries_.back().value_comparable = comparable_.size();
      map_entries_.back().value_side = side_.size();
      return frame.exact;
    case FrameKind::local_fun:
      if (frame.written == frame.expected) misuse("TermKeyBuilder: too many free variables");
      return frame.exact;
  }
  return false;
}

[[gnu::always_inline]] inline void TermKeyBuilder::end_term() {
  if (frames_.empty()) {
    ++complete_terms_;
    return;
  }
  Frame& frame = frames_.back();
  ++frame.written;
  if (frame.kind == FrameKind::list_tail) frame.tail_written = true;
}

// ---- numbers ---------------------------------------------------------------

void TermKeyBuilder::write_side_number(bool is_float, bool negative_zero) {
  if (side_suppressed_ != 0) return;
  fmt::NumberKind kind = fmt::NumberKind::integer;
  if (is_float) {
    kind = negative_zero ? fmt::NumberKind::negative_zero : fmt::NumberKind::float64;
    side_needed_ = true;
  }
  side_.push_back(static_cast<std::uint8_t>(kind));
}

void TermKeyBuilder::write_zero(bool exact, bool is_float, bool negative_zero) {
  if (exact) put(is_float ? fmt::kExactFloat : fmt::kExactInteger);
  put(fmt::kZero);
  write_side_number(is_float, negative_zero);
}

void TermKeyBuilder::write_number_header(bool negative, std::uint64_t biased_exponent) {
  comparable_.advance_to(
      put_number_header(comparable_.room(kNumberRoom), negative, biased_exponent));
}

void TermKeyBuilder::write_number(bool exact, bool is_float, bool negative,
                                  std::uint64_t biased_exponent,
                                  std::uint64_t fraction_left_aligned) {
  std::uint8_t* out = comparable_.room(kNumberRoom);
  if (exact) *out++ = is_float ? fmt::kExactFloat : fmt::kExactInteger;
  out = put_number_header(out, negative, biased_exponent);
  comparable_.advance_to(put_groups(out, fraction_left_aligned, negative));
  write_side_number(is_float, false);
}

void TermKeyBuilder::write_big_number(bool negative, std::span<const std::uint8_t> magnitude,
                                      bool exact) {
  // `magnitude` is little-endian without high zero bytes and does not fit int64.
  const std::uint64_t top_bits = static_cast<std::uint64_t>(std::bit_width(magnitude.back()));
  const std::uint64_t exponent = (magnitude.size() - 1) * 8 + top_bits - 1;
  std::uint64_t lowest_set = 0;
  for (std::size_t i = 0; i < magnitude.size(); ++i) {
    if (magnitude[i] != 0) {
      lowest_set = i * 8 + static_cast<std::uint64_t>(std::countr_zero(magnitude[i]));
      break;
    }
  }
  if (exact) put(fmt::kExactInteger);
  write_number_header(negative, exponent + fmt::kExponentBias);
  const std::uint8_t invert = negative ? 0xFF : 0x00;
  const std::uint64_t fraction_bits = exponent - lowest_set;  // bits below the leading one
  const std::uint64_t groups = fraction_bits == 0 ? 1 : (fraction_bits + 6) / 7;
  auto bit_at = [&](std::uint64_t index) -> unsigned {
    return (static_cast<unsigned>(magnitude[static_cast<std::size_t>(index / 8)]) >> (index % 8)) &
           1u;
  };
  for (std::uint64_t group = 0; group < groups; ++group) {
    unsigned value = 0;
    for (std::uint64_t j = 0; j < 7; ++j) {
      const std::uint64_t offset = group * 7 + j + 1;  // 1 = first bit below the leading one
      value <<= 1;
      if (offset <= fraction_bits) value |= bit_at(exponent - offset);
    }
    const unsigned more = group + 1 < groups ? 1u : 0u;
    put(static_cast<std::uint8_t>(((value << 1) | more) ^ invert));
  }
  write_side_number(false, false);
}

void TermKeyBuilder::small_int(std::int64_t value) {
  const bool exact = begin_term();
  std::uint8_t* out = comparable_.room(kNumberRoom);
  if (exact) *out++ = fmt::kExactInteger;
  if (value == 0) {
    *out++ = fmt::kZero;
  } else {
    const bool negative = value < 0;
    const std::uint64_t magnitude =
        negative ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
    const auto exponent = static_cast<unsigned>(63 - std::countl_zero(magnitude));
    // Always the compact header: exponent + bias <= 63 + 1075.
    const unsigned biased_exponent = exponent + static_cast<unsigned>(fmt::kExponentBias);
    const unsigned header = negative ? 0x7F00u - biased_exponent : 0x8000u + biased_exponent;
    out[0] = static_cast<std::uint8_t>(header >> 8);
    out[1] = static_cast<std::uint8_t>(header & 0xFF);
    const std::uint64_t fraction = exponent == 0 ? 0 : magnitude << (64 - exponent);
    out = put_groups(out + 2, fraction, negative);
  }
  comparable_.advance_to(out);
  write_side_number(false, false);
  end_term();
}

void TermKeyBuilder::big_int(bool negative, std::span<const std::uint8_t> magnitude_little_endian) {
  std::size_t length = magnitude_little_endian.size();
  while (length > 0 && magnitude_little_endian[length - 1] == 0) --length;
  const auto magnitude = magnitude_little_endian.first(length);
  if (length <= 8) {
    std::uint64_t value = 0;
    for (std::size_t i = length; i-- > 0;) value = (value << 8) | magnitude[i];
    constexpr auto kMaxPositive =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (!negative && value <= kMaxPositive) return small_int(static_cast<std::int64_t>(value));
    if (negative && value <= kMaxPositive + 1) {
      return small_int(value == kMaxPositive + 1 ? std::numeric_limits<std::int64_t>::min()
                                                 : -static_cast<std::int64_t>(value));
    }
  }
  const bool exact = begin_term();
  write_big_number(negative, magnitude, exact);
  end_term();
}

void TermKeyBuilder::float64(double value) {
  if (!std::isfinite(value)) throw std::invalid_argument("float64: Erlang floats are finite");
  const bool exact = begin_term();
  const auto bits = std::bit_cast<std::uint64_t>(value);
  const bool negative = (bits >> 63) != 0;
  const std::uint64_t exponent_bits = (bits >> 52) & 0x7FF;
  const std::uint64_t mantissa = bits & ((std::uint64_t{1} << 52) - 1);
  if (exponent_bits == 0 && mantissa == 0) {
    write_zero(exact, true, negative);
  } else if (exponent_bits == 0) {
    // Subnormal: renormalise so the leading one is implicit like everywhere else.
    const auto leading = static_cast<unsigned>(63 - std::countl_zero(mantissa));
    const std::uint64_t fraction = leading == 0 ? 0 : mantissa << (64 - leading);
    write_number(exact, true, negative, leading + 1, fraction);  // e = leading - 1074
  } else {
    write_number(exact, true, negative, exponent_bits - 1023 + fmt::kExponentBias, mantissa << 12);
  }
  end_term();
}

// ---- text and bits ---------------------------------------------------------

void TermKeyBuilder::write_escaped(std::span<const std::uint8_t> bytes) {
  const std::uint8_t* cursor = bytes.data();
  const std::uint8_t* const end = cursor + bytes.size();
  while (cursor != end) {
    const auto* zero = static_cast<const std::uint8_t*>(
        std::memchr(cursor, 0, static_cast<std::size_t>(end - cursor)));
    const std::uint8_t* run_end = zero == nullptr ? end : zero;
    comparable_.append(cursor, static_cast<std::size_t>(run_end - cursor));
    if (zero == nullptr) break;
    put(fmt::kEscape);
    put(fmt::kEscapedZero);
    cursor = zero + 1;
  }
}

void TermKeyBuilder::write_escaped_terminated(std::span<const std::uint8_t> bytes) {
  write_escaped(bytes);
  put(fmt::kEscape);
  put(fmt::kTerminator);
}

// Text with a tag, escaped and terminated; text without zero bytes (nearly
// all of it) is copied in one piece.
void TermKeyBuilder::write_text(std::uint8_t tag, std::span<const std::uint8_t> bytes) {
  const std::size_t size = bytes.size();
  if (size != 0 && std::memchr(bytes.data(), 0, size) != nullptr) {
    put(tag);
    write_escaped_terminated(bytes);
    return;
  }
  std::uint8_t* out = comparable_.room(size + 3);
  out[0] = tag;
  if (size != 0) std::memcpy(out + 1, bytes.data(), size);
  out[size + 1] = fmt::kEscape;
  out[size + 2] = fmt::kTerminator;
  comparable_.advance_to(out + size + 3);
}

void TermKeyBuilder::atom(std::string_view utf8) {
  begin_term();
  write_text(fmt::kAtom, as_bytes(utf8));
  end_term();
}

void TermKeyBuilder::binary(std::span<const std::uint8_t> bytes) {
  begin_term();
  write_text(fmt::kBitstring, bytes);
  end_term();
}

void TermKeyBuilder::bitstring(std::span<const std::uint8_t> bytes, unsigned bits_in_last_byte) {
  if (bits_in_last_byte == 0 || bits_in_last_byte > 8) {
    throw std::invalid_argument("bitstring: bits_in_last_byte must be 1..8");
  }
  if (bytes.empty() || bits_in_last_byte == 8) return binary(bytes);
  begin_term();
  put(fmt::kBitstring);
  write_escaped(bytes.first(bytes.size() - 1));
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - bits_in_last_byte));
  const std::uint8_t padded_last = bytes.back() & mask;
  write_escaped(std::span<const std::uint8_t>(&padded_last, 1));
  put(fmt::kEscape);
  put(fmt::kPartialByte);
  put(static_cast<std::uint8_t>(bits_in_last_byte));
  end_term();
}

// ---- containers ------------------------------------------------------------

void TermKeyBuilder::write_ordered_size(std::uint64_t value) {
  if (value < 0x80) {
    put(static_cast<std::uint8_t>(value));
    return;
  }
  const auto length = static_cast<unsigned>((std::bit_width(value) + 7) / 8);
  put(static_cast<std::uint8_t>(0x80 + length));
  for (int shift = static_cast<int>(length - 1) * 8; shift >= 0; shift -= 8) {
    put(static_cast<std::uint8_t>((value >> shift) & 0xFF));
  }
}

void TermKeyBuilder::write_u32(std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) put(static_cast<std::uint8_t>(value >> shift));
}

void TermKeyBuilder::write_u64(std::uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) put(static_cast<std::uint8_t>(value >> shift));
}

void TermKeyBuilder::begin_tuple(std::size_t arity) {
  const bool exact = begin_term();
  if (arity < 0x80) {
    std::uint8_t* out = comparable_.room(2);
    out[0] = fmt::kTuple;
    out[1] = static_cast<std::uint8_t>(arity);
    comparable_.advance_to(out + 2);
  } else {
    put(fmt::kTuple);
    write_ordered_size(arity);
  }
  frames_.push_back(Frame{FrameKind::tuple, exact, false, arity, 0, 0, 0, 0});
}

void TermKeyBuilder::end_tuple() {
  if (frames_.empty() || frames_.back().kind != FrameKind::tuple) {
    misuse("TermKeyBuilder::end_tuple: no tuple is open");
  }
  if (frames_.back().written != frames_.back().expected) {
    misuse("TermKeyBuilder::end_tuple: fewer elements than the arity");
  }
  frames_.pop_back();
  end_term();
}

void TermKeyBuilder::begin_list() {
  const bool exact = begin_term();
  frames_.push_back(Frame{FrameKind::list, exact, false, 0, 0, 0, 0, 0});
}

void TermKeyBuilder::improper_tail() {
  if (frames_.empty() || frames_.back().kind != FrameKind::list) {
    misuse("TermKeyBuilder::improper_tail: no list is open");
  }
  if (frames_.back().written == 0) {
    misuse("TermKeyBuilder::improper_tail: an improper list has at least one element");
  }
  frames_.back().kind = FrameKind::list_tail;
}

void TermKeyBuilder::end_list() {
  if (frames_.empty()) misuse("TermKeyBuilder::end_list: no list is open");
  const Frame& frame = frames_.back();
  if (frame.kind == FrameKind::list) {
    put(fmt::kNil);  // the tail of a proper list, or the whole of an empty one
  } else if (frame.kind == FrameKind::list_tail) {
    if (!frame.tail_written) misuse("TermKeyBuilder::end_list: the improper tail is missing");
  } else {
    misuse("TermKeyBuilder::end_list: no list is open");
  }
  frames_.pop_back();
  end_term();
}

void TermKeyBuilder::nil() {
  begin_term();
  put(fmt::kNil);
  end_term();
}

void TermKeyBuilder::begin_map(std::size_t size) {
  const bool exact = begin_term();
  put(fmt::kMap);
  write_ordered_size(size);
  frames_.push_back(Frame{FrameKind::map, exact, false, size * 2, 0, comparable_.size(),
                          side_.size(), map_entries_.size()});
}

void TermKeyBuilder::end_map() {
  if (frames_.empty() || frames_.back().kind != FrameKind::map) {
    misuse("TermKeyBuilder::end_map: no map is open");
  }
  const Frame frame = frames_.back();
  if (frame.written != frame.expected)
    misuse("TermKeyBuilder::end_map: fewer entries than the size");
  sort_map_entries(frame);
  map_entries_.resize(frame.first_entry);
  frames_.pop_back();
  end_term();
}

void TermKeyBuilder::sort_map_entries(const Frame& frame) {
  const std::size_t count = map_entries_.size() - frame.first_entry;
  if (count == 0) return;
  const MapEntryMarks* entries = map_entries_.data() + frame.first_entry;
  const std::size_t comparable_end = comparable_.size();
  const std::size_t side_end = side_.size();
  auto key_comparable_end = [&](std::size_t i) { return entries[i].value_comparable; };
  auto value_comparable_end = [&](std::size_t i) {
    return i + 1 < count ? entries[i + 1].key_comparable : comparable_end;
  };
  auto value_side_end = [&](std::size_t i) {
    return i + 1 < count ? entries[i + 1].key_side : side_end;
  };

  std::vector<std::size_t, Allocator<std::size_t>> order(count);
  for (std::size_t i = 0; i < count; ++i) order[i] = i;
  const std::uint8_t* bytes = comparable_.data();
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const std::size_t a_size = key_comparable_end(a) - entries[a].key_comparable;
    const std::size_t b_size = key_comparable_end(b) - entries[b].key_comparable;
    const int result = std::memcmp(bytes + entries[a].key_comparable,
                                   bytes + entries[b].key_comparable, std::min(a_size, b_size));
    return result != 0 ? result < 0 : a_size < b_size;
  });

  // Lay out keys in order, then values in the same order: OTP compares all
  // keys before any value.
  scratch_.clear();
  for (std::size_t i : order) {
    scratch_.append(bytes + entries[i].key_comparable,
                    key_comparable_end(i) - entries[i].key_comparable);
  }
  for (std::size_t i : order) {
    scratch_.append(bytes + entries[i].value_comparable,
                    value_comparable_end(i) - entries[i].value_comparable);
  }
  if (scratch_.size() != 0) {
    std::memcpy(comparable_.data() + frame.comparable_begin, scratch_.data(), scratch_.size());
  }

  if (side_end == frame.side_begin) return;
  const std::uint8_t* side = side_.data();
  scratch_.clear();
  for (std::size_t i : order) {
    scratch_.append(side + entries[i].key_side, entries[i].value_side - entries[i].key_side);
  }
  for (std::size_t i : order) {
    scratch_.append(side + entries[i].value_side, value_side_end(i) - entries[i].value_side);
  }
  if (scratch_.size() != 0) {
    std::memcpy(side_.data() + frame.side_begin, scratch_.data(), scratch_.size());
  }
}

// ---- pids, ports, references, funs -------------------------------------------

void TermKeyBuilder::write_side_opaque(std::span<const std::uint8_t> external_term_body) {
  if (side_suppressed_ != 0) return;
  side_needed_ = true;
  std::uint64_t length = external_term_body.size() + 1;
  while (length >= 0x80) {
    side_.push_back(static_cast<std::uint8_t>((length & 0x7F) | 0x80));
    length >>= 7;
  }
  side_.push_back(static_cast<std::uint8_t>(length));
  side_.push_back(131);
  side_.append(external_term_body.data(), external_term_body.size());
}

// OTP 25 (erts_cmp_compound): pids by serial, number, then node name and
// creation; the serial is the more significant half of the pid's data.
void TermKeyBuilder::pid(std::string_view node, std::uint32_t id, std::uint32_t serial,
                         std::uint32_t creation) {
  begin_term();
  put(fmt::kPid);
  write_u32(serial);
  write_u32(id);
  write_escaped_terminated(as_bytes(node));
  write_u32(creation);
  end_term();
}

// OTP 25: ports by node name, creation, then number.
void TermKeyBuilder::port(std::string_view node, std::uint64_t id, std::uint32_t creation) {
  begin_term();
  put(fmt::kPort);
  write_escaped_terminated(as_bytes(node));
  write_u32(creation);
  write_u64(id);
  end_term();
}

// OTP 25: references by node name, creation, then their words as one number
// whose last word is the most significant (extra zero high words are equal).
void TermKeyBuilder::reference(std::string_view node, std::uint32_t creation,
                               std::span<const std::uint32_t> words) {
  std::size_t significant = words.size();
  while (significant > 0 && words[significant - 1] == 0) --significant;
  begin_term();
  put(fmt::kReference);
  write_escaped_terminated(as_bytes(node));
  write_u32(creation);
  write_ordered_size(significant);
  for (std::size_t i = significant; i-- > 0;) write_u32(words[i]);
  end_term();
}

// OTP 25: an external fun (fun M:F/A) is greater than any local fun; external
// funs order by module, function, arity.
void TermKeyBuilder::export_fun(std::string_view module, std::string_view function,
                                std::uint8_t arity) {
  begin_term();
  put(fmt::kFun);
  put(fmt::kExportFun);
  write_escaped_terminated(as_bytes(module));
  write_escaped_terminated(as_bytes(function));
  put(arity);
  end_term();
}

// OTP 25: local funs by module, old index, old uniq, free variable count and
// then the free variables as terms.
void TermKeyBuilder::begin_local_fun(std::string_view module, std::int32_t old_index,
                                     std::int32_t old_uniq, std::uint32_t free_variables) {
  const bool exact = begin_term();
  put(fmt::kFun);
  put(fmt::kLocalFun);
  write_escaped_terminated(as_bytes(module));
  write_u32(fmt::flip_sign(old_index));
  write_u32(fmt::flip_sign(old_uniq));
  write_u32(free_variables);
  frames_.push_back(Frame{FrameKind::local_fun, exact, false, free_variables, 0, 0, 0, 0});
  ++side_suppressed_;
}

void TermKeyBuilder::end_local_fun() {
  if (frames_.empty() || frames_.back().kind != FrameKind::local_fun ||
      frames_.back().written != frames_.back().expected) {
    misuse("TermKeyBuilder: fun closed before all its free variables");
  }
  frames_.pop_back();
  --side_suppressed_;
  end_term();
}

// ---- external term format ----------------------------------------------------

namespace detail {

// Walks external term format bytes without recursion (terms from the VM may
// nest deeper than a scheduler's stack allows) and drives a TermKeyBuilder.
class ExternalTermParser {
 public:
  ExternalTermParser(TermKeyBuilder& builder, std::span<const std::uint8_t> bytes)
      : builder_(builder), bytes_(bytes) {}

  void parse() {
    if (bytes_.empty() || bytes_[0] != 131) fail("missing version byte 131");
    position_ = 1;
    if (peek() == 80) fail("compressed terms are not supported");
    start_term();
    while (!frames_.empty()) {
      Frame& frame = frames_.back();
      if (frame.remaining > 0) {
        --frame.remaining;
        start_term();
        continue;
      }
      switch (frame.kind) {
        case Kind::tuple:
          builder_.end_tuple();
          frames_.pop_back();
          break;
        case Kind::map:
          builder_.end_map();
          frames_.pop_back();
          break;
        case Kind::list_elements:
          if (peek() == kNilExt) {
            ++position_;
            builder_.end_list();
            frames_.pop_back();
          } else {
            builder_.improper_tail();
            frame.kind = Kind::list_tail;
            frame.remaining = 1;
          }
          break;
        case Kind::list_tail:
          builder_.end_list();
          frames_.pop_back();
          break;
        case Kind::fun: {
          const std::size_t begin = frame.begin;
          frames_.pop_back();
          builder_.end_local_fun();
          builder_.write_side_opaque(bytes_.subspan(begin, position_ - begin));
          break;
        }
      }
    }
    if (position_ != bytes_.size()) fail("trailing bytes after the term");
  }

 private:
  enum class Kind : std::uint8_t { tuple, map, list_elements, list_tail, fun };
  struct Frame {
    Kind kind;
    std::uint64_t remaining;
    std::size_t begin;
  };

  static constexpr std::uint8_t kNilExt = 106;

  [[noreturn]] static void fail(const char* why) {
    throw std::invalid_argument(std::string("external term format: ") + why);
  }

  std::uint8_t peek() const {
    if (position_ >= bytes_.size()) fail("truncated");
    return bytes_[position_];
  }
  std::span<const std::uint8_t> take(std::uint64_t count) {
    if (count > bytes_.size() - position_) fail("truncated");
    auto result = bytes_.subspan(position_, static_cast<std::size_t>(count));
    position_ += static_cast<std::size_t>(count);
    return result;
  }
  std::uint8_t u8() { return take(1)[0]; }
  template <std::unsigned_integral T>
  T big_endian() {
    return load_big_endian<T>(take(sizeof(T)).data());
  }
  std::uint16_t u16() { return big_endian<std::uint16_t>(); }
  std::uint32_t u32() { return big_endian<std::uint32_t>(); }

  // Atom text as UTF-8; ATOM_EXT and SMALL_ATOM_EXT carry Latin-1.
  std::string_view atom_text() {
    const std::uint8_t tag = u8();
    std::size_t length = 0;
    bool latin1 = false;
    switch (tag) {
      case 100:
        length = u16();
        latin1 = true;
        break;
      case 115:
        length = u8();
        latin1 = true;
        break;
      case 118:
        length = u16();
        break;
      case 119:
        length = u8();
        break;
      default:
        fail("expected an atom");
    }
    const auto raw = take(length);
    text_.clear();
    for (std::uint8_t byte : raw) {
      if (latin1 && byte >= 0x80) {
        text_.push_back(static_cast<char>(0xC0 | (byte >> 6)));
        text_.push_back(static_cast<char>(0x80 | (byte & 0x3F)));
      } else {
        text_.push_back(static_cast<char>(byte));
      }
    }
    return text_;
  }

  std::int32_t small_integer_term() {
    const std::uint8_t tag = u8();
    if (tag == 97) return u8();
    if (tag == 98) return static_cast<std::int32_t>(u32());
    fail("expected a small integer");
  }

  void skip_pid() {
    const std::uint8_t tag = u8();
    if (tag != 88 && tag != 103) fail("expected a pid");
    atom_text();
    take(tag == 88 ? 12 : 9);
  }

  void push(Kind kind, std::uint64_t remaining, std::size_t begin = 0) {
    frames_.push_back(Frame{kind, remaining, begin});
  }

  void start_term() {
    const std::size_t begin = position_;
    const std::uint8_t tag = u8();
    switch (tag) {
      case 97:
        builder_.small_int(u8());
        return;
      case 98:
        builder_.small_int(static_cast<std::int32_t>(u32()));
        return;
      case 70:
        builder_.float64(std::bit_cast<double>(big_endian<std::uint64_t>()));
        return;
      case 99: {  // FLOAT_EXT: 31 bytes of "%.20e" text
        const auto raw = take(31);
        std::string text(reinterpret_cast<const char*>(raw.data()), raw.size());
        builder_.float64(std::strtod(text.c_str(), nullptr));
        return;
      }
      case 110:
      case 111: {
        const std::uint64_t length = tag == 110 ? u8() : u32();
        const bool negative = u8() != 0;
        builder_.big_int(negative, take(length));
        return;
      }
      case 100:
      case 115:
      case 118:
      case 119:
        --position_;
        builder_.atom(atom_text());
        return;
      case 104:
      case 105: {
        const std::uint64_t arity = tag == 104 ? u8() : u32();
        builder_.begin_tuple(static_cast<std::size_t>(arity));
        push(Kind::tuple, arity);
        return;
      }
      case 116: {
        const std::uint64_t size = u32();
        builder_.begin_map(static_cast<std::size_t>(size));
        push(Kind::map, size * 2);
        return;
      }
      case kNilExt:
        builder_.nil();
        return;
      case 107: {  // STRING_EXT: a list of bytes
        const auto characters = take(u16());
        builder_.begin_list();
        for (std::uint8_t character : characters) builder_.small_int(character);
        builder_.end_list();
        return;
      }
      case 108: {
        const std::uint64_t length = u32();
        builder_.begin_list();
        push(Kind::list_elements, length);
        return;
      }
      case 109:
        builder_.binary(take(u32()));
        return;
      case 77: {
        const std::uint32_t length = u32();
        const std::uint8_t bits = u8();
        builder_.bitstring(take(length), bits);
        return;
      }
      case 88:
      case 103: {
        const std::string node(atom_text());
        const std::uint32_t id = u32();
        const std::uint32_t serial = u32();
        const std::uint32_t creation = tag == 88 ? u32() : u8();
        builder_.pid(node, id, serial, creation);
        break;
      }
      case 89:
      case 102:
      case 120: {
        const std::string node(atom_text());
        const std::uint64_t id = tag == 120 ? big_endian<std::uint64_t>() : u32();
        const std::uint32_t creation = tag == 102 ? u8() : u32();
        builder_.port(node, id, creation);
        break;
      }
      case 90:
      case 114: {
        const std::uint16_t count = u16();
        const std::string node(atom_text());
        const std::uint32_t creation = tag == 90 ? u32() : u8();
        words_.clear();
        for (std::uint16_t i = 0; i < count; ++i) words_.push_back(u32());
        builder_.reference(node, creation, words_);
        break;
      }
      case 101: {
        const std::string node(atom_text());
        const std::uint32_t word = u32();
        const std::uint32_t creation = u8();
        builder_.reference(node, creation, std::span<const std::uint32_t>(&word, 1));
        break;
      }
      case 113: {
        const std::string module(atom_text());
        const std::string function(atom_text());
        const std::int32_t arity = small_integer_term();
        if (arity < 0 || arity > 255) fail("export arity out of range");
        builder_.export_fun(module, function, static_cast<std::uint8_t>(arity));
        break;
      }
      case 112: {
        take(4 + 1 + 16 + 4);  // size, arity, uniq, index
        const std::uint32_t free_variables = u32();
        const std::string module(atom_text());
        const std::int32_t old_index = small_integer_term();
        const std::int32_t old_uniq = small_integer_term();
        skip_pid();
        builder_.begin_local_fun(module, old_index, old_uniq, free_variables);
        push(Kind::fun, free_variables, begin);
        return;  // its side data is written when the fun closes
      }
      default:
        fail("unsupported tag");
    }
    builder_.write_side_opaque(bytes_.subspan(begin, position_ - begin));
  }

  TermKeyBuilder& builder_;
  std::span<const std::uint8_t> bytes_;
  std::size_t position_ = 0;
  std::vector<Frame, Allocator<Frame>> frames_;
  std::vector<std::uint32_t, Allocator<std::uint32_t>> words_;
  std::string text_;
};

}  // namespace detail

void TermKeyBuilder::external_term(std::span<const std::uint8_t> bytes) {
  detail::ExternalTermParser(*this, bytes).parse();
}

void TermKeyBuilder::opaque(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 2 || bytes[0] != 131) {
    throw std::invalid_argument("opaque: not in external term format");
  }
  switch (bytes[1]) {
    case 88:
    case 103:
    case 89:
    case 102:
    case 120:
    case 90:
    case 114:
    case 101:
    case 112:
    case 113:
      break;
    default:
      throw std::invalid_argument("opaque: not a pid, port, reference or fun");
  }
  external_term(bytes);
}

}  // namespace switchboard::core
