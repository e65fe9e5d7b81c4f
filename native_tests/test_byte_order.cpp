// core/byte_order.hpp: swaps, and big-endian loads and stores at any alignment.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>

#include "core/byte_order.hpp"

using namespace switchboard::core;

TEST_CASE("byteswap reverses the bytes of each width", "[byte_order]") {
  STATIC_REQUIRE(byteswap(std::uint8_t{0x12}) == 0x12);
  STATIC_REQUIRE(byteswap(std::uint16_t{0x1234}) == 0x3412);
  STATIC_REQUIRE(byteswap(std::uint32_t{0x12345678}) == 0x78563412u);
  STATIC_REQUIRE(byteswap(std::uint64_t{0x0102030405060708}) == 0x0807060504030201ull);
}

TEST_CASE("big-endian loads read the most significant byte first", "[byte_order]") {
  const std::array<std::uint8_t, 9> bytes{0xFF, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  // From an odd address too: no alignment is assumed.
  REQUIRE(load_big_endian<std::uint16_t>(bytes.data() + 1) == 0x0102);
  REQUIRE(load_big_endian<std::uint32_t>(bytes.data() + 1) == 0x01020304u);
  REQUIRE(load_big_endian<std::uint64_t>(bytes.data() + 1) == 0x0102030405060708ull);
  REQUIRE(load_big_endian<std::uint8_t>(bytes.data()) == 0xFF);
}

TEST_CASE("big-endian stores round-trip through loads", "[byte_order]") {
  std::array<std::uint8_t, 9> out{};
  store_big_endian(out.data() + 1, std::uint64_t{0xA1B2C3D4E5F60718});
  REQUIRE(out[0] == 0);
  REQUIRE(out[1] == 0xA1);
  REQUIRE(out[8] == 0x18);
  REQUIRE(load_big_endian<std::uint64_t>(out.data() + 1) == 0xA1B2C3D4E5F60718ull);

  store_big_endian(out.data(), std::uint32_t{0xDEADBEEF});
  REQUIRE(out[0] == 0xDE);
  REQUIRE(out[3] == 0xEF);
  store_big_endian(out.data(), std::uint16_t{0x0102});
  REQUIRE(load_big_endian<std::uint16_t>(out.data()) == 0x0102);
  REQUIRE(from_big_endian(to_big_endian(std::uint32_t{42})) == 42u);
}
