#include <catch2/catch.hpp>

#include <vector>

#include "core/memory.hpp"

using switchboard::core::allocated_bytes;
using switchboard::core::Allocator;
using switchboard::core::live_allocations;

TEST_CASE("core allocations are counted and released", "[memory]") {
  const auto bytes_before = allocated_bytes();
  const auto count_before = live_allocations();
  {
    std::vector<int, Allocator<int>> numbers;
    numbers.reserve(1000);
    REQUIRE(allocated_bytes() == bytes_before + 1000 * sizeof(int));
    REQUIRE(live_allocations() == count_before + 1);
  }
  REQUIRE(allocated_bytes() == bytes_before);
  REQUIRE(live_allocations() == count_before);
}

TEST_CASE("an impossible allocation throws bad_alloc", "[memory]") {
  Allocator<long> allocator;
  REQUIRE_THROWS_AS(allocator.allocate(static_cast<std::size_t>(-1) / 4), std::bad_alloc);
}
