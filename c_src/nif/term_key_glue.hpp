// Erlang terms <-> core TermKeys (the sorted set's item representation).
#pragma once

#include <erl_nif.h>

#include <span>

#include "core/sorted_set/term_key.hpp"
#include "core/sorted_set/term_key_builder.hpp"

namespace switchboard::nif {

// Terms nested deeper than this are refused with an ArgumentError; the walk
// itself is iterative, the limit keeps keys (and their reader) sane.
inline constexpr std::size_t kMaxTermDepth = 1000;

// Encodes `term` into `builder` (which must be empty) and returns the key.
// Throws std::invalid_argument naming the term if it cannot be a key.
//
// `holds_references`, when given, is set when the term contains references
// or funs. A key holds their external bytes, which decode back to the same
// live object only while the original exists (a magic reference: a NIF
// resource, an atomics or counters ref, possibly inside a fun's
// environment), so whoever keeps such a key must keep the term alive too.
core::TermKey make_term_key(ErlNifEnv* env, ERL_NIF_TERM term, core::TermKeyBuilder& builder,
                            bool* holds_references = nullptr);

// A per-thread builder, so encoding a key allocates nothing in steady state.
core::TermKeyBuilder& thread_term_key_builder();

// Rebuilds the term a key was made from.
ERL_NIF_TERM make_term_from_key(ErlNifEnv* env, core::TermKeyView key);

// Rebuilds the terms of many keys into `out` (keys.size() of them), with one
// set of buffers for all.
void make_terms_from_keys(ErlNifEnv* env, std::span<const core::TermKeyView> keys,
                          ERL_NIF_TERM* out);

}  // namespace switchboard::nif
