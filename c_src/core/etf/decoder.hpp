// EtfDecoder: a validating parser over External Term Format bytes that reports
// each term to a visitor, and refuses what OTP 25's binary_to_term/1 refuses.
//
// The visitor is a template parameter so the NIF glue can build Erlang terms
// directly, the port program can build etf::Value trees, and neither pays for
// virtual calls per term.
//
// Checked against binary_to_term/1 on OTP 25.2 with OTP's own test inputs and
// random mutations. Where it differs, it refuses what OTP would read in a way
// that depends on the running VM or reads past what a length says:
// - ATOM_INTERNAL_REF2/3 (tags 73, 75: atoms by atom-table index, meant for
//   ETS) are refused as unknown_tag;
// - NEW_REFERENCE_EXT and NEWER_REFERENCE_EXT with no id words are refused
//   (OTP reads an id word the count does not cover);
// - FLOAT_EXT text must end with a NUL inside its 31 bytes;
// - the extra checks OTP applies to pids, ports and references of the local
//   node (nonode@nohost when not distributed) are not made: there is no node.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "core/etf/atom_text.hpp"
#include "core/etf/byte_buffer.hpp"
#include "core/etf/containers.hpp"
#include "core/etf/decode_error.hpp"
#include "core/etf/tags.hpp"

namespace switchboard::core::etf {

// Node names and atoms arrive as UTF-8 whatever their wire encoding.
struct PidData {
  std::string_view node;
  std::uint32_t id;
  std::uint32_t serial;
  std::uint32_t creation;
};

struct PortData {
  std::string_view node;
  std::uint64_t id;
  std::uint32_t creation;
};

struct ReferenceData {
  std::string_view node;
  std::uint32_t creation;
  std::span<const std::uint32_t> ids;  // 1 to 5 words in wire order
};

struct ExportData {
  std::string_view module;
  std::string_view function;
  std::uint64_t arity;  // as written; OTP keeps only the low 32 bits
};

// NEW_FUN_EXT is validated and handed over whole: only the VM that compiled
// the fun can make it callable, so callers usually pass `encoded` on as is.
struct LocalFunData {
  std::span<const std::uint8_t> encoded;  // the whole term, tag included
  std::string_view module;
  std::uint8_t arity;
  std::uint32_t index;
  std::span<const std::uint8_t> uniq;  // 16 bytes
  std::int64_t old_index;
  std::int64_t old_uniq;
  std::uint32_t free_variable_count;
  std::span<const std::uint8_t> free_variables;  // that many encoded terms, back to back
};

// The events a decoder visitor receives, in document order. Every call returns
// whether to continue; false stops decoding with `rejected_by_visitor`.
//
// - on_integer: SMALL_INTEGER_EXT, INTEGER_EXT, and bignums whose value fits
//   int64 (OTP does not distinguish them either).
// - on_big_integer: the other bignums, magnitude little-endian without
//   trailing zero bytes.
// - on_string: STRING_EXT, a non-empty list of small integers.
// - on_nil: [] however it was written.
// - begin_list(n): n elements follow, then the tail term, then end_list.
//   A list whose tail is itself a list may arrive split over several
//   begin_list calls; [1 | [2]] and [1, 2] are the same term.
// - begin_tuple(n) / begin_map(n pairs): n elements (keys and values
//   alternating) then the matching end call.
// - on_binary: BINARY_EXT, and BIT_BINARY_EXT holding whole bytes.
// - on_bitstring: 1 to 7 significant high bits in the last byte.
template <class V>
concept EtfVisitor = requires(V& visitor, std::int64_t integer, bool negative, double number,
                              std::string_view text, std::span<const std::uint8_t> bytes,
                              std::uint8_t bits, std::uint32_t count, const PidData& pid,
                              const PortData& port, const ReferenceData& reference,
                              const ExportData& export_fun, const LocalFunData& local_fun) {
  { visitor.on_integer(integer) } -> std::same_as<bool>;
  { visitor.on_big_integer(negative, bytes) } -> std::same_as<bool>;
  { visitor.on_float(number) } -> std::same_as<bool>;
  { visitor.on_atom(text) } -> std::same_as<bool>;
  { visitor.on_binary(bytes) } -> std::same_as<bool>;
  { visitor.on_bitstring(bytes, bits) } -> std::same_as<bool>;
  { visitor.on_string(bytes) } -> std::same_as<bool>;
  { visitor.on_nil() } -> std::same_as<bool>;
  { visitor.begin_list(count) } -> std::same_as<bool>;
  { visitor.end_list() } -> std::same_as<bool>;
  { visitor.begin_tuple(count) } -> std::same_as<bool>;
  { visitor.end_tuple() } -> std::same_as<bool>;
  { visitor.begin_map(count) } -> std::same_as<bool>;
  { visitor.end_map() } -> std::same_as<bool>;
  { visitor.on_pid(pid) } -> std::same_as<bool>;
  { visitor.on_port(port) } -> std::same_as<bool>;
  { visitor.on_reference(reference) } -> std::same_as<bool>;
  { visitor.on_export(export_fun) } -> std::same_as<bool>;
  { visitor.on_local_fun(local_fun) } -> std::same_as<bool>;
};

// Accepts every event: decoding with it only validates.
struct NullVisitor {
  bool on_integer(std::int64_t) { return true; }
  bool on_big_integer(bool, std::span<const std::uint8_t>) { return true; }
  bool on_float(double) { return true; }
  bool on_atom(std::string_view) { return true; }
  bool on_binary(std::span<const std::uint8_t>) { return true; }
  bool on_bitstring(std::span<const std::uint8_t>, std::uint8_t) { return true; }
  bool on_string(std::span<const std::uint8_t>) { return true; }
  bool on_nil() { return true; }
  bool begin_list(std::uint32_t) { return true; }
  bool end_list() { return true; }
  bool begin_tuple(std::uint32_t) { return true; }
  bool end_tuple() { return true; }
  bool begin_map(std::uint32_t) { return true; }
  bool end_map() { return true; }
  bool on_pid(const PidData&) { return true; }
  bool on_port(const PortData&) { return true; }
  bool on_reference(const ReferenceData&) { return true; }
  bool on_export(const ExportData&) { return true; }
  bool on_local_fun(const LocalFunData&) { return true; }
};

namespace detail {

inline std::uint16_t load_u16(const std::uint8_t* at) noexcept {
  return static_cast<std::uint16_t>((at[0] << 8) | at[1]);
}
inline std::uint32_t load_u32(const std::uint8_t* at) noexcept {
  std::uint32_t value;
  std::memcpy(&value, at, 4);
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap32(value);
  return value;
}
inline std::uint64_t load_u64(const std::uint8_t* at) noexcept {
  std::uint64_t value;
  std::memcpy(&value, at, 8);
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap64(value);
  return value;
}

// Duplicate map keys are found by hashing each key's *value* (so 1 written as
// SMALL_INTEGER_EXT and as SMALL_BIG_EXT hash alike) and comparing decoded
// terms only when two hashes meet. The hash never leaves the decoder.
inline std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dull;
  x ^= x >> 33;
  return x;
}

std::uint64_t hash_long_bytes(const std::uint8_t* bytes, std::size_t count,
                              std::uint64_t seed) noexcept;

// Map keys are mostly short binaries and atoms, so those hash inline: the
// bytes as two little-endian words, zero-padded to 16 bytes, and two multiplies.
inline std::uint64_t hash_short_words(std::uint64_t low, std::uint64_t high, std::size_t count,
                                      std::uint64_t seed) noexcept {
  const std::uint64_t hash = ((low ^ seed) * 0x9fb21c651e98df25ull) ^
                             std::rotl((high + count) * 0xc2b2ae3d27d4eb4full, 31);
  return hash ^ (hash >> 29);
}

inline std::uint64_t hash_bytes(const std::uint8_t* bytes, std::size_t count,
                                std::uint64_t seed) noexcept {
  if (count > 16) return hash_long_bytes(bytes, count, seed);
  std::uint8_t padded[16] = {};
  for (std::size_t i = 0; i < count; ++i) padded[i] = bytes[i];
  std::uint64_t low;
  std::uint64_t high;
  std::memcpy(&low, padded, 8);
  std::memcpy(&high, padded + 8, 8);
  return hash_short_words(low, high, count, seed);
}

// The same hash as hash_bytes for bytes followed by at least `readable - count`
// more readable bytes of the same buffer: it loads 16 bytes and masks off what
// is not the key, which saves the branches on key length that mispredict.
inline std::uint64_t hash_bytes_in_buffer(const std::uint8_t* bytes, std::size_t count,
                                          std::size_t readable, std::uint64_t seed) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    if (count <= 16 && readable >= 16) {
      std::uint64_t low;
      std::uint64_t high;
      std::memcpy(&low, bytes, 8);
      std::memcpy(&high, bytes + 8, 8);
      const std::uint64_t low_mask = count >= 8 ? ~0ull : (1ull << (8 * count)) - 1;
      const std::uint64_t high_mask = count <= 8    ? 0
                                      : count >= 16 ? ~0ull
                                                    : (1ull << (8 * (count - 8))) - 1;
      return hash_short_words(low & low_mask, high & high_mask, count, seed);
    }
  }
  return hash_bytes(bytes, count, seed);
}

inline constexpr std::uint64_t kSeedInteger = 0x243f6a8885a308d3ull;
inline constexpr std::uint64_t kSeedBigPositive = 0x13198a2e03707344ull;
inline constexpr std::uint64_t kSeedBigNegative = 0xa4093822299f31d0ull;
inline constexpr std::uint64_t kSeedFloat = 0x082efa98ec4e6c89ull;
inline constexpr std::uint64_t kSeedAtom = 0x452821e638d01377ull;
inline constexpr std::uint64_t kSeedBinary = 0xbe5466cf34e90c6cull;
inline constexpr std::uint64_t kSeedBitstring = 0xc0ac29b7c97c50ddull;
inline constexpr std::uint64_t kHashNil = 0x3f84d5b5b5470917ull;
inline constexpr std::uint64_t kSeedList = 0x9216d5d98979fb1bull;
inline constexpr std::uint64_t kSeedTuple = 0xd1310ba698dfb5acull;
inline constexpr std::uint64_t kSeedMap = 0x2ffd72dbd01adfb7ull;
inline constexpr std::uint64_t kSeedMapValue = 0xb8e1afed6a267e96ull;
inline constexpr std::uint64_t kSeedPid = 0xba7c9045f12c7f99ull;
inline constexpr std::uint64_t kSeedPort = 0x24a19947b3916cf7ull;
inline constexpr std::uint64_t kSeedReference = 0x0801f2e2858efc16ull;
inline constexpr std::uint64_t kSeedExport = 0x636920d871574e69ull;
inline constexpr std::uint64_t kSeedFun = 0xa458fea3f4933d7eull;
// Lists hash as a polynomial in this odd radix, sum(e_i * R^i) + tail * R^n,
// so a list written with a list as its tail hashes like the flat list.
inline constexpr std::uint64_t kListRadix = 0x9e3779b97f4a7c15ull;

inline std::uint64_t hash_integer(std::int64_t value) noexcept {
  return mix(static_cast<std::uint64_t>(value) ^ kSeedInteger);
}
inline std::uint64_t hash_float(double value) noexcept {
  // OTP 25 has 0.0 =:= -0.0.
  if (value == 0.0) value = 0.0;
  return mix(std::bit_cast<std::uint64_t>(value) ^ kSeedFloat);
}
inline std::uint64_t hash_text(std::string_view text, std::uint64_t seed) noexcept {
  return hash_bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), seed);
}

struct KeySpan {
  std::uint64_t hash;
  std::size_t begin;
  std::size_t end;
};

enum class FrameKind : std::uint8_t { list, tuple, map };

struct Frame {
  std::uint64_t remaining;  // children still to read; a list's last child is its tail
  std::uint64_t hash;
  std::uint64_t radix_power;
  std::uint64_t pending_key_hash;
  std::size_t start;
  std::size_t first_key;
  std::uint32_t count;
  FrameKind kind;
  bool hashing;  // this container's own hash is needed (it is, or is inside, a map key)
};

// Buffers kept between decodes so steady-state decoding does not allocate.
struct Scratch {
  Vector<Frame> frames;
  Vector<KeySpan> keys;
  Vector<std::uint64_t> hash_table;
  Text atom_text[2];
  ByteBuffer inflated;
};

// Counts the work a decode does beyond reading each byte once, against
// DecodeLimits::max_work. Shared by a term and the free variables of its funs.
struct WorkMeter {
  std::size_t used = 0;
  std::size_t limit = static_cast<std::size_t>(-1);
  // true once the limit is passed.
  bool charge(std::size_t units) noexcept {
    used += units;
    return used > limit;
  }
};

// Whether two of `hashes` are equal, by sorting a copy: O(n log n) whatever
// the hashes, for maps whose keys crowd the open-addressing table.
bool hashes_repeat(std::span<const KeySpan> keys, Vector<std::uint64_t>& sorted);

// The keys of `keys` whose hash some other key shares (indexes into `keys`,
// ascending): only they can be duplicates.
void keys_sharing_hashes(std::span<const KeySpan> keys, Vector<std::size_t>& shared);

struct Fault {
  DecodeErrc error = DecodeErrc::ok;
  std::size_t offset = 0;
  explicit operator bool() const noexcept { return error != DecodeErrc::ok; }
};

// FLOAT_EXT: 31 bytes of "%.20e"-style text. Accepts what OTP's
// sys_chars_to_double accepts.
DecodeErrc parse_float_text(const std::uint8_t* text, double& value) noexcept;

// Inflates a COMPRESSED payload into `out`, which must end up exactly
// `declared_size` bytes long; `consumed` receives the zlib stream's length.
DecodeErrc inflate_payload(std::span<const std::uint8_t> stream, std::size_t declared_size,
                           std::size_t limit, ByteBuffer& out, std::size_t& consumed);

// The index of a key that equals (=:=) an earlier one in `keys`, or npos.
// Decodes the keys, so it only runs when two key hashes collide.
std::size_t find_duplicate_key(const std::uint8_t* buffer, std::span<const KeySpan> keys,
                               const DecodeLimits& limits);

struct IntegerValue {
  bool fits_int64;
  bool negative;
  std::int64_t value;
  const std::uint8_t* magnitude;  // trimmed, when !fits_int64
  std::size_t magnitude_size;
};

template <class V>
class TermParser {
 public:
  TermParser(const std::uint8_t* base, std::size_t begin, std::size_t end, bool in_payload,
             std::size_t depth_available, const DecodeLimits& limits, Scratch& scratch,
             WorkMeter& work, V& visitor)
      : base_(base),
        pos_(begin),
        end_(end),
        depth_available_(depth_available),
        in_payload_(in_payload),
        check_keys_(limits.check_duplicate_keys),
        limits_(limits),
        scratch_(scratch),
        work_(work),
        visitor_(visitor) {}

  // Reads one complete term starting at position().
  DecodeStatus parse_term();
  std::size_t position() const noexcept { return pos_; }

 private:
  DecodeStatus fail(DecodeErrc error, std::size_t offset) const noexcept {
    return DecodeStatus{error, offset, in_payload_, 0};
  }

  // Keys are hashed for the duplicate check (maps of one pair need none), and
  // everything inside a term whose own hash is needed.
  bool child_needs_hash(const Frame& frame) const noexcept {
    return frame.hashing ||
           (frame.kind == FrameKind::map && checks_keys_of(frame) && (frame.remaining & 1) == 0);
  }
  bool checks_keys_of(const Frame& map) const noexcept { return check_keys_ && map.count >= 2; }
  // A list completed as the tail of another passes on its raw polynomial.
  static std::uint64_t finish_list_hash(const Frame* parent, std::uint64_t raw) noexcept {
    const bool in_list_tail =
        parent != nullptr && parent->kind == FrameKind::list && parent->remaining == 1;
    return in_list_tail ? raw : mix(raw ^ kSeedList);
  }

  Fault read_atom(std::size_t at, Text& scratch, std::string_view& text, std::size_t& next);
  // A fault reading an atom field (node, module, name) of the term whose tag
  // is at `term`: no atom there is `not_an_atom`, and an atom cut short makes
  // the whole term truncated, at its tag; the atom's own faults stay at it.
  static Fault in_term(Fault fault, std::size_t term, DecodeErrc not_an_atom) noexcept {
    if (fault.error == DecodeErrc::unknown_tag) return {not_an_atom, term};
    if (fault.error == DecodeErrc::truncated) return {DecodeErrc::truncated, term};
    return fault;
  }
  Fault read_integer(std::size_t at, IntegerValue& value, std::size_t& next) const noexcept;
  Fault read_pid(std::size_t at, Text& scratch, PidData& pid, std::size_t& next);
  Fault read_local_fun(std::size_t at, std::size_t depth, LocalFunData& fun, std::size_t& next);
  Fault check_duplicate_keys(const Frame& map);

  const std::uint8_t* base_;
  std::size_t pos_;
  std::size_t end_;
  std::size_t depth_available_;
  bool in_payload_;
  bool check_keys_;
  const DecodeLimits& limits_;
  Scratch& scratch_;
  WorkMeter& work_;
  V& visitor_;
};

}  // namespace detail

class EtfDecoder {
 public:
  explicit EtfDecoder(const DecodeLimits& limits = {}) : limits_(limits) {}

  const DecodeLimits& limits() const noexcept { return limits_; }

  // Decodes the term after the version byte, inflating COMPRESSED first.
  // Spans handed to the visitor stay valid until the next decode with this
  // decoder; string_views (atoms, node names) only during the call. After an
  // error the visitor may have seen part of the term.
  template <EtfVisitor V>
  DecodeStatus decode(std::span<const std::uint8_t> input, V& visitor);

  // Decodes one term that has no version byte, such as a fragment for
  // EtfEncoder::raw or a fun's free variables. COMPRESSED is refused.
  template <EtfVisitor V>
  DecodeStatus decode_body(std::span<const std::uint8_t> input, V& visitor);

 private:
  DecodeLimits limits_;
  detail::Scratch scratch_;
};

// ---------------------------------------------------------------------------
// Implementation (templates).

namespace detail {

template <class V>
Fault TermParser<V>::read_atom(std::size_t at, Text& scratch, std::string_view& text,
                               std::size_t& next) {
  if (at >= end_) return {DecodeErrc::truncated, at};
  std::size_t header;
  std::size_t length;
  bool utf8;
  switch (static_cast<Tag>(base_[at])) {
    case Tag::atom_latin1:
    case Tag::atom_utf8:
      if (end_ - at < 3) return {DecodeErrc::truncated, at};
      header = 3;
      length = load_u16(base_ + at + 1);
      utf8 = base_[at] == tag_byte(Tag::atom_utf8);
      break;
    case Tag::small_atom_latin1:
    case Tag::small_atom_utf8:
      if (end_ - at < 2) return {DecodeErrc::truncated, at};
      header = 2;
      length = base_[at + 1];
      utf8 = base_[at] == tag_byte(Tag::small_atom_utf8);
      break;
    default:
      return {DecodeErrc::unknown_tag, at};
  }
  // Short, then invalid, then long: the order in which one reading of the
  // bytes meets the faults (and the pure twin reports them).
  if (end_ - at - header < length) return {DecodeErrc::truncated, at};
  const std::uint8_t* bytes = base_ + at + header;
  if (!utf8 && length > kMaxAtomCharacters) return {DecodeErrc::atom_too_long, at};
  if (is_ascii(bytes, length)) {
    if (length > kMaxAtomCharacters) return {DecodeErrc::atom_too_long, at};
    text = {reinterpret_cast<const char*>(bytes), length};
  } else if (!utf8) {
    latin1_to_utf8(bytes, length, scratch);
    text = scratch;
  } else {
    std::size_t characters = 0;
    if (!validate_utf8(bytes, length, characters)) return {DecodeErrc::invalid_utf8, at};
    if (characters > kMaxAtomCharacters) return {DecodeErrc::atom_too_long, at};
    text = {reinterpret_cast<const char*>(bytes), length};
  }
  next = at + header + length;
  return {};
}

template <class V>
Fault TermParser<V>::read_integer(std::size_t at, IntegerValue& value,
                                  std::size_t& next) const noexcept {
  if (at >= end_) return {DecodeErrc::truncated, at};
  const std::size_t left = end_ - at;
  const std::uint8_t* p = base_ + at;
  std::size_t digits;
  std::size_t header;
  switch (static_cast<Tag>(p[0])) {
    case Tag::small_integer:
      if (left < 2) return {DecodeErrc::truncated, at};
      value = {true, false, p[1], nullptr, 0};
      next = at + 2;
      return {};
    case Tag::integer:
      if (left < 5) return {DecodeErrc::truncated, at};
      value = {true, false, static_cast<std::int32_t>(load_u32(p + 1)), nullptr, 0};
      next = at + 5;
      return {};
    case Tag::small_big:
      if (left < 3) return {DecodeErrc::truncated, at};
      digits = p[1];
      header = 3;
      break;
    case Tag::large_big:
      if (left < 6) return {DecodeErrc::truncated, at};
      digits = load_u32(p + 1);
      header = 6;
      break;
    default:
      return {DecodeErrc::unknown_tag, at};
  }
  // Short before too large, as the pure twin finds it.
  if (left - header < digits) return {DecodeErrc::truncated, at};
  if (digits > kMaxBigBytes) return {DecodeErrc::bignum_too_large, at};
  const bool negative = p[header - 1] != 0;
  const std::uint8_t* magnitude = p + header;
  std::size_t size = digits;
  while (size > 0 && magnitude[size - 1] == 0) --size;
  next = at + header + digits;
  if (size <= 8) {
    std::uint64_t unsigned_value = 0;
    for (std::size_t i = size; i > 0; --i)
      unsigned_value = (unsigned_value << 8) | magnitude[i - 1];
    if (!negative && unsigned_value <= static_cast<std::uint64_t>(INT64_MAX)) {
      value = {true, false, static_cast<std::int64_t>(unsigned_value), nullptr, 0};
      return {};
    }
    if (negative && unsigned_value <= static_cast<std::uint64_t>(INT64_MAX) + 1) {
      value = {true, false, static_cast<std::int64_t>(~unsigned_value + 1), nullptr, 0};
      return {};
    }
  }
  value = {false, negative, 0, magnitude, size};
  return {};
}

template <class V>
Fault TermParser<V>::read_pid(std::size_t at, Text& scratch, PidData& pid, std::size_t& next) {
  const bool old_format = base_[at] == tag_byte(Tag::pid);
  std::size_t p;
  if (Fault fault = read_atom(at + 1, scratch, pid.node, p)) {
    return in_term(fault, at, DecodeErrc::bad_node);
  }
  const std::size_t tail = old_format ? 9 : 12;
  if (end_ - p < tail) return {DecodeErrc::truncated, at};
  pid.id = load_u32(base_ + p);
  pid.serial = load_u32(base_ + p + 4);
  pid.creation = old_format ? base_[p + 8] : load_u32(base_ + p + 8);
  if (old_format && pid.creation > kMaxTinyCreation) return {DecodeErrc::bad_creation, at};
  next = p + tail;
  return {};
}

template <class V>
Fault TermParser<V>::read_local_fun(std::size_t at, std::size_t depth, LocalFunData& fun,
                                    std::size_t& next) {
  // Tag, size, arity, uniq, index, free variable count. OTP ignores the size
  // field (it has been written wrong since OTP 23), and so do we.
  constexpr std::size_t kHeader = 1 + 4 + 1 + 16 + 4 + 4;
  if (end_ - at < kHeader) return {DecodeErrc::truncated, at};
  const std::uint8_t* p = base_ + at;
  fun.arity = p[5];
  fun.uniq = {p + 6, 16};
  fun.index = load_u32(p + 22);
  fun.free_variable_count = load_u32(p + 26);
  if (fun.free_variable_count > kMaxFunFreeVariables) return {DecodeErrc::bad_fun, at};
  std::size_t q;
  if (Fault fault = read_atom(at + kHeader, scratch_.atom_text[0], fun.module, q)) {
    return in_term(fault, at, DecodeErrc::bad_fun);
  }
  std::int64_t* old_fields[2] = {&fun.old_index, &fun.old_uniq};
  for (std::int64_t* field : old_fields) {
    IntegerValue number;
    if (Fault fault = read_integer(q, number, q)) {
      if (fault.error == DecodeErrc::unknown_tag) fault = {DecodeErrc::bad_fun, at};
      return fault;
    }
    if (!number.fits_int64 || number.value < kMinSmall || number.value > kMaxSmall) {
      return {DecodeErrc::bad_fun, at};
    }
    *field = number.value;
  }
  // The creator (a pid when OTP writes it, but OTP 25 reads any term there)
  // and the free variables are validated by a parser of their own, so the
  // visitor does not see them. The creator sits at the fun's own level; the
  // free variables one level in (the fun is a container for depth purposes).
  Scratch nested;
  NullVisitor ignore;
  DecodeLimits checked = limits_;
  checked.check_duplicate_keys = true;
  {
    TermParser<NullVisitor> creator(base_, q, end_, in_payload_, depth_available_ - depth, checked,
                                    nested, work_, ignore);
    const DecodeStatus status = creator.parse_term();
    if (!status) return {status.error, status.offset};
    q = creator.position();
  }
  const std::size_t free_begin = q;
  if (fun.free_variable_count != 0) {
    if (depth + 1 > depth_available_) return {DecodeErrc::depth_exceeded, at};
    TermParser<NullVisitor> free_variables(
        base_, q, end_, in_payload_, depth_available_ - depth - 1, checked, nested, work_, ignore);
    for (std::uint32_t i = 0; i < fun.free_variable_count; ++i) {
      const DecodeStatus status = free_variables.parse_term();
      if (!status) return {status.error, status.offset};
    }
    q = free_variables.position();
  }
  // The visitor never sees these bytes, so whoever budgets by the terms it
  // builds would not count them: they are work of their own.
  if (work_.charge(q - free_begin)) return {DecodeErrc::work_exceeded, at};
  fun.free_variables = {base_ + free_begin, q - free_begin};
  fun.encoded = {base_ + at, q - at};
  next = q;
  return {};
}

template <class V>
Fault TermParser<V>::check_duplicate_keys(const Frame& map) {
  auto& keys = scratch_.keys;
  const std::size_t first = map.first_key;
  const std::size_t count = keys.size() - first;
  // An open-addressing set of the key hashes, at most half full: linear in the
  // number of keys, where comparing every pair or sorting is not.
  std::size_t slots = 32;
  while (slots < 2 * count) slots *= 2;
  auto& table = scratch_.hash_table;
  if (table.size() < slots) table.resize(slots);
  std::fill_n(table.begin(), slots, std::uint64_t{0});
  const std::size_t mask = slots - 1;
  // Keys chosen so that their hashes share the probe bits would make linear
  // probing quadratic: past a few probes per key on average the table gives
  // up, and sorting the hashes decides instead (O(n log n) for any keys).
  const std::size_t max_probes = 4 * count + 64;
  std::size_t probes = 0;
  bool collision = false;
  bool crowded = false;
  for (std::size_t i = first; i < keys.size() && !collision && !crowded; ++i) {
    // 0 marks a free slot, so a zero hash is stored as 1 (a false alarm at worst).
    const std::uint64_t hash = keys[i].hash | (keys[i].hash == 0);
    for (std::size_t slot = hash >> 40 & mask;; slot = (slot + 1) & mask) {
      if (++probes > max_probes) {
        crowded = true;
        break;
      }
      if (table[slot] == 0) {
        table[slot] = hash;
        break;
      }
      if (table[slot] == hash) {
        collision = true;
        break;
      }
    }
  }
  const std::span<const KeySpan> map_keys{keys.data() + first, count};
  if (crowded) {
    if (work_.charge(probes + count * std::bit_width(count))) {
      return {DecodeErrc::work_exceeded, map.start};
    }
    collision = hashes_repeat(map_keys, table);
  } else if (work_.charge(probes)) {
    return {DecodeErrc::work_exceeded, map.start};
  }
  if (collision) {
    // Only keys whose hashes meet can be equal: decoding just those keeps
    // one crafted collision from costing a decode of every key.
    Vector<std::size_t> shared;
    keys_sharing_hashes(map_keys, shared);
    Vector<KeySpan> candidates;
    candidates.reserve(shared.size());
    std::size_t bytes = 0;
    for (std::size_t index : shared) {
      candidates.push_back(map_keys[index]);
      bytes += map_keys[index].end - map_keys[index].begin;
    }
    if (work_.charge(bytes + shared.size() * std::bit_width(shared.size()))) {
      return {DecodeErrc::work_exceeded, map.start};
    }
    const std::size_t duplicate = find_duplicate_key(base_, candidates, limits_);
    if (duplicate != npos) return {DecodeErrc::duplicate_key, candidates[duplicate].begin};
  }
  keys.resize(first);
  return {};
}

template <class V>
DecodeStatus TermParser<V>::parse_term() {
  auto& keys = scratch_.keys;
  keys.clear();
  // The position and the container stack live in locals on the hot path;
  // helpers that need them get them as arguments.
  const std::uint8_t* const base = base_;
  const std::size_t end = end_;
  std::size_t pos = pos_;
  auto& frame_store = scratch_.frames;
  if (frame_store.size() < 16) frame_store.resize(16);
  Frame* frames = frame_store.data();
  std::size_t depth = 0;
  auto refuse = [&](DecodeErrc error, std::size_t offset) {
    pos_ = pos;
    return fail(error, offset);
  };
  auto open = [&](FrameKind kind, std::uint32_t count, std::uint64_t children, std::size_t start,
                  bool hashing) -> bool {
    if (depth >= depth_available_) return false;
    if (depth == frame_store.size()) {
      frame_store.resize(2 * depth);
      frames = frame_store.data();
    }
    Frame& frame = frames[depth++];
    frame.remaining = children;
    frame.hash = kind == FrameKind::tuple ? kSeedTuple : 0;
    frame.radix_power = 1;
    frame.pending_key_hash = 0;
    frame.start = start;
    frame.first_key = keys.size();
    frame.count = count;
    frame.kind = kind;
    frame.hashing = hashing;
    return true;
  };
  for (;;) {
    std::size_t start = pos;
    const Frame* top = depth == 0 ? nullptr : &frames[depth - 1];
    const bool want_hash = top != nullptr && child_needs_hash(*top);
    std::uint64_t hash = 0;
    if (pos >= end) return refuse(DecodeErrc::truncated, start);
    const std::uint8_t* p = base + pos;
    const std::size_t left = end - pos;
    // Binaries (map keys and strings in JSON-shaped payloads) get a branch of
    // their own ahead of the jump table, which mispredicts far more often.
    if (p[0] == tag_byte(Tag::binary) && left >= 5) {
      const std::uint32_t size = load_u32(p + 1);
      if (left - 5 < size) return refuse(DecodeErrc::truncated, start);
      pos += 5 + std::size_t{size};
      if (!visitor_.on_binary({p + 5, size})) return refuse(DecodeErrc::rejected_by_visitor, start);
      if (want_hash) hash = hash_bytes_in_buffer(p + 5, size, left - 5, kSeedBinary);
    } else {
      switch (static_cast<Tag>(p[0])) {
        case Tag::small_integer: {
          if (left < 2) return refuse(DecodeErrc::truncated, start);
          const std::int64_t value = p[1];
          pos += 2;
          if (!visitor_.on_integer(value)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) hash = hash_integer(value);
          break;
        }
        case Tag::integer: {
          if (left < 5) return refuse(DecodeErrc::truncated, start);
          const std::int64_t value = static_cast<std::int32_t>(load_u32(p + 1));
          pos += 5;
          if (!visitor_.on_integer(value)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) hash = hash_integer(value);
          break;
        }
        case Tag::small_big:
          // 64-bit ids (snowflakes) arrive as SMALL_BIG_EXT of at most 8 bytes.
          if (left >= 3 && p[1] <= 8 && left - 3 >= p[1]) {
            std::uint64_t magnitude = 0;
            for (std::size_t i = p[1]; i > 0; --i) magnitude = (magnitude << 8) | p[2 + i];
            const bool negative = p[2] != 0;
            if (magnitude <= static_cast<std::uint64_t>(INT64_MAX) + (negative ? 1 : 0)) {
              const auto value = static_cast<std::int64_t>(negative ? ~magnitude + 1 : magnitude);
              pos += 3 + std::size_t{p[1]};
              if (!visitor_.on_integer(value))
                return refuse(DecodeErrc::rejected_by_visitor, start);
              if (want_hash) hash = hash_integer(value);
              break;
            }
          }
          [[fallthrough]];
        case Tag::large_big: {
          IntegerValue number;
          if (Fault fault = read_integer(pos, number, pos))
            return refuse(fault.error, fault.offset);
          if (number.fits_int64) {
            if (!visitor_.on_integer(number.value)) {
              return refuse(DecodeErrc::rejected_by_visitor, start);
            }
            if (want_hash) hash = hash_integer(number.value);
          } else {
            if (!visitor_.on_big_integer(number.negative,
                                         {number.magnitude, number.magnitude_size})) {
              return refuse(DecodeErrc::rejected_by_visitor, start);
            }
            if (want_hash) {
              hash = hash_bytes(number.magnitude, number.magnitude_size,
                                number.negative ? kSeedBigNegative : kSeedBigPositive);
            }
          }
          break;
        }
        case Tag::new_float: {
          if (left < 9) return refuse(DecodeErrc::truncated, start);
          const double number = std::bit_cast<double>(load_u64(p + 1));
          if (!std::isfinite(number)) return refuse(DecodeErrc::invalid_float, start);
          pos += 9;
          if (!visitor_.on_float(number)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) hash = hash_float(number);
          break;
        }
        case Tag::float_string: {
          if (left < 32) return refuse(DecodeErrc::truncated, start);
          double number;
          if (parse_float_text(p + 1, number) != DecodeErrc::ok) {
            return refuse(DecodeErrc::invalid_float, start);
          }
          pos += 32;
          if (!visitor_.on_float(number)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) hash = hash_float(number);
          break;
        }
        case Tag::atom_latin1:
        case Tag::small_atom_latin1:
        case Tag::atom_utf8:
        case Tag::small_atom_utf8: {
          std::string_view text;
          // Short ASCII ATOM_EXT (true, false, nil: what OTP 25 writes) inline.
          if (p[0] == tag_byte(Tag::atom_latin1) && left >= 3 && p[1] == 0 && left - 3 >= p[2] &&
              p[2] <= 16 && is_ascii(p + 3, p[2])) {
            text = {reinterpret_cast<const char*>(p + 3), p[2]};
            pos += 3 + std::size_t{p[2]};
          } else if (Fault fault = read_atom(pos, scratch_.atom_text[0], text, pos)) {
            return refuse(fault.error, fault.offset);
          }
          if (!visitor_.on_atom(text)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) hash = hash_text(text, kSeedAtom);
          break;
        }
        case Tag::binary: {
          if (left < 5) return refuse(DecodeErrc::truncated, start);
          const std::uint32_t size = load_u32(p + 1);
          if (left - 5 < size) return refuse(DecodeErrc::truncated, start);
          pos += 5 + std::size_t{size};
          if (!visitor_.on_binary({p + 5, size})) {
            return refuse(DecodeErrc::rejected_by_visitor, start);
          }
          if (want_hash) hash = hash_bytes(p + 5, size, kSeedBinary);
          break;
        }
        case Tag::bit_binary: {
          if (left < 6) return refuse(DecodeErrc::truncated, start);
          const std::uint32_t size = load_u32(p + 1);
          const std::uint8_t bits = p[5];
          // Short before bad, as the pure twin finds it.
          if (left - 6 < size) return refuse(DecodeErrc::truncated, start);
          if ((bits == 0) != (size == 0) || bits > 8) {
            return refuse(DecodeErrc::bad_bitstring, start);
          }
          pos += 6 + std::size_t{size};
          const std::span<const std::uint8_t> bytes{p + 6, size};
          if (size == 0 || bits == 8) {
            if (!visitor_.on_binary(bytes)) return refuse(DecodeErrc::rejected_by_visitor, start);
            if (want_hash) hash = hash_bytes(p + 6, size, kSeedBinary);
          } else {
            if (!visitor_.on_bitstring(bytes, bits)) {
              return refuse(DecodeErrc::rejected_by_visitor, start);
            }
            if (want_hash) {
              const auto last = static_cast<std::uint8_t>(p[5 + size] & (0xff00u >> bits));
              hash = mix(hash_bytes(p + 6, size - 1, kSeedBitstring) ^ (std::uint64_t{last} << 8) ^
                         bits);
            }
          }
          break;
        }
        case Tag::string: {
          if (left < 3) return refuse(DecodeErrc::truncated, start);
          const std::uint16_t length = load_u16(p + 1);
          if (left - 3 < length) return refuse(DecodeErrc::truncated, start);
          pos += 3 + std::size_t{length};
          if (length == 0) {
            if (!visitor_.on_nil()) return refuse(DecodeErrc::rejected_by_visitor, start);
            hash = kHashNil;
            break;
          }
          if (!visitor_.on_string({p + 3, length})) {
            return refuse(DecodeErrc::rejected_by_visitor, start);
          }
          if (want_hash) {
            std::uint64_t raw = 0;
            std::uint64_t power = 1;
            for (std::size_t i = 0; i < length; ++i) {
              raw += hash_integer(p[3 + i]) * power;
              power *= kListRadix;
            }
            hash = finish_list_hash(top, raw + kHashNil * power);
          }
          break;
        }
        case Tag::nil:
          pos += 1;
          if (!visitor_.on_nil()) return refuse(DecodeErrc::rejected_by_visitor, start);
          hash = kHashNil;
          break;
        case Tag::list: {
          if (left < 5) return refuse(DecodeErrc::truncated, start);
          const std::uint32_t length = load_u32(p + 1);
          // OTP reads a LIST_EXT of length 0 as its tail alone.
          if (length == 0) {
            pos += 5;
            continue;
          }
          // Every element and the tail take at least a byte.
          if (left - 5 <= length) return refuse(DecodeErrc::truncated, start);
          if (!open(FrameKind::list, length, std::uint64_t{length} + 1, start, want_hash)) {
            return refuse(DecodeErrc::depth_exceeded, start);
          }
          pos += 5;
          if (!visitor_.begin_list(length)) return refuse(DecodeErrc::rejected_by_visitor, start);
          continue;
        }
        case Tag::small_tuple:
        case Tag::large_tuple: {
          const bool small = p[0] == tag_byte(Tag::small_tuple);
          const std::size_t header = small ? 2 : 5;
          if (left < header) return refuse(DecodeErrc::truncated, start);
          const std::uint32_t arity = small ? p[1] : load_u32(p + 1);
          if (left - header < arity) return refuse(DecodeErrc::truncated, start);
          pos += header;
          if (arity == 0) {
            if (!visitor_.begin_tuple(0) || !visitor_.end_tuple()) {
              return refuse(DecodeErrc::rejected_by_visitor, start);
            }
            hash = mix(kSeedTuple);
            break;
          }
          if (!open(FrameKind::tuple, arity, arity, start, want_hash)) {
            return refuse(DecodeErrc::depth_exceeded, start);
          }
          if (!visitor_.begin_tuple(arity)) return refuse(DecodeErrc::rejected_by_visitor, start);
          continue;
        }
        case Tag::map: {
          if (left < 5) return refuse(DecodeErrc::truncated, start);
          const std::uint32_t pairs = load_u32(p + 1);
          if ((left - 5) / 2 < pairs) return refuse(DecodeErrc::truncated, start);
          pos += 5;
          if (pairs == 0) {
            if (!visitor_.begin_map(0) || !visitor_.end_map()) {
              return refuse(DecodeErrc::rejected_by_visitor, start);
            }
            hash = mix(kSeedMap);
            break;
          }
          if (!open(FrameKind::map, pairs, std::uint64_t{pairs} * 2, start, want_hash)) {
            return refuse(DecodeErrc::depth_exceeded, start);
          }
          if (!visitor_.begin_map(pairs)) return refuse(DecodeErrc::rejected_by_visitor, start);
          continue;
        }
        case Tag::pid:
        case Tag::new_pid: {
          if (limits_.plain_only) return refuse(DecodeErrc::not_plain, start);
          PidData pid;
          if (Fault fault = read_pid(pos, scratch_.atom_text[0], pid, pos)) {
            return refuse(fault.error, fault.offset);
          }
          if (!visitor_.on_pid(pid)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) {
            hash =
                mix(hash_text(pid.node, kSeedPid) ^ ((std::uint64_t{pid.serial} << 32) | pid.id));
            hash = mix(hash ^ pid.creation);
          }
          break;
        }
        case Tag::port:
        case Tag::new_port:
        case Tag::v4_port: {
          if (limits_.plain_only) return refuse(DecodeErrc::not_plain, start);
          PortData port;
          std::size_t q;
          if (Fault fault = read_atom(pos + 1, scratch_.atom_text[0], port.node, q)) {
            fault = in_term(fault, start, DecodeErrc::bad_node);
            return refuse(fault.error, fault.offset);
          }
          const Tag tag = static_cast<Tag>(p[0]);
          const std::size_t tail = tag == Tag::port ? 5 : tag == Tag::new_port ? 8 : 12;
          if (end - q < tail) return refuse(DecodeErrc::truncated, start);
          if (tag == Tag::v4_port) {
            port.id = load_u64(base + q);
            port.creation = load_u32(base + q + 8);
          } else {
            port.id = load_u32(base + q);
            port.creation = tag == Tag::port ? base[q + 4] : load_u32(base + q + 4);
            if (tag == Tag::port && port.creation > kMaxTinyCreation) {
              return refuse(DecodeErrc::bad_creation, start);
            }
          }
          pos = q + tail;
          if (!visitor_.on_port(port)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) hash = mix(mix(hash_text(port.node, kSeedPort) ^ port.id) ^ port.creation);
          break;
        }
        case Tag::reference:
        case Tag::new_reference:
        case Tag::newer_reference: {
          if (limits_.plain_only) return refuse(DecodeErrc::not_plain, start);
          const Tag tag = static_cast<Tag>(p[0]);
          std::size_t words = 1;
          std::size_t node_at = pos + 1;
          if (tag != Tag::reference) {
            if (left < 3) return refuse(DecodeErrc::truncated, start);
            words = load_u16(p + 1);
            node_at = pos + 3;
            // OTP 25 reads the first id word even when the count is 0; a count
            // of 0 therefore never describes the bytes that follow, and is refused.
            if (words == 0 || words > kMaxReferenceWords) {
              return refuse(DecodeErrc::bad_reference, start);
            }
          }
          ReferenceData reference;
          std::size_t q;
          if (Fault fault = read_atom(node_at, scratch_.atom_text[0], reference.node, q)) {
            fault = in_term(fault, start, DecodeErrc::bad_node);
            return refuse(fault.error, fault.offset);
          }
          std::uint32_t ids[kMaxReferenceWords] = {};
          const std::size_t creation_size = tag == Tag::newer_reference ? 4 : 1;
          if (end - q < creation_size + 4 * words) return refuse(DecodeErrc::truncated, start);
          if (tag == Tag::reference) {
            ids[0] = load_u32(base + q);
            reference.creation = base[q + 4];
          } else {
            reference.creation = creation_size == 4 ? load_u32(base + q) : base[q];
            for (std::size_t i = 0; i < words; ++i) {
              ids[i] = load_u32(base + q + creation_size + 4 * i);
            }
          }
          if (tag != Tag::newer_reference) {
            if (reference.creation > kMaxTinyCreation) {
              return refuse(DecodeErrc::bad_creation, start);
            }
            if (ids[0] >= kMaxOldReferenceId) return refuse(DecodeErrc::bad_reference, start);
          }
          pos = q + creation_size + 4 * words;
          reference.ids = {ids, words};
          if (!visitor_.on_reference(reference)) {
            return refuse(DecodeErrc::rejected_by_visitor, start);
          }
          if (want_hash) {
            // Trailing zero words do not change a reference (OTP compares ids zero-extended).
            while (words > 0 && ids[words - 1] == 0) --words;
            hash = mix(hash_text(reference.node, kSeedReference) ^ reference.creation);
            for (std::size_t i = 0; i < words; ++i) hash = mix(hash ^ ids[i]);
          }
          break;
        }
        case Tag::export_fun: {
          if (limits_.plain_only) return refuse(DecodeErrc::not_plain, start);
          ExportData exported;
          std::size_t q;
          Fault fault = read_atom(pos + 1, scratch_.atom_text[0], exported.module, q);
          if (!fault) fault = read_atom(q, scratch_.atom_text[1], exported.function, q);
          fault = in_term(fault, start, DecodeErrc::bad_export);
          IntegerValue arity{};
          if (!fault) fault = read_integer(q, arity, q);
          if (fault.error == DecodeErrc::unknown_tag) fault = {DecodeErrc::bad_export, start};
          if (fault) return refuse(fault.error, fault.offset);
          if (!arity.fits_int64 || arity.value < 0 || arity.value > kMaxSmall) {
            return refuse(DecodeErrc::bad_export, start);
          }
          exported.arity = static_cast<std::uint64_t>(arity.value);
          pos = q;
          if (!visitor_.on_export(exported)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) {
            hash = mix(hash_text(exported.module, kSeedExport) ^
                       hash_text(exported.function, kSeedAtom) ^
                       static_cast<std::uint32_t>(exported.arity));
          }
          break;
        }
        case Tag::new_fun: {
          if (limits_.plain_only) return refuse(DecodeErrc::not_plain, start);
          LocalFunData fun;
          if (Fault fault = read_local_fun(pos, depth, fun, pos)) {
            return refuse(fault.error, fault.offset);
          }
          if (!visitor_.on_local_fun(fun)) return refuse(DecodeErrc::rejected_by_visitor, start);
          if (want_hash) {
            hash = mix(hash_text(fun.module, kSeedFun) ^ fun.index);
            hash = mix(hash ^ static_cast<std::uint64_t>(fun.old_uniq));
          }
          break;
        }
        case Tag::compressed:
          return refuse(DecodeErrc::nested_compression, start);
        default:
          return refuse(DecodeErrc::unknown_tag, start);
      }
    }

    // A term is complete: fold it into the open containers, closing those it finishes.
    for (;;) {
      if (depth == 0) {
        pos_ = pos;
        return DecodeStatus{DecodeErrc::ok, 0, in_payload_, pos};
      }
      Frame& parent = frames[depth - 1];
      switch (parent.kind) {
        case FrameKind::list:
          if (parent.hashing) {
            parent.hash += hash * parent.radix_power;
            parent.radix_power *= kListRadix;
          }
          break;
        case FrameKind::tuple:
          if (parent.hashing) parent.hash = mix(parent.hash ^ hash);
          break;
        case FrameKind::map:
          if ((parent.remaining & 1) == 0) {
            if (checks_keys_of(parent)) keys.push_back({hash, start, pos});
            parent.pending_key_hash = hash;
          } else if (parent.hashing) {
            parent.hash += mix(parent.pending_key_hash ^ mix(hash ^ kSeedMapValue));
          }
          break;
      }
      if (--parent.remaining != 0) {
        // Maps read from JSON have binary keys: reading the next one here
        // saves a trip round the loop for almost half the terms.
        if (parent.kind == FrameKind::map && (parent.remaining & 1) == 0 && end - pos >= 5 &&
            base[pos] == tag_byte(Tag::binary)) {
          const std::size_t key_start = pos;
          const std::uint32_t size = load_u32(base + pos + 1);
          if (end - pos - 5 < size) return refuse(DecodeErrc::truncated, key_start);
          pos += 5 + std::size_t{size};
          if (!visitor_.on_binary({base + key_start + 5, size})) {
            return refuse(DecodeErrc::rejected_by_visitor, key_start);
          }
          const bool check_key = checks_keys_of(parent);
          const std::uint64_t key_hash =
              check_key || parent.hashing ? hash_bytes_in_buffer(base + key_start + 5, size,
                                                                 end - key_start - 5, kSeedBinary)
                                          : 0;
          if (check_key) keys.push_back({key_hash, key_start, pos});
          parent.pending_key_hash = key_hash;
          --parent.remaining;
        }
        break;
      }

      const Frame done = parent;
      --depth;
      const Frame* outer = depth == 0 ? nullptr : &frames[depth - 1];
      start = done.start;
      switch (done.kind) {
        case FrameKind::list:
          if (!visitor_.end_list()) return refuse(DecodeErrc::rejected_by_visitor, start);
          hash = done.hashing ? finish_list_hash(outer, done.hash) : 0;
          break;
        case FrameKind::tuple:
          if (!visitor_.end_tuple()) return refuse(DecodeErrc::rejected_by_visitor, start);
          hash = mix(done.hash + done.count);
          break;
        case FrameKind::map:
          if (checks_keys_of(done)) {
            if (Fault fault = check_duplicate_keys(done)) return refuse(fault.error, fault.offset);
          }
          if (!visitor_.end_map()) return refuse(DecodeErrc::rejected_by_visitor, start);
          hash = mix(done.hash + kSeedMap + done.count);
          break;
      }
    }
  }
}

}  // namespace detail

template <EtfVisitor V>
DecodeStatus EtfDecoder::decode(std::span<const std::uint8_t> input, V& visitor) {
  if (input.size() > limits_.max_input_bytes) return {DecodeErrc::too_large, 0, false, 0};
  if (input.empty()) return {DecodeErrc::truncated, 0, false, 0};
  if (input[0] != kVersionMagic) return {DecodeErrc::bad_version, 0, false, 0};

  if (input.size() >= 2 && input[1] == tag_byte(Tag::compressed)) {
    if (input.size() < 6) return {DecodeErrc::truncated, 1, false, 0};
    const std::size_t declared = detail::load_u32(input.data() + 2);
    std::size_t consumed = 0;
    const DecodeErrc inflated = detail::inflate_payload(
        input.subspan(6), declared, limits_.max_decompressed_bytes, scratch_.inflated, consumed);
    if (inflated != DecodeErrc::ok) return {inflated, 1, false, 0};
    detail::WorkMeter work{0, limits_.max_work};
    detail::TermParser<V> parser(scratch_.inflated.data(), 0, declared, true, limits_.max_depth,
                                 limits_, scratch_, work, visitor);
    DecodeStatus status = parser.parse_term();
    if (!status) return status;
    const std::size_t used = 6 + consumed;
    if (!limits_.allow_trailing_data) {
      if (parser.position() != declared) {
        return {DecodeErrc::trailing_data, parser.position(), true, 0};
      }
      if (used != input.size()) return {DecodeErrc::trailing_data, used, false, 0};
    }
    return {DecodeErrc::ok, 0, false, used};
  }

  detail::WorkMeter work{0, limits_.max_work};
  detail::TermParser<V> parser(input.data(), 1, input.size(), false, limits_.max_depth, limits_,
                               scratch_, work, visitor);
  DecodeStatus status = parser.parse_term();
  if (!status) return status;
  if (!limits_.allow_trailing_data && status.bytes_used != input.size()) {
    return {DecodeErrc::trailing_data, status.bytes_used, false, 0};
  }
  return status;
}

template <EtfVisitor V>
DecodeStatus EtfDecoder::decode_body(std::span<const std::uint8_t> input, V& visitor) {
  if (input.size() > limits_.max_input_bytes) return {DecodeErrc::too_large, 0, false, 0};
  detail::WorkMeter work{0, limits_.max_work};
  detail::TermParser<V> parser(input.data(), 0, input.size(), false, limits_.max_depth, limits_,
                               scratch_, work, visitor);
  DecodeStatus status = parser.parse_term();
  if (!status) return status;
  if (!limits_.allow_trailing_data && status.bytes_used != input.size()) {
    return {DecodeErrc::trailing_data, status.bytes_used, false, 0};
  }
  return status;
}

}  // namespace switchboard::core::etf
