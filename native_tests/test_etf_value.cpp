// etf::Value: decoding into a tree, OTP 25's equality and term order, and the
// canonical re-encoding checked against term_to_binary/1 (erts-13.1.5).
#include <catch2/catch.hpp>

#include "hex.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/etf/encoder.hpp"
#include "core/etf/value.hpp"
#include "core/memory.hpp"

namespace etf = switchboard::core::etf;
using etf::Value;
using etf::ValueVector;

namespace {

using Bytes = std::vector<std::uint8_t>;

using switchboard::test::hex;

using switchboard::test::unhex;

Value decoded(const std::string& text) {
  etf::DecodedValue result = etf::decode(unhex(text));
  INFO("input " << text << ": " << etf::decode_error_name(result.status.error));
  REQUIRE(result.status.ok());
  return std::move(result.value);
}

std::string reencoded(const std::string& text) { return hex(etf::encode(decoded(text)).bytes()); }

ValueVector values(std::initializer_list<Value> items) {
  ValueVector out;
  for (const Value& item : items) out.push_back(item);
  return out;
}

}  // namespace

TEST_CASE("term_to_binary output decodes and re-encodes byte for byte", "[etf][value]") {
  for (const char* canonical : {
           "836100",
           "8361ff",
           "836200000100",
           "8362ffffffff",
           "836e040000000080",
           "836e08010000000000000080",
           "836e0800ffffffffffffffff",
           "836e0900000000000000000001",
           "83463ff8000000000000",
           "83468000000000000000",
           "8364000568656c6c6f",
           "83640000",
           "8364000568e96c6c6f",
           "837703e38182",
           "836d00000003010203",
           "836d00000000",
           "834d0000000303010260",
           "834d000000010180",
           "836b0003010203",
           "836c0000000161016102",
           "836c0000000264000161640001626a",
           "836a",
           "836c0000000262000003e861026a",
           "836c000000016b0001016a",
           "836800",
           "83680261016102",
           "837400000001640001616101",
           "837400000004610264000474727565463ff00000000000006400036e696c6d00000002696461016d0000000"
           "46e616d656d0000000178",
           "83716400056c697374736400036d61706102",
           "8358640003614062000000010000000200000003",
           "83596400036140620000000500000007",
           "8378640003614062000001000000000000000007",
           "835a000364000361406200000009000000010000000200000003",
           // Maps as map keys, sorted by size, then keys, then values.
           "837400000006740000000161016101640001667400000001463ff0000000000000610164000165740000000"
           "164000161610164000161740000000164000161610264000163740000000164000162610064000162740000"
           "0002610161016102610264000164",
           // A fun with free variables goes back out as it came.
           "83700000004e014e6e7ea18983b92e6a3f463fc36044b900000000000000026400026676610062027373f55"
           "864000d6e6f6e6f6465406e6f686f737400000009000000000000000061056d0000000161",
       }) {
    CHECK(reencoded(canonical) == canonical);
  }
}

TEST_CASE("other encodings of the same term re-encode the way OTP 25 does", "[etf][value]") {
  // Each pair: input, then term_to_binary(binary_to_term(Input)) on OTP 25.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"83730b68656c6c6f20776f726c64", "8364000b68656c6c6f20776f726c64"},
      {"8376000568c3a96c6c", "8364000468e96c6c"},
      {"837703614062", "83640003614062"},
      {"8369000000036d0000000676616e69736861016104", "8368036d0000000676616e69736861016104"},
      {"8374000000036d000000016161016102610261036c000000036101610261036a",
       "8374000000036102610261036b00030102036d00000001616101"},
      {"8363322e3530303030303030303030303030303030303030652b30300000000000",
       "83464004000000000000"},
      {"836f000000040101020304", "8362fbfcfdff"},
      {"836e040001020304", "836204030201"},
      {"836e0201000000", "836100"},
      {"836c0000000161016c0000000161026a", "836b00020102"},
      {"836c000000016d000000006c0000000161026d00000000", "836c000000026d0000000061026d00000000"},
      {"836c000000006102", "836102"},
      {"836b0000", "836a"},
      {"834d00000003080102ff", "836d000000030102ff"},
      {"834d0000000103ff", "834d0000000103e0"},
      {"8367640003614062000000010000000203", "8358640003614062000000010000000200000003"},
      {"8378640003614062000000000000000500000007", "83596400036140620000000500000007"},
      {"8359640003614062ffffffffffffffff", "837864000361406200000000ffffffffffffffff"},
      {"83656400036140620000000501", "835a00016400036140620000000100000005"},
      {"8372000364000361406201000000010000000200000003",
       "835a000364000361406200000001000000010000000200000003"},
      {"83716400016d640001666e010005", "83716400016d640001666105"},
      {"83716400016d640001666e0800ffffffffffffff07", "83716400016d640001666e0400ffffffff"},
  };
  for (const auto& [input, expected] : cases) {
    INFO("input " << input);
    CHECK(reencoded(input) == expected);
  }
}

TEST_CASE("encode compresses like term_to_binary(T, [{compressed, 6}])", "[etf][value]") {
  Bytes counting(200);
  for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::uint8_t>(i + 1);
  const Value binary = Value::binary(counting);
  const Value term = Value::tuple(values({binary, binary, binary}));
  const std::string out = hex(etf::encode(term, 6).bytes());
  CHECK(out.substr(0, 16) == "835000000269789c");
  CHECK(out.substr(out.size() - 16) == "83d5330069e2ef97");
  CHECK(etf::decode(etf::encode(term, 6).bytes()).value == term);
  CHECK(hex(etf::encode(Value::nil(), 9).bytes()) == "836a");
}

TEST_CASE("equality is =:=", "[etf][value]") {
  CHECK(Value::integer(1) != Value::float_number(1.0));
  CHECK(Value::float_number(0.0) == Value::float_number(-0.0));
  CHECK(Value::atom("a") == decoded("83770161"));
  CHECK(decoded("836b00026162") == decoded("836c00000002616161626a"));
  CHECK(decoded("836b00026162") == Value::list(values({Value::integer(97), Value::integer(98)})));
  const std::uint32_t short_ids[] = {1, 2};
  const std::uint32_t padded_ids[] = {1, 2, 0};
  CHECK(Value::reference("a@b", 1, short_ids) == Value::reference("a@b", 1, padded_ids));
  CHECK(Value::reference("a@b", 1, short_ids) != Value::reference("a@b", 2, short_ids));
  CHECK(Value::binary(std::string_view("ab")) != Value::bitstring(unhex("6162"), 7));
  CHECK(Value::bitstring(unhex("ff"), 3) == Value::bitstring(unhex("e0"), 3));
  CHECK(Value::big_integer(false, unhex("0500000000")) == Value::integer(5));
}

TEST_CASE("the term order matches OTP 25's", "[etf][value]") {
  auto sorted = [](ValueVector items) {
    std::stable_sort(items.begin(), items.end(),
                     [](const Value& a, const Value& b) { return etf::compare(a, b) < 0; });
    return items;
  };
  auto check_order = [&](const ValueVector& expected) {
    ValueVector shuffled(expected.rbegin(), expected.rend());
    std::rotate(shuffled.begin(), shuffled.begin() + 1, shuffled.end());
    const ValueVector result = sorted(shuffled);
    REQUIRE(result.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      INFO("position " << i);
      CHECK(result[i] == expected[i]);
    }
  };
  const std::uint32_t one[] = {1};
  // Types: numbers < atoms < refs < funs < ports < pids < tuples < maps < [] < lists < bits.
  check_order(values({Value::integer(5), Value::atom("a"), Value::reference("a@b", 1, one),
                      Value::export_fun("m", "f", 1), Value::port("a@b", 1, 1),
                      Value::pid("a@b", 1, 1, 1), Value::tuple({}), Value::map({}), Value::nil(),
                      Value::list(values({Value::integer(1)})), Value::binary(unhex(""))}));
  // Exact order puts every integer before every float (map keys sort this way).
  check_order(
      values({Value::big_integer(true, unhex("000000000000000001")), Value::integer(0),
              Value::integer(2), Value::big_integer(false, unhex("00000000000010a5d4e8")),
              Value::float_number(-1.5), Value::float_number(1.0), Value::float_number(2.5e30)}));
  // Atoms by their UTF-8 bytes.
  check_order(values({Value::atom(""), Value::atom("Z"), Value::atom("z"), Value::atom("zz"),
                      Value::atom("\xc3\xa9"), Value::atom("\xe3\x81\x82")}));
  // Pids by serial, then number, then node; ports by node, then number.
  check_order(
      values({Value::pid("aa@h", 0, 0, 0), Value::pid("a@h", 1, 1, 1), Value::pid("a@h", 1, 1, 2),
              Value::pid("a@h", 2, 1, 1), Value::pid("a@h", 1, 2, 1), Value::pid("b@h", 1, 2, 1)}));
  check_order(values({Value::port("a@h", 1, 1), Value::port("a@h", 2, 1), Value::port("a@h", 1, 2),
                      Value::port("b@h", 1, 1)}));
  // References by node, then ids zero-extended from the last word.
  const std::uint32_t nine[] = {9};
  const std::uint32_t one_two[] = {1, 2};
  const std::uint32_t three_two_one[] = {3, 2, 1};
  const std::uint32_t one_two_three[] = {1, 2, 3};
  const std::uint32_t ones[] = {1, 1, 1};
  check_order(
      values({Value::reference("a@h", 1, nine), Value::reference("a@h", 1, one_two),
              Value::reference("a@h", 1, three_two_one), Value::reference("a@h", 1, one_two_three),
              Value::reference("a@h", 2, ones), Value::reference("b@h", 1, one_two)}));
  // Exports by module, function, arity.
  check_order(
      values({Value::export_fun("erlang", "abs", 1), Value::export_fun("lists", "filter", 2),
              Value::export_fun("lists", "map", 2), Value::export_fun("lists", "map", 3)}));
  // Bitstrings bit by bit, a prefix first.
  check_order(values({Value::binary(unhex("")), Value::bitstring(unhex("00"), 7),
                      Value::bitstring(unhex("20"), 3), Value::bitstring(unhex("80"), 1),
                      Value::bitstring(unhex("80"), 6), Value::binary(unhex("80"))}));
  // Lists cell by cell: [0,5] < [1|2] < [1|a] < [1] < [1,2] < "ab".
  check_order(values({Value::list(values({Value::integer(0), Value::integer(5)})),
                      Value::list(values({Value::integer(1)}), Value::integer(2)),
                      Value::list(values({Value::integer(1)}), Value::atom("a")),
                      Value::list(values({Value::integer(1)})),
                      Value::list(values({Value::integer(1), Value::integer(2)})),
                      decoded("836b00026162")}));
  // Maps by size, then keys, then values.
  check_order(values({Value::map(values({Value::integer(1), Value::integer(1)})),
                      Value::map(values({Value::float_number(1.0), Value::integer(1)})),
                      Value::map(values({Value::atom("a"), Value::integer(1)})),
                      Value::map(values({Value::atom("a"), Value::integer(2)})),
                      Value::map(values({Value::atom("b"), Value::integer(0)})),
                      Value::map(values({Value::integer(1), Value::integer(1), Value::integer(2),
                                         Value::integer(2)}))}));
  // Tuples by size, then elements.
  check_order(values({Value::tuple(values({Value::integer(9)})),
                      Value::tuple(values({Value::integer(1), Value::integer(1)})),
                      Value::tuple(values({Value::integer(1), Value::integer(2)}))}));
}

TEST_CASE("factories normalise and check their input", "[etf][value]") {
  CHECK(Value::list({}, Value::integer(2)) == Value::integer(2));
  const Value spliced = Value::list(values({Value::integer(1)}),
                                    Value::list(values({Value::integer(2)}), Value::atom("t")));
  CHECK(spliced.as_list().items.size() == 3);
  CHECK(spliced.as_list().improper);
  CHECK(hex(etf::encode(spliced).bytes()) == "836c000000026101610264000174");
  CHECK(Value::big_integer(true, unhex("0000000000000080")).as_integer() == INT64_MIN);
  CHECK(Value::big_integer(false, unhex("0000000000000080")).kind() == Value::Kind::big_integer);
  CHECK(Value::bitstring(unhex("0102"), 8).kind() == Value::Kind::binary);
  CHECK(Value::boolean(true).is_atom("true"));
  CHECK(Value().is_nil());

  REQUIRE_THROWS_AS(Value::atom(std::string(256, 'a')), std::invalid_argument);
  REQUIRE_THROWS_AS(Value::atom("\xc0\x80"), std::invalid_argument);
  REQUIRE_THROWS_AS(Value::float_number(std::numeric_limits<double>::infinity()),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(Value::bitstring(unhex("01"), 9), std::invalid_argument);
  REQUIRE_THROWS_AS(Value::map(values({Value::integer(1)})), std::invalid_argument);
  REQUIRE_THROWS_AS(
      Value::map(values({Value::integer(1), Value::nil(), Value::integer(1), Value::nil()})),
      std::invalid_argument);
  REQUIRE_THROWS_AS(Value::reference("a@b", 1, {}), std::invalid_argument);
  REQUIRE_THROWS_AS(Value::pid("", 1, 1, 1).as_port(), std::invalid_argument);
  REQUIRE_THROWS_AS(Value::local_fun(unhex("6a")), std::invalid_argument);
  REQUIRE_THROWS_WITH(Value::integer(1).as_atom(), "etf::Value is not an atom");
}

TEST_CASE("maps keep keys sorted and can be searched", "[etf][value]") {
  const Value map = decoded(
      "8374000000036d0000000269646e0800070002c15a0671026d00000004626f7473640004747275656d0000000161"
      "6a");
  REQUIRE(map.map_size() == 3);
  CHECK(hex(map.map_key(0).as_binary()) == "61");
  const Value* id = map.find(Value::binary(std::string_view("id")));
  REQUIRE(id != nullptr);
  CHECK(id->as_integer() == 175928847299117063LL);
  CHECK(map.find(Value::binary(std::string_view("bot"))) == nullptr);
  CHECK(map.find(Value::atom("id")) == nullptr);
}

TEST_CASE("maps past 32 pairs are written in key order", "[etf][value]") {
  // OTP writes these in hash-trie order, which depends on its atom table; the
  // bytes differ but the term is the same.
  ValueVector entries;
  for (int i = 33; i >= 1; --i) {
    entries.push_back(Value::integer(i));
    entries.push_back(Value::integer(i));
  }
  const Value map = Value::map(std::move(entries));
  const auto bytes = etf::encode(map);
  CHECK(hex(bytes.bytes()).substr(0, 18) == "837400000021610161");
  const etf::DecodedValue otp =
      etf::decode(unhex("83740000002161216121610c610c61176117611d611d611e611e611a611a611f611f610b61"
                        "0b610961096120612061196119611c611c61066106610d610d61146114610f610f610e610e"
                        "61026102610761076101610161086108610361036111611161166116611561156104610461"
                        "186118610a610a611b611b61136113610561056112611261106110"));
  REQUIRE(otp.status.ok());
  CHECK(otp.value == map);
}

TEST_CASE("values release all their memory", "[etf][value]") {
  const auto bytes_before = switchboard::core::allocated_bytes();
  {
    const Value map = decoded(
        "8374000000026d0000000269646c0000000361016d00000001617400000001640001616a6a6d00000001786802"
        "640001616102");
    const auto encoded = etf::encode(map, 6);
    CHECK(switchboard::core::allocated_bytes() > bytes_before);
  }
  CHECK(switchboard::core::allocated_bytes() == bytes_before);
}

TEST_CASE("decode reports errors and leaves the value empty", "[etf][value]") {
  const etf::DecodedValue result = etf::decode(unhex("8374000000026101610161016102"));
  CHECK(result.status.error == etf::DecodeErrc::duplicate_key);
  CHECK(result.status.offset == 10);
  CHECK(result.value.is_nil());
  const etf::DecodedValue body = etf::decode_body(unhex("6803610161026103"));
  REQUIRE(body.status.ok());
  CHECK(body.value.as_tuple().size() == 3);
}
