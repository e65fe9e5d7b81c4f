#include "core/etf/decoder.hpp"

#include <locale.h>
#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace switchboard::core::etf::detail {

std::uint64_t hash_long_bytes(const std::uint8_t* bytes, std::size_t count,
                              std::uint64_t seed) noexcept {
  std::uint64_t hash = seed ^ (count * kListRadix);
  std::size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    std::uint64_t low;
    std::uint64_t high;
    std::memcpy(&low, bytes + i, 8);
    std::memcpy(&high, bytes + i + 8, 8);
    hash = mix(hash ^ (low * 0x9fb21c651e98df25ull) ^ (high * 0xc2b2ae3d27d4eb4full));
  }
  if (i < count) {
    // The last 16 bytes, overlapping what came before.
    std::uint64_t low;
    std::uint64_t high;
    std::memcpy(&low, bytes + count - 16, 8);
    std::memcpy(&high, bytes + count - 8, 8);
    hash = mix(hash ^ (low * 0x9fb21c651e98df25ull) ^ (high * 0xc2b2ae3d27d4eb4full));
  }
  return hash;
}

bool hashes_repeat(std::span<const KeySpan> keys, Vector<std::uint64_t>& sorted) {
  if (sorted.size() < keys.size()) sorted.resize(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) sorted[i] = keys[i].hash;
  const auto last = sorted.begin() + static_cast<std::ptrdiff_t>(keys.size());
  std::sort(sorted.begin(), last);
  return std::adjacent_find(sorted.begin(), last) != last;
}

void keys_sharing_hashes(std::span<const KeySpan> keys, Vector<std::size_t>& shared) {
  Vector<std::size_t> order(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return keys[a].hash != keys[b].hash ? keys[a].hash < keys[b].hash : a < b;
  });
  shared.clear();
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i + 1;
    while (j < order.size() && keys[order[j]].hash == keys[order[i]].hash) ++j;
    if (j - i > 1)
      shared.insert(shared.end(), order.begin() + static_cast<std::ptrdiff_t>(i),
                    order.begin() + static_cast<std::ptrdiff_t>(j));
    i = j;
  }
  std::sort(shared.begin(), shared.end());
}

DecodeErrc parse_float_text(const std::uint8_t* text, double& value) noexcept {
  constexpr std::size_t kFieldSize = 31;
  const void* terminator = std::memchr(text, 0, kFieldSize);
  // OTP reads on past the field when it has no NUL; such input is refused here.
  if (terminator == nullptr) return DecodeErrc::invalid_float;
  const auto length = static_cast<std::size_t>(static_cast<const std::uint8_t*>(terminator) - text);

  // The syntax sys_chars_to_double insists on before calling strtod:
  // [+-]digits[.,]digits([eE][+-]digits)?
  char buffer[kFieldSize + 1];
  std::memcpy(buffer, text, length);
  buffer[length] = '\0';
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t i = 0;
  if (buffer[i] == '+' || buffer[i] == '-') ++i;
  if (!is_digit(buffer[i])) return DecodeErrc::invalid_float;
  while (is_digit(buffer[i])) ++i;
  if (buffer[i] != '.' && buffer[i] != ',') return DecodeErrc::invalid_float;
  // OTP retries strtod with the other radix character, so a comma works as a point.
  buffer[i++] = '.';
  if (!is_digit(buffer[i])) return DecodeErrc::invalid_float;
  while (is_digit(buffer[i])) ++i;
  if (buffer[i] == 'e' || buffer[i] == 'E') {
    ++i;
    if (buffer[i] == '+' || buffer[i] == '-') ++i;
    if (!is_digit(buffer[i])) return DecodeErrc::invalid_float;
    while (is_digit(buffer[i])) ++i;
  }
  if (buffer[i] != '\0') return DecodeErrc::invalid_float;

  // strtod in the C locale, whatever locale the host process runs in.
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
  char* parsed_end = nullptr;
  const double parsed = strtod_l(buffer, &parsed_end, c_locale);
  // Underflow to zero or a denormal is accepted, as OTP does; overflow is not.
  if (parsed_end != buffer + i || !std::isfinite(parsed)) return DecodeErrc::invalid_float;
  value = parsed;
  return DecodeErrc::ok;
}

namespace {

// Deflate expands at most about 1032 to 1; a declared size beyond that can
// never match the stream, so it is refused before anything is allocated.
constexpr std::size_t kMaxDeflateRatio = 1032;

struct InflateStream {
  z_stream stream{};
  bool ready = false;
  InflateStream() { ready = inflateInit(&stream) == Z_OK; }
  ~InflateStream() {
    if (ready) inflateEnd(&stream);
  }
  InflateStream(const InflateStream&) = delete;
  InflateStream& operator=(const InflateStream&) = delete;
};

constexpr std::size_t kZlibChunk = std::size_t{1} << 30;

uInt chunk(std::size_t size) { return static_cast<uInt>(size < kZlibChunk ? size : kZlibChunk); }

}  // namespace

// Why a stream too short to inflate to its declared size fails, without
// allocating that size: it stops early (truncated), or it is corrupt or
// complete and short (bad_compression). Inflates into a small scratch
// buffer; the stream is at most about declared / kMaxDeflateRatio bytes.
DecodeErrc short_stream_error(std::span<const std::uint8_t> stream) {
  InflateStream inflater;
  if (!inflater.ready) return DecodeErrc::bad_compression;
  z_stream& z = inflater.stream;
  z.next_in = const_cast<Bytef*>(stream.data());
  z.avail_in = chunk(stream.size());
  std::uint8_t discard[4096];
  for (;;) {
    z.next_out = discard;
    z.avail_out = sizeof discard;
    const int result = inflate(&z, Z_NO_FLUSH);
    if (result == Z_STREAM_END) return DecodeErrc::bad_compression;
    if (result == Z_OK) continue;
    if (result == Z_BUF_ERROR && z.avail_in == 0) return DecodeErrc::truncated;
    return DecodeErrc::bad_compression;
  }
}

DecodeErrc inflate_payload(std::span<const std::uint8_t> stream, std::size_t declared_size,
                           std::size_t limit, ByteBuffer& out, std::size_t& consumed) {
  if (declared_size > limit) return DecodeErrc::decompressed_too_large;
  if (declared_size / kMaxDeflateRatio > stream.size() + 8) return short_stream_error(stream);

  out.clear();
  out.resize_uninitialized(declared_size);
  InflateStream inflater;
  if (!inflater.ready) return DecodeErrc::bad_compression;
  z_stream& z = inflater.stream;

  const std::uint8_t* in = stream.data();
  std::size_t in_left = stream.size();
  std::uint8_t* target = out.data();
  std::size_t target_left = declared_size;
  // Output past the declared size goes here only to be counted: it decides
  // between "larger than the limit" and "not the declared size".
  std::uint8_t overflow[4096];
  std::size_t produced = 0;
  bool overflowing = false;
  std::uint8_t empty_target = 0;

  for (;;) {
    if (z.avail_in == 0 && in_left != 0) {
      z.next_in = const_cast<Bytef*>(in);
      z.avail_in = chunk(in_left);
      in += z.avail_in;
      in_left -= z.avail_in;
    }
    if (z.avail_out == 0) {
      if (!overflowing && target_left != 0) {
        z.next_out = target;
        z.avail_out = chunk(target_left);
        target += z.avail_out;
        target_left -= z.avail_out;
      } else if (!overflowing && declared_size == 0 && produced == 0 && z.next_out == nullptr) {
        // zlib refuses a null output pointer even when there is no room.
        z.next_out = &empty_target;
      } else {
        overflowing = true;
        z.next_out = overflow;
        z.avail_out = sizeof overflow;
      }
    }
    const uInt out_before = z.avail_out;
    const int result = inflate(&z, Z_NO_FLUSH);
    produced += out_before - z.avail_out;
    if (produced > limit) return DecodeErrc::decompressed_too_large;
    if (result == Z_STREAM_END) break;
    if (result == Z_OK) continue;
    if (result == Z_BUF_ERROR) {
      if (z.avail_out == 0) continue;
      if (z.avail_in == 0 && in_left == 0) return DecodeErrc::truncated;
    }
    return DecodeErrc::bad_compression;
  }
  if (produced != declared_size) return DecodeErrc::bad_compression;
  consumed = static_cast<std::size_t>(z.total_in);
  return DecodeErrc::ok;
}

}  // namespace switchboard::core::etf::detail
