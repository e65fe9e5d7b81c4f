// contains_bytes: found wherever the needle is, never where it is not,
// whatever bytes the haystack repeats (the memchr path and its Boyer-Moore
// fallback).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "core/byte_search.hpp"

using switchboard::core::contains_bytes;

namespace {

using Bytes = std::vector<std::uint8_t>;

// Id words of a reference: zeros, ASCII and bytes above 127.
const Bytes kNeedle = {0x00, 0x00, 0xf4, 0x6d, 0x9f, 0x38, 0x00, 0x01, 0x73, 0xc3, 0xf1, 0x80};

bool contains(const Bytes& haystack, const Bytes& needle = kNeedle) {
  return contains_bytes(haystack, needle);
}

}  // namespace

TEST_CASE("the needle is found at every position of a haystack", "[byte_search]") {
  for (std::size_t size : {12u, 13u, 40u, 300u, 5000u}) {
    for (std::size_t at = 0; at + kNeedle.size() <= size; at += (size > 300 ? 97 : 1)) {
      Bytes haystack(size, 'x');
      std::copy(kNeedle.begin(), kNeedle.end(), haystack.begin() + static_cast<long>(at));
      INFO("size " << size << " at " << at);
      CHECK(contains(haystack));
    }
  }
}

TEST_CASE("a needle that is not there is not found", "[byte_search]") {
  CHECK_FALSE(contains(Bytes{}));
  CHECK_FALSE(contains(Bytes(11, 0)));
  // Every byte of the needle, in order, but never all twelve in a row.
  Bytes near;
  for (int copy = 0; copy < 50; ++copy) {
    near.insert(near.end(), kNeedle.begin(), kNeedle.end() - 1);
    near.push_back(0x81);
  }
  CHECK_FALSE(contains(near));
  // The needle cut off by the end of the haystack.
  Bytes cut(100, 'y');
  cut.insert(cut.end(), kNeedle.begin(), kNeedle.end() - 1);
  CHECK_FALSE(contains(cut));
  CHECK(contains_bytes(cut, Bytes{}));
}

TEST_CASE("a haystack full of the needle's rarest byte: found, or not, all the same",
          "[byte_search]") {
  // 0xf4 and 0x9f are the needle's least common-looking bytes: a haystack of
  // them makes the memchr path stop at every byte, until Boyer-Moore takes
  // over.
  for (std::uint8_t filler : {std::uint8_t{0xf4}, std::uint8_t{0x9f}, std::uint8_t{0x00}}) {
    Bytes haystack(200'000, filler);
    INFO(int{filler});
    CHECK_FALSE(contains(haystack));
    std::copy(kNeedle.begin(), kNeedle.end(), haystack.end() - 12);
    CHECK(contains(haystack));
    std::copy(kNeedle.begin(), kNeedle.end(), haystack.begin() + 150'001);
    CHECK(contains(haystack));
  }
}

TEST_CASE("needles of one byte and of every byte alike", "[byte_search]") {
  CHECK(contains_bytes(Bytes{1, 2, 3}, Bytes{3}));
  CHECK_FALSE(contains_bytes(Bytes{1, 2, 3}, Bytes{4}));
  CHECK(contains_bytes(Bytes(64, 7), Bytes(64, 7)));
  CHECK_FALSE(contains_bytes(Bytes(63, 7), Bytes(64, 7)));
  CHECK(contains_bytes(Bytes{'a', 'a', 'a', 'b'}, Bytes{'a', 'a', 'b'}));
}
