// What the Erlpack NIFs (erlpack_encode_nif.cpp, erlpack_decode_nif.cpp)
// share: what a call may spend on a normal scheduler, the sizes past which
// work starts dirty, the budget that decides when a call moves, and the
// readers of their plain arguments.
//
// Every call starts on the normal scheduler with a work budget of about
// half a millisecond (checked every few hundred terms). Decodes of inputs
// larger than kDirtyDecodeBytes go to a dirty CPU scheduler at once; any
// other call that spends its budget gives up its partial result and runs
// again on a dirty CPU scheduler (an encode continues where it stopped).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nif/nif.hpp"

namespace switchboard::nif::erlpack {

using Clock = std::chrono::steady_clock;

// What a call may spend on a normal scheduler before it moves to a dirty one.
constexpr auto kNormalBudget = std::chrono::microseconds(400);
// Reading the clock costs tens of nanoseconds on these machines, as much as
// encoding a small term, so small calls never read it: the clock starts after
// this much work (terms, or 256 bytes copied; well under 100 us of it) and is
// read every kUnitsPerClockCheck units after that.
constexpr std::size_t kUnitsBeforeClock = 1024;
constexpr std::size_t kUnitsPerClockCheck = 256;
// Decoding runs at a few hundred MB/s here: inputs above this size would
// outlast the budget anyway, so they start dirty.
constexpr std::size_t kDirtyDecodeBytes = std::size_t{256} << 10;
// A binary this large is not copied on a normal scheduler at all.
constexpr std::size_t kDirtyCopyBytes = std::size_t{1} << 20;
// zlib deflates at tens of MB/s: above this the compression goes dirty.
constexpr std::size_t kDirtyCompressBytes = std::size_t{16} << 10;
// Payloads smaller than this rarely repeat a map key, and looking keys up in
// the KeyCache costs them a few percent: their keys are not cached.
constexpr std::size_t kKeyCacheMinBytes = 512;
// Inputs up to this size that hold only plain data (core/etf/plain_term.hpp)
// are built by the VM's own binary_to_term: below kKeyCacheMinBytes the
// builder has nothing to share between terms, and one call into the VM costs
// less than a call per term.
constexpr std::size_t kPlainDecodeBytes = kKeyCacheMinBytes - 1;
// Work units (core DecodeLimits::max_work: duplicate-key probes and sorts, a
// fun's free variables) a decode may spend on a normal scheduler, about
// 0.3 ms; past them it moves to a dirty CPU scheduler.
constexpr std::size_t kNormalDecodeWork = std::size_t{100} << 10;
// Binaries up to this size live on the process heap (ERL_ONHEAP_BIN_LIMIT);
// larger ones are shared with the input by the builder.
constexpr std::size_t kHeapBinaryBytes = 64;
// Thread-local buffers that grew past this are given back after the call.
constexpr std::size_t kKeepBufferBytes = std::size_t{1} << 20;

inline bool on_normal_scheduler() { return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER; }

class WorkBudget {
 public:
  explicit WorkBudget(bool limited) : limited_(limited) {}

  // Counts `units` of work; true once the budget is spent (never when unlimited).
  bool charge(std::size_t units = 1) {
    units_ += units;
    return units_ >= next_check_ && check();
  }
  bool limited() const noexcept { return limited_; }

  // Tells the VM how much of its slice a long call used (1% per 10 us).
  void report(ErlNifEnv* env) const {
    if (!started_) return;
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_).count();
    enif_consume_timeslice(env, micros >= 900 ? 100 : static_cast<int>(micros / 10) + 10);
  }

 private:
  bool check() {
    next_check_ = units_ + kUnitsPerClockCheck;
    if (!limited_) return false;
    if (!started_) {
      started_ = true;
      start_ = Clock::now();
      return false;
    }
    return Clock::now() - start_ > kNormalBudget;
  }

  bool limited_;
  bool started_ = false;
  std::size_t units_ = 0;
  std::size_t next_check_ = kUnitsBeforeClock;
  Clock::time_point start_;
};

template <class T>
void trim(std::vector<T>& buffer) {
  if (buffer.capacity() * sizeof(T) > kKeepBufferBytes) std::vector<T>().swap(buffer);
}

inline bool bool_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  bool value;
  if (!Decoder<bool>::decode(env, term, value)) throw bad_argument(env, "a boolean", term);
  return value;
}

inline std::uint64_t size_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ErlNifUInt64 value;
  if (!enif_get_uint64(env, term, &value)) {
    throw bad_argument(env, "a non-negative integer", term);
  }
  return value;
}

}  // namespace switchboard::nif::erlpack
