// The external vectors in test/fixtures/erlpack_vectors.json (discord/erlpack's
// test inputs with OTP 25's verdicts), used as given.
#include <catch2/catch.hpp>

#include "hex.hpp"

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/etf/value.hpp"

namespace etf = switchboard::core::etf;

namespace {

using Bytes = std::vector<std::uint8_t>;
using JsonObject = std::map<std::string, std::string>;

using switchboard::test::hex;

using switchboard::test::unhex;

// Just enough JSON for a flat array of objects whose values are strings,
// numbers or literals; values come back as their text.
class VectorFileReader {
 public:
  explicit VectorFileReader(std::string text) : text_(std::move(text)) {}

  std::vector<JsonObject> objects() {
    std::vector<JsonObject> out;
    expect('[');
    if (peek() == ']') return out;
    for (;;) {
      out.push_back(object());
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return out;
    }
  }

 private:
  char peek() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    if (pos_ >= text_.size()) throw std::runtime_error("unexpected end of JSON");
    return text_[pos_];
  }
  void expect(char c) {
    if (peek() != c) throw std::runtime_error(std::string("expected ") + c);
    ++pos_;
  }
  JsonObject object() {
    JsonObject out;
    expect('{');
    if (peek() == '}') {
      ++pos_;
      return out;
    }
    for (;;) {
      std::string key = string();
      expect(':');
      out[key] = peek() == '"' ? string() : literal();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return out;
    }
  }
  std::string string() {
    expect('"');
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\') {
        ++pos_;
        const char escaped = text_.at(pos_);
        if (escaped == 'u') {
          out += "\\u" + text_.substr(pos_ + 1, 4);  // kept as written; no field here needs it
          pos_ += 4;
        } else {
          out.push_back(escaped == 'n' ? '\n' : escaped == 't' ? '\t' : escaped);
        }
      } else {
        out.push_back(text_[pos_]);
      }
      ++pos_;
    }
    expect('"');
    return out;
  }
  std::string literal() {
    peek();
    const std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '}' &&
           !std::isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  std::string text_;
  std::size_t pos_ = 0;
};

std::filesystem::path testdata_dir() {
  if (const char* configured = std::getenv("SWITCHBOARD_TESTDATA_DIR")) return configured;
  // native_tests/ and test/fixtures/ both sit at the project's root.
  return std::filesystem::path(__FILE__).parent_path().parent_path() / "test" / "fixtures";
}

std::vector<JsonObject> load_vectors() {
  const auto path = testdata_dir() / "erlpack_vectors.json";
  std::ifstream file(path);
  INFO("reading " << path.string());
  REQUIRE(file.good());
  std::stringstream text;
  text << file.rdbuf();
  return VectorFileReader(text.str()).objects();
}

}  // namespace

TEST_CASE("erlpack vectors: OTP's verdict, bytes used and re-encoding", "[etf][vectors]") {
  const std::vector<JsonObject> vectors = load_vectors();
  REQUIRE(vectors.size() == 115);
  std::size_t accepted = 0;
  std::size_t refused = 0;
  for (const JsonObject& vector : vectors) {
    const std::string& source = vector.at("source");
    const Bytes input = unhex(vector.at("etf_hex"));
    const etf::DecodedValue result = etf::decode(input);
    INFO(source << ": " << vector.at("etf_hex").substr(0, 80) << " -> "
                << etf::decode_error_name(result.status.error) << " at " << result.status.offset);
    if (vector.at("otp25_binary_to_term") == "ok") {
      ++accepted;
      REQUIRE(result.status.ok());
      CHECK(result.status.bytes_used == std::stoul(vector.at("otp25_bytes_used")));
      CHECK(hex(etf::encode(result.value).bytes()) == vector.at("otp25_reencoded_hex"));
    } else {
      ++refused;
      CHECK_FALSE(result.status.ok());
    }
  }
  CHECK(accepted == 99);
  CHECK(refused == 16);
}
