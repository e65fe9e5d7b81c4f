// The three ways to keep long work off a normal scheduler (erl_nif docs,
// "Long-running NIFs"), as small reusable pieces:
//   1. WorkSlice + Call::yield(): split work, count it in bytes, report it and
//      continue with enif_schedule_nif;
//   2. run_dirty_cpu(): hand unsplittable work to a dirty CPU scheduler;
//   3. ReplyThread: a library-owned thread that replies with enif_send.
#pragma once

#include <erl_nif.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "nif/nif.hpp"

namespace switchboard::nif {

// The one budget of a slice on a normal scheduler, for every NIF (Erlpack's
// encode and decode, Fanout's sends and walks, the typed NIFs' yields): work is
// counted in bytes touched (read, hashed, copied, encoded; an item that is
// not bytes counts its size in memory), as jiffy counts bytes_per_red, and
// a clock bounds what the byte count misjudges. By default a slice ends at
// 1 MiB of work or 400 us, whichever comes first: under the 1 ms rule with
// room for the call's own setup, and 1 MiB is about 300 us at the slowest
// per-byte work measured here (copying terms). Tests shrink `bytes` and turn
// the clock off (`Switchboard.NIF.set_work_budget/1`) to force a known
// number of yields.
struct SliceBudget {
  std::size_t bytes;
  std::chrono::microseconds time;
};
inline constexpr SliceBudget kDefaultSliceBudget{std::size_t{1} << 20,
                                                 std::chrono::microseconds(400)};
SliceBudget slice_budget() noexcept;
void set_slice_budget(SliceBudget budget) noexcept;

// How a WorkSlice keeps time.
enum class SliceClock {
  // The clock starts with the slice (the default).
  from_start,
  // The clock starts at the first look (after kCallsPerClock spends or
  // kBytesPerClock bytes): a call that ends sooner never reads it. For NIFs
  // whose small calls cost less than two clock reads (the Erlpack codec);
  // the work before the first look (tens of us at most) is not timed.
  lazy,
  // No budget at all: for work already on a dirty scheduler, where the same
  // code runs to the end. spend() never returns true.
  unlimited,
};

// One slice of work on the current scheduler. Call `spend(bytes)` after each
// piece of work; once it returns true the slice is over (and reported to the
// VM): save progress and `call.yield<&next>(...)`, or go dirty. Once over,
// every later spend() returns true too, and the slice is reported once.
class WorkSlice {
 public:
  explicit WorkSlice(ErlNifEnv* env, SliceClock clock = SliceClock::from_start)
      : env_(env), budget_(slice_budget()), clock_(clock) {
    if (clock == SliceClock::from_start) start_clock();
    if (clock == SliceClock::unlimited) next_check_ = kNever;
  }

  bool spend(std::size_t bytes) {
    used_ += bytes;
    // The clock costs tens of ns: looked at every 64 calls or 64 KiB of work.
    if (used_ < next_check_ && ++calls_ < kCallsPerClock) return false;
    return check();
  }
  // How many more bytes this slice allows: the size of the next piece.
  std::size_t left() const noexcept { return used_ < budget_.bytes ? budget_.bytes - used_ : 0; }
  std::size_t used() const noexcept { return used_; }
  // False for a SliceClock::unlimited slice.
  bool limited() const noexcept { return clock_ != SliceClock::unlimited; }
  bool over() const noexcept { return over_; }

  // Tells the VM what a call whose slice did not end used of its timeslice
  // (a slice that ended has already reported itself). Nothing when the
  // clock never started: the call was short.
  void report() const {
    if (over_ || !started_) return;
    enif_consume_timeslice(env_, percent_of_timeslice());
  }

  // Slices ended since the library loaded, in every NIF: tests compare it
  // before and after a call to count that call's yields (library_info/0).
  static std::uint64_t ended_count() noexcept;

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr unsigned kCallsPerClock = 64;
  static constexpr std::size_t kBytesPerClock = std::size_t{64} << 10;
  static constexpr std::size_t kNever = static_cast<std::size_t>(-1);

  void start_clock() {
    started_ = true;
    start_ = Clock::now();
  }

  bool check() {
    calls_ = 0;
    if (over_) return true;
    if (clock_ == SliceClock::unlimited) {
      next_check_ = kNever;
      return false;
    }
    if (used_ >= budget_.bytes) return finish();
    next_check_ = std::min(budget_.bytes, used_ + kBytesPerClock);
    if (!started_) {
      start_clock();
      return false;
    }
    if (Clock::now() - start_ >= budget_.time) return finish();
    return false;
  }

  int percent_of_timeslice() const {
    if (!started_) return 1;
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_).count();
    // One percent of a timeslice is roughly 10 us of a 1 ms slice.
    return micros >= 1000 ? 100 : static_cast<int>(micros / 10) + 1;
  }

  bool finish();

  ErlNifEnv* env_;
  SliceBudget budget_;
  SliceClock clock_;
  bool started_ = false;
  bool over_ = false;
  Clock::time_point start_;
  std::size_t used_ = 0;
  std::size_t next_check_ = std::min(budget_.bytes, kBytesPerClock);
  unsigned calls_ = 0;
};

// Raw forms of Call::yield / Call::dirty, for raw NIFs.
// Continues `continuation` later on a normal scheduler (the current call returns).
inline ERL_NIF_TERM yield(ErlNifEnv* env, const char* name, RawNif continuation, int argc,
                          const ERL_NIF_TERM argv[]) {
  return enif_schedule_nif(env, name, 0, continuation, argc, argv);
}

// True when `list` has more than `limit` cells (whether or not it is proper),
// reading at most limit + 1 of them: how a call decides to go dirty without
// first walking a million-cell list on a normal scheduler, as
// enif_get_list_length would. Any other term has no cells.
inline bool list_longer_than(ErlNifEnv* env, ERL_NIF_TERM list, std::size_t limit) {
  ERL_NIF_TERM head;
  for (std::size_t cells = 0; enif_get_list_cell(env, list, &head, &list);) {
    if (++cells > limit) return true;
  }
  return false;
}

// Continues `work` on a dirty CPU scheduler.
inline ERL_NIF_TERM run_dirty_cpu(ErlNifEnv* env, const char* name, RawNif work, int argc,
                                  const ERL_NIF_TERM argv[]) {
  return enif_schedule_nif(env, name, ERL_NIF_DIRTY_JOB_CPU_BOUND, work, argc, argv);
}

// Work for the reply thread: runs off the schedulers and builds its result in
// `env`; the thread then sends `{tag, result}` to `reply_to`. If the work
// throws, the reply is `{tag, {:error, message}}`.
struct ThreadJob {
  ErlNifPid reply_to;
  OwnedEnv env;
  ERL_NIF_TERM tag;  // lives in env
  std::function<ERL_NIF_TERM(ErlNifEnv*)> work;
  bool reply = true;  // false: run `work` and send nothing
};

// Other library-owned native threads register here: each service is started
// right after the reply thread (first load of the library) and stopped just
// before it (last unload), so no thread outlives the library's code.
struct ThreadService {
  void (*start)();
  void (*stop)();
};
void register_thread_service(ThreadService service);

// A library-owned native thread fed through a lock-free queue. Submitting
// never blocks the calling scheduler.
class ReplyThread {
 public:
  static ReplyThread& instance();

  void start();
  void stop();
  // Takes ownership of the job; throws if the thread is not running.
  void submit(std::unique_ptr<ThreadJob> job);
  // Runs `work` on the thread with no reply (freeing a large structure, say).
  // Throws if the thread is not running; jobs still queued at unload are
  // destroyed without running.
  void run_detached(std::function<void()> work);
  // Jobs finished since start (for tests and stats).
  std::uint64_t completed() const noexcept;

  struct State;

 private:
  ReplyThread() = default;
  std::unique_ptr<State> state_;
};

}  // namespace switchboard::nif
