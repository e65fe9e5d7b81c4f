// Refusals: the public reasons and offsets Switchboard.Erlpack reports, on
// top of the core decoder (core/etf/refusal.hpp), shared by the NIF and the
// port program and checked here without a VM: atoms "exist" per a set.
#include <catch2/catch.hpp>

#include "hex.hpp"

#include <set>
#include <string>

#include "core/etf/decoder.hpp"
#include "core/etf/refusal.hpp"

namespace etf = switchboard::core::etf;
using switchboard::test::unhex;

namespace {

class SetOracle final : public etf::AtomOracle {
 public:
  explicit SetOracle(std::set<std::string, std::less<>> unknown) : unknown_(std::move(unknown)) {}
  bool exists(std::string_view utf8) override {
    asked.emplace_back(utf8);
    return unknown_.find(utf8) == unknown_.end();
  }
  std::vector<std::string> asked;

 private:
  std::set<std::string, std::less<>> unknown_;
};

etf::Refusal structural(const std::string& hex) {
  const auto bytes = unhex(hex);
  etf::EtfDecoder decoder;
  etf::NullVisitor ignore;
  const etf::DecodeStatus status = decoder.decode(bytes, ignore);
  REQUIRE_FALSE(status.ok());
  return etf::structural_refusal(bytes, status);
}

}  // namespace

TEST_CASE("public reasons fold the core's finer ones into invalid_term", "[etf][refusal]") {
  CHECK(etf::public_reason(etf::DecodeErrc::truncated) == "truncated");
  CHECK(etf::public_reason(etf::DecodeErrc::not_plain) == "not_plain");
  CHECK(etf::public_reason(etf::DecodeErrc::bad_fun) == "invalid_term");
  CHECK(etf::public_reason(etf::DecodeErrc::bignum_too_large) == "invalid_term");
  CHECK(etf::public_reason(etf::DecodeErrc::rejected_by_visitor) == "invalid_term");
}

TEST_CASE("structural refusals sit where the pure twin reports them", "[etf][refusal]") {
  // {1, <cut>}: truncated at the tuple's second element.
  etf::Refusal refusal = structural("8368026101");
  CHECK(refusal.reason == "truncated");
  CHECK(refusal.offset == 5);
  // A pid whose node is cut short: truncated at the pid's tag.
  refusal = structural("835864000561");
  CHECK(refusal.reason == "truncated");
  CHECK(refusal.offset == 1);
  // Inside a compressed payload: at the compressed tag.
  refusal = structural(
      "8350000000027801"
      "0000");
  CHECK(refusal.offset == 1);
}

TEST_CASE("the first unknown atom, in document order, at its own offset", "[etf][refusal]") {
  // [a, b, <pid on node c>]
  const auto input = unhex(
      "836c00000003"
      "640001"
      "61"
      "640001"
      "62"
      "58640001"
      "63"
      "000000010000000000000001"
      "6a");
  {
    SetOracle oracle({"b", "c"});
    const auto refusal =
        etf::locate_unknown_atom(input, etf::AtomMode::existing, oracle, etf::DecodeLimits{});
    REQUIRE(refusal);
    CHECK(refusal->reason == "unknown_atom");
    CHECK(refusal->offset == 10);
    CHECK(oracle.asked == std::vector<std::string>{"a", "b"});
  }
  {
    SetOracle oracle({"c"});
    const auto refusal =
        etf::locate_unknown_atom(input, etf::AtomMode::existing, oracle, etf::DecodeLimits{});
    REQUIRE(refusal);
    CHECK(refusal->offset == 15);  // the node atom, after the pid's tag at 14
  }
  {
    // atoms: :binary reads a and b as binaries; the pid's node must exist.
    SetOracle oracle({"a", "b"});
    CHECK_FALSE(
        etf::locate_unknown_atom(input, etf::AtomMode::binary, oracle, etf::DecodeLimits{}));
  }
}

TEST_CASE("atoms: :binary makes :a and \"a\" equal keys", "[etf][refusal]") {
  // %{:a => 1, "a" => 2}: the binary key is the second occurrence.
  const auto map = unhex(
      "837400000002"
      "640001"
      "61"
      "6101"
      "6d00000001"
      "61"
      "6102");
  CHECK(etf::find_binary_mode_duplicate(map, 1, etf::DecodeLimits{}) == 12);
  const auto distinct = unhex(
      "837400000002"
      "640001"
      "61"
      "6101"
      "6d00000001"
      "62"
      "6102");
  CHECK(etf::find_binary_mode_duplicate(distinct, 1, etf::DecodeLimits{}) == etf::npos);
}
