// EtfDecoder: the events for every tag OTP 25 reads, every limit and every
// refusal. Inputs marked "OTP: ok/refused" were checked with binary_to_term/1
// on OTP 25 (erts-13.1.5).
#include <catch2/catch.hpp>

#include "hex.hpp"

#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/etf/decoder.hpp"

using switchboard::core::etf::decode_error_name;
using switchboard::core::etf::DecodeErrc;
using switchboard::core::etf::DecodeLimits;
using switchboard::core::etf::DecodeStatus;
using switchboard::core::etf::EtfDecoder;
using switchboard::core::etf::ExportData;
using switchboard::core::etf::LocalFunData;
using switchboard::core::etf::NullVisitor;
using switchboard::core::etf::PidData;
using switchboard::core::etf::PortData;
using switchboard::core::etf::ReferenceData;

namespace {

using Bytes = std::vector<std::uint8_t>;

using switchboard::test::hex;

using switchboard::test::unhex;

std::string repeat(const std::string& text, std::size_t times) {
  std::string out;
  for (std::size_t i = 0; i < times; ++i) out += text;
  return out;
}

Bytes zlib_compress(const Bytes& plain) {
  uLongf size = compressBound(static_cast<uLong>(plain.size()));
  Bytes out(size);
  REQUIRE(compress(out.data(), &size, plain.data(), static_cast<uLong>(plain.size())) == Z_OK);
  out.resize(size);
  return out;
}

// COMPRESSED: version, tag 80, the declared size, then the stream.
Bytes compressed_term(const Bytes& body, std::size_t declared, const Bytes& stream) {
  Bytes out{131,
            80,
            static_cast<std::uint8_t>(declared >> 24),
            static_cast<std::uint8_t>(declared >> 16),
            static_cast<std::uint8_t>(declared >> 8),
            static_cast<std::uint8_t>(declared)};
  (void)body;
  // Appending byte by byte sidesteps a GCC 12 -Warray-bounds false positive on insert.
  out.reserve(out.size() + stream.size());
  for (std::uint8_t byte : stream) out.push_back(byte);
  return out;
}

Bytes compressed_term(const Bytes& body) {
  return compressed_term(body, body.size(), zlib_compress(body));
}

// Writes every event as text, and can refuse the n-th one.
struct RecordingVisitor {
  std::vector<std::string> events;
  std::size_t refuse_at = static_cast<std::size_t>(-1);

  bool record(std::string event) {
    events.push_back(std::move(event));
    return events.size() - 1 != refuse_at;
  }
  bool on_integer(std::int64_t value) { return record("int " + std::to_string(value)); }
  bool on_big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
    return record(std::string("big ") + (negative ? "-" : "+") + hex(magnitude));
  }
  bool on_float(double value) {
    char text[64];
    std::snprintf(text, sizeof text, "float %.17g", value);
    return record(text);
  }
  bool on_atom(std::string_view text) { return record("atom " + std::string(text)); }
  bool on_binary(std::span<const std::uint8_t> bytes) { return record("bin " + hex(bytes)); }
  bool on_bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits) {
    return record("bits " + hex(bytes) + "/" + std::to_string(bits));
  }
  bool on_string(std::span<const std::uint8_t> bytes) { return record("string " + hex(bytes)); }
  bool on_nil() { return record("nil"); }
  bool begin_list(std::uint32_t n) { return record("list " + std::to_string(n)); }
  bool end_list() { return record("end list"); }
  bool begin_tuple(std::uint32_t n) { return record("tuple " + std::to_string(n)); }
  bool end_tuple() { return record("end tuple"); }
  bool begin_map(std::uint32_t n) { return record("map " + std::to_string(n)); }
  bool end_map() { return record("end map"); }
  bool on_pid(const PidData& pid) {
    return record("pid " + std::string(pid.node) + " " + std::to_string(pid.id) + " " +
                  std::to_string(pid.serial) + " " + std::to_string(pid.creation));
  }
  bool on_port(const PortData& port) {
    return record("port " + std::string(port.node) + " " + std::to_string(port.id) + " " +
                  std::to_string(port.creation));
  }
  bool on_reference(const ReferenceData& reference) {
    std::string text =
        "ref " + std::string(reference.node) + " " + std::to_string(reference.creation);
    for (std::uint32_t id : reference.ids) {
      text += ' ';
      text += std::to_string(id);
    }
    return record(text);
  }
  bool on_export(const ExportData& exported) {
    return record("export " + std::string(exported.module) + ":" + std::string(exported.function) +
                  "/" + std::to_string(exported.arity));
  }
  bool on_local_fun(const LocalFunData& fun) {
    return record("fun " + std::string(fun.module) + " arity " + std::to_string(fun.arity) +
                  " index " + std::to_string(fun.index) + " old " + std::to_string(fun.old_index) +
                  "." + std::to_string(fun.old_uniq) + " free " +
                  std::to_string(fun.free_variable_count) + " " + hex(fun.free_variables) +
                  " bytes " + std::to_string(fun.encoded.size()));
  }
};

struct Decoded {
  DecodeStatus status;
  std::vector<std::string> events;
};

Decoded decode(const Bytes& input, const DecodeLimits& limits = {}) {
  EtfDecoder decoder(limits);
  RecordingVisitor visitor;
  Decoded result;
  result.status = decoder.decode(input, visitor);
  result.events = visitor.events;
  return result;
}

Decoded decode_hex(const std::string& text, const DecodeLimits& limits = {}) {
  return decode(unhex(text), limits);
}

using Events = std::vector<std::string>;

// Decodes successfully, using every byte, with these events.
void check_events(const std::string& input, const Events& expected) {
  INFO("input " << input);
  const Decoded result = decode_hex(input);
  REQUIRE(decode_error_name(result.status.error) == "ok");
  CHECK(result.status.bytes_used == input.size() / 2);
  CHECK(result.events == expected);
}

struct Refusal {
  DecodeErrc error;
  std::size_t offset;
  bool in_decompressed = false;
};

void check_refused(const Bytes& input, Refusal expected, const DecodeLimits& limits = {}) {
  INFO("input " << hex(input));
  const Decoded result = decode(input, limits);
  CHECK(decode_error_name(result.status.error) == decode_error_name(expected.error));
  CHECK(result.status.offset == expected.offset);
  CHECK(result.status.in_decompressed == expected.in_decompressed);
  CHECK_FALSE(result.status.ok());
}

void check_refused(const std::string& input, Refusal expected, const DecodeLimits& limits = {}) {
  check_refused(unhex(input), expected, limits);
}

// fun(Z) -> {X, Y, Z} end with X = 5, Y = <<"a">>, from term_to_binary on OTP 25.
const std::string kFunWithFreeVariables =
    "70"                                                          // NEW_FUN_EXT
    "0000004e"                                                    // size
    "01"                                                          // arity
    "4e6e7ea18983b92e6a3f463fc36044b9"                            // uniq
    "00000000"                                                    // index
    "00000002"                                                    // free variables
    "6400026676"                                                  // module fv
    "6100"                                                        // old index
    "62027373f5"                                                  // old uniq
    "5864000d6e6f6e6f6465406e6f686f7374000000090000000000000000"  // creator pid
    "6105"                                                        // 5
    "6d0000000161";                                               // <<"a">>

}  // namespace

TEST_CASE("error reasons have stable snake_case names", "[etf][decoder]") {
  CHECK(decode_error_name(DecodeErrc::ok) == "ok");
  CHECK(decode_error_name(DecodeErrc::truncated) == "truncated");
  CHECK(decode_error_name(DecodeErrc::bad_version) == "bad_version");
  CHECK(decode_error_name(DecodeErrc::unknown_tag) == "unknown_tag");
  CHECK(decode_error_name(DecodeErrc::depth_exceeded) == "depth_exceeded");
  CHECK(decode_error_name(DecodeErrc::too_large) == "too_large");
  CHECK(decode_error_name(DecodeErrc::decompressed_too_large) == "decompressed_too_large");
  CHECK(decode_error_name(DecodeErrc::bad_compression) == "bad_compression");
  CHECK(decode_error_name(DecodeErrc::nested_compression) == "nested_compression");
  CHECK(decode_error_name(DecodeErrc::invalid_float) == "invalid_float");
  CHECK(decode_error_name(DecodeErrc::duplicate_key) == "duplicate_key");
  CHECK(decode_error_name(DecodeErrc::atom_too_long) == "atom_too_long");
  CHECK(decode_error_name(DecodeErrc::invalid_utf8) == "invalid_utf8");
  CHECK(decode_error_name(DecodeErrc::bad_node) == "bad_node");
  CHECK(decode_error_name(DecodeErrc::bad_creation) == "bad_creation");
  CHECK(decode_error_name(DecodeErrc::bad_reference) == "bad_reference");
  CHECK(decode_error_name(DecodeErrc::bad_bitstring) == "bad_bitstring");
  CHECK(decode_error_name(DecodeErrc::bignum_too_large) == "bignum_too_large");
  CHECK(decode_error_name(DecodeErrc::bad_export) == "bad_export");
  CHECK(decode_error_name(DecodeErrc::bad_fun) == "bad_fun");
  CHECK(decode_error_name(DecodeErrc::trailing_data) == "trailing_data");
  CHECK(decode_error_name(DecodeErrc::rejected_by_visitor) == "rejected_by_visitor");
}

TEST_CASE("integers: small, 32-bit and bignums, normalised like OTP", "[etf][decoder]") {
  check_events("836100", {"int 0"});
  check_events("8361ff", {"int 255"});
  check_events("8362ffffffff", {"int -1"});
  check_events("836280000000", {"int -2147483648"});
  check_events("836e040000000080", {"int 2147483648"});
  check_events("836e08010000000000000080", {"int -9223372036854775808"});
  check_events("836e0800070002c15a067102", {"int 175928847299117063"});
  // Bignums that fit are integers; zero width, -0 and padded magnitudes too (OTP: ok).
  check_events("836e0000", {"int 0"});
  check_events("836e02010000", {"int 0"});
  check_events("836e010205", {"int -5"});  // any non-zero sign byte is negative
  check_events("836f00000008000102030405060708", {"int 578437695752307201"});
  check_events("836e0800ffffffffffffffff", {"big +ffffffffffffffff"});
  check_events("836e08010000000000000080", {"int -9223372036854775808"});
  check_events("836e08010100000000000080", {"big -0100000000000080"});
  check_events("836e0900000000000000000001", {"big +000000000000000001"});
  check_events("836f0000010101" + repeat("00", 256) + "01", {"big -" + repeat("00", 256) + "01"});
}

TEST_CASE("floats: NEW_FLOAT_EXT and the old 31-byte FLOAT_EXT", "[etf][decoder]") {
  check_events("83463ff8000000000000", {"float 1.5"});
  check_events("83468000000000000000", {"float -0"});
  auto old_float = [](const std::string& text) {
    Bytes field(text.begin(), text.end());
    field.resize(31, 0);
    Bytes input{131, 99};
    input.reserve(2 + field.size());
    for (std::uint8_t byte : field) input.push_back(byte);
    return input;
  };
  // erlpack's vector: "2.50000000000000000000e+00".
  check_events("8363322e3530303030303030303030303030303030303030652b30300000000000", {"float 2.5"});
  auto decodes_to = [&](const std::string& text) {
    const Decoded result = decode(old_float(text));
    REQUIRE(result.status.ok());
    REQUIRE(result.status.bytes_used == 33);
    return result.events.at(0);
  };
  CHECK(decodes_to("1,5") == "float 1.5");  // OTP retries with the other radix character
  CHECK(decodes_to("+1.5") == "float 1.5");
  CHECK(decodes_to("1.5E+2") == "float 150");
  CHECK(decodes_to("-0.0") == "float -0");
  CHECK(decodes_to("1.0e-400") == "float 0");  // underflow is accepted (OTP: ok)
  CHECK(decodes_to("1.0e-320") == "float 9.9998886718268301e-321");
  CHECK(decodes_to("1.5") == "float 1.5");
  CHECK(decodes_to(std::string("1.5\0abc", 7)) == "float 1.5");  // text ends at the NUL
  CHECK(decodes_to("1.7976931348623157e308") == "float 1.7976931348623157e+308");
  // OTP: refused.
  for (const char* text : {"nan", "inf", "15", "1.", ".5", "1.5e", " 1.5", "1.5 ", "0x1p3", "",
                           "1.5xyz", "1.7976931348623159e308", "1.00000000000000000000e+400"}) {
    INFO("FLOAT_EXT " << text);
    check_refused(old_float(text), {DecodeErrc::invalid_float, 1});
  }
  Bytes no_terminator = old_float("1.5");
  std::fill(no_terminator.begin() + 5, no_terminator.end(), '0');
  check_refused(no_terminator, {DecodeErrc::invalid_float, 1});
  check_refused("83467ff8000000000000", {DecodeErrc::invalid_float, 1});  // NaN
  check_refused("83467ff0000000000000", {DecodeErrc::invalid_float, 1});  // +infinity
  check_refused("8346fff0000000000000", {DecodeErrc::invalid_float, 1});  // -infinity
}

TEST_CASE("atoms of all four tags arrive as UTF-8", "[etf][decoder]") {
  check_events("8364000568656c6c6f", {"atom hello"});
  check_events("8373036e696c", {"atom nil"});
  check_events("83730568e96c6c6f", {"atom h\xc3\xa9llo"});  // latin1 é becomes UTF-8
  check_events("8364000568e96c6c6f", {"atom h\xc3\xa9llo"});
  check_events("837703e38182", {"atom \xe3\x81\x82"});
  check_events("8376000568c3a96c6c", {"atom h\xc3\xa9ll"});
  check_events("837704f48fbfbf", {"atom \xf4\x8f\xbf\xbf"});  // U+10FFFF
  check_events("83640000", {"atom "});
  check_events("83770100", {std::string("atom \0", 6)});
  check_events("836400ff" + repeat("61", 255), {"atom " + std::string(255, 'a')});
  check_events("8377ff" + repeat("61", 255), {"atom " + std::string(255, 'a')});
  std::string e_acute_255;
  for (int i = 0; i < 255; ++i) e_acute_255 += "\xc3\xa9";
  check_events("837601fe" + repeat("c3a9", 255), {"atom " + e_acute_255});
}

TEST_CASE("atoms OTP refuses", "[etf][decoder]") {
  check_refused("83640100" + repeat("61", 256), {DecodeErrc::atom_too_long, 1});
  check_refused("83760200" + repeat("c3a9", 256),
                {DecodeErrc::atom_too_long, 1});  // 256 characters
  check_refused("837603fd" + repeat("61", 1021),
                {DecodeErrc::atom_too_long, 1});                   // > 4 * 255 bytes
  check_refused("837702c080", {DecodeErrc::invalid_utf8, 1});      // overlong
  check_refused("837703eda080", {DecodeErrc::invalid_utf8, 1});    // surrogate
  check_refused("837704f4908080", {DecodeErrc::invalid_utf8, 1});  // > U+10FFFF
  check_refused("837701c3", {DecodeErrc::invalid_utf8, 1});        // cut sequence
  check_refused("837701ff", {DecodeErrc::invalid_utf8, 1});
  // erlpack's 500-byte ATOM_EXT (OTP: refused).
  check_refused("836401f4" + repeat("74657374", 125), {DecodeErrc::atom_too_long, 1});
}

TEST_CASE("binaries and bitstrings", "[etf][decoder]") {
  check_events("836d00000003010203", {"bin 010203"});
  check_events("836d00000000", {"bin "});
  check_events("834d0000000303010260", {"bits 010260/3"});
  check_events("834d00000003080102ff", {"bin 0102ff"});  // 8 bits in the last byte: a binary
  check_events("834d0000000000", {"bin "});
  check_events("834d0000000103ff", {"bits ff/3"});  // unused bits are reported as written
  check_refused("834d0000000109ff", {DecodeErrc::bad_bitstring, 1});
  check_refused("834d0000000008", {DecodeErrc::bad_bitstring, 1});
  check_refused("834d0000000100ff", {DecodeErrc::bad_bitstring, 1});
}

TEST_CASE("lists: proper, improper, strings, nil and nested tails", "[etf][decoder]") {
  check_events("836a", {"nil"});
  check_events("836b0003010203", {"string 010203"});
  check_events("836b0000", {"nil"});
  check_events("836c00000002610161026a", {"list 2", "int 1", "int 2", "nil", "end list"});
  check_events("836c0000000161016102", {"list 1", "int 1", "int 2", "end list"});
  // LIST_EXT of length 0 is its tail (OTP: ok, decodes to the tail).
  check_events("836c000000006a", {"nil"});
  check_events("836c000000006102", {"int 2"});
  check_events("836c0000000161016c0000000161026a",
               {"list 1", "int 1", "list 1", "int 2", "nil", "end list", "end list"});
  check_events("836c0000000261026b0019697427732067657474696e6720686f7420696e20686572652e6a",
               {"list 2", "int 2", "string 697427732067657474696e6720686f7420696e20686572652e",
                "nil", "end list"});
}

TEST_CASE("tuples and maps", "[etf][decoder]") {
  check_events("836800", {"tuple 0", "end tuple"});
  check_events("8369000000036d0000000676616e69736861016104",
               {"tuple 3", "bin 76616e697368", "int 1", "int 4", "end tuple"});
  check_events("8374000000036d000000016161016102610261036103",
               {"map 3", "bin 61", "int 1", "int 2", "int 2", "int 3", "int 3", "end map"});
  check_events("837400000000", {"map 0", "end map"});
  // 1 and 1.0 are different keys (OTP: ok).
  check_events("83740000000261016101463ff00000000000006102",
               {"map 2", "int 1", "int 1", "float 1", "int 2", "end map"});
}

TEST_CASE("duplicate map keys are refused with =:= semantics", "[etf][decoder]") {
  const std::string one = "6101";
  // The same atom written as ATOM_EXT and SMALL_ATOM_UTF8_EXT (OTP: refused).
  check_refused("83740000000264000161" + one + "7701616102", {DecodeErrc::duplicate_key, 12});
  // 1 as SMALL_INTEGER_EXT and as SMALL_BIG_EXT (OTP: refused).
  check_refused("8374000000026101" + one + "6e0100016102", {DecodeErrc::duplicate_key, 10});
  // 0.0 and -0.0: equal in OTP 25 (OTP: refused).
  check_refused("837400000002460000000000000000" + one + "4680000000000000006102",
                {DecodeErrc::duplicate_key, 17});
  // "ab" as STRING_EXT and as LIST_EXT of integers (OTP: refused).
  check_refused("8374000000026b00026162" + one + "6c00000002616161626a6100",
                {DecodeErrc::duplicate_key, 13});
  // Maps as keys, their pairs written in different orders (OTP: refused).
  check_refused("83740000000274000000026101610261026103" + one + "740000000261026103610161026100",
                {DecodeErrc::duplicate_key, 21});
  // References compare zero-extended: [1,2] =:= [1,2,0].
  check_refused("8374000000025a000264000161000000010000000100000002" + one +
                    "5a000364000161000000010000000100000002000000006100",
                {DecodeErrc::duplicate_key, 27});
  // Funs differing only in the creator pid are the same fun (OTP: refused).
  {
    Bytes fun = unhex(kFunWithFreeVariables);
    Bytes other = fun;
    other[62] = 0x0a;  // the creator pid's number
    Bytes map = unhex("837400000002");
    map.insert(map.end(), fun.begin(), fun.end());
    map.push_back(0x6a);
    const std::size_t second = map.size();
    map.insert(map.end(), other.begin(), other.end());
    map.push_back(0x6a);
    check_refused(map, {DecodeErrc::duplicate_key, second});
  }
  // Equal binary keys of every short length, one hashed from the middle of the
  // input and one from its last bytes (the two ways keys are hashed).
  for (std::size_t length = 0; length <= 20; ++length) {
    std::string key = "6d" + hex(Bytes{0, 0, 0, static_cast<std::uint8_t>(length)});
    for (std::size_t i = 0; i < length; ++i) key += "61";
    INFO("key length " << length);
    check_refused("837400000002" + key + "6a" + key + "6a",
                  {DecodeErrc::duplicate_key, 12 + length});
  }
  // A map of 40 keys takes the sorted path; the duplicate is the last key.
  {
    std::string map = "837400000028";
    std::size_t offset = 6;
    for (int i = 0; i < 39; ++i) {
      char key[16];
      std::snprintf(key, sizeof key, "6d00000001%02x", i);
      map += key;
      map += "6a";
      offset += 7;
    }
    map += "6d00000001076a";
    check_refused(map, {DecodeErrc::duplicate_key, offset});
  }
  // Same nesting, distinct keys: accepted.
  check_events("8374000000027400000001610161026a7400000001610162020000006a",
               {"map 2", "map 1", "int 1", "int 2", "end map", "nil", "map 1", "int 1",
                "int 33554432", "end map", "nil", "end map"});
}

TEST_CASE("check_duplicate_keys off leaves equal keys to the visitor, except in funs",
          "[etf][decoder]") {
  DecodeLimits unchecked;
  unchecked.check_duplicate_keys = false;
  // 1 written twice, in a map of two pairs and inside a map key.
  const std::pair<std::string, std::size_t> inputs[] = {
      {"837400000002610161016101610a", 10},
      {"8374000000017400000002610161016101610a6a", 15},
  };
  for (const auto& [input, second_key] : inputs) {
    INFO("input " << input);
    const Decoded result = decode_hex(input, unchecked);
    CHECK(decode_error_name(result.status.error) == "ok");
    CHECK(result.status.bytes_used == input.size() / 2);
    check_refused(input, {DecodeErrc::duplicate_key, second_key});
  }
  // A fun's free variables never reach the visitor, so their keys are checked anyway.
  std::string fun = kFunWithFreeVariables;
  fun.replace(fun.size() - 12, 12, "74000000026101610161016102");
  check_refused("83" + fun, {DecodeErrc::duplicate_key, 83}, unchecked);
  check_refused("83" + fun, {DecodeErrc::duplicate_key, 83});
}

TEST_CASE("pids, ports and references in all their formats", "[etf][decoder]") {
  check_events("8358640003614062000000010000000200000003", {"pid a@b 1 2 3"});
  check_events("8367640003614062000000010000000203", {"pid a@b 1 2 3"});
  check_events("83587703614062000000010000000200000003", {"pid a@b 1 2 3"});
  check_events("8358640000000000010000000200000003", {"pid  1 2 3"});  // OTP: ok
  check_events("83596400036140620000000500000007", {"port a@b 5 7"});
  check_events("83666400036140620000000502", {"port a@b 5 2"});
  check_events("8378640003614062000001000000000000000007", {"port a@b 1099511627776 7"});
  check_events("83656400036140620000000501", {"ref a@b 1 5"});
  check_events("8372000364000361406201000000010000000200000003", {"ref a@b 1 1 2 3"});
  check_events("835a000364000361406200000009000000010000000200000003", {"ref a@b 9 1 2 3"});
  check_events("835a0005640003614062000000010000000100000002000000030000000400000005",
               {"ref a@b 1 1 2 3 4 5"});
  check_events("835a000364000361406200000001ffffffff0000000200000003",
               {"ref a@b 1 4294967295 2 3"});

  // OTP: refused.
  check_refused("8367640003614062000000010000000205", {DecodeErrc::bad_creation, 1});
  check_refused("83666400036140620000000504", {DecodeErrc::bad_creation, 1});
  check_refused("83656400036140620000000504", {DecodeErrc::bad_creation, 1});
  check_refused("83656400036140620004000001", {DecodeErrc::bad_reference, 1});
  check_refused("8372000364000361406201000400000000000200000003", {DecodeErrc::bad_reference, 1});
  check_refused("837200066400036140620100000001" + repeat("00000002", 5),
                {DecodeErrc::bad_reference, 1});
  check_refused("835a000664000361406200000001000000010000000200000003000000040000000500000006",
                {DecodeErrc::bad_reference, 1});
  // A count of 0: OTP reads an id word anyway, past what the count describes.
  check_refused("835a0000640003614062000000016a6a6a6a", {DecodeErrc::bad_reference, 1});
  check_refused("83720000640003614062016a6a6a6a", {DecodeErrc::bad_reference, 1});
  // Nodes must be atoms: erlpack's pid, port and references with binary nodes.
  check_refused("83676d0000000548656c6c6f000004dd0001e24001", {DecodeErrc::bad_node, 1});
  check_refused("83666d0000000548656c6c6f000004dd01", {DecodeErrc::bad_node, 1});
  check_refused("83656d0000000548656c6c6f000004dd01", {DecodeErrc::bad_node, 1});
  check_refused("837200036d0000000548656c6c6f010000000a0000000f000004dd",
                {DecodeErrc::bad_node, 1});
  check_refused("83586a000000010000000200000003", {DecodeErrc::bad_node, 1});
}

TEST_CASE("exports and local funs", "[etf][decoder]") {
  check_events("837164000d6775696c645f6d656d62657273640006617070656e646101",
               {"export guild_members:append/1"});
  check_events("83716400016d640001666200000100", {"export m:f/256"});
  check_events("83716400016d640001666e010005", {"export m:f/5"});  // OTP: ok
  check_events("837177016d760001666101", {"export m:f/1"});
  check_events("83716400016d640001666e0800ffffffffffffff07", {"export m:f/576460752303423487"});

  check_events("83" + kFunWithFreeVariables,
               {"fun fv arity 1 index 0 old 0.41120757 free 2 61056d0000000161 bytes 79"});
  // OTP ignores the size field, written wrong by OTP 23 itself.
  std::string wrong_size = kFunWithFreeVariables;
  wrong_size.replace(2, 8, "000000ff");
  check_events("83" + wrong_size,
               {"fun fv arity 1 index 0 old 0.41120757 free 2 61056d0000000161 bytes 79"});

  // OTP: refused.
  check_refused("83716400016d6400016662ffffffff", {DecodeErrc::bad_export, 1});
  check_refused("83716400016d640001666d00000000", {DecodeErrc::bad_export, 1});
  check_refused("83716d00000000640001666101", {DecodeErrc::bad_export, 1});
  check_refused("83716400016d640001666e08000000000000000008", {DecodeErrc::bad_export, 1});
  check_refused("8371000000036102610261036c000000036101610261036a6d00000001616101",
                {DecodeErrc::bad_export, 1});  // erlpack's EXPORT_EXT of a binary
  std::string module_not_atom = kFunWithFreeVariables;
  module_not_atom.replace(60, 10, "6d00000002");
  check_refused("83" + module_not_atom, {DecodeErrc::bad_fun, 1});
  std::string too_many_free = kFunWithFreeVariables;
  too_many_free.replace(52, 8, "00000100");
  check_refused("83" + too_many_free, {DecodeErrc::bad_fun, 1});
  std::string old_index_not_small = kFunWithFreeVariables;
  old_index_not_small.replace(70, 4, "6a6a");
  check_refused("83" + old_index_not_small, {DecodeErrc::bad_fun, 1});
  // OTP 25 reads any term as the creator: a port tag where the pid was reads
  // as a port, shorter than the pid, and the bytes after it no longer parse.
  std::string creator_not_pid = kFunWithFreeVariables;
  creator_not_pid.replace(84, 2, "59");
  check_refused("83" + creator_not_pid, {DecodeErrc::unknown_tag, 68});
  // A NaN among the free variables (the size field is ignored, so it may change).
  check_refused("83" + kFunWithFreeVariables.substr(0, 146) + "467ff8000000000000",
                {DecodeErrc::invalid_float, 74});
}

TEST_CASE("tags OTP 25 does not read, and misplaced ones", "[etf][decoder]") {
  check_refused("83ff", {DecodeErrc::unknown_tag, 1});
  check_refused("835200", {DecodeErrc::unknown_tag, 1});  // ATOM_CACHE_REF: distribution only
  // ATOM_INTERNAL_REF2/3 name atoms by the VM's table index; OTP 25 reads them,
  // but what they mean depends on the VM, so they are refused.
  check_refused("83490005", {DecodeErrc::unknown_tag, 1});
  check_refused("834b000005", {DecodeErrc::unknown_tag, 1});
  check_refused("834400", {DecodeErrc::unknown_tag, 1});        // DIST_HEADER
  check_refused("837500000000", {DecodeErrc::unknown_tag, 1});  // FUN_EXT, gone since OTP 23
  check_refused("836c00000001836a6a", {DecodeErrc::unknown_tag, 6});
  check_refused("836c0000000150000000016a6a", {DecodeErrc::nested_compression, 6});
}

TEST_CASE("version byte and empty input", "[etf][decoder]") {
  check_refused(Bytes{}, {DecodeErrc::truncated, 0});
  check_refused("6a", {DecodeErrc::bad_version, 0});
  check_refused("826a", {DecodeErrc::bad_version, 0});
  check_refused("83", {DecodeErrc::truncated, 1});
  check_refused("8361", {DecodeErrc::truncated, 1});  // erlpack: OTP refused
}

TEST_CASE("lengths past the end are refused before anything is allocated", "[etf][decoder]") {
  check_refused("836dffffffff", {DecodeErrc::truncated, 1});
  check_refused("834dffffffff01", {DecodeErrc::truncated, 1});
  check_refused("836cffffffff6a", {DecodeErrc::truncated, 1});
  check_refused("8369ffffffff", {DecodeErrc::truncated, 1});
  check_refused("8374ffffffff", {DecodeErrc::truncated, 1});
  check_refused("836bffff61", {DecodeErrc::truncated, 1});
  // Short before too large, as the pure twin finds it.
  check_refused("836fffffffff00", {DecodeErrc::truncated, 1});
  check_refused("836f003ffff800", {DecodeErrc::truncated, 1});
  check_refused("836f003ffff900", {DecodeErrc::truncated, 1});
  check_refused("836f003ffff900" + std::string(2 * 0x3ffff9, '1'),
                {DecodeErrc::bignum_too_large, 1});
  // erlpack's malformed vectors (OTP: refused).
  check_refused("836b00", {DecodeErrc::truncated, 1});
  check_refused("837400000003610261026103", {DecodeErrc::truncated, 12});
  check_refused("8374000000046102610261036c000000036101610261036a6d00000001616101",
                {DecodeErrc::truncated, 32});
  check_refused("83730974727565", {DecodeErrc::truncated, 1});
  check_refused("8362000004", {DecodeErrc::truncated, 1});
  check_refused("836b000b776f726c64", {DecodeErrc::truncated, 1});
  check_refused("836d0000000c68656c", {DecodeErrc::truncated, 1});
  check_refused("836c000000026101", {DecodeErrc::truncated, 1});
  check_refused("836c00000002610161", {DecodeErrc::truncated, 8});
}

TEST_CASE("nesting deeper than max_depth is refused", "[etf][decoder]") {
  auto nested_lists = [](std::size_t depth) {
    Bytes input{131};
    for (std::size_t i = 0; i < depth; ++i) {
      const Bytes header{108, 0, 0, 0, 1};
      input.insert(input.end(), header.begin(), header.end());
    }
    input.push_back(106);
    for (std::size_t i = 0; i < depth; ++i) input.push_back(106);
    return input;
  };
  CHECK(decode(nested_lists(512)).status.ok());
  check_refused(nested_lists(513), {DecodeErrc::depth_exceeded, 1 + 512 * 5});
  DecodeLimits shallow;
  shallow.max_depth = 3;
  CHECK(decode(nested_lists(3), shallow).status.ok());
  check_refused(nested_lists(4), {DecodeErrc::depth_exceeded, 16}, shallow);
  check_refused("8368016801680168016100", {DecodeErrc::depth_exceeded, 7}, shallow);
  check_refused("8374000000016100740000000161007400000001610074000000016100",
                {DecodeErrc::depth_exceeded, 22}, shallow);
  // A fun counts as a container, its free variables one level below it.
  DecodeLimits flat;
  flat.max_depth = 1;
  CHECK(decode_hex("83" + kFunWithFreeVariables, flat).status.ok());
  std::string fun_with_tuple = kFunWithFreeVariables;
  fun_with_tuple.replace(142, 4, "68016105");  // {5} instead of 5
  check_refused("83" + fun_with_tuple, {DecodeErrc::depth_exceeded, 72}, flat);
  flat.max_depth = 0;
  check_refused("83" + kFunWithFreeVariables, {DecodeErrc::depth_exceeded, 1}, flat);
  CHECK(decode_hex("836800", flat).status.ok());
}

TEST_CASE("max_input_bytes bounds the whole input", "[etf][decoder]") {
  DecodeLimits small;
  small.max_input_bytes = 8;
  CHECK(decode_hex("836d00000003010203", small).status.error == DecodeErrc::too_large);
  CHECK(decode_hex("836d00000002010203", small).status.error == DecodeErrc::too_large);
  CHECK(decode_hex("836d0000000201", small).status.error == DecodeErrc::truncated);
  CHECK(decode_hex("836d000000020102", small).status.ok());
}

TEST_CASE("trailing bytes are reported, and refused on request", "[etf][decoder]") {
  const Decoded lenient = decode_hex("836a0102");
  CHECK(lenient.status.ok());
  CHECK(lenient.status.bytes_used == 2);
  DecodeLimits strict;
  strict.allow_trailing_data = false;
  check_refused("836a0102", {DecodeErrc::trailing_data, 2}, strict);
  CHECK(decode_hex("836a", strict).status.ok());
}

TEST_CASE("COMPRESSED terms are inflated, checked and bounded", "[etf][decoder]") {
  const Bytes body =
      unhex("6c0000000261026b0019697427732067657474696e6720686f7420696e20686572652e6a");
  const Bytes input = compressed_term(body);
  const Decoded result = decode(input);
  REQUIRE(result.status.ok());
  CHECK(result.status.bytes_used == input.size());
  CHECK(result.events.size() == 5);
  // erlpack's compressed vector (OTP: ok, used = 50).
  const Decoded erlpack = decode_hex(
      "835000000024789ccb616060604a64ca6690cc2c512f56484f2d29c9cc4b57c8c82f51c8cc53c8482d4ad5cb0200"
      "a8a80a9d");
  REQUIRE(erlpack.status.ok());
  CHECK(erlpack.status.bytes_used == 50);

  // Bytes after the zlib stream are not used (OTP: ok, used excludes them).
  Bytes trailing = input;
  trailing.push_back(1);
  trailing.push_back(2);
  CHECK(decode(trailing).status.bytes_used == input.size());
  DecodeLimits strict;
  strict.allow_trailing_data = false;
  check_refused(trailing, {DecodeErrc::trailing_data, input.size()}, strict);
  // Bytes after the term inside the payload: OTP ignores them too.
  Bytes padded_body = body;
  padded_body.push_back(1);
  const Bytes padded = compressed_term(padded_body);
  CHECK(decode(padded).status.ok());
  check_refused(padded, {DecodeErrc::trailing_data, body.size(), true}, strict);

  // Errors inside the payload count offsets in the inflated bytes.
  check_refused(compressed_term(unhex("6c000000016c0000000150000000016a6a6a")),
                {DecodeErrc::nested_compression, 10, true});
  check_refused(compressed_term(unhex("836a")), {DecodeErrc::unknown_tag, 0, true});
  check_refused(compressed_term(unhex("6c00000002")), {DecodeErrc::truncated, 0, true});

  // The declared size must be exactly what zlib produces (OTP: refused).
  const Bytes stream = zlib_compress(body);
  check_refused(compressed_term(body, body.size() + 1, stream), {DecodeErrc::bad_compression, 1});
  check_refused(compressed_term(body, body.size() - 1, stream), {DecodeErrc::bad_compression, 1});
  Bytes bad_checksum = input;
  bad_checksum.back() ^= 0xff;
  check_refused(bad_checksum, {DecodeErrc::bad_compression, 1});
  Bytes raw_deflate =
      compressed_term(body, body.size(), Bytes(stream.begin() + 2, stream.end() - 4));
  check_refused(raw_deflate, {DecodeErrc::bad_compression, 1});
  Bytes cut = input;
  cut.resize(cut.size() - 3);
  check_refused(cut, {DecodeErrc::truncated, 1});
  check_refused("835000000000", {DecodeErrc::truncated, 1});
  check_refused("8350000000", {DecodeErrc::truncated, 1});
  check_refused(compressed_term(Bytes{}), {DecodeErrc::truncated, 0, true});
}

TEST_CASE("a compression bomb is refused by max_decompressed_bytes", "[etf][decoder]") {
  // 64 MiB of zeros in a binary inflates from about 64 KiB.
  Bytes body{109, 0x04, 0, 0, 0};
  body.resize(body.size() + (std::size_t{64} << 20), 0);
  const Bytes stream = zlib_compress(body);
  CHECK(stream.size() < 100000);
  DecodeLimits limits;
  limits.max_decompressed_bytes = std::size_t{1} << 20;
  // Declared honestly: refused from the header alone.
  check_refused(compressed_term(body, body.size(), stream), {DecodeErrc::decompressed_too_large, 1},
                limits);
  // Declared small: refused once inflation passes the limit.
  check_refused(compressed_term(body, 1000, stream), {DecodeErrc::decompressed_too_large, 1},
                limits);
  // Declared huge but impossible for the stream's length: refused without
  // allocating, for what the stream is: cut short, or complete and short.
  const DecodeLimits huge{512, std::size_t{64} << 20, std::size_t{8} << 30, true};
  check_refused(compressed_term(body, 0xffffffff, Bytes{0x78, 0x9c, 3, 0}),
                {DecodeErrc::truncated, 1}, huge);
  check_refused(compressed_term(body, 0xffffffff, Bytes{0x78, 0x9c, 3, 0, 0, 0, 0, 1}),
                {DecodeErrc::bad_compression, 1}, huge);
  check_refused(compressed_term(body, 0xffffffff, Bytes{0x12, 0x34, 0x56, 0x78}),
                {DecodeErrc::bad_compression, 1}, huge);
}

TEST_CASE("a visitor can stop decoding", "[etf][decoder]") {
  const Bytes input = unhex("836c00000002610161026a");
  for (std::size_t stop = 0; stop < 5; ++stop) {
    EtfDecoder decoder;
    RecordingVisitor visitor;
    visitor.refuse_at = stop;
    const DecodeStatus status = decoder.decode(input, visitor);
    CHECK(status.error == DecodeErrc::rejected_by_visitor);
    CHECK(visitor.events.size() == stop + 1);
  }
}

TEST_CASE("every truncation of a valid encoding is refused, never read past", "[etf][decoder]") {
  const std::vector<std::string> valid = {
      "836100",
      "836200000100",
      "836e0800070002c15a067102",
      "836f00000008000102030405060708",
      "83463ff8000000000000",
      "8363322e3530303030303030303030303030303030303030652b30300000000000",
      "8364000568656c6c6f",
      "83730568e96c6c6f",
      "837703e38182",
      "8376000568c3a96c6c",
      "836d00000003010203",
      "834d0000000303010260",
      "836b0003010203",
      "836c0000000261016c0000000161026a6a",
      "836c0000000161016102",
      "836c000000006102",
      "8369000000036d0000000676616e69736861016104",
      "8374000000026400016161016b000261626c0000000161016a",
      "8358640003614062000000010000000200000003",
      "8367640003614062000000010000000203",
      "83596400036140620000000500000007",
      "83666400036140620000000502",
      "8378640003614062000001000000000000000007",
      "83656400036140620000000501",
      "8372000364000361406201000000010000000200000003",
      "835a000364000361406200000009000000010000000200000003",
      "837164000d6775696c645f6d656d62657273640006617070656e646101",
      "83" + kFunWithFreeVariables,
      "835000000024789ccb616060604a64ca6690cc2c512f56484f2d29c9cc4b57c8c82f51c8cc53c8482d4ad5cb0200"
      "a8a80a9d",
  };
  for (const std::string& text : valid) {
    const Bytes full = unhex(text);
    INFO("encoding " << text);
    REQUIRE(decode(full).status.ok());
    for (std::size_t length = 0; length < full.size(); ++length) {
      INFO("first " << length << " bytes");
      // A copy of exactly `length` bytes, so ASan sees any read past it.
      const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(length));
      const Decoded result = decode(prefix);
      CHECK(decode_error_name(result.status.error) == "truncated");
    }
  }
}

TEST_CASE("decode_body reads a term without the version byte", "[etf][decoder]") {
  EtfDecoder decoder;
  RecordingVisitor visitor;
  const Bytes body = unhex("680261016d0000000161ff");
  const DecodeStatus status = decoder.decode_body(body, visitor);
  REQUIRE(status.ok());
  CHECK(status.bytes_used == 10);
  CHECK(visitor.events == Events{"tuple 2", "int 1", "bin 61", "end tuple"});
  NullVisitor ignore;
  CHECK(decoder.decode_body(unhex("50000000016a"), ignore).error == DecodeErrc::nested_compression);
}

TEST_CASE("a decoder can be reused after errors", "[etf][decoder]") {
  EtfDecoder decoder;
  NullVisitor ignore;
  CHECK(decoder.decode(unhex("8374000000026101610161016101"), ignore).error ==
        DecodeErrc::duplicate_key);
  CHECK(decoder.decode(unhex("836c000000017400000001610161026a"), ignore).ok());
  CHECK(decoder.decode(compressed_term(unhex("6c00000001")), ignore).error ==
        DecodeErrc::truncated);
  CHECK(decoder.decode(unhex("8374000000016101740000000161016102"), ignore).ok());
}

namespace {

// The inverse of detail::mix, to choose integer keys whose hashes an attacker
// controls: every key below lands on one probe slot of the duplicate check.
std::uint64_t unshift_xor(std::uint64_t x, unsigned shift) {
  std::uint64_t y = x;
  for (unsigned done = shift; done < 64; done += shift) y = x ^ (y >> shift);
  return y;
}
std::uint64_t odd_inverse(std::uint64_t a) {
  std::uint64_t inverse = a;
  for (int i = 0; i < 6; ++i) inverse *= 2 - a * inverse;
  return inverse;
}
std::uint64_t unmix(std::uint64_t x) {
  x = unshift_xor(x, 33);
  x *= odd_inverse(0x81dadef4bc2dd44dull);
  x = unshift_xor(x, 27);
  x *= odd_inverse(0x7fb5d329728ea185ull);
  return unshift_xor(x, 31);
}

// A map of `count` integer keys whose hashes agree on every bit the
// duplicate check probes with (bits 40 and up), plus, when `duplicate`, the
// first key again.
Bytes flooding_map(std::uint32_t count, bool duplicate) {
  Bytes out{131, 116};
  const std::uint32_t pairs = count + (duplicate ? 1 : 0);
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<std::uint8_t>(pairs >> shift));
  auto put_key = [&](std::uint32_t i) {
    const std::uint64_t hash = (std::uint64_t{0x5a5a5a} << 40) | i;
    const auto value =
        static_cast<std::int64_t>(unmix(hash) ^ switchboard::core::etf::detail::kSeedInteger);
    REQUIRE(switchboard::core::etf::detail::hash_integer(value) == hash);
    const bool negative = value < 0;
    std::uint64_t magnitude =
        negative ? ~static_cast<std::uint64_t>(value) + 1 : static_cast<std::uint64_t>(value);
    out.insert(out.end(), {110, 8, static_cast<std::uint8_t>(negative)});
    for (int byte = 0; byte < 8; ++byte, magnitude >>= 8) {
      out.push_back(static_cast<std::uint8_t>(magnitude));
    }
    out.insert(out.end(), {97, 0});
  };
  for (std::uint32_t i = 0; i < count; ++i) put_key(i);
  if (duplicate) put_key(0);
  return out;
}

}  // namespace

TEST_CASE("keys crafted to share probe bits cost O(n log n) work, not O(n^2)", "[etf][decoder]") {
  constexpr std::uint32_t kKeys = 20000;
  // Quadratic probing would need about kKeys^2 / 2 = 2e8 units.
  DecodeLimits limits;
  limits.max_work = 40 * kKeys;
  NullVisitor ignore;
  {
    EtfDecoder decoder(limits);
    CHECK(decoder.decode(flooding_map(kKeys, false), ignore).error == DecodeErrc::ok);
  }
  {
    EtfDecoder decoder(limits);
    const Bytes map = flooding_map(kKeys, true);
    const DecodeStatus status = decoder.decode(map, ignore);
    CHECK(status.error == DecodeErrc::duplicate_key);
    CHECK(status.offset == map.size() - 13);
  }
  // A budget that is too small says so, at the map, instead of running on.
  limits.max_work = kKeys;
  EtfDecoder decoder(limits);
  CHECK(decoder.decode(flooding_map(kKeys, false), ignore).error == DecodeErrc::work_exceeded);
}

TEST_CASE("plain_only refuses pids, ports, references, funs and exports at their tag",
          "[etf][decoder]") {
  DecodeLimits limits;
  limits.plain_only = true;
  NullVisitor ignore;
  EtfDecoder decoder(limits);
  // [1, <pid>]: the pid's tag is at offset 8.
  const Bytes pid = unhex(
      "836c000000026101"
      "58"
      "640003613a62"
      "000000010000000200000003"
      "6a");
  DecodeStatus status = decoder.decode(pid, ignore);
  CHECK(status.error == DecodeErrc::not_plain);
  CHECK(status.offset == 8);
  // An export fun, erlang:abs/1.
  status = decoder.decode(unhex("8371"
                                "64000665726c616e67"
                                "640003616273"
                                "6101"),
                          ignore);
  CHECK(status.error == DecodeErrc::not_plain);
  CHECK(status.offset == 1);
  // The same input decodes without plain_only.
  EtfDecoder lenient;
  CHECK(lenient.decode(pid, ignore).error == DecodeErrc::ok);
  // Plain data still decodes.
  CHECK(decoder
            .decode(unhex("836c0000000261016102"
                          "6a"),
                    ignore)
            .error == DecodeErrc::ok);
}
