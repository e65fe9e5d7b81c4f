// scan_plain_term: where plain terms end, and every kind of input it leaves
// to the decoder. Inputs start with the version byte and are scanned from 1.
#include <catch2/catch.hpp>

#include "hex.hpp"

#include <cstdint>
#include <optional>
#include <vector>

#include "core/etf/decoder.hpp"
#include "core/etf/plain_term.hpp"

using switchboard::core::etf::EtfDecoder;
using switchboard::core::etf::NullVisitor;
using switchboard::core::etf::PlainTerm;
using switchboard::core::etf::scan_plain_term;
using switchboard::test::unhex;

namespace {

std::optional<PlainTerm> scan(const std::string& hex, std::size_t max_depth = 512) {
  const std::vector<std::uint8_t> bytes = unhex(hex);
  return scan_plain_term(bytes, 1, max_depth);
}

}  // namespace

TEST_CASE("plain scalars end where the decoder says", "[etf][plain]") {
  // 1, -1 (INTEGER_EXT), 2^60 (SMALL_BIG_EXT), 1.5, "ab", [], 'ok', "abc" as STRING_EXT.
  for (const char* hex :
       {"836101", "8362ffffffff", "836e08000000000000000010", "83463ff8000000000000",
        "836d000000026162", "836a", "8377026f6b", "836b0003616263"}) {
    const std::vector<std::uint8_t> bytes = unhex(hex);
    const auto plain = scan_plain_term(bytes, 1, 512);
    REQUIRE(plain);
    CHECK(plain->end == bytes.size());
    NullVisitor ignore;
    CHECK(EtfDecoder().decode(bytes, ignore).bytes_used == plain->end);
  }
}

TEST_CASE("plain containers: lists with tails, tuples, maps", "[etf][plain]") {
  // [1, 2], [1 | 2], {1, {}}, #{<<"a">> => [#{}]}
  CHECK(scan("836c0000000261016102"
             "6a")
            ->end == 11);
  CHECK(scan("836c000000016101"
             "6102")
            ->end == 10);
  CHECK(scan("83680261016800")->end == 7);
  CHECK(scan("8374000000016d0000000161"
             "6c00000001"
             "7400000000"
             "6a")
            ->end == 23);
}

TEST_CASE("trailing bytes are not part of the term", "[etf][plain]") {
  const auto plain = scan("836101ffff");
  REQUIRE(plain);
  CHECK(plain->end == 3);
}

TEST_CASE("what the term holds: its longest binary and whether atoms are literals",
          "[etf][plain]") {
  // [<<"abc">>, <<>>, true, nil]
  auto plain = scan("836c000000046d000000036162636d0000000073047472756573036e696c6a");
  REQUIRE(plain);
  CHECK(plain->longest_binary == 3);
  CHECK(plain->only_literal_atoms);
  // {false, ok}
  plain = scan("836802730566616c736573026f6b");
  REQUIRE(plain);
  CHECK(plain->longest_binary == 0);
  CHECK_FALSE(plain->only_literal_atoms);
}

TEST_CASE("nesting: the depth limit counts containers as DecodeLimits does", "[etf][plain]") {
  // [[[1]]]: three lists open at once; empty tuples and maps open none.
  const std::string nested = "836c000000016c000000016c0000000161016a6a6a";
  CHECK(scan(nested, 3));
  CHECK_FALSE(scan(nested, 2));
  CHECK(scan("83680168006a", 1));
  CHECK(scan("8368017400000000", 1));
  CHECK_FALSE(scan("836801680161016a", 1));
}

TEST_CASE("left to the decoder: other tags, odd forms, malformed input", "[etf][plain]") {
  for (const char* hex : {
           "83",                                          // nothing
           "836d000000036162",                            // BINARY_EXT cut short
           "836c000000016101",                            // list without its tail
           "836c000000006a",                              // LIST_EXT of length 0
           "836e000000",                                  // SMALL_BIG_EXT of 0 bytes
           "836e09000000000000000000ff",                  // SMALL_BIG_EXT beyond 8 bytes
           "836f0000000100ff",                            // LARGE_BIG_EXT
           "83467ff0000000000000",                        // infinity
           "836331",                                      // FLOAT_EXT
           "837702c3a9",                                  // non-ASCII atom
           "834d0000000103ff",                            // BIT_BINARY_EXT
           "835800036e6f6e0000000000000000000000000000",  // NEW_PID_EXT
           "83500000000178",                              // COMPRESSED
           "837fff",                                      // unknown tag
       }) {
    INFO(hex);
    CHECK_FALSE(scan(hex));
  }
}

TEST_CASE("maps of more than 32 pairs are left to the decoder", "[etf][plain]") {
  auto map_of = [](std::uint8_t pairs) {
    std::vector<std::uint8_t> bytes{131, 116, 0, 0, 0, pairs};
    for (std::uint8_t i = 0; i < pairs; ++i) {
      for (std::uint8_t byte : {std::uint8_t{97}, i, std::uint8_t{97}, i}) bytes.push_back(byte);
    }
    return bytes;
  };
  const std::vector<std::uint8_t> flat = map_of(32);
  const std::vector<std::uint8_t> hashed = map_of(33);
  CHECK(scan_plain_term(flat, 1, 512));
  CHECK_FALSE(scan_plain_term(hashed, 1, 512));
}

TEST_CASE("inputs too short to nest past max_depth are scanned without counting depth",
          "[etf][plain]") {
  // n tuples of one element each around [], {{...{[]}...}}: 2n + 1 bytes.
  auto nested = [](std::size_t n) {
    std::vector<std::uint8_t> bytes{131};
    for (std::size_t i = 0; i < n; ++i) bytes.insert(bytes.end(), {104, 1});
    bytes.push_back(106);
    return bytes;
  };
  // Deeper than the stack of the depth-counting scan, well within max_depth.
  const std::vector<std::uint8_t> deep = nested(100);
  const auto plain = scan_plain_term(deep, 1, 512);
  REQUIRE(plain);
  CHECK(plain->end == deep.size());
  // At the boundary: max_depth containers are allowed, one more is not.
  for (std::size_t max_depth : {1u, 2u, 7u, 64u, 65u, 200u}) {
    INFO(max_depth);
    CHECK(scan_plain_term(nested(max_depth), 1, max_depth));
    CHECK_FALSE(scan_plain_term(nested(max_depth + 1), 1, max_depth));
  }
}

TEST_CASE("every truncation of a plain term is left to the decoder", "[etf][plain]") {
  // #{key => [<<"a longer value">>, 1, 300, 2.5], <<"k">> => {ok, nil}}, nil
  // as SMALL_ATOM_UTF8_EXT, the others as ATOM_EXT.
  const std::vector<std::uint8_t> whole = unhex(
      "8374000000026400036b6579"
      "6c000000046d0000000e61206c6f6e6765722076616c7565610162000001"
      "2c4640040000000000006a"
      "6d000000016b68026400026f6b77036e696c");
  const auto plain = scan_plain_term(whole, 1, 512);
  REQUIRE(plain);
  CHECK(plain->end == whole.size());
  CHECK_FALSE(plain->only_literal_atoms);
  CHECK(plain->longest_binary == 14);
  for (std::size_t size = 1; size < whole.size(); ++size) {
    INFO(size);
    const std::vector<std::uint8_t> cut(whole.begin(), whole.begin() + static_cast<long>(size));
    CHECK_FALSE(scan_plain_term(cut, 1, 512));
  }
}
