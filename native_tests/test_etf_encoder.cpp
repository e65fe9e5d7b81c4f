// EtfEncoder against bytes from OTP 25's term_to_binary/1 (erl, erts-13.1.5).
#include <catch2/catch.hpp>

#include "hex.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/etf/encoder.hpp"

using switchboard::core::etf::EtfEncoder;

namespace {

using switchboard::test::hex;

std::vector<std::uint8_t> unhex(const std::string& text) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(text.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string repeat(const std::string& text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += text;
  return out;
}

// Encodes one term after the version byte.
template <class Write>
std::string encoded(Write write) {
  EtfEncoder encoder;
  encoder.version();
  write(encoder);
  return hex(encoder.bytes());
}

}  // namespace

TEST_CASE("integers take OTP's canonical tag for their size", "[etf][encoder]") {
  auto int64 = [](std::int64_t value) { return encoded([&](EtfEncoder& e) { e.int64(value); }); };
  CHECK(int64(0) == "836100");
  CHECK(int64(255) == "8361ff");
  CHECK(int64(256) == "836200000100");
  CHECK(int64(-1) == "8362ffffffff");
  CHECK(int64(2147483647) == "83627fffffff");
  CHECK(int64(-2147483648LL) == "836280000000");
  CHECK(int64(2147483648LL) == "836e040000000080");
  CHECK(int64(-2147483649LL) == "836e040101000080");
  CHECK(int64(std::numeric_limits<std::int64_t>::max()) == "836e0800ffffffffffffff7f");
  CHECK(int64(std::numeric_limits<std::int64_t>::min()) == "836e08010000000000000080");
  CHECK(int64(175928847299117063LL) == "836e0800070002c15a067102");  // a Discord snowflake
  CHECK(encoded([](EtfEncoder& e) { e.uint64(std::numeric_limits<std::uint64_t>::max()); }) ==
        "836e0800ffffffffffffffff");
  CHECK(encoded([](EtfEncoder& e) { e.uint64(300); }) == "83620000012c");
}

TEST_CASE("fixed-width integer tags are written as asked", "[etf][encoder]") {
  CHECK(encoded([](EtfEncoder& e) { e.small_integer(7); }) == "836107");
  CHECK(encoded([](EtfEncoder& e) { e.integer(7); }) == "836200000007");
}

TEST_CASE("bignums are SMALL_BIG_EXT up to 255 bytes and LARGE_BIG_EXT beyond", "[etf][encoder]") {
  const std::vector<std::uint8_t> two_to_64{0, 0, 0, 0, 0, 0, 0, 0, 1};
  CHECK(encoded([&](EtfEncoder& e) { e.big_integer(false, two_to_64); }) ==
        "836e0900000000000000000001");
  std::vector<std::uint8_t> two_to_2048(257, 0);
  two_to_2048.back() = 1;
  const std::string large_magnitude = repeat("00", 256) + "01";
  CHECK(encoded([&](EtfEncoder& e) { e.big_integer(false, two_to_2048); }) ==
        "836f0000010100" + large_magnitude);
  CHECK(encoded([&](EtfEncoder& e) { e.big_integer(true, two_to_2048); }) ==
        "836f0000010101" + large_magnitude);
}

TEST_CASE("floats are NEW_FLOAT_EXT", "[etf][encoder]") {
  CHECK(encoded([](EtfEncoder& e) { e.float64(1.5); }) == "83463ff8000000000000");
  CHECK(encoded([](EtfEncoder& e) { e.float64(-0.0); }) == "83468000000000000000");
  CHECK(encoded([](EtfEncoder& e) { e.float64(0.1); }) == "83463fb999999999999a");
}

TEST_CASE("atoms are latin1 ATOM_EXT when they can be, UTF-8 otherwise (OTP 25)",
          "[etf][encoder]") {
  auto atom = [](const std::string& text) { return encoded([&](EtfEncoder& e) { e.atom(text); }); };
  CHECK(atom("hello") == "8364000568656c6c6f");
  CHECK(atom("") == "83640000");
  CHECK(atom("h\xc3\xa9llo") == "8364000568e96c6c6f");  // é goes out as latin1 0xe9
  CHECK(atom("\xe3\x81\x82") == "837703e38182");        // あ needs SMALL_ATOM_UTF8_EXT
  CHECK(atom(std::string(255, 'a')) == "836400ff" + repeat("61", 255));
  std::string hiragana;
  for (int i = 0; i < 100; ++i) hiragana += "\xe3\x81\x82";
  CHECK(atom(hiragana) == "8376012c" + repeat("e38182", 100));  // 300 bytes: ATOM_UTF8_EXT
}

TEST_CASE("binaries, bitstrings and byte lists", "[etf][encoder]") {
  const std::vector<std::uint8_t> bytes{1, 2, 3};
  CHECK(encoded([&](EtfEncoder& e) { e.binary(bytes); }) == "836d00000003010203");
  CHECK(encoded([](EtfEncoder& e) { e.binary(std::string_view{}); }) == "836d00000000");
  // <<1,2,3:3>>: the last byte keeps its top three bits, the rest is cleared.
  const std::vector<std::uint8_t> bits{1, 2, 0x7f};
  CHECK(encoded([&](EtfEncoder& e) { e.bitstring(bits, 3); }) == "834d0000000303010260");
  const std::vector<std::uint8_t> one_bit{0xff};
  CHECK(encoded([&](EtfEncoder& e) { e.bitstring(one_bit, 1); }) == "834d000000010180");
  CHECK(encoded([&](EtfEncoder& e) { e.bitstring(bytes, 8); }) == "836d00000003010203");
  CHECK(encoded([&](EtfEncoder& e) { e.string(bytes); }) == "836b0003010203");
  REQUIRE_THROWS_AS(encoded([&](EtfEncoder& e) { e.bitstring(bytes, 0); }), std::invalid_argument);
  const std::vector<std::uint8_t> too_long(65536, 1);
  REQUIRE_THROWS_AS(encoded([&](EtfEncoder& e) { e.string(too_long); }), std::invalid_argument);
}

TEST_CASE("lists, tuples and maps are a header followed by their elements", "[etf][encoder]") {
  CHECK(encoded([](EtfEncoder& e) {
          e.list_header(1);
          e.int64(1);
          e.int64(2);
        }) == "836c0000000161016102");
  CHECK(encoded([](EtfEncoder& e) {
          e.list_header(2);
          e.atom("a");
          e.atom("b");
          e.nil();
        }) == "836c0000000264000161640001626a");
  CHECK(encoded([](EtfEncoder& e) { e.nil(); }) == "836a");
  CHECK(encoded([](EtfEncoder& e) { e.tuple_header(0); }) == "836800");
  CHECK(encoded([](EtfEncoder& e) {
          e.tuple_header(2);
          e.int64(1);
          e.int64(2);
        }) == "83680261016102");
  CHECK(encoded([](EtfEncoder& e) {
          e.tuple_header(300);
          for (int i = 0; i < 300; ++i) e.int64(0);
        }) == "83690000012c" + repeat("6100", 300));
  CHECK(encoded([](EtfEncoder& e) {
          e.map_header(1);
          e.atom("a");
          e.int64(1);
        }) == "837400000001640001616101");
}

TEST_CASE("pids, ports, references and exports as OTP 25 writes them", "[etf][encoder]") {
  CHECK(encoded([](EtfEncoder& e) { e.pid("a@b", 1, 2, 3); }) ==
        "8358640003614062000000010000000200000003");
  CHECK(encoded([](EtfEncoder& e) { e.port("a@b", 5, 7); }) == "83596400036140620000000500000007");
  CHECK(encoded([](EtfEncoder& e) { e.port("a@b", 0x0fffffff, 1); }) ==
        "83596400036140620fffffff00000001");
  CHECK(encoded([](EtfEncoder& e) { e.port("a@b", 0x10000000, 1); }) ==
        "8378640003614062000000001000000000000001");
  CHECK(encoded([](EtfEncoder& e) { e.port("a@b", std::uint64_t{1} << 40, 7); }) ==
        "8378640003614062000001000000000000000007");
  const std::vector<std::uint32_t> ids{9, 1, 2};
  // term_to_binary writes creation first, then the id words in order.
  CHECK(encoded([&](EtfEncoder& e) { e.reference("a@b", 3, ids); }) ==
        "835a000364000361406200000003000000090000000100000002");
  CHECK(encoded([](EtfEncoder& e) { e.export_fun("lists", "map", 2); }) ==
        "83716400056c697374736400036d61706102");
}

TEST_CASE("raw splices pre-encoded terms", "[etf][encoder]") {
  const auto fragment = unhex("6d00000003010203");
  CHECK(encoded([&](EtfEncoder& e) {
          e.tuple_header(2);
          e.raw(fragment);
          e.raw(fragment);
        }) == "8368026d000000030102036d00000003010203");
}

TEST_CASE("compress matches term_to_binary(T, [{compressed, Level}])", "[etf][encoder]") {
  auto compressed = [](int level, auto write) {
    EtfEncoder encoder;
    encoder.version();
    write(encoder);
    encoder.compress(level);
    return hex(encoder.bytes());
  };
  auto twenty_zeros = [](EtfEncoder& e) { e.string(std::vector<std::uint8_t>(20, 0)); };
  CHECK(compressed(9, twenty_zeros) == "83500000001778dacb661061c002000b580080");

  std::vector<std::uint8_t> counting(200);
  for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::uint8_t>(i + 1);
  auto three_binaries = [&](EtfEncoder& e) {
    e.tuple_header(3);
    for (int i = 0; i < 3; ++i) e.binary(counting);
  };
  const std::string deflated_body =
      "cb60ce65606038c1c8c4ccc2cac6cec1c9c5cdc3cbc72f2028242c222a262e2129252d232b27afa0a8a4aca2aaa6"
      "aea1a9a5ada3aba76f6068646c626a666e6169656d636b67efe0e8e4ece2eae6eee1e9e5ede3ebe71f1018141c12"
      "1a161e1119151d131b179f9098949c929a969e9199959d939b975f5058545c525a565e5159555d535b57dfd0d8d4"
      "dcd2dad6ded1d9d5ddd3dbd73f61e2a4c953a64e9b3e63e6acd973e6ce9bbf60e1a2c54b962e5bbe62e5aad56bd6"
      "ae5bbf61e3a6cd5bb66edbbe63e7aedd7bf6eedb7fe0e0a1c3478e1e3b7e62d433";
  CHECK(compressed(6, three_binaries) == "835000000269789c" + deflated_body + "83d5330069e2ef97");
  CHECK(compressed(1, three_binaries) == "8350000002697801" + deflated_body + "8335660069e2ef97");

  // Compression that would not shrink the term is dropped, as OTP drops it.
  CHECK(compressed(9, [](EtfEncoder& e) {
          e.tuple_header(1);
          e.atom("a");
        }) == "83680164000161");
  CHECK(compressed(9, [](EtfEncoder& e) { e.nil(); }) == "836a");
  CHECK(compressed(0, three_binaries).substr(0, 6) == "836803");
  EtfEncoder encoder;
  encoder.version();
  encoder.nil();
  REQUIRE_THROWS_AS(encoder.compress(10), std::invalid_argument);
}

TEST_CASE("the buffer grows and can be taken or reused", "[etf][encoder]") {
  EtfEncoder encoder;
  encoder.version();
  encoder.list_header(10000);
  for (int i = 0; i < 10000; ++i) encoder.int64(i);
  encoder.nil();
  CHECK(encoder.size() == 1 + 5 + 256 * 2 + (10000 - 256) * 5 + 1);
  auto buffer = encoder.take();
  CHECK(buffer.size() == 1 + 5 + 256 * 2 + (10000 - 256) * 5 + 1);
  CHECK(encoder.size() == 0);
  encoder.version();
  encoder.nil();
  CHECK(hex(encoder.bytes()) == "836a");
  encoder.clear();
  CHECK(encoder.size() == 0);
}
