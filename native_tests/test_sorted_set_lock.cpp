// DistributedRwLock: exclusion under threads (run under ASan+UBSan in
// `make asan-test`; a TSan build of this file alone checks the orderings).
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/sorted_set/distributed_rw_lock.hpp"

using switchboard::core::DistributedRwLock;

TEST_CASE("slots are a power of two, at least the number asked", "[sorted_set_lock]") {
  REQUIRE(DistributedRwLock(1).slots() == 1);
  REQUIRE(DistributedRwLock(3).slots() == 4);
  REQUIRE(DistributedRwLock(64).slots() == 64);
  const std::size_t defaults = DistributedRwLock().slots();
  REQUIRE(defaults >= 4);
  REQUIRE(defaults <= 128);
  REQUIRE((defaults & (defaults - 1)) == 0);
}

TEST_CASE("a reader keeps a writer out and the reverse", "[sorted_set_lock]") {
  DistributedRwLock lock(4);
  std::size_t first, second;
  REQUIRE(lock.try_lock_shared(first, 0));
  REQUIRE(lock.try_lock_shared(second, 0));
  REQUIRE(!lock.try_lock(10));
  lock.unlock_shared(first);
  REQUIRE(!lock.try_lock(10));
  lock.unlock_shared(second);
  REQUIRE(lock.try_lock(0));
  std::size_t slot;
  REQUIRE(!lock.try_lock_shared(slot, 10));
  REQUIRE(!lock.try_lock(10));
  lock.unlock();
  REQUIRE(lock.try_lock_shared(slot, 0));
  lock.unlock_shared(slot);
}

TEST_CASE("a failed try_lock leaves readers free to enter", "[sorted_set_lock]") {
  DistributedRwLock lock(4);
  std::size_t held;
  REQUIRE(lock.try_lock_shared(held, 0));
  REQUIRE(!lock.try_lock(5));  // gave up waiting for the reader
  std::size_t another;
  REQUIRE(lock.try_lock_shared(another, 0));
  lock.unlock_shared(another);
  lock.unlock_shared(held);
}

TEST_CASE("a blocked writer gets in when the reader leaves", "[sorted_set_lock]") {
  DistributedRwLock lock(4);
  const std::size_t slot = lock.lock_shared();
  std::atomic<bool> inside{false};
  std::thread writer([&] {
    lock.lock();
    inside.store(true);
    lock.unlock();
  });
  // The waiting writer turns new readers away.
  for (int i = 0; i < 1000 && !inside.load(); ++i) std::this_thread::yield();
  REQUIRE(!inside.load());
  lock.unlock_shared(slot);
  writer.join();
  REQUIRE(inside.load());
}

namespace {

// The state the hammer's writers change: a pair of plain (non-atomic)
// integers and who is inside.
struct Guarded {
  std::uint64_t left = 0, right = 0;
  std::atomic<int> writers_inside{0}, readers_inside{0};
  std::atomic<bool> broken{false};

  void write() {
    if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0) broken = true;
    left += 1;
    // Widen the window in which a reader let in would see the halves
    // differ (a compiler barrier keeps the two writes apart).
    for (int i = 0; i < 200; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
    right += 1;
    writers_inside.fetch_sub(1);
  }
};

void write_guarded(void* context) noexcept { static_cast<Guarded*>(context)->write(); }

// Threads that read and write the pair under the lock, with every acquire
// form (combined writes included). A reader that sees the halves differ, or
// a writer that sees anyone else inside, proves the lock let two in.
void hammer(std::size_t slots, int threads, int rounds) {
  DistributedRwLock lock(slots);
  Guarded guarded;
  const DistributedRwLock::Operation operation{&write_guarded, &guarded};
  std::atomic<std::uint64_t> reads{0}, writes{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int round = 0; round < rounds; ++round) {
        const int kind = (t + round) % 10;
        if (kind < 2) {  // writer: blocking, or trying
          if (kind == 0) {
            lock.lock();
          } else if (!lock.try_lock(50)) {
            continue;
          }
          guarded.write();
          std::this_thread::yield();
          lock.unlock();
          writes.fetch_add(1);
        } else if (kind < 4) {  // combined writer: blocking, or trying
          if (kind == 2) {
            lock.combine(operation);
          } else if (!lock.try_combine(operation, 50)) {
            continue;
          }
          writes.fetch_add(1);
        } else {  // reader: blocking, or trying
          std::size_t slot;
          if (kind < 7) {
            slot = lock.lock_shared();
          } else if (!lock.try_lock_shared(slot, 50)) {
            continue;
          }
          guarded.readers_inside.fetch_add(1);
          if (guarded.writers_inside.load() != 0 || guarded.left != guarded.right) {
            guarded.broken = true;
          }
          guarded.readers_inside.fetch_sub(1);
          lock.unlock_shared(slot);
          reads.fetch_add(1);
        }
      }
    });
  }
  for (auto& thread : pool) thread.join();
  REQUIRE(!guarded.broken.load());
  REQUIRE(guarded.left == writes.load());
  REQUIRE(guarded.right == guarded.left);
  REQUIRE(reads.load() > 0);
}

void count(void* context) noexcept { ++*static_cast<std::uint64_t*>(context); }

}  // namespace

TEST_CASE("readers and writers never overlap, each thread its own slot", "[sorted_set_lock]") {
  hammer(16, 4, 20'000);
}

TEST_CASE("readers and writers never overlap, all threads on one slot", "[sorted_set_lock]") {
  hammer(1, 4, 20'000);
}

TEST_CASE("readers and writers never overlap, more threads than slots", "[sorted_set_lock]") {
  hammer(4, 12, 5'000);
}

TEST_CASE("combined writes are each applied once, more writers than cores", "[sorted_set_lock]") {
  // 16 writers on however few cores: most of them sleep on their slot
  // while one applies their writes; every write must land exactly once.
  DistributedRwLock lock(8);  // fewer slots than threads: some fall back to lock()
  std::uint64_t total = 0;
  const DistributedRwLock::Operation operation{&count, &total};
  constexpr int kThreads = 16, kWrites = 4000;
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        if (t % 2 == 0 || !lock.try_combine(operation, 20)) lock.combine(operation);
      }
    });
  }
  for (auto& thread : pool) thread.join();
  REQUIRE(total == std::uint64_t{kThreads} * kWrites);
}

TEST_CASE("a combined write waits for the readers inside", "[sorted_set_lock]") {
  DistributedRwLock lock(4);
  std::uint64_t total = 0;
  const DistributedRwLock::Operation operation{&count, &total};
  const std::size_t slot = lock.lock_shared();
  REQUIRE(!lock.try_combine(operation, 20));  // withdrawn: never applied
  std::atomic<bool> done{false};
  std::thread writer([&] {
    lock.combine(operation);
    done.store(true);
  });
  for (int i = 0; i < 1000 && !done.load(); ++i) std::this_thread::yield();
  REQUIRE(!done.load());
  lock.unlock_shared(slot);
  writer.join();
  REQUIRE(total == 1);
  REQUIRE(lock.try_combine(operation, 0));
  REQUIRE(total == 2);
}

namespace {

// Runs `victim` (which does a fixed number of acquisitions) against
// `others` threads that acquire the other way in a loop until the victim is
// done, or until they did `cap` acquisitions each. Returns whether the
// victim finished first: with starvation it would wait for the cap.
template <class Victim, class Other>
bool finishes_first(int others, std::uint64_t cap, Victim victim, Other other) {
  std::atomic<bool> done{false};
  std::atomic<int> capped{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < others; ++t) {
    pool.emplace_back([&] {
      std::uint64_t n = 0;
      while (!done.load(std::memory_order_relaxed)) {
        if (++n > cap) {
          capped.fetch_add(1);
          return;
        }
        other();
      }
    });
  }
  victim();
  const bool first = capped.load() == 0;
  done.store(true);
  for (auto& thread : pool) thread.join();
  return first;
}

}  // namespace

TEST_CASE("a stream of readers does not starve a writer", "[sorted_set_lock]") {
  DistributedRwLock lock(8);
  std::uint64_t total = 0;
  const DistributedRwLock::Operation operation{&count, &total};
  REQUIRE(finishes_first(
      4, 20'000'000,
      [&] {
        for (int i = 0; i < 200; ++i) {
          lock.lock();
          lock.unlock();
          lock.combine(operation);
        }
      },
      [&] {
        const std::size_t slot = lock.lock_shared();
        for (int i = 0; i < 50; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
        lock.unlock_shared(slot);
      }));
  REQUIRE(total == 200);
}

TEST_CASE("a stream of writers does not starve a reader", "[sorted_set_lock]") {
  DistributedRwLock lock(8);
  std::uint64_t total = 0;
  const DistributedRwLock::Operation operation{&count, &total};
  std::atomic<int> turn{0};
  REQUIRE(finishes_first(
      4, 2'000'000,
      [&] {
        for (int i = 0; i < 200; ++i) {
          std::size_t slot;
          if (i % 2 == 0) {
            slot = lock.lock_shared();
          } else {
            while (!lock.try_lock_shared(slot, 200)) {
            }
          }
          lock.unlock_shared(slot);
        }
      },
      [&] {
        if (turn.fetch_add(1, std::memory_order_relaxed) % 2 == 0) {
          lock.lock();
          for (int i = 0; i < 50; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
          lock.unlock();
        } else {
          lock.combine(operation);
        }
      }));
}

TEST_CASE("the lock needs no more than the alignment NIF resources get", "[sorted_set_lock]") {
  // A resource's memory is aligned for max_align_t, no more.
  STATIC_REQUIRE(alignof(DistributedRwLock) <= alignof(std::max_align_t));
}
