#include "core/etf/encoder.hpp"

#include <zlib.h>

#include <limits>
#include <stdexcept>

namespace switchboard::core::etf {

void EtfEncoder::uint64(std::uint64_t value) {
  if (value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    int64(static_cast<std::int64_t>(value));
  } else {
    small_big_from_magnitude(false, value);
  }
}

void EtfEncoder::big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
  if (magnitude.size() <= 255) {
    std::uint8_t* at = out_.extend(3);
    at[0] = tag_byte(Tag::small_big);
    at[1] = static_cast<std::uint8_t>(magnitude.size());
    at[2] = negative ? 1 : 0;
  } else {
    std::uint8_t* at = out_.extend(6);
    at[0] = tag_byte(Tag::large_big);
    store_u32(at + 1, static_cast<std::uint32_t>(magnitude.size()));
    at[5] = negative ? 1 : 0;
  }
  out_.append(magnitude);
}

void EtfEncoder::non_ascii_atom(std::string_view utf8) {
  // Room for the latin1 form is reserved up front and given back if the text
  // turns out to need UTF-8.
  const std::size_t mark = out_.size();
  std::uint8_t* at = out_.extend(3 + utf8.size());
  const std::size_t latin1_length = utf8_to_latin1(utf8, at + 3);
  if (latin1_length != npos && latin1_length <= kMaxAtomCharacters) {
    at[0] = tag_byte(Tag::atom_latin1);
    store_u16(at + 1, static_cast<std::uint16_t>(latin1_length));
    out_.truncate(mark + 3 + latin1_length);
    return;
  }
  out_.truncate(mark);
  if (utf8.size() <= 255) {
    at = out_.extend(2 + utf8.size());
    at[0] = tag_byte(Tag::small_atom_utf8);
    at[1] = static_cast<std::uint8_t>(utf8.size());
    std::memcpy(at + 2, utf8.data(), utf8.size());
  } else {
    at = out_.extend(3 + utf8.size());
    at[0] = tag_byte(Tag::atom_utf8);
    store_u16(at + 1, static_cast<std::uint16_t>(utf8.size()));
    std::memcpy(at + 3, utf8.data(), utf8.size());
  }
}

void EtfEncoder::bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits_in_last_byte) {
  if (bytes.empty() || bits_in_last_byte == 8) {
    binary(bytes);
    return;
  }
  if (bits_in_last_byte == 0 || bits_in_last_byte > 8) {
    throw std::invalid_argument("etf bitstring: bits in last byte must be 1..8");
  }
  std::uint8_t* at = out_.extend(6 + bytes.size());
  at[0] = tag_byte(Tag::bit_binary);
  store_u32(at + 1, static_cast<std::uint32_t>(bytes.size()));
  at[5] = bits_in_last_byte;
  std::memcpy(at + 6, bytes.data(), bytes.size());
  const auto keep = static_cast<std::uint8_t>(0xff00u >> bits_in_last_byte);
  at[5 + bytes.size()] &= keep;
}

void EtfEncoder::string(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxStringExtLength) {
    throw std::invalid_argument("etf STRING_EXT holds at most 65535 bytes");
  }
  std::uint8_t* at = out_.extend(3 + bytes.size());
  at[0] = tag_byte(Tag::string);
  store_u16(at + 1, static_cast<std::uint16_t>(bytes.size()));
  if (!bytes.empty()) std::memcpy(at + 3, bytes.data(), bytes.size());
}

void EtfEncoder::pid(std::string_view node, std::uint32_t id, std::uint32_t serial,
                     std::uint32_t creation) {
  out_.push_back(tag_byte(Tag::new_pid));
  atom(node);
  std::uint8_t* at = out_.extend(12);
  store_u32(at, id);
  store_u32(at + 4, serial);
  store_u32(at + 8, creation);
}

void EtfEncoder::port(std::string_view node, std::uint64_t id, std::uint32_t creation) {
  if (id <= kMaxNewPortExtId) {
    out_.push_back(tag_byte(Tag::new_port));
    atom(node);
    std::uint8_t* at = out_.extend(8);
    store_u32(at, static_cast<std::uint32_t>(id));
    store_u32(at + 4, creation);
  } else {
    out_.push_back(tag_byte(Tag::v4_port));
    atom(node);
    std::uint8_t* at = out_.extend(12);
    store_u64(at, id);
    store_u32(at + 8, creation);
  }
}

void EtfEncoder::reference(std::string_view node, std::uint32_t creation,
                           std::span<const std::uint32_t> ids) {
  if (ids.size() > kMaxReferenceWords) {
    throw std::invalid_argument("etf reference: at most 5 id words");
  }
  std::uint8_t* at = out_.extend(3);
  at[0] = tag_byte(Tag::newer_reference);
  store_u16(at + 1, static_cast<std::uint16_t>(ids.size()));
  atom(node);
  at = out_.extend(4 + 4 * ids.size());
  store_u32(at, creation);
  for (std::size_t i = 0; i < ids.size(); ++i) store_u32(at + 4 + 4 * i, ids[i]);
}

void EtfEncoder::export_fun(std::string_view module, std::string_view function,
                            std::uint32_t arity) {
  out_.push_back(tag_byte(Tag::export_fun));
  atom(module);
  atom(function);
  int64(arity);
}

bool EtfEncoder::compress(int level) {
  if (level < 0 || level > 9) throw std::invalid_argument("etf compress: level must be 0..9");
  const std::size_t plain_size = out_.size();
  // OTP deflates into a buffer six bytes smaller than the plain term and keeps
  // the plain term if zlib does not finish within it.
  if (level == 0 || plain_size <= 6 || out_.data()[0] != kVersionMagic) return false;
  if (plain_size - 1 > std::numeric_limits<std::uint32_t>::max() ||
      plain_size > std::numeric_limits<uInt>::max()) {
    return false;
  }
  ByteBuffer compressed(plain_size);
  compressed.resize_uninitialized(plain_size);
  z_stream stream{};
  if (deflateInit(&stream, level) != Z_OK) return false;
  stream.next_in = const_cast<Bytef*>(out_.data() + 1);
  stream.avail_in = static_cast<uInt>(plain_size - 1);
  stream.next_out = compressed.data() + 6;
  stream.avail_out = static_cast<uInt>(plain_size - 6);
  const int result = deflate(&stream, Z_FINISH);
  const std::size_t deflated = stream.total_out;
  deflateEnd(&stream);
  if (result != Z_STREAM_END) return false;
  compressed.data()[0] = kVersionMagic;
  compressed.data()[1] = tag_byte(Tag::compressed);
  store_u32(compressed.data() + 2, static_cast<std::uint32_t>(plain_size - 1));
  compressed.truncate(6 + deflated);
  out_ = std::move(compressed);
  return true;
}

}  // namespace switchboard::core::etf
