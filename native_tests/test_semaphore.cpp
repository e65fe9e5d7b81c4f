// The semaphore's core: the per-name slot ledger and the sharded index.
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "core/semaphore/sharded_index.hpp"
#include "core/semaphore/slot_ledger.hpp"
#include "core/semaphore/spin_lock.hpp"

using switchboard::core::ShardedIndex;
using switchboard::core::SlotLedger;
using switchboard::core::SpinLock;

TEST_CASE("acquire takes slots up to max and records the holder") {
  SlotLedger<int> ledger;
  auto first = ledger.acquire(1, 2);
  CHECK(first.acquired);
  CHECK(first.monitor_needed);
  CHECK(ledger.watching(1, 100));
  auto second = ledger.acquire(1, 2);
  CHECK(second.acquired);
  CHECK_FALSE(second.monitor_needed);
  CHECK_FALSE(ledger.acquire(2, 2).acquired);
  CHECK(ledger.count() == 2);
  CHECK(ledger.held_by(1) == 2);
  CHECK(ledger.held_by(2) == 0);
  CHECK_FALSE(ledger.acquire(3, 0).acquired);
}

TEST_CASE("a holder going down frees exactly what it held") {
  SlotLedger<int> ledger;
  for (int i = 0; i < 3; ++i) REQUIRE(ledger.acquire(7, 10).acquired);
  REQUIRE(ledger.acquire(8, 10).acquired);
  CHECK(ledger.holder_down(7) == 3);
  CHECK(ledger.count() == 1);
  CHECK(ledger.holder_down(7) == 0);
  CHECK(ledger.holders_recorded() == 1);
}

TEST_CASE("lowering max never changes the count") {
  SlotLedger<int> ledger;
  for (std::uint64_t holder = 0; holder < 10; ++holder)
    REQUIRE(ledger.acquire(holder, 10).acquired);
  CHECK_FALSE(ledger.acquire(42, 5).acquired);
  CHECK(ledger.count() == 10);
  for (std::uint64_t holder = 0; holder < 6; ++holder) CHECK(ledger.release(holder).released);
  CHECK(ledger.count() == 4);
  CHECK(ledger.acquire(42, 5).acquired);
  CHECK_FALSE(ledger.acquire(43, 5).acquired);
  CHECK(ledger.count() == 5);
}

TEST_CASE("release without a slot only gives back unowned slots") {
  SlotLedger<int> ledger;
  CHECK_FALSE(ledger.release(1).released);
  REQUIRE(ledger.acquire(1, 5).acquired);
  CHECK_FALSE(ledger.release(2).released);
  CHECK(ledger.count() == 1);
  ledger.reset(3);
  CHECK(ledger.count() == 3);
  CHECK(ledger.held_by(1) == 0);
  // The old holder going down frees nothing: reset took its slot away.
  CHECK(ledger.holder_down(1) == 0);
  CHECK(ledger.release(9).released);
  CHECK(ledger.release(9).released);
  CHECK(ledger.release(9).released);
  CHECK_FALSE(ledger.release(9).released);
  CHECK(ledger.count() == 0);
}

TEST_CASE("idle holders stay watched up to the idle limit") {
  SlotLedger<int> ledger(2);
  for (std::uint64_t holder = 1; holder <= 3; ++holder) {
    auto acquired = ledger.acquire(holder, 10);
    REQUIRE(acquired.monitor_needed);
    REQUIRE(ledger.watching(holder, static_cast<int>(holder) * 10));
  }
  CHECK_FALSE(ledger.release(1).demonitor);
  CHECK_FALSE(ledger.release(2).demonitor);
  auto third = ledger.release(3);
  CHECK(third.demonitor);
  CHECK(third.monitor == 30);
  CHECK(ledger.idle_holders() == 2);
  CHECK(ledger.holders_recorded() == 2);
  // An idle holder acquires again without a new monitor.
  auto again = ledger.acquire(1, 10);
  CHECK(again.acquired);
  CHECK_FALSE(again.monitor_needed);
  CHECK(ledger.idle_holders() == 1);
  CHECK(ledger.holder_down(2) == 0);
  CHECK(ledger.idle_holders() == 0);
}

TEST_CASE("watching a holder that is gone is refused") {
  SlotLedger<int> ledger;
  REQUIRE(ledger.acquire(5, 1).acquired);
  REQUIRE(ledger.holder_down(5) == 1);
  CHECK_FALSE(ledger.watching(5, 1));
}

TEST_CASE("racing threads on one sharded entry never exceed max") {
  struct Entry {
    int id;
    SlotLedger<int> ledger;
  };
  ShardedIndex<Entry> index;
  Entry entry{1, SlotLedger<int>{}};
  {
    auto& shard = index.shard_for(99);
    std::lock_guard guard(shard.lock);
    shard.insert(99, &entry);
  }
  constexpr std::int64_t kMax = 3;
  std::atomic<std::int64_t> inside{0};
  std::atomic<std::int64_t> worst{0};
  std::atomic<std::int64_t> acquired_total{0};
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        auto& shard = index.shard_for(99);
        bool got;
        {
          std::lock_guard guard(shard.lock);
          Entry* found = shard.find(99, [](const Entry& e) { return e.id == 1; });
          got = found->ledger.acquire(t, kMax).acquired;
        }
        if (!got) continue;
        acquired_total.fetch_add(1);
        const auto now = inside.fetch_add(1) + 1;
        for (auto seen = worst.load(); now > seen && !worst.compare_exchange_weak(seen, now);) {
        }
        inside.fetch_sub(1);
        std::lock_guard guard(shard.lock);
        shard.find(99, [](const Entry& e) { return e.id == 1; })->ledger.release(t);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(worst.load() <= kMax);
  CHECK(acquired_total.load() > 0);
  CHECK(entry.ledger.count() == 0);
  CHECK(index.size() == 1);
}

TEST_CASE("entries with equal hashes are told apart by the predicate") {
  ShardedIndex<int> index;
  int a = 1, b = 2;
  auto& shard = index.shard_for(5);
  shard.insert(5, &a);
  shard.insert(5, &b);
  CHECK(shard.find(5, [](int v) { return v == 2; }) == &b);
  CHECK(shard.find(5, [](int v) { return v == 3; }) == nullptr);
  CHECK(shard.find(6, [](int) { return true; }) == nullptr);
}

TEST_CASE("the spin lock excludes") {
  SpinLock lock;
  long counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50000; ++i) {
        std::lock_guard guard(lock);
        ++counter;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(counter == 200000);
  CHECK(lock.try_lock());
  CHECK_FALSE(lock.try_lock());
  lock.unlock();
}
