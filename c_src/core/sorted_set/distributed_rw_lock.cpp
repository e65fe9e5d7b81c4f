#include "core/sorted_set/distributed_rw_lock.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <thread>

namespace switchboard::core {
namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Backs off a thread that may block (never used by the try_ forms): spins,
// then yields, then sleeps a little, so a long reader (a million items
// copied out on another thread) costs the waiting writer no core.
class Backoff {
 public:
  void pause() noexcept {
    if (rounds_ < 64) {
      cpu_relax();
    } else if (rounds_ < 128) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    ++rounds_;
  }

 private:
  std::uint32_t rounds_ = 0;
};

}  // namespace

std::size_t DistributedRwLock::default_slots() noexcept {
  const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  return std::clamp<std::size_t>(std::bit_ceil(threads * 2), 4, 128);
}

std::size_t DistributedRwLock::this_thread_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t slot = next.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

DistributedRwLock::DistributedRwLock(std::size_t slots)
    : mask_(std::bit_ceil(slots == 0 ? default_slots() : slots) - 1),
      slots_(std::make_unique<Slot[]>(mask_ + 1)) {}

bool DistributedRwLock::enter_shared(std::size_t slot) noexcept {
  auto& readers = slots_[slot].readers;
  readers.fetch_add(1, std::memory_order_seq_cst);
  if (writer_.load(std::memory_order_seq_cst) == 0) return true;
  readers.fetch_sub(1, std::memory_order_release);
  return false;
}

bool DistributedRwLock::try_lock_shared(std::size_t& slot, std::uint32_t spins) noexcept {
  slot = this_thread_slot() & mask_;
  for (std::uint32_t spin = 0;; ++spin) {
    if (enter_shared(slot)) return true;
    if (spin >= spins) return false;
    while (writer_.load(std::memory_order_relaxed) != 0 && spin < spins) {
      cpu_relax();
      ++spin;
    }
  }
}

std::size_t DistributedRwLock::lock_shared() noexcept {
  const std::size_t slot = this_thread_slot() & mask_;
  Backoff backoff;
  while (!enter_shared(slot)) {
    for (int i = 0; i < 64 && writer_.load(std::memory_order_relaxed) != 0; ++i) cpu_relax();
    if (writer_.load(std::memory_order_relaxed) != 0) writer_.wait(1, std::memory_order_relaxed);
    backoff.pause();
  }
  return slot;
}

void DistributedRwLock::unlock_shared(std::size_t slot) noexcept {
  slots_[slot].readers.fetch_sub(1, std::memory_order_release);
}

bool DistributedRwLock::readers_gone(std::uint32_t spins) noexcept {
  for (std::size_t slot = 0; slot <= mask_; ++slot) {
    while (slots_[slot].readers.load(std::memory_order_seq_cst) != 0) {
      if (spins == 0) return false;
      --spins;
      cpu_relax();
    }
  }
  return true;
}

bool DistributedRwLock::try_lock(std::uint32_t spins) noexcept {
  for (std::uint32_t spin = 0;; ++spin) {
    std::uint32_t expected = 0;
    if (writer_.load(std::memory_order_relaxed) == 0 &&
        writer_.compare_exchange_weak(expected, 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      break;
    }
    if (spin >= spins) return false;
    cpu_relax();
  }
  if (readers_gone(spins)) return true;
  unlock();
  return false;
}

void DistributedRwLock::lock() noexcept {
  Backoff backoff;
  for (;;) {
    std::uint32_t expected = 0;
    if (writer_.compare_exchange_weak(expected, 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      break;
    }
    if (expected != 0) writer_.wait(expected, std::memory_order_relaxed);
  }
  while (!readers_gone(64)) backoff.pause();
}

void DistributedRwLock::unlock() noexcept {
  writer_.store(0, std::memory_order_release);
  writer_.notify_all();
}

}  // namespace switchboard::core
