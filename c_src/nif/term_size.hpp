// How big a term is, asked cheaply: names and tags that key a native table
// are hashed and copied on a normal scheduler only when they are small; a
// huge one goes to a dirty scheduler first (the scheduler is sacred, and a
// name may be any term).
#pragma once

#include <erl_nif.h>

#include <cstddef>

namespace switchboard::nif {

// True when `term` is larger than about `budget` bytes. Reads at most about
// `budget / 8` cells and never recurses (a deeply nested term is walked with
// an explicit stack), so a small answer is cheap and a large one is bounded.
bool term_larger_than(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t budget);

inline bool on_normal_scheduler_thread() {
  return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER;
}

}  // namespace switchboard::nif
