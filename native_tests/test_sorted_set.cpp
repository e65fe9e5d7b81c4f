#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/sorted_set/sorted_set.hpp"
#include "core/sorted_set/term_key_builder.hpp"

using switchboard::core::SortedSet;
using switchboard::core::TermKey;
using switchboard::core::TermKeyBuilder;

namespace {

TermKey integer_key(std::int64_t value) {
  TermKeyBuilder builder;
  builder.small_int(value);
  return builder.finish();
}

}  // namespace

TEST_CASE("readers share, a writer excludes everyone", "[sorted_set]") {
  SortedSet set;
  {
    auto writer = set.try_write();
    REQUIRE(writer);
    (*writer)->insert(integer_key(1));
    REQUIRE(!set.try_read());
    REQUIRE(!set.try_write());
  }
  {
    auto first = set.try_read();
    auto second = set.try_read();
    REQUIRE(first);
    REQUIRE(second);
    REQUIRE((*first)->size() == 1);
    REQUIRE(!set.try_write());
  }
  REQUIRE(set.try_write());
}

TEST_CASE("concurrent readers see a consistent set while a writer inserts", "[sorted_set]") {
  SortedSet set;
  constexpr std::int64_t kItems = 20'000;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!done.load()) {
        if (auto access = set.try_read()) {
          const auto& tree = access->tree();
          const std::size_t size = tree.size();
          // Keys are 0..size-1 inserted in order: rank and value agree.
          if (size > 0) {
            const TermKey last = integer_key(static_cast<std::int64_t>(size) - 1);
            if (tree.find_index(last) != size - 1) throw std::logic_error("inconsistent read");
          }
          reads.fetch_add(1);
        }
      }
    });
  }
  for (std::int64_t i = 0; i < kItems; ++i) {
    const TermKey key = integer_key(i);
    set.write()->insert(key);
    // Every 1,000 inserts, let a reader in (bounded): on a busy machine the
    // writer could otherwise finish before any reader thread was scheduled.
    if (i % 1000 == 999) {
      const std::uint64_t before = reads.load();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (reads.load() == before && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
    }
  }
  done.store(true);
  for (auto& reader : readers) reader.join();
  REQUIRE(set.read()->size() == static_cast<std::size_t>(kItems));
  REQUIRE(reads.load() > 0);
  set.read()->check_invariants();
}

TEST_CASE("readers, writers and erasers at once keep the tree whole", "[sorted_set]") {
  SortedSet set;
  for (std::int64_t i = 0; i < 2000; ++i) set.write()->insert(integer_key(i * 2));
  std::atomic<bool> broken{false};
  std::vector<std::thread> threads;
  // Two writers own disjoint odd keys, add and remove them; readers check
  // that the even keys are always there at their rank plus the odd ones.
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 3000; ++round) {
        const TermKey key = integer_key((round % 1000) * 4 + 1 + w * 2);
        if (auto access = set.try_write(100)) {
          if (round % 2 == 0) {
            (*access)->insert(key);
          } else {
            (*access)->erase(key);
          }
        } else {
          set.write()->insert(key);
        }
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      for (int round = 0; round < 3000; ++round) {
        auto access = set.read();
        const auto index = access->find_index(integer_key((round % 2000) * 2));
        const std::size_t size = access->size();
        if (!index || size < 2000 || size > 4000) broken = true;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  REQUIRE(!broken.load());
  set.read()->check_invariants();
}
