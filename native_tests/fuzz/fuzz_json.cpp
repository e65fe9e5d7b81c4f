// Fuzzes the JSON reader and writer. The reader must agree with an
// independent strict RFC 8259 checker (a small recursive-descent validator
// written here from the RFC's grammar, sharing no code with the core) on
// every input: it accepts exactly what the RFC accepts, apart from its own
// documented refusals (a lone surrogate escape, a number too large, nesting
// past max_depth). Whatever it accepts is rewritten as compact JSON through
// the Writer, and that text must read back and rewrite to the same bytes
// (encode(decode(x)) is a fixed point), and validate() must agree with the
// full parse. Any disagreement aborts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/json/parse_error.hpp"
#include "core/json/reader.hpp"
#include "core/json/validate.hpp"
#include "core/json/writer.hpp"

namespace json = switchboard::core::json;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

// The oracle: RFC 8259's grammar, byte by byte, with UTF-8 checked as RFC
// 3629 defines it. It reports the deepest nesting it saw so that the
// reader's max_depth refusal can be told apart from a syntax error.
class StrictChecker {
 public:
  explicit StrictChecker(std::string_view text)
      : text_(reinterpret_cast<const std::uint8_t*>(text.data())), size_(text.size()) {}

  bool accepts() {
    whitespace();
    if (!value(1)) return false;
    whitespace();
    return at_ == size_;
  }
  std::size_t deepest() const { return deepest_; }
  bool saw_surrogate_escape() const { return surrogate_escape_; }

 private:
  static constexpr std::size_t kGiveUpDepth = 4096;

  bool peek(std::uint8_t byte) const { return at_ < size_ && text_[at_] == byte; }
  bool eat(std::uint8_t byte) {
    if (!peek(byte)) return false;
    ++at_;
    return true;
  }
  void whitespace() {
    while (at_ < size_ &&
           (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r')) {
      ++at_;
    }
  }
  bool word(std::string_view expected) {
    for (char c : expected) {
      if (!eat(static_cast<std::uint8_t>(c))) return false;
    }
    return true;
  }

  bool value(std::size_t depth) {
    if (at_ >= size_) return false;
    switch (text_[at_]) {
      case '{':
        return object(depth);
      case '[':
        return array(depth);
      case '"':
        return string();
      case 't':
        return word("true");
      case 'f':
        return word("false");
      case 'n':
        return word("null");
      default:
        return number();
    }
  }

  bool enter(std::size_t depth) {
    if (depth > deepest_) deepest_ = depth;
    return depth < kGiveUpDepth;
  }

  bool array(std::size_t depth) {
    if (!enter(depth)) return false;
    ++at_;
    whitespace();
    if (eat(']')) return true;
    for (;;) {
      whitespace();
      if (!value(depth + 1)) return false;
      whitespace();
      if (eat(']')) return true;
      if (!eat(',')) return false;
    }
  }

  bool object(std::size_t depth) {
    if (!enter(depth)) return false;
    ++at_;
    whitespace();
    if (eat('}')) return true;
    for (;;) {
      whitespace();
      if (!peek('"') || !string()) return false;
      whitespace();
      if (!eat(':')) return false;
      whitespace();
      if (!value(depth + 1)) return false;
      whitespace();
      if (eat('}')) return true;
      if (!eat(',')) return false;
    }
  }

  static bool digit(std::uint8_t byte) { return byte >= '0' && byte <= '9'; }
  bool digits() {
    const std::size_t start = at_;
    while (at_ < size_ && digit(text_[at_])) ++at_;
    return at_ > start;
  }

  bool number() {
    eat('-');
    if (eat('0')) {
      // no leading zeros
    } else if (at_ < size_ && text_[at_] >= '1' && text_[at_] <= '9') {
      digits();
    } else {
      return false;
    }
    if (eat('.') && !digits()) return false;
    if (peek('e') || peek('E')) {
      ++at_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }

  static bool hex(std::uint8_t byte) {
    return digit(byte) || (byte >= 'a' && byte <= 'f') || (byte >= 'A' && byte <= 'F');
  }

  bool string() {
    ++at_;  // the opening quote
    for (;;) {
      if (at_ >= size_) return false;
      const std::uint8_t byte = text_[at_];
      if (byte == '"') {
        ++at_;
        return true;
      }
      if (byte < 0x20) return false;
      if (byte == '\\') {
        ++at_;
        if (at_ >= size_) return false;
        const std::uint8_t escaped = text_[at_++];
        if (escaped == 'u') {
          if (size_ - at_ < 4) return false;
          for (std::size_t i = 0; i < 4; ++i) {
            if (!hex(text_[at_ + i])) return false;
          }
          const std::uint8_t first = text_[at_];
          const std::uint8_t second = text_[at_ + 1];
          if ((first == 'd' || first == 'D') &&
              (second == '8' || second == '9' || (second >= 'a' && second <= 'f') ||
               (second >= 'A' && second <= 'F'))) {
            surrogate_escape_ = true;
          }
          at_ += 4;
        } else if (std::string_view("\"\\/bfnrt").find(static_cast<char>(escaped)) ==
                   std::string_view::npos) {
          return false;
        }
        continue;
      }
      if (byte < 0x80) {
        ++at_;
        continue;
      }
      if (!utf8_sequence()) return false;
    }
  }

  // RFC 3629's table of well-formed sequences.
  bool utf8_sequence() {
    const std::uint8_t lead = text_[at_];
    std::size_t length = 0;
    std::uint8_t low = 0x80;
    std::uint8_t high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    } else {
      return false;
    }
    if (size_ - at_ < length) return false;
    for (std::size_t i = 1; i < length; ++i) {
      const std::uint8_t next = text_[at_ + i];
      const std::uint8_t min = i == 1 ? low : 0x80;
      const std::uint8_t max = i == 1 ? high : 0xBF;
      if (next < min || next > max) return false;
    }
    at_ += length;
    return true;
  }

  const std::uint8_t* text_;
  std::size_t size_;
  std::size_t at_ = 0;
  std::size_t deepest_ = 0;
  bool surrogate_escape_ = false;
};

// Rewrites what the reader reads as compact JSON through the Writer.
struct Rewriter {
  std::vector<std::string> values;

  void push(json::Writer& writer) { values.emplace_back(writer.view()); }
  void null_value() { values.emplace_back("null"); }
  void boolean(bool value) { values.emplace_back(value ? "true" : "false"); }
  void integer(std::int64_t value) {
    json::Writer writer;
    writer.integer(value);
    push(writer);
  }
  void floating(double value) {
    json::Writer writer;
    writer.floating(value);
    push(writer);
  }
  bool big_integer(std::string_view text) {
    std::basic_string<std::uint8_t> magnitude;
    json::decimal_to_magnitude(text, magnitude);
    json::Writer writer;
    writer.big_integer(!text.empty() && text[0] == '-', magnitude);
    // An integer outside int64 is written back digit for digit.
    require(writer.view() == text);
    push(writer);
    return true;
  }
  void string(std::string_view text, bool, std::size_t) {
    json::Writer writer;
    // Decoded strings are always valid UTF-8.
    require(writer.string(text, json::Escape::json) == json::Writer::npos);
    push(writer);
  }
  bool key(std::string_view text, bool in_input, std::size_t at) {
    string(text, in_input, at);
    return true;
  }
  void join(std::size_t count, char open, char close, bool pairs) {
    std::string joined(1, open);
    const std::size_t base = values.size() - count;
    for (std::size_t i = base; i < values.size(); ++i) {
      if (i != base) joined += (pairs && (i - base) % 2 == 1) ? ':' : ',';
      joined += values[i];
    }
    joined += close;
    values.resize(base);
    values.push_back(std::move(joined));
  }
  void end_array(std::size_t count) { join(count, '[', ']', false); }
  void end_object(std::size_t pairs) { join(2 * pairs, '{', '}', true); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  json::ParseLimits limits;
  limits.max_depth = 64;
  limits.max_integer_digits = 200;

  json::Reader reader;
  Rewriter rewriter;
  const json::ParseError error = reader.parse(rewriter, input, limits);
  const json::ParseError validated = json::validate(input, limits);
  require(validated.reason == error.reason && validated.offset == error.offset);
  require(error.reason != json::ParseErrc::rejected &&
          error.reason != json::ParseErrc::out_of_budget);
  if (error) require(error.offset <= size);

  StrictChecker oracle(input);
  const bool rfc_accepts = oracle.accepts();
  switch (error.reason) {
    case json::ParseErrc::ok:
      require(rfc_accepts);
      require(oracle.deepest() <= limits.max_depth);
      break;
    case json::ParseErrc::max_depth:
      require(oracle.deepest() > limits.max_depth);
      return 0;
    case json::ParseErrc::lone_surrogate:
      require(oracle.saw_surrogate_escape());
      return 0;
    case json::ParseErrc::number_too_large:
      return 0;  // overflowing floats and integers past max_integer_digits
    default:
      require(!rfc_accepts);
      return 0;
  }

  require(rewriter.values.size() == 1);
  const std::string canonical = rewriter.values[0];
  Rewriter again;
  json::ParseLimits roomy = limits;
  roomy.max_integer_digits = 100000;
  require(!reader.parse(again, canonical, roomy));
  require(again.values.size() == 1 && again.values[0] == canonical);
  return 0;
}
