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

// A slot's published write, Slot::request. The owner moves it
// Free -> Claimed -> Pending (and Pending <-> Sleeping while it sleeps on
// the word) and back to Free once Done, or withdraws it Pending -> Free; a
// combiner moves it Pending/Sleeping -> Taken -> Done; a writer leaving the
// lock moves a Sleeping one to Retry (its owner wakes and tries the lock
// itself). Only the owner frees it, and a combiner reads the operation only
// after taking it, so the operation (on the owner's stack) outlives its use.
// The writer word, DistributedRwLock::writer_: held (the one writer, which
// turns readers away), and who sleeps until it is free: threads on the word
// itself (readers, blocking writers), writers on their slot.
enum Writer : std::uint32_t {
  kHeld = 1,
  kWordSleepers = 2,
  kSlotSleepers = 4,
};

enum Request : std::uint32_t {
  kFree = 0,
  kClaimed = 1,
  kPending = 2,
  kSleeping = 3,
  kTaken = 4,
  kDone = 5,
  kRetry = 6,
};

// Spins a blocking writer gives a combiner before it sleeps on its slot
// (~100 us: a batch of a few dozen writes; sleeping costs the combiner a
// wake-up call per sleeper, so it should only happen when the combiner
// lost its core).
constexpr std::uint32_t kSpinsBeforeSleep = 2048;
// A combiner keeps its turn while it finds published writes, pass after
// pass over the slots (the structure stays in its core's cache, and no
// other writer has to take the lock over), but stops after a pass that
// took it to kMaxCombined writes: ~1 us each, so a turn on a normal
// scheduler stays well below a millisecond.
constexpr int kMaxCombinerPasses = 8;
// Spins a writer first gives the lock itself, before it publishes its
// write: about one write by another writer. Two writers take turns this way
// (measured through the VM on 2 cores: handing a write to the other core
// costs more cache misses than taking the lock); only writers that meet a
// queue publish and have their writes combined.
constexpr std::uint32_t kDirectSpins = 128;
constexpr std::size_t kMaxCombined = 256;

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

// Sleeps on the writer word while it is `seen` (held), marking it so the
// writer that frees it wakes the word's sleepers.
void DistributedRwLock::sleep_on_writer(std::uint32_t seen) noexcept {
  if ((seen & kWordSleepers) == 0 &&
      !writer_.compare_exchange_strong(seen, seen | kWordSleepers, std::memory_order_relaxed)) {
    return;  // changed meanwhile: the caller looks again
  }
  writer_.wait(seen | kWordSleepers, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// Readers

bool DistributedRwLock::enter_shared(std::size_t slot) noexcept {
  auto& readers = slots_[slot].readers;
  readers.fetch_add(1, std::memory_order_seq_cst);
  if (writer_.load(std::memory_order_seq_cst) == 0) return true;
  readers.fetch_sub(1, std::memory_order_release);
  return false;
}

bool DistributedRwLock::try_lock_shared(std::size_t& slot, std::uint32_t spins) noexcept {
  slot = this_thread_slot() & mask_;
  if (enter_shared(slot)) return true;
  if (spins == 0) return false;
  // Counted, so the next writer lets this reader in before it takes the lock.
  readers_waiting_.fetch_add(1, std::memory_order_seq_cst);
  bool entered = false;
  for (std::uint32_t spin = 0; !entered && spin < spins; ++spin) {
    while (writer_.load(std::memory_order_relaxed) != 0 && spin < spins) {
      cpu_relax();
      ++spin;
    }
    entered = enter_shared(slot);
  }
  readers_waiting_.fetch_sub(1, std::memory_order_seq_cst);
  return entered;
}

std::size_t DistributedRwLock::lock_shared() noexcept {
  const std::size_t slot = this_thread_slot() & mask_;
  if (enter_shared(slot)) return slot;
  readers_waiting_.fetch_add(1, std::memory_order_seq_cst);
  while (!enter_shared(slot)) {
    for (int i = 0; i < 64 && writer_.load(std::memory_order_relaxed) != 0; ++i) cpu_relax();
    const std::uint32_t seen = writer_.load(std::memory_order_relaxed);
    if (seen != 0) sleep_on_writer(seen);
  }
  readers_waiting_.fetch_sub(1, std::memory_order_seq_cst);
  return slot;
}

void DistributedRwLock::unlock_shared(std::size_t slot) noexcept {
  slots_[slot].readers.fetch_sub(1, std::memory_order_release);
}

// ---------------------------------------------------------------------------
// Writers

// One try: the word free, no readers counted waiting (their turn comes
// first), and the compare-and-swap won.
bool DistributedRwLock::try_acquire_writer() noexcept {
  if (writer_.load(std::memory_order_relaxed) != 0 ||
      readers_waiting_.load(std::memory_order_relaxed) != 0) {
    return false;
  }
  std::uint32_t expected = 0;
  return writer_.compare_exchange_strong(expected, kHeld, std::memory_order_seq_cst,
                                         std::memory_order_relaxed);
}

bool DistributedRwLock::acquire_writer(std::uint32_t spins) noexcept {
  const std::uint32_t limit = spins == kBlock ? 128 : spins;
  for (std::uint32_t spin = 0;; ++spin) {
    if (try_acquire_writer()) return true;
    if (spin >= limit) break;
    cpu_relax();
  }
  if (spins != kBlock) return false;
  Backoff readers_turn;
  for (;;) {
    if (try_acquire_writer()) return true;
    const std::uint32_t seen = writer_.load(std::memory_order_relaxed);
    if (seen != 0) {
      sleep_on_writer(seen);
    } else {
      readers_turn.pause();  // readers counted waiting go in first
    }
  }
}

void DistributedRwLock::release_writer() noexcept {
  const std::uint32_t was = writer_.exchange(0, std::memory_order_seq_cst);
  if ((was & kWordSleepers) != 0) writer_.notify_all();
  if ((was & kSlotSleepers) == 0) return;
  // Writers that went to sleep after the last combining pass would sleep
  // on: wake them to take the lock themselves.
  for (std::size_t slot = 0; slot <= mask_; ++slot) {
    auto& request = slots_[slot].request;
    std::uint32_t expected = kSleeping;
    if (request.compare_exchange_strong(expected, kRetry, std::memory_order_seq_cst)) {
      request.notify_one();
    }
  }
}

bool DistributedRwLock::readers_gone(std::uint32_t spins) noexcept {
  if (spins == kBlock) {
    Backoff backoff;
    while (!readers_gone(64)) backoff.pause();
    return true;
  }
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
  if (!acquire_writer(spins)) return false;
  if (readers_gone(spins)) return true;
  release_writer();
  return false;
}

void DistributedRwLock::lock() noexcept {
  acquire_writer(kBlock);
  readers_gone(kBlock);
}

void DistributedRwLock::unlock() noexcept { release_writer(); }

// ---------------------------------------------------------------------------
// Combining

void DistributedRwLock::apply_published() noexcept {
  std::size_t combined = 0;
  for (int pass = 0; pass < kMaxCombinerPasses && combined < kMaxCombined; ++pass) {
    // Nothing published: no pass over the slots (their lines are the
    // readers', and a many-core machine has dozens of them).
    if (published_.load(std::memory_order_relaxed) == 0) return;
    const std::size_t before = combined;
    for (std::size_t slot = 0; slot <= mask_; ++slot) {
      auto& request = slots_[slot].request;
      std::uint32_t state = request.load(std::memory_order_relaxed);
      while (state == kPending || state == kSleeping) {
        if (request.compare_exchange_weak(state, kTaken, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
          published_.fetch_sub(1, std::memory_order_relaxed);
          const Operation& operation = *slots_[slot].operation;
          operation.apply(operation.context);
          request.store(kDone, std::memory_order_release);
          if (state == kSleeping) request.notify_one();
          ++combined;
          break;
        }
      }
    }
    if (combined == before) return;
  }
}

void DistributedRwLock::sleep_until_served(Slot& own) noexcept {
  std::uint32_t expected = kPending;
  if (!own.request.compare_exchange_strong(expected, kSleeping, std::memory_order_seq_cst)) {
    return;  // taken meanwhile
  }
  // Asleep only while a writer holds the word and knows to wake this slot
  // when it lets go (its exchange reads the mark this sets).
  for (std::uint32_t seen = writer_.load(std::memory_order_seq_cst); (seen & kHeld) != 0;) {
    if ((seen & kSlotSleepers) != 0 ||
        writer_.compare_exchange_weak(seen, seen | kSlotSleepers, std::memory_order_seq_cst)) {
      own.request.wait(kSleeping, std::memory_order_acquire);
      break;
    }
  }
  expected = kSleeping;
  own.request.compare_exchange_strong(expected, kPending, std::memory_order_seq_cst);
}

// Holding the writer word: the readers inside waited out, this thread's
// own operation (if not published) and the published ones applied.
bool DistributedRwLock::combine_turn(const Operation* own, std::uint32_t spins) noexcept {
  if (!readers_gone(spins)) {
    release_writer();
    return false;
  }
  if (own != nullptr) own->apply(own->context);
  apply_published();
  release_writer();
  return true;
}

bool DistributedRwLock::run(const Operation& operation, std::uint32_t spins) noexcept {
  // Uncontended, or one writer ahead: the lock itself, this operation
  // first, then whatever others published meanwhile.
  for (std::uint32_t spin = 0; spin < kDirectSpins; ++spin) {
    if (try_acquire_writer()) return combine_turn(&operation, spins);
    cpu_relax();
  }

  Slot& own = slots_[this_thread_slot() & mask_];
  std::uint32_t expected = kFree;
  if (!own.request.compare_exchange_strong(expected, kClaimed, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
    // The slot's other thread is writing: a plain exclusive turn.
    if (spins == kBlock) {
      lock();
    } else if (!try_lock(spins)) {
      return false;
    }
    operation.apply(operation.context);
    unlock();
    return true;
  }
  own.operation = &operation;
  published_.fetch_add(1, std::memory_order_relaxed);
  own.request.store(kPending, std::memory_order_seq_cst);

  const bool blocking = spins == kBlock;
  const std::uint32_t limit = blocking ? kSpinsBeforeSleep : 2 * spins;
  bool readers_stayed = false;
  std::uint32_t taken_spins = 0;
  for (std::uint32_t spin = 0;;) {
    const std::uint32_t state = own.request.load(std::memory_order_acquire);
    if (state == kDone) {
      own.request.store(kFree, std::memory_order_release);
      return true;
    }
    if (state == kTaken) {  // a combiner is applying it: a short wait, unless it lost its core
      if (blocking && ++taken_spins > kSpinsBeforeSleep) {
        std::this_thread::yield();
      } else {
        cpu_relax();
      }
      continue;
    }
    if (state == kRetry) {
      own.request.store(kPending, std::memory_order_seq_cst);
      continue;
    }
    if (!readers_stayed && try_acquire_writer()) {
      // This thread's operation is among the published ones.
      readers_stayed = !combine_turn(nullptr, spins);  // only a bounded wait gives up
      continue;
    }
    if (!blocking && (readers_stayed || spin >= limit)) {
      expected = kPending;
      if (own.request.compare_exchange_strong(expected, kFree, std::memory_order_relaxed)) {
        published_.fetch_sub(1, std::memory_order_relaxed);
        return false;
      }
      continue;  // taken meanwhile: it is being applied
    }
    cpu_relax();
    if (++spin >= limit && blocking) {
      sleep_until_served(own);
      spin = 0;
    }
  }
}

bool DistributedRwLock::try_combine(const Operation& operation, std::uint32_t spins) noexcept {
  return run(operation, std::min(spins, kBlock - 1));
}

void DistributedRwLock::combine(const Operation& operation) noexcept { run(operation, kBlock); }

}  // namespace switchboard::core
