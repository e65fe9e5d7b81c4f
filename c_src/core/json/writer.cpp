#include "core/json/writer.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "core/json/text_scan.hpp"

namespace switchboard::core::json {

// Base 2^64 arithmetic needs the product of two limbs.
__extension__ typedef unsigned __int128 Wide;

Writer::Writer(Writer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

Writer& Writer::operator=(Writer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  std::swap(capacity_, other.capacity_);
  return *this;
}

void Writer::grow(std::size_t more) {
  std::size_t wanted = std::max<std::size_t>(capacity_ * 2, 1024);
  if (wanted - size_ < more) wanted = size_ + more;
  auto* bigger = static_cast<char*>(std::realloc(data_, wanted));
  if (bigger == nullptr) throw std::bad_alloc();
  data_ = bigger;
  capacity_ = wanted;
}

void Writer::shrink_to(std::size_t keep) noexcept {
  if (capacity_ <= keep) return;
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
}

void Writer::integer(std::int64_t value) {
  reserve(20);
  const auto [end, ec] = std::to_chars(data_ + size_, data_ + capacity_, value);
  size_ = static_cast<std::size_t>(end - data_);
}

void Writer::big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
  // Base 2^64 limbs, most significant last; repeatedly divided by 10^19.
  std::vector<std::uint64_t> limbs((magnitude.size() + 7) / 8, 0);
  for (std::size_t i = 0; i < magnitude.size(); ++i) {
    limbs[i / 8] |= static_cast<std::uint64_t>(magnitude[i]) << (8 * (i % 8));
  }
  while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  if (limbs.empty()) {
    byte('0');
    return;
  }
  constexpr std::uint64_t chunk = 10000000000000000000ULL;  // 10^19
  std::vector<std::uint64_t> chunks;                        // least significant first
  while (!limbs.empty()) {
    Wide remainder = 0;
    for (std::size_t i = limbs.size(); i-- > 0;) {
      const Wide current = (remainder << 64) | limbs[i];
      limbs[i] = static_cast<std::uint64_t>(current / chunk);
      remainder = current % chunk;
    }
    chunks.push_back(static_cast<std::uint64_t>(remainder));
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  }
  reserve(1 + 19 * chunks.size());
  if (negative) data_[size_++] = '-';
  auto [end, ec] = std::to_chars(data_ + size_, data_ + capacity_, chunks.back());
  size_ = static_cast<std::size_t>(end - data_);
  for (std::size_t i = chunks.size() - 1; i-- > 0;) {
    char digits[19];
    std::uint64_t value = chunks[i];
    for (int d = 18; d >= 0; --d) {
      digits[d] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    std::memcpy(data_ + size_, digits, 19);
    size_ += 19;
  }
}

void Writer::floating(double value) {
  if (value == 0.0) {
    raw(std::signbit(value) ? std::string_view("-0.0") : std::string_view("0.0"));
    return;
  }
  // The shortest round-trip digits, as d.ddde[+-]XX.
  char scientific[32];
  const auto [end, ec] = std::to_chars(scientific, scientific + sizeof scientific, value,
                                       std::chars_format::scientific);
  const std::string_view text(scientific, static_cast<std::size_t>(end - scientific));
  const bool negative = text.front() == '-';
  const std::size_t e = text.find('e');
  char digits[20];
  std::size_t length = 0;
  for (std::size_t i = negative ? 1 : 0; i < e; ++i) {
    if (text[i] != '.') digits[length++] = text[i];
  }
  int exponent = 0;
  std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(),
                  exponent);
  char exponent_text[8];
  const auto exponent_end = std::to_chars(exponent_text, exponent_text + 8, exponent).ptr;
  const auto exponent_length = static_cast<std::size_t>(exponent_end - exponent_text);

  // OTP 25 prints the shorter of the plain and scientific forms (plain on a
  // tie), and always scientific from 2^53 up, where a double no longer holds
  // every integer.
  const std::size_t scientific_length = (length == 1 ? 3 : length + 1) + 1 + exponent_length;
  std::size_t plain_length;
  if (exponent >= static_cast<int>(length) - 1) {
    plain_length = static_cast<std::size_t>(exponent) + 3;  // digits, zeros, ".0"
  } else if (exponent >= 0) {
    plain_length = length + 1;
  } else {
    plain_length = length + 1 + static_cast<std::size_t>(-exponent);  // "0." zeros digits
  }
  const bool use_scientific =
      std::fabs(value) >= 9007199254740992.0 || scientific_length < plain_length;

  reserve(plain_length + scientific_length + 2);
  if (negative) data_[size_++] = '-';
  auto put = [this](std::string_view bytes) {
    std::memcpy(data_ + size_, bytes.data(), bytes.size());
    size_ += bytes.size();
  };
  const std::string_view all(digits, length);
  if (use_scientific) {
    put(all.substr(0, 1));
    put(".");
    put(length == 1 ? std::string_view("0") : all.substr(1));
    put("e");
    put({exponent_text, exponent_length});
  } else if (exponent >= static_cast<int>(length) - 1) {
    put(all);
    for (int i = static_cast<int>(length) - 1; i < exponent; ++i) put("0");
    put(".0");
  } else if (exponent >= 0) {
    const auto integral = static_cast<std::size_t>(exponent) + 1;
    put(all.substr(0, integral));
    put(".");
    put(all.substr(integral));
  } else {
    put("0.");
    for (int i = -1; i > exponent; --i) put("0");
    put(all);
  }
}

namespace {

// Per ASCII byte: 0 when it is written as is, else the character after the
// backslash ('u' for \u00XX).
struct EscapeTable {
  std::array<char, 128> json{};
  std::array<char, 128> html{};
  EscapeTable() {
    for (int c = 0; c < 0x20; ++c) json[static_cast<std::size_t>(c)] = 'u';
    json['\b'] = 'b';
    json['\t'] = 't';
    json['\n'] = 'n';
    json['\f'] = 'f';
    json['\r'] = 'r';
    json['"'] = '"';
    json['\\'] = '\\';
    html = json;
    html['<'] = 'u';
    html['/'] = '/';
  }
};
const EscapeTable escape_table;

constexpr char kHexDigits[] = "0123456789ABCDEF";

void put_unicode_escape(char* out, std::uint32_t unit) {
  out[0] = '\\';
  out[1] = 'u';
  out[2] = kHexDigits[(unit >> 12) & 0xF];
  out[3] = kHexDigits[(unit >> 8) & 0xF];
  out[4] = kHexDigits[(unit >> 4) & 0xF];
  out[5] = kHexDigits[unit & 0xF];
}

}  // namespace

std::size_t Writer::string_rest(const std::uint8_t* bytes, std::size_t at, std::size_t size,
                                Escape mode) {
  if (at < size) {
    const std::size_t bad = escape_from(bytes, at, size, mode);
    if (bad != npos) return bad;
  }
  byte('"');
  return npos;
}

// Writes bytes[at, size) escaped; the slow path of string().
std::size_t Writer::escape_from(const std::uint8_t* bytes, std::size_t at, std::size_t size,
                                Escape mode) {
  const auto& table = mode == Escape::html_safe ? escape_table.html : escape_table.json;
  while (at < size) {
    const std::uint8_t c = bytes[at];
    if (c < 0x80) {
      const char kind = table[c];
      if (kind == 0) {
        // A plain run (html_safe has more specials than find_special_byte
        // knows; it goes byte by byte).
        std::size_t end = at + 1;
        if (mode != Escape::html_safe) {
          end = find_special_byte(bytes, at + 1, size);
        } else {
          while (end < size && bytes[end] < 0x80 && table[bytes[end]] == 0) ++end;
        }
        raw({reinterpret_cast<const char*>(bytes + at), end - at});
        at = end;
        continue;
      }
      reserve(6);
      if (kind == 'u') {
        put_unicode_escape(data_ + size_, c);
        size_ += 6;
      } else {
        data_[size_++] = '\\';
        data_[size_++] = kind;
      }
      ++at;
      continue;
    }
    std::uint32_t code_point;
    const std::size_t length = utf8_sequence(bytes, at, size, code_point);
    if (length == 0) return at;
    if (mode == Escape::unicode_safe) {
      reserve(12);
      if (code_point < 0x10000) {
        put_unicode_escape(data_ + size_, code_point);
        size_ += 6;
      } else {
        const std::uint32_t offset = code_point - 0x10000;
        put_unicode_escape(data_ + size_, 0xD800 + (offset >> 10));
        put_unicode_escape(data_ + size_ + 6, 0xDC00 + (offset & 0x3FF));
        size_ += 12;
      }
    } else if (mode != Escape::json && (code_point == 0x2028 || code_point == 0x2029)) {
      reserve(6);
      put_unicode_escape(data_ + size_, code_point);
      size_ += 6;
    } else {
      raw({reinterpret_cast<const char*>(bytes + at), length});
    }
    at += length;
  }
  return npos;
}

void decimal_to_magnitude(std::string_view digits, std::basic_string<std::uint8_t>& out) {
  out.clear();
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  std::vector<std::uint64_t> limbs;  // least significant first
  std::size_t at = 0;
  // The first chunk takes the odd digits so that the rest are 19 each.
  std::size_t take = digits.size() % 19;
  if (take == 0) take = 19;
  while (at < digits.size()) {
    std::uint64_t chunk_value = 0;
    std::uint64_t scale = 1;
    for (std::size_t i = 0; i < take; ++i) {
      chunk_value = chunk_value * 10 + static_cast<std::uint64_t>(digits[at + i] - '0');
      scale *= 10;
    }
    at += take;
    take = 19;
    // limbs = limbs * scale + chunk_value
    Wide carry = chunk_value;
    for (std::uint64_t& limb : limbs) {
      const Wide product = static_cast<Wide>(limb) * scale + carry;
      limb = static_cast<std::uint64_t>(product);
      carry = product >> 64;
    }
    if (carry != 0) limbs.push_back(static_cast<std::uint64_t>(carry));
  }
  for (std::uint64_t limb : limbs) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(limb >> (8 * i)));
  }
  while (!out.empty() && out.back() == 0) out.pop_back();
}

}  // namespace switchboard::core::json
