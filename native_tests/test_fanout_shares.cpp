#include <catch2/catch.hpp>

#include <stdexcept>

#include "core/fanout/shares.hpp"

using switchboard::core::fanout::ShareSplitter;

TEST_CASE("items with one key share a share, in arrival order", "[fanout][shares]") {
  ShareSplitter<int> splitter(3);
  for (int i = 0; i < 30; ++i) splitter.add(static_cast<std::uint64_t>(i % 5), i);
  const auto shares = splitter.take();
  REQUIRE(shares.size() == 3);
  // Keys 0 and 3 -> share 0; 1 and 4 -> share 1; 2 -> share 2.
  REQUIRE(*shares[2] == std::vector<int>{2, 7, 12, 17, 22, 27});
  REQUIRE(shares[0]->size() == 12);
  REQUIRE(shares[1]->size() == 12);
  for (const auto& share : shares) {
    for (std::size_t i = 1; i < share->size(); ++i) REQUIRE((*share)[i - 1] < (*share)[i]);
  }
}

TEST_CASE("empty shares are null and take() leaves the splitter empty", "[fanout][shares]") {
  ShareSplitter<int> splitter(4);
  splitter.add(1, 10);
  splitter.add(5, 11);
  auto shares = splitter.take();
  REQUIRE(shares[0] == nullptr);
  REQUIRE(*shares[1] == std::vector<int>{10, 11});
  REQUIRE(shares[2] == nullptr);
  REQUIRE(shares[3] == nullptr);
  shares = splitter.take();
  for (const auto& share : shares) REQUIRE(share == nullptr);
}

TEST_CASE("a splitter needs at least one share", "[fanout][shares]") {
  REQUIRE_THROWS_AS(ShareSplitter<int>(0), std::invalid_argument);
}
