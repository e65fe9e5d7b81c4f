// The JSON core: the reader's values, refusals and offsets, its limits, and
// the writer's escaping, numbers and float formatting (OTP 25's).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/json/parse_error.hpp"
#include "core/json/reader.hpp"
#include "core/json/validate.hpp"
#include "core/json/writer.hpp"

using switchboard::core::json::decimal_to_magnitude;
using switchboard::core::json::Escape;
using switchboard::core::json::parse_error_name;
using switchboard::core::json::ParseErrc;
using switchboard::core::json::ParseError;
using switchboard::core::json::ParseLimits;
using switchboard::core::json::Reader;
using switchboard::core::json::validate;
using switchboard::core::json::Writer;

namespace {

// Rebuilds what it reads as compact JSON through the Writer, so a parse can
// be compared with an expected text (and round trips come for free).
struct Rewriter {
  std::vector<std::string> values;
  bool reject_keys = false;

  void push(std::string text) { values.push_back(std::move(text)); }
  void null_value() { push("null"); }
  void boolean(bool value) { push(value ? "true" : "false"); }
  void integer(std::int64_t value) { push(std::to_string(value)); }
  void floating(double value) {
    Writer writer;
    writer.floating(value);
    push(std::string(writer.view()));
  }
  bool big_integer(std::string_view text) {
    push("big:" + std::string(text));
    return true;
  }
  void string(std::string_view text, bool, std::size_t) {
    Writer writer;
    REQUIRE(writer.string(text, Escape::json) == Writer::npos);
    push(std::string(writer.view()));
  }
  bool key(std::string_view text, bool in_input, std::size_t at) {
    if (reject_keys) return false;
    string(text, in_input, at);
    return true;
  }
  void end_array(std::size_t count) {
    std::string joined = "[";
    for (std::size_t i = values.size() - count; i < values.size(); ++i) {
      if (i != values.size() - count) joined += ",";
      joined += values[i];
    }
    values.resize(values.size() - count);
    push(joined + "]");
  }
  void end_object(std::size_t pairs) {
    std::string joined = "{";
    const std::size_t base = values.size() - 2 * pairs;
    for (std::size_t i = base; i < values.size(); i += 2) {
      if (i != base) joined += ",";
      joined += values[i] + ":" + values[i + 1];
    }
    values.resize(base);
    push(joined + "}");
  }
};

std::string reread(std::string_view text, const ParseLimits& limits = {}) {
  Reader reader;
  Rewriter rewriter;
  const ParseError error = reader.parse(rewriter, text, limits);
  if (error) {
    return std::string(parse_error_name(error.reason)) + "@" + std::to_string(error.offset);
  }
  REQUIRE(rewriter.values.size() == 1);
  return rewriter.values[0];
}

std::string float_text(double value) {
  Writer writer;
  writer.floating(value);
  return std::string(writer.view());
}

std::string escaped(std::string_view text, Escape mode) {
  Writer writer;
  const std::size_t bad = writer.string(text, mode);
  if (bad != Writer::npos) return "bad@" + std::to_string(bad);
  return std::string(writer.view());
}

}  // namespace

TEST_CASE("reader: values and whitespace") {
  CHECK(reread(" { \"a\" : [ 1 , -2 , 3.5 , true , false , null ] } \n") ==
        R"({"a":[1,-2,3.5,true,false,null]})");
  CHECK(reread("[]") == "[]");
  CHECK(reread("{}") == "{}");
  CHECK(reread("[[],{}]") == "[[],{}]");
  CHECK(reread("\"\"") == "\"\"");
  CHECK(reread("0") == "0");
  CHECK(reread("-0") == "0");
  CHECK(reread("-0.0") == "-0.0");
  CHECK(reread("1E2") == "100.0");
  CHECK(reread("1e-2") == "0.01");
  CHECK(reread("123456789012345678") == "123456789012345678");
  CHECK(reread("1234567890123456789") == "big:1234567890123456789");
  CHECK(reread("-12345678901234567890") == "big:-12345678901234567890");
  CHECK(reread("1e-400") == "0.0");
  CHECK(reread("-1e-400") == "-0.0");
  CHECK(reread("{\"a\":1,\"a\":2}") == R"({"a":1,"a":2})");  // duplicates reach the handler
}

TEST_CASE("reader: strings, escapes and UTF-8") {
  CHECK(reread(R"("a\"b\\c\/d\b\f\n\r\t")") == R"("a\"b\\c/d\b\f\n\r\t")");
  CHECK(reread(R"("\u00e9\u20AC")") == "\"\xC3\xA9\xE2\x82\xAC\"");
  CHECK(reread(R"("\uD83D\uDE00")") == "\"\xF0\x9F\x98\x80\"");
  CHECK(reread("\"\xF0\x9F\x98\x80 plain\"") == "\"\xF0\x9F\x98\x80 plain\"");
  CHECK(reread(R"("x\u0000y")") == R"("x\u0000y")");
  // Long strings cross the eight-byte scan with escapes and UTF-8 anywhere.
  const std::string long_text = "abcdefghijklmnopqrstuvwxyz\xC3\xA9\\n0123456789";
  CHECK(reread("\"" + long_text + "\"") == "\"abcdefghijklmnopqrstuvwxyz\xC3\xA9\\n0123456789\"");
}

TEST_CASE("reader: refusals name the reason and the offset") {
  CHECK(reread("") == "unexpected_end@0");
  CHECK(reread("   ") == "unexpected_end@3");
  CHECK(reread("[1,]") == "unexpected_byte@3");
  CHECK(reread("[1 2]") == "unexpected_byte@3");
  CHECK(reread("{\"a\" 1}") == "unexpected_byte@5");
  CHECK(reread("{1:2}") == "unexpected_byte@1");
  CHECK(reread("{\"a\":1,}") == "unexpected_byte@7");
  CHECK(reread("[1] x") == "unexpected_byte@4");
  CHECK(reread("01") == "unexpected_byte@1");
  CHECK(reread("-") == "unexpected_end@1");
  CHECK(reread("-a") == "unexpected_byte@1");
  CHECK(reread("1.") == "unexpected_end@2");
  CHECK(reread("1.e5") == "unexpected_byte@2");
  CHECK(reread("1e") == "unexpected_end@2");
  CHECK(reread("1e+") == "unexpected_end@3");
  CHECK(reread("+1") == "unexpected_byte@0");
  CHECK(reread(".5") == "unexpected_byte@0");
  CHECK(reread("tru") == "unexpected_end@3");
  CHECK(reread("trUe") == "unexpected_byte@2");
  CHECK(reread("nul") == "unexpected_end@3");
  CHECK(reread("[\"abc") == "unexpected_end@5");
  CHECK(reread("\"a\tb\"") == "unexpected_byte@2");
  CHECK(reread(R"(["\x"])") == "invalid_escape@2");
  CHECK(reread(R"(["\u12G4"])") == "invalid_escape@2");
  CHECK(reread(R"(["\uD800"])") == "lone_surrogate@2");
  CHECK(reread(R"(["\uDC00"])") == "lone_surrogate@2");
  CHECK(reread(R"(["\uD800\u0041"])") == "lone_surrogate@2");
  CHECK(reread(R"(["\uD800x"])") == "lone_surrogate@2");
  CHECK(reread("[\"a\xFF\"]") == "invalid_utf8@3");
  CHECK(reread("[\"\xC0\xAF\"]") == "invalid_utf8@2");          // overlong
  CHECK(reread("[\"\xED\xA0\x80\"]") == "invalid_utf8@2");      // encoded surrogate
  CHECK(reread("[\"\xF4\x90\x80\x80\"]") == "invalid_utf8@2");  // above U+10FFFF
  CHECK(reread("[\"\xE2\x82\"]") == "invalid_utf8@2");          // cut short
  CHECK(reread("1e400") == "number_too_large@0");
  CHECK(reread("[-1e400]") == "number_too_large@1");
  CHECK(reread("\xEF\xBB\xBF[]") == "unexpected_byte@0");  // no byte order mark
}

TEST_CASE("reader: limits") {
  ParseLimits limits;
  limits.max_depth = 3;
  CHECK(reread("[[[1]]]", limits) == "[[[1]]]");
  CHECK(reread("[[[[1]]]]", limits) == "max_depth@3");
  CHECK(reread("[{\"a\":[1]}]", limits) == "[{\"a\":[1]}]");
  CHECK(reread("[{\"a\":[{}]}]", limits) == "max_depth@7");
  limits = {};
  limits.max_size = 4;
  CHECK(reread("[12]", limits) == "[12]");
  CHECK(reread("[123]", limits) == "max_size@0");
  limits = {};
  limits.max_integer_digits = 25;
  CHECK(reread(std::string(25, '9'), limits) == "big:" + std::string(25, '9'));
  CHECK(reread("[" + std::string(26, '9') + "]", limits) == "number_too_large@1");
  limits = {};
  limits.work_budget = 100;
  CHECK(reread(std::string(200, ' ') + "1", limits) == "out_of_budget@0");
  CHECK(reread(std::string(90, '1'), limits) == "out_of_budget@0");  // the big integer's cost
  // Deep nesting costs no native stack.
  std::string deep(100000, '[');
  CHECK(validate(deep).reason == ParseErrc::max_depth);
  limits = {};
  limits.max_depth = 200000;
  CHECK(validate(deep + std::string(100000, ']'), limits).reason == ParseErrc::ok);
}

TEST_CASE("reader: a rejecting handler stops at the key") {
  Reader reader;
  Rewriter rewriter;
  rewriter.reject_keys = true;
  const ParseError error = reader.parse(rewriter, "[{\"k\":1}]", {});
  CHECK(error.reason == ParseErrc::rejected);
  CHECK(error.offset == 2);
}

TEST_CASE("writer: floats as OTP 25 prints them") {
  // Each expected text is Float.to_string/1 (= float_to_binary(F, [short]))
  // on OTP 25.2.
  CHECK(float_text(1.0) == "1.0");
  CHECK(float_text(-1.0) == "-1.0");
  CHECK(float_text(0.0) == "0.0");
  CHECK(float_text(-0.0) == "-0.0");
  CHECK(float_text(0.1) == "0.1");
  CHECK(float_text(100.0) == "100.0");
  CHECK(float_text(1.0e5) == "1.0e5");
  CHECK(float_text(123456.0) == "123456.0");
  CHECK(float_text(12345600.0) == "1.23456e7");
  CHECK(float_text(1.0e15) == "1.0e15");
  CHECK(float_text(1.0e16) == "1.0e16");
  CHECK(float_text(9007199254740992.0) == "9.007199254740992e15");
  CHECK(float_text(9007199254740990.0) == "9007199254740990.0");
  CHECK(float_text(0.001) == "0.001");
  CHECK(float_text(0.0001) == "0.0001");
  CHECK(float_text(1.0e-5) == "1.0e-5");
  CHECK(float_text(1.234e-4) == "1.234e-4");
  CHECK(float_text(1.5e300) == "1.5e300");
  CHECK(float_text(5.0e-324) == "5.0e-324");
  CHECK(float_text(1.7976931348623157e308) == "1.7976931348623157e308");
  CHECK(float_text(1.2345678901234568e16) == "1.2345678901234568e16");
}

TEST_CASE("writer: floats read back to the same double") {
  std::mt19937_64 random(42);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t bits = random();
    double value;
    std::memcpy(&value, &bits, sizeof value);
    if (!std::isfinite(value)) continue;
    const std::string text = float_text(value);
    CHECK(std::strtod(text.c_str(), nullptr) == value);
    CHECK(text.find_first_of(".e") != std::string::npos);
  }
}

TEST_CASE("writer: integers of any size") {
  Writer writer;
  writer.integer(std::numeric_limits<std::int64_t>::min());
  CHECK(writer.view() == "-9223372036854775808");
  std::basic_string<std::uint8_t> magnitude;
  const std::string digits = "123456789012345678901234567890123456789012345678901234567890";
  decimal_to_magnitude(digits, magnitude);
  writer.clear();
  writer.big_integer(true, magnitude);
  CHECK(writer.view() == "-" + digits);
  decimal_to_magnitude("18446744073709551616", magnitude);  // 2^64
  CHECK(magnitude == std::basic_string<std::uint8_t>{0, 0, 0, 0, 0, 0, 0, 0, 1});
  writer.clear();
  writer.big_integer(false, magnitude);
  CHECK(writer.view() == "18446744073709551616");
  decimal_to_magnitude("0", magnitude);
  CHECK(magnitude.empty());
  writer.clear();
  writer.big_integer(false, magnitude);
  CHECK(writer.view() == "0");
  decimal_to_magnitude("10000000000000000000000000000000000000", magnitude);
  writer.clear();
  writer.big_integer(false, magnitude);
  CHECK(writer.view() == "10000000000000000000000000000000000000");
}

TEST_CASE("writer: escape modes") {
  const std::string text = "a\"\\/<\x01\n\xC3\xA9\xE2\x80\xA8\xF0\x9F\x98\x80";
  CHECK(escaped(text, Escape::json) ==
        "\"a\\\"\\\\/<\\u0001\\n\xC3\xA9\xE2\x80\xA8\xF0\x9F\x98\x80\"");
  CHECK(escaped(text, Escape::javascript_safe) ==
        "\"a\\\"\\\\/<\\u0001\\n\xC3\xA9\\u2028\xF0\x9F\x98\x80\"");
  CHECK(escaped(text, Escape::html_safe) ==
        "\"a\\\"\\\\\\/\\u003C\\u0001\\n\xC3\xA9\\u2028\xF0\x9F\x98\x80\"");
  CHECK(escaped(text, Escape::unicode_safe) ==
        "\"a\\\"\\\\/<\\u0001\\n\\u00E9\\u2028\\uD83D\\uDE00\"");
  CHECK(escaped("\x1F\x7F", Escape::json) == "\"\\u001F\x7F\"");
  CHECK(escaped("plain text longer than eight bytes", Escape::json) ==
        "\"plain text longer than eight bytes\"");
  CHECK(escaped("ok\xFF", Escape::json) == "bad@2");
  CHECK(escaped("\xC3", Escape::unicode_safe) == "bad@0");
  CHECK(escaped("ab\xED\xA0\x80", Escape::html_safe) == "bad@2");
}

TEST_CASE("writer: padded strings as strings, at every length and position") {
  // Text in whole words, as a heap binary's: the scan may read to the next
  // multiple of eight, where bytes that need escapes must not count.
  const std::string specials[] = {"", "\"", "\\", "\x01", "\xC3\xA9", "\xFF"};
  for (std::size_t length = 0; length <= 24; ++length) {
    for (const std::string& special : specials) {
      for (std::size_t at = 0; at <= length; ++at) {
        std::string text(length, 'x');
        text.insert(at, special);
        std::string padded = text + std::string(8, '"');  // specials past the end
        for (Escape mode : {Escape::json, Escape::html_safe, Escape::unicode_safe}) {
          Writer plain, fast;
          plain.raw("[");
          fast.raw("[");
          const std::size_t bad = plain.string(text, mode);
          CHECK(fast.padded_string(std::string_view(padded.data(), text.size()), mode) == bad);
          if (bad == Writer::npos) CHECK(fast.view() == plain.view());
        }
      }
    }
  }
}

TEST_CASE("round trip: what the writer writes, the reader reads back identically") {
  const std::string text =
      R"({"id":"1234","n":-17,"f":[1.5,-0.0,1.0e100],"s":"\u0001\"\\é","t":true,"z":null})";
  CHECK(reread(text) == text);
  CHECK(reread(reread(text)) == text);
}
