// The test library's NIFs (Switchboard.Test.NIF, never in the product):
// they exercise the NIF boundary itself (error mapping, every decoder and
// encoder, resource lifetimes and monitors, reloads) and the three ways of
// keeping work off a scheduler, including a deliberately blocking NIF that
// the scheduler probe must catch. They back test/switchboard/nif_test.exs
// and the probe's control rows in bench/.
#include <algorithm>
#include <array>
#include <ctime>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "core/byte_search.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {
namespace {

ERL_NIF_TERM& atom_destroyed = register_atom("switchboard_probe_destroyed");
ERL_NIF_TERM& atom_down = register_atom("switchboard_watch_down");
ERL_NIF_TERM& atom_normal = register_atom("normal");
ERL_NIF_TERM& atom_dirty_cpu = register_atom("dirty_cpu");
ERL_NIF_TERM& atom_dirty_io = register_atom("dirty_io");
ERL_NIF_TERM& atom_native_thread = register_atom("native_thread");
ERL_NIF_TERM& atom_too_large = register_atom("too_large");
ERL_NIF_TERM& atom_odd = register_atom("odd");

ERL_NIF_TERM thread_kind() {
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

// ---------------------------------------------------------------------------
// Error mapping

int64_t diag_add(ErlNifEnv*, int64_t a, int64_t b) {
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) {
    throw std::overflow_error("integer overflow in diag_add");
  }
  return a + b;
}
SWITCHBOARD_NIF(diag_add, 0);

// CPU time of the whole VM (every thread) in ns, for benches that count CPU
// rather than wall time on a shared machine (statistics(:runtime) is in ms).
int64_t diag_process_cpu_ns(ErlNifEnv*) {
  timespec now{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now) != 0) {
    throw std::runtime_error("clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
  }
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}
SWITCHBOARD_NIF(diag_process_cpu_ns, 0);

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
    case 4:
      throw bad_argument(env, "a term made in the NIF", enif_make_tuple2(env, atom_odd, atom_odd));
    default:
      return atoms::ok;
  }
}
SWITCHBOARD_NIF(diag_raise, 0);

// ---------------------------------------------------------------------------
// Resources: a destructor probe and a process watcher.

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
SWITCHBOARD_RESOURCE(DestructorProbe, "DestructorProbe", "a destructor probe");

ResourcePtr<DestructorProbe> diag_probe_new(ErlNifEnv*, LocalPid owner, int64_t id) {
  return make_resource<DestructorProbe>(owner.pid, id);
}
SWITCHBOARD_NIF(diag_probe_new, 0);

int64_t diag_probe_id(ErlNifEnv*, ResourcePtr<DestructorProbe> probe) { return probe->id; }
SWITCHBOARD_NIF(diag_probe_id, 0);

int64_t diag_probe_id_borrowed(ErlNifEnv*, Borrowed<DestructorProbe> probe) { return probe->id; }
SWITCHBOARD_NIF(diag_probe_id_borrowed, 0);

// Watches a process; when it exits, `on_down` sends
// {switchboard_watch_down, Watched, Id} to the notified process.
struct ProcessWatch {
  ErlNifPid notify;
  int64_t id;
  ErlNifMonitor monitor{};
  ProcessWatch(ErlNifPid notify_pid, int64_t watch_id) : notify(notify_pid), id(watch_id) {}
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;

  void on_down(ErlNifEnv* caller, const ErlNifPid& pid, const ErlNifMonitor&) noexcept {
    OwnedEnv env;
    ErlNifPid watched = pid;
    enif_send(caller, &notify, env.get(),
              enif_make_tuple3(env.get(), atom_down, enif_make_pid(env.get(), &watched),
                               enif_make_int64(env.get(), id)));
  }
};
SWITCHBOARD_RESOURCE(ProcessWatch, "ProcessWatch", "a process watch");

// {:ok, watch} while `watched` lives, {:error, :noproc} when it is already dead.
std::variant<Ok<ResourcePtr<ProcessWatch>>, Error<ERL_NIF_TERM>> diag_watch(ErlNifEnv* env,
                                                                            LocalPid watched,
                                                                            LocalPid notify,
                                                                            int64_t id) {
  auto watch = make_resource<ProcessWatch>(notify.pid, id);
  if (!monitor_process(env, watch, watched.pid, &watch->monitor)) {
    return Error{enif_make_atom(env, "noproc")};
  }
  return Ok{watch};
}
SWITCHBOARD_NIF(diag_watch, 0);

// True when the monitor was still active (it is gone afterwards).
bool diag_unwatch(ErlNifEnv* env, ResourcePtr<ProcessWatch> watch) {
  return demonitor_process(env, watch, watch->monitor);
}
SWITCHBOARD_NIF(diag_unwatch, 0);

// ---------------------------------------------------------------------------
// Decoders and encoders, one NIF each.

NonNegative<uint32_t> diag_non_negative(ErlNifEnv*, NonNegative<uint32_t> value) { return value; }
SWITCHBOARD_NIF(diag_non_negative, 0);

enum class Level { fast, balanced, best };
}  // namespace

template <>
struct AtomEnum<Level> {
  static constexpr std::array values{std::pair{Level::fast, "fast"},
                                     std::pair{Level::balanced, "balanced"},
                                     std::pair{Level::best, "best"}};
};

namespace {
// The level after `level` (best stays best): decodes and encodes the enum.
Level diag_next_level(ErlNifEnv*, Level level) {
  return level == Level::fast ? Level::balanced : Level::best;
}
SWITCHBOARD_NIF(diag_next_level, 0);

// {size, first byte or nil}: a byte span borrowed from a binary.
std::tuple<NonNegative<std::size_t>, std::optional<int64_t>> diag_bytes(
    ErlNifEnv*, std::span<const std::byte> bytes) {
  std::optional<int64_t> first;
  if (!bytes.empty()) first = std::to_integer<int64_t>(bytes.front());
  return {bytes.size(), first};
}
SWITCHBOARD_NIF(diag_bytes, 0);

struct Limits {
  NonNegative<std::size_t> max_depth;
  Level level;
  std::optional<bool> strict;
  static constexpr auto fields =
      std::tuple{field(&Limits::max_depth, "max_depth"), field(&Limits::level, "level"),
                 field(&Limits::strict, "strict")};
};

// {max_depth, level, strict or nil}, read from a map or a keyword list.
std::tuple<NonNegative<std::size_t>, Level, std::optional<bool>> diag_limits(ErlNifEnv*,
                                                                             Limits limits) {
  return {limits.max_depth, limits.level, limits.strict};
}
SWITCHBOARD_NIF(diag_limits, 0);

// 0 -> :ok, 1 -> {:ok, 1}, 2 -> {:ok, 2, "two"}, 3 -> {:error, :odd},
// 4 -> {:error, :odd, 4}: the Ok and Error encoders.
std::variant<Ok<>, Ok<int64_t>, Ok<int64_t, std::string>, Error<ERL_NIF_TERM>,
             Error<ERL_NIF_TERM, int64_t>>
diag_result(ErlNifEnv*, NonNegative<uint32_t> kind) {
  switch (kind) {
    case 0:
      return Ok{};
    case 1:
      return Ok{int64_t{1}};
    case 2:
      return Ok{int64_t{2}, std::string("two")};
    case 3:
      return Error{atom_odd};
    default:
      return Error{atom_odd, int64_t{kind}};
  }
}
SWITCHBOARD_NIF(diag_result, 0);

// ---------------------------------------------------------------------------
// Keeping work off normal schedulers. FNV-1a over a binary is a serial byte
// loop (about a byte per cycle), so a large binary is long, predictable work.
// The input is a refc binary, off the process heap, so the probe measures the
// NIF and not garbage collection.

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(std::span<const std::byte> bytes, uint64_t hash) {
  for (const std::byte byte : bytes) {
    hash ^= std::to_integer<uint64_t>(byte);
    hash *= kFnvPrime;
  }
  return hash;
}

using U64 = NonNegative<uint64_t>;

// 1. Yielding: hashes pieces of at most 4 KiB (and at most what the slice
// has left), and continues in itself with its progress as arguments
// whenever the slice is spent. Returns {hash, slices}; with a byte budget B
// and the clock off (set_work_budget(B)) a binary of N bytes takes exactly
// ceil(N / B) slices.
Scheduled<std::tuple<U64, U64>> diag_fnv1a_yielding_continue(Call& call, Binary input, U64 offset,
                                                             U64 hash, U64 slices) {
  if (offset > input.size()) throw std::invalid_argument("corrupt continuation state");
  constexpr std::size_t kPiece = 4096;
  WorkSlice slice(call);
  uint64_t position = offset;
  uint64_t state = hash;
  while (position < input.size()) {
    const std::size_t length =
        std::min({kPiece, input.size() - position, std::max<std::size_t>(slice.left(), 1)});
    state = fnv1a(input.bytes.subspan(position, length), state);
    position += length;
    if (slice.spend(length) && position < input.size()) {
      return call.yield<&diag_fnv1a_yielding_continue>(input, U64(position), U64(state),
                                                       U64(slices + 1));
    }
  }
  return std::tuple{U64(state), U64(slices + 1)};
}

Scheduled<std::tuple<U64, U64>> diag_fnv1a_yielding(Call& call, Binary input) {
  return diag_fnv1a_yielding_continue(call, input, 0, kFnvOffset, 0);
}
SWITCHBOARD_NIF(diag_fnv1a_yielding, 0);

// 2. Dirty CPU: a call on a normal scheduler asks to be run again, whole,
// on a dirty one. Returns {hash, thread kind}.
Scheduled<std::tuple<U64, ERL_NIF_TERM>> diag_fnv1a_dirty(Call& call,
                                                          std::span<const std::byte> bytes) {
  if (call.on_normal_scheduler()) return call.dirty();
  return std::tuple{U64(fnv1a(bytes, kFnvOffset)), thread_kind()};
}
SWITCHBOARD_NIF(diag_fnv1a_dirty, 0);

// {:error, :odd} for a negative number (on the normal scheduler); otherwise
// moves to a dirty scheduler and answers {:ok, thread kind}: a rescheduling
// NIF whose result is an Ok or an Error.
Scheduled<std::variant<Ok<ERL_NIF_TERM>, Error<ERL_NIF_TERM>>> diag_checked_dirty(Call& call,
                                                                                  int64_t value) {
  if (value < 0) return Error{atom_odd};
  if (call.on_normal_scheduler()) return call.dirty();
  return Ok{thread_kind()};
}
SWITCHBOARD_NIF(diag_checked_dirty, 0);

// Negative control for the scheduler probe: the whole binary on a normal
// scheduler with no yielding. Never do this; the probe must catch it.
std::tuple<U64, ERL_NIF_TERM> diag_fnv1a_blocking(ErlNifEnv*, std::span<const std::byte> bytes) {
  return {U64(fnv1a(bytes, kFnvOffset)), thread_kind()};
}
SWITCHBOARD_NIF(diag_fnv1a_blocking, 0);

// 3. Native thread: returns a ref at once; the thread replies
// {Ref, {Hash, native_thread}} (or {Ref, {error, Message}}).
ERL_NIF_TERM diag_fnv1a_threaded(ErlNifEnv* env, Binary input) {
  auto job = std::make_unique<ThreadJob>();
  if (!enif_self(env, &job->reply_to)) throw std::runtime_error("not called from a process");
  const ERL_NIF_TERM tag = enif_make_ref(env);
  job->tag = job->env.copy(tag);
  // Copying a binary term only bumps the refc binary's count.
  const ERL_NIF_TERM copy = job->env.copy(input.term);
  job->work = [copy](ErlNifEnv* thread_env) {
    Binary binary;
    Decoder<Binary>::decode(thread_env, copy, binary);
    return enif_make_tuple2(
        thread_env, enif_make_uint64(thread_env, fnv1a(binary.bytes, kFnvOffset)), thread_kind());
  };
  ReplyThread::instance().submit(std::move(job));
  return tag;
}
SWITCHBOARD_NIF(diag_fnv1a_threaded, 0);

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

ERL_NIF_TERM diag_enif_walk(ErlNifEnv* env, Term root) {
  std::vector<ERL_NIF_TERM> pending;
  pending.reserve(256);  // one allocation for the payloads measured
  pending.push_back(root.value);
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
SWITCHBOARD_NIF(diag_enif_walk, 0);

// The floors of Erlpack's encode and decode of small payloads through the
// VM's own codec (bench/erlpack.exs): the VM's encoder or decoder called from
// a NIF with nothing else, and the encoder followed by the seal search in the
// same call (what one call could do if a NIF could encode any term without
// holding its scheduler: it cannot, enif_term_to_binary never yields, so
// Erlpack.encode calls term_to_binary/1 and searches in a second call). No
// size checks: the benchmark passes payloads of a few KB at most.
ERL_NIF_TERM diag_term_to_binary(ErlNifEnv* env, Term term) {
  ErlNifBinary binary;
  if (!enif_term_to_binary(env, term.value, &binary)) throw std::bad_alloc();
  return enif_make_binary(env, &binary);
}
SWITCHBOARD_NIF(diag_term_to_binary, 0);

ERL_NIF_TERM diag_term_to_binary_searched(ErlNifEnv* env, Term term, Binary words) {
  ErlNifBinary binary;
  if (!enif_term_to_binary(env, term.value, &binary)) throw std::bad_alloc();
  const bool found = switchboard::core::contains_bytes(
      {binary.data, binary.size},
      {reinterpret_cast<const std::uint8_t*>(words.bytes.data()), words.size()});
  return found ? atoms::true_ : enif_make_binary(env, &binary);
}
SWITCHBOARD_NIF(diag_term_to_binary_searched, 0);

ERL_NIF_TERM diag_binary_to_term(ErlNifEnv* env, Binary binary) {
  ERL_NIF_TERM term;
  if (enif_binary_to_term(env, reinterpret_cast<const unsigned char*>(binary.bytes.data()),
                          binary.size(), &term, ERL_NIF_BIN2TERM_SAFE) == 0) {
    return atoms::error;
  }
  return term;
}
SWITCHBOARD_NIF(diag_binary_to_term, 0);

}  // namespace
}  // namespace switchboard::nif
