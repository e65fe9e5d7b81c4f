// How many bytes a NIF will touch when it copies or encodes a term, known
// before it starts: the scheduler rule is counted in bytes, not items, and
// one 100 MB binary is as long as a million small terms. OTP has no public
// size API, so the term is walked, and the walk stops as soon as the total
// passes the caller's limit: deciding costs at most limit / 16 node visits.
#pragma once

#include <erl_nif.h>

#include <cstddef>

namespace switchboard::nif {

enum class BinaryBytes {
  // The bytes of every binary are copied (a sorted-set key holds them).
  copied,
  // Binaries over 64 bytes are reference counted, shared by a send, not
  // copied; only heap binaries count (enif_send of a message).
  shared,
};

// Estimated bytes touched by copying `term`, or some value above `limit` as
// soon as the estimate passes it. Terms whose size cannot be read without
// the work itself (bignums beyond 64 bits, non-byte bitstrings and funs,
// when their bytes are copied) count as larger than any limit.
std::size_t term_bytes_up_to(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit,
                             BinaryBytes binaries);

inline bool term_larger_than(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit,
                             BinaryBytes binaries) {
  return term_bytes_up_to(env, term, limit, binaries) > limit;
}

inline bool on_normal_scheduler_thread() {
  return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER;
}

}  // namespace switchboard::nif
