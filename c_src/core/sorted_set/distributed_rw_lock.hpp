// A reader/writer lock whose readers write only a cache line of their own.
//
// A std::shared_mutex keeps one reader count: every reader, on every core,
// writes the same cache line twice per read, so readers on many cores queue
// for that line and a read-mostly structure stops scaling at a few cores.
// Here each thread counts its reads in one of `slots()` counters, each on its
// own cache line (ETS's read_concurrency does the same per scheduler), and a
// writer announces itself in a flag that readers only read:
//
//   reader: slot += 1; if (writer) { slot -= 1; fail or wait }   (seq_cst)
//   writer: writer = true (one writer at a time); wait until every slot is 0
//
// Both sides store, then load the other side's word with sequentially
// consistent order, so either the reader sees the flag or the writer sees
// the reader's count (the store-buffer pattern): a reader and a writer are
// never inside together. A writer that has raised the flag turns new
// readers away, so readers cannot starve it.
//
// Threads share a slot only when there are more threads than slots; that
// costs contention, never correctness. The try_ forms never wait for long:
// code running where it must not stall (a BEAM scheduler) gives a bounded
// number of spins, then backs off and retries elsewhere.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace switchboard::core {

class DistributedRwLock {
 public:
  // Spins a try_ form gives each wait before it fails (each spin is one
  // CPU pause, 10-150 cycles by model: 512 took ~30 us on the 2.x GHz EPYC
  // this was measured on): long enough for a queue of short critical
  // sections (a write is ~1 us) to pass, far below a millisecond even for
  // both of try_lock's waits.
  static constexpr std::uint32_t kDefaultSpins = 512;

  // `slots` is rounded up to a power of two; 0 picks default_slots().
  explicit DistributedRwLock(std::size_t slots = 0);
  DistributedRwLock(const DistributedRwLock&) = delete;
  DistributedRwLock& operator=(const DistributedRwLock&) = delete;

  // Twice the hardware threads, as a power of two in [4, 128]: room for the
  // threads that read most (one per core) to have a slot each.
  static std::size_t default_slots() noexcept;
  // The calling thread's slot number (before reduction to a lock's slots).
  static std::size_t this_thread_slot() noexcept;

  std::size_t slots() const noexcept { return mask_ + 1; }
  // Heap bytes of the counters.
  std::size_t memory_bytes() const noexcept { return slots() * sizeof(Slot); }

  // Shared. try_lock_shared fails while a writer holds or waits for the
  // lock, after `spins` spins waiting for it to go. Returns the slot to pass
  // to unlock_shared.
  bool try_lock_shared(std::size_t& slot, std::uint32_t spins = kDefaultSpins) noexcept;
  std::size_t lock_shared() noexcept;
  void unlock_shared(std::size_t slot) noexcept;

  // Exclusive. try_lock gives `spins` spins to the other writer and again
  // to the readers in, then fails, leaving the lock as it was.
  bool try_lock(std::uint32_t spins = kDefaultSpins) noexcept;
  void lock() noexcept;
  void unlock() noexcept;

 private:
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> readers{0};
  };

  bool enter_shared(std::size_t slot) noexcept;
  bool readers_gone(std::uint32_t spins) noexcept;

  std::size_t mask_;
  std::unique_ptr<Slot[]> slots_;
  // 1 while a writer holds or waits. Not on a line of its own: the lock
  // lives inside objects whose memory is only 16-byte aligned (NIF
  // resources), and readers only read it; the slots carry the writes.
  std::atomic<std::uint32_t> writer_{0};
};

}  // namespace switchboard::core
