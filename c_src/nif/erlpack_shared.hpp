// What the Erlpack NIFs (erlpack_encode_nif.cpp, erlpack_decode_nif.cpp)
// share: the sizes past which work starts dirty, how their work is counted
// in the one slice budget (WorkSlice, scheduling.hpp), and their options.
//
// Every call starts on the normal scheduler with a WorkSlice (1 MiB of work
// or 400 us by default; tests shrink it with set_work_budget/1). Decodes of
// inputs larger than kDirtyDecodeBytes go to a dirty CPU scheduler at once;
// any other call that spends its slice gives up its partial result and runs
// again on a dirty CPU scheduler (an encode continues where it stopped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif::erlpack {

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
// less than a call per term. decode/1 sends inputs up to this size to
// erlpack_decode_small first (@small_decode_bytes in lib/switchboard/erlpack.ex).
constexpr std::size_t kPlainDecodeBytes = kKeyCacheMinBytes - 1;
// The seal search (erlpack_may_hold_seal) runs dirty past this much output:
// at most about 0.3 ms even on adversarial bytes.
constexpr std::size_t kDirtySearchBytes = std::size_t{512} << 10;
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

// A term walked or built counts as its size in memory, about two words, in
// WorkSlice bytes; binaries and atom text count their bytes. Terms are spent
// in batches of kTermsPerSpend, so that a small call pays an increment per
// term and never reads the clock (the slice's clock is lazy: it starts
// after 64 batches).
constexpr std::size_t kTermBytes = 16;
constexpr unsigned kTermsPerSpend = 16;

// The WorkSlice of one encode or decode call: limited on a normal
// scheduler, unlimited on a dirty one (the same walk runs to the end).
class CodecSlice {
 public:
  explicit CodecSlice(ErlNifEnv* env, bool normal)
      : slice_(env, normal ? SliceClock::lazy : SliceClock::unlimited) {}

  // One term walked or built; true once the slice is over.
  bool term() {
    if (++terms_ < kTermsPerSpend) return false;
    terms_ = 0;
    return slice_.spend(kTermsPerSpend * kTermBytes);
  }
  // `count` terms at once (list cells, map pairs).
  bool terms(std::size_t count) { return over_if(slice_.spend(count * kTermBytes)); }
  // `count` bytes copied (a binary, atom text).
  bool bytes(std::size_t count) { return over_if(slice_.spend(count)); }
  bool limited() const noexcept { return slice_.limited(); }
  // Tells the VM the time a call used when its slice did not end.
  void report() const { slice_.report(); }

 private:
  // A slice that ended on bytes also ends the next term(): work whose result
  // is ignored ("written: the next node finds the slice spent") stops there.
  bool over_if(bool over) {
    if (over) terms_ = kTermsPerSpend - 1;
    return over;
  }

  WorkSlice slice_;
  unsigned terms_ = 0;
};

// A zlib compression level, 0..9 (0: not compressed).
struct CompressionLevel {
  int value = 0;
};

template <class T>
void trim(std::vector<T>& buffer) {
  if (buffer.capacity() * sizeof(T) > kKeepBufferBytes) std::vector<T>().swap(buffer);
}

}  // namespace switchboard::nif::erlpack

namespace switchboard::nif {
template <>
struct Decoder<erlpack::CompressionLevel> {
  static constexpr std::string_view expected = "a compression level 0..9";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, erlpack::CompressionLevel& out) {
    return enif_get_int(env, term, &out.value) && out.value >= 0 && out.value <= 9;
  }
};
template <>
struct Encoder<erlpack::CompressionLevel> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, erlpack::CompressionLevel level) {
    return enif_make_int(env, level.value);
  }
};
}  // namespace switchboard::nif
