// NIFs that exercise the NIF layer itself: error mapping, resource
// lifetimes, reloads and the three ways of keeping work off a scheduler.
// They back the foundation's ExUnit tests and the scheduler-latency probe.
#include <algorithm>
#include <memory>
#include <vector>

#include "core/memory.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {
namespace {

ERL_NIF_TERM& atom_destroyed = register_atom("switchboard_probe_destroyed");
ERL_NIF_TERM& atom_normal = register_atom("normal");
ERL_NIF_TERM& atom_dirty_cpu = register_atom("dirty_cpu");
ERL_NIF_TERM& atom_dirty_io = register_atom("dirty_io");
ERL_NIF_TERM& atom_native_thread = register_atom("native_thread");

ERL_NIF_TERM thread_kind(ErlNifEnv*) {
  switch (enif_thread_type()) {
    case ERL_NIF_THR_NORMAL_SCHEDULER:
      return atom_normal;
    case ERL_NIF_THR_DIRTY_CPU_SCHEDULER:
      return atom_dirty_cpu;
    case ERL_NIF_THR_DIRTY_IO_SCHEDULER:
      return atom_dirty_io;
    default:
      return atom_native_thread;
  }
}

// Sends {switchboard_probe_destroyed, Id} to its owner when the VM destroys it.
struct DestructorProbe {
  ErlNifPid owner;
  int64_t id;
  DestructorProbe(ErlNifPid owner_pid, int64_t probe_id) : owner(owner_pid), id(probe_id) {}
  DestructorProbe(const DestructorProbe&) = delete;
  DestructorProbe& operator=(const DestructorProbe&) = delete;
  ~DestructorProbe() {
    OwnedEnv env;
    enif_send(nullptr, &owner, env.get(),
              enif_make_tuple2(env.get(), atom_destroyed, enif_make_int64(env.get(), id)));
  }
};
SWITCHBOARD_RESOURCE(DestructorProbe, "DestructorProbe");

int64_t diag_add(ErlNifEnv*, int64_t a, int64_t b) {
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) {
    throw std::overflow_error("integer overflow in diag_add");
  }
  return a + b;
}
SWITCHBOARD_NIF(diag_add, 0);

// Throws the exception named by `kind` so tests can pin each mapping.
ERL_NIF_TERM diag_raise(ErlNifEnv* env, int64_t kind) {
  switch (kind) {
    case 0:
      throw std::invalid_argument("invalid argument from C++");
    case 1:
      throw std::runtime_error("runtime error from C++");
    case 2:
      throw std::bad_alloc();
    case 3:
      throw 42;  // not a std::exception
    default:
      return atoms::ok;
  }
  (void)env;
}
SWITCHBOARD_NIF(diag_raise, 0);

ResourcePtr<DestructorProbe> diag_probe_new(ErlNifEnv*, LocalPid owner, int64_t id) {
  return make_resource<DestructorProbe>(owner.pid, id);
}
SWITCHBOARD_NIF(diag_probe_new, 0);

int64_t diag_probe_id(ErlNifEnv*, ResourcePtr<DestructorProbe> probe) { return probe->id; }
SWITCHBOARD_NIF(diag_probe_id, 0);

ERL_NIF_TERM diag_library_info(ErlNifEnv* env) {
  return enif_make_tuple3(env, enif_make_int(env, instance_count()),
                          enif_make_int(env, upgrade_count()),
                          enif_make_uint64(env, core::allocated_bytes()));
}
SWITCHBOARD_NIF(diag_library_info, 0);

// Jobs the reply thread has finished (replies and detached work).
int64_t diag_reply_thread_completed(ErlNifEnv*) {
  return static_cast<int64_t>(ReplyThread::instance().completed());
}
SWITCHBOARD_NIF(diag_reply_thread_completed, 0);

// FNV-1a over a binary: a serial byte loop (about a byte per cycle), so a
// large binary is long, predictable work. The input is a refc binary, off
// the process heap, so the probe measures the NIF and not garbage collection.
constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(const unsigned char* data, std::size_t size, uint64_t hash) {
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= kFnvPrime;
  }
  return hash;
}

ErlNifBinary binary_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ErlNifBinary binary;
  if (!enif_inspect_binary(env, term, &binary)) throw bad_argument(env, "a binary", term);
  return binary;
}

// 1. Yielding: argv = [binary, offset, hash, slices]; hashes 4 KiB chunks
// and continues itself whenever the slice is spent.
ERL_NIF_TERM diag_fnv1a_yielding_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  const ErlNifBinary binary = binary_argument(env, argv[0]);
  ErlNifUInt64 offset, hash, slices;
  if (!enif_get_uint64(env, argv[1], &offset) || !enif_get_uint64(env, argv[2], &hash) ||
      !enif_get_uint64(env, argv[3], &slices) || offset > binary.size) {
    throw std::invalid_argument("corrupt continuation state");
  }
  constexpr std::size_t kChunk = 4096;
  TimeSlice slice(env);
  while (offset < binary.size) {
    const std::size_t length = std::min<std::size_t>(kChunk, binary.size - offset);
    hash = fnv1a(binary.data + offset, length, hash);
    offset += length;
    if (offset < binary.size && slice.spent()) {
      const ERL_NIF_TERM next[] = {argv[0], enif_make_uint64(env, offset),
                                   enif_make_uint64(env, hash), enif_make_uint64(env, slices + 1)};
      return yield(env, "diag_fnv1a_yielding", raw_entry<diag_fnv1a_yielding_continue>, 4, next);
    }
  }
  return enif_make_tuple2(env, enif_make_uint64(env, hash), enif_make_uint64(env, slices + 1));
}

ERL_NIF_TERM diag_fnv1a_yielding(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  binary_argument(env, argv[0]);
  const ERL_NIF_TERM start[] = {argv[0], enif_make_uint64(env, 0),
                                enif_make_uint64(env, kFnvOffset), enif_make_uint64(env, 0)};
  return diag_fnv1a_yielding_continue(env, 4, start);
}
SWITCHBOARD_RAW_NIF(diag_fnv1a_yielding, 1, 0);

ERL_NIF_TERM fnv1a_with_thread_kind(ErlNifEnv* env, ERL_NIF_TERM term) {
  const ErlNifBinary binary = binary_argument(env, term);
  return enif_make_tuple2(env, enif_make_uint64(env, fnv1a(binary.data, binary.size, kFnvOffset)),
                          thread_kind(env));
}

// 2. Dirty CPU: the whole binary in one go, off the normal schedulers.
ERL_NIF_TERM diag_fnv1a_dirty_run(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  return fnv1a_with_thread_kind(env, argv[0]);
}

ERL_NIF_TERM diag_fnv1a_dirty(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  binary_argument(env, argv[0]);
  return run_dirty_cpu(env, "diag_fnv1a_dirty", raw_entry<diag_fnv1a_dirty_run>, argc, argv);
}
SWITCHBOARD_RAW_NIF(diag_fnv1a_dirty, 1, 0);

// Negative control for the scheduler probe: the whole binary on a normal
// scheduler with no yielding. Never do this; the probe must catch it.
ERL_NIF_TERM diag_fnv1a_blocking(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  return fnv1a_with_thread_kind(env, argv[0]);
}
SWITCHBOARD_RAW_NIF(diag_fnv1a_blocking, 1, 0);

// 3. Native thread: returns a ref at once; the thread replies
// {Ref, {Hash, native_thread}} (or {Ref, {error, Message}}).
ERL_NIF_TERM diag_fnv1a_threaded(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  binary_argument(env, argv[0]);
  auto job = std::make_unique<ThreadJob>();
  if (!enif_self(env, &job->reply_to)) throw std::runtime_error("not called from a process");
  const ERL_NIF_TERM tag = enif_make_ref(env);
  job->tag = job->env.copy(tag);
  // Copying a binary term only bumps the refc binary's count.
  const ERL_NIF_TERM input = job->env.copy(argv[0]);
  job->work = [input](ErlNifEnv* thread_env) { return fnv1a_with_thread_kind(thread_env, input); };
  ReplyThread::instance().submit(std::move(job));
  return tag;
}
SWITCHBOARD_RAW_NIF(diag_fnv1a_threaded, 1, 0);

// The floor of any encoder built on the public NIF API: visits every node of
// a term with the calls such an encoder cannot avoid and writes nothing.
// Binaries, the most common node of gateway payloads, are read with one call
// (enif_inspect_binary fails fast on anything else); other nodes need
// enif_term_type and the reader for their type (enif_get_int64,
// enif_get_list_cell, enif_get_tuple, the map iterator). bench/erlpack.exs
// times it beside term_to_binary, which reads terms directly. Returns the
// node count, or too_large past kMaxWalkNodes (it runs on a normal scheduler
// and must stay well under a millisecond).
constexpr std::size_t kMaxWalkNodes = 100000;
ERL_NIF_TERM& atom_too_large = register_atom("too_large");

ERL_NIF_TERM diag_enif_walk(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  std::vector<ERL_NIF_TERM> pending;
  pending.reserve(256);  // one allocation for the payloads measured
  pending.push_back(argv[0]);
  std::size_t nodes = 0;
  while (!pending.empty()) {
    if (++nodes > kMaxWalkNodes) return atom_too_large;
    ERL_NIF_TERM term = pending.back();
    pending.pop_back();
    ErlNifBinary binary;
    if (enif_inspect_binary(env, term, &binary)) continue;
    switch (enif_term_type(env, term)) {
      case ERL_NIF_TERM_TYPE_INTEGER: {
        ErlNifSInt64 value;
        enif_get_int64(env, term, &value);
        break;
      }
      case ERL_NIF_TERM_TYPE_FLOAT: {
        double value;
        enif_get_double(env, term, &value);
        break;
      }
      case ERL_NIF_TERM_TYPE_LIST: {
        ERL_NIF_TERM head;
        while (enif_get_list_cell(env, term, &head, &term)) pending.push_back(head);
        break;
      }
      case ERL_NIF_TERM_TYPE_TUPLE: {
        int arity;
        const ERL_NIF_TERM* elements;
        enif_get_tuple(env, term, &arity, &elements);
        pending.insert(pending.end(), elements, elements + arity);
        break;
      }
      case ERL_NIF_TERM_TYPE_MAP: {
        ErlNifMapIterator iterator;
        if (!enif_map_iterator_create(env, term, &iterator, ERL_NIF_MAP_ITERATOR_FIRST)) break;
        ERL_NIF_TERM key, value;
        while (enif_map_iterator_get_pair(env, &iterator, &key, &value)) {
          pending.push_back(key);
          pending.push_back(value);
          enif_map_iterator_next(env, &iterator);
        }
        enif_map_iterator_destroy(env, &iterator);
        break;
      }
      default:  // atoms, bitstrings and the other immediates: the type is enough
        break;
    }
  }
  return enif_make_uint64(env, nodes);
}
SWITCHBOARD_RAW_NIF(diag_enif_walk, 1, 0);

}  // namespace
}  // namespace switchboard::nif
