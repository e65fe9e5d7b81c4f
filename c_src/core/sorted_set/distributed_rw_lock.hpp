// A reader/writer lock whose readers write only a cache line of their own,
// and whose writers combine their work instead of queueing for it.
//
// Readers. A std::shared_mutex keeps one reader count: every reader, on
// every core, writes the same cache line twice per read, so readers on many
// cores queue for that line and a read-mostly structure stops scaling at a
// few cores. Here each thread counts its reads in one of `slots()` counters,
// each on its own cache line (ETS's read_concurrency does the same per
// scheduler), and a writer announces itself in a flag that readers only read:
//
//   reader: slot += 1; if (writer) { slot -= 1; fail or wait }   (seq_cst)
//   writer: writer = true; wait until every slot is 0
//
// Both sides store, then load the other side's word with sequentially
// consistent order, so either the reader sees the flag or the writer sees
// the reader's count (the store-buffer pattern): a reader and a writer are
// never inside together.
//
// Writers. The flag is also the writers' lock: a futex-backed word that a
// writer takes with one compare-and-swap, so an uncontended write costs what
// a bare flag did (a separate mutex taken first cost a second atomic
// read-modify-write, ~10 ns a write). Writers never spin on it with
// read-modify-writes: one that finds it held either waits on a cache line
// of its own (combine, below) or spins on plain loads, then sleeps in the
// kernel (lock). Under contention one writer does the work of the others
// (flat combining): `combine` spins about one write's time for the lock,
// then publishes the operation in the caller's slot,
// and whoever holds the lock applies every published operation in one
// exclusive turn while their owners wait on their own slot's line. N
// writers then cost one hand-over and one reader drain per batch, not per
// write, and the structure stays in one core's cache while the batch runs.
// Each caller still gets its own result: an operation writes it into the
// caller's memory, which the caller reads when its slot says done.
//
// Starvation, both ways:
//   * a writer that raised the flag turns new readers away, so readers
//     cannot starve it (it waits only for the readers already inside);
//   * readers turned away by a writer count themselves waiting, and no
//     writer takes the lock while any are counted (readers' turn), so a
//     stream of writers cannot starve readers; readers that arrive during
//     the turn are not counted, so the turn ends once those counted are in;
//   * a combining turn ends after a few passes over the slots or a few
//     hundred writes, so one combiner is not kept working for others
//     forever (and readers get their turn between batches).
//
// Threads share a slot only when there are more threads than slots; that
// costs contention (a writer finding its slot taken falls back to a plain
// exclusive lock), never correctness. The try_ forms never wait for long:
// code running where it must not stall (a BEAM scheduler) gives a bounded
// number of spins, then fails, and retries where it may block.
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
  // all of try_lock's waits.
  static constexpr std::uint32_t kDefaultSpins = 512;

  // A write to apply under the exclusive lock, possibly by another thread
  // (the combiner): `apply(context)` must not throw and must only touch
  // memory that either thread may (the structure, the owner's result).
  struct Operation {
    void (*apply)(void* context) noexcept;
    void* context;
  };

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
  // Heap bytes of the slots.
  std::size_t memory_bytes() const noexcept { return slots() * sizeof(Slot); }

  // Shared. try_lock_shared fails while a writer holds or waits for the
  // lock, after `spins` spins waiting for it to go. Returns the slot to pass
  // to unlock_shared.
  bool try_lock_shared(std::size_t& slot, std::uint32_t spins = kDefaultSpins) noexcept;
  std::size_t lock_shared() noexcept;
  void unlock_shared(std::size_t slot) noexcept;

  // Exclusive. try_lock gives `spins` spins to the other writer, to the
  // readers' turn and to the readers inside, then fails, leaving the lock as
  // it was.
  bool try_lock(std::uint32_t spins = kDefaultSpins) noexcept;
  void lock() noexcept;
  void unlock() noexcept;

  // A write, applied exactly once under the exclusive lock by this thread
  // or by the writer holding it. try_combine waits `spins` spins (twice:
  // once for a combiner to take it, once for the lock if it combines
  // itself) and returns false, the operation not applied, if neither
  // happened; combine waits as long as it takes, sleeping after a spin.
  bool try_combine(const Operation& operation, std::uint32_t spins = kDefaultSpins) noexcept;
  void combine(const Operation& operation) noexcept;

 private:
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> readers{0};
    // The slot's published write (see Request in the .cpp).
    std::atomic<std::uint32_t> request{0};
    const Operation* operation = nullptr;
  };
  // How a wait may end: after a number of spins, or never (blocking).
  static constexpr std::uint32_t kBlock = UINT32_MAX;

  bool enter_shared(std::size_t slot) noexcept;
  void sleep_on_writer(std::uint32_t seen) noexcept;
  bool readers_gone(std::uint32_t spins) noexcept;

  bool try_acquire_writer() noexcept;
  bool acquire_writer(std::uint32_t spins) noexcept;
  void release_writer() noexcept;
  void apply_published() noexcept;
  bool combine_turn(const Operation* own, std::uint32_t spins) noexcept;
  bool run(const Operation& operation, std::uint32_t spins) noexcept;
  void sleep_until_served(Slot& own) noexcept;

  std::size_t mask_;
  std::unique_ptr<Slot[]> slots_;
  // The writers' lock and the readers' flag in one word (see Writer in the
  // .cpp): non-zero while a writer holds the lock; readers only read it
  // unless they must sleep. Writers waiting for it spin on a load or sleep
  // on it (a futex), or wait on their own slot while the holder combines.
  // Not on a line of its own: the lock lives inside objects whose memory
  // is only 16-byte aligned (NIF resources), and the slots carry the
  // readers' writes.
  std::atomic<std::uint32_t> writer_{0};
  // Readers turned away by a writer and not yet in (written only when a
  // writer is present, so uncontended readers never write it).
  std::atomic<std::uint32_t> readers_waiting_{0};
  // Writes published and not yet taken or withdrawn: a hint that spares an
  // uncontended writer the pass over the slots (one it misses is not lost:
  // its owner takes the lock itself, or is woken to).
  std::atomic<std::uint32_t> published_{0};
};

}  // namespace switchboard::core
