// NIFs that exercise the NIF layer itself: error mapping, resource
// lifetimes, reloads and the three ways of keeping work off a scheduler.
// They back the foundation's ExUnit tests and the scheduler-latency probe.
#include <memory>

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

// Sums a list of integers; shared by the three scheduling variants.
// Returns false when an element is not a 64-bit integer.
struct ListSum {
  int64_t total = 0;
  bool step(ErlNifEnv* env, ERL_NIF_TERM& list) {
    ERL_NIF_TERM head;
    ErlNifSInt64 value;
    if (!enif_get_list_cell(env, list, &head, &list) || !enif_get_int64(env, head, &value)) {
      throw bad_argument(env, "a list of integers", head);
    }
    total += value;
    return true;
  }
};

// 1. Yielding: argv = [list, acc, slices]; continues itself until the list is empty.
ERL_NIF_TERM diag_sum_yielding_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ERL_NIF_TERM list = argv[0];
  ErlNifSInt64 accumulated, slices;
  if (!enif_get_int64(env, argv[1], &accumulated) || !enif_get_int64(env, argv[2], &slices)) {
    throw std::invalid_argument("corrupt continuation state");
  }
  if (!enif_is_list(env, list)) throw bad_argument(env, "a list of integers", list);
  ListSum sum{accumulated};
  TimeSlice slice(env);
  unsigned steps = 0;
  while (!enif_is_empty_list(env, list)) {
    sum.step(env, list);
    if (++steps % 256 == 0 && slice.spent()) {
      const ERL_NIF_TERM next[] = {list, enif_make_int64(env, sum.total),
                                   enif_make_int64(env, slices + 1)};
      return yield(env, "diag_sum_yielding", raw_entry<diag_sum_yielding_continue>, 3, next);
    }
  }
  return enif_make_tuple2(env, enif_make_int64(env, sum.total), enif_make_int64(env, slices + 1));
}

ERL_NIF_TERM diag_sum_yielding(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  const ERL_NIF_TERM start[] = {argv[0], enif_make_int64(env, 0), enif_make_int64(env, 0)};
  return diag_sum_yielding_continue(env, 3, start);
}
SWITCHBOARD_RAW_NIF(diag_sum_yielding, 1, 0);

// 2. Dirty CPU: the whole list in one go, off the normal schedulers.
ERL_NIF_TERM diag_sum_dirty_run(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ERL_NIF_TERM list = argv[0];
  if (!enif_is_list(env, list)) throw bad_argument(env, "a list of integers", list);
  ListSum sum;
  while (!enif_is_empty_list(env, list)) sum.step(env, list);
  return enif_make_tuple2(env, enif_make_int64(env, sum.total), thread_kind(env));
}

ERL_NIF_TERM diag_sum_dirty(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return run_dirty_cpu(env, "diag_sum_dirty", raw_entry<diag_sum_dirty_run>, argc, argv);
}
SWITCHBOARD_RAW_NIF(diag_sum_dirty, 1, 0);

// 3. Native thread: returns a ref at once; the thread replies {Ref, {Sum, native_thread}}.
ERL_NIF_TERM diag_sum_threaded(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  if (!enif_is_list(env, argv[0])) throw bad_argument(env, "a list of integers", argv[0]);
  auto job = std::make_unique<ThreadJob>();
  if (!enif_self(env, &job->reply_to)) throw std::runtime_error("not called from a process");
  const ERL_NIF_TERM tag = enif_make_ref(env);
  job->tag = job->env.copy(tag);
  const ERL_NIF_TERM list = job->env.copy(argv[0]);
  job->work = [list](ErlNifEnv* thread_env) {
    ERL_NIF_TERM rest = list;
    ListSum sum;
    while (!enif_is_empty_list(thread_env, rest)) sum.step(thread_env, rest);
    return enif_make_tuple2(thread_env, enif_make_int64(thread_env, sum.total),
                            thread_kind(thread_env));
  };
  ReplyThread::instance().submit(std::move(job));
  return tag;
}
SWITCHBOARD_RAW_NIF(diag_sum_threaded, 1, 0);

}  // namespace
}  // namespace switchboard::nif
