// Fan-out glue: delivers one message to many local pids with enif_send.
//
//   fanout_send/2     inline: the calling process walks the list and sends,
//                     in time slices with enif_schedule_nif between them.
//   fanout_offload/5  copies the fan-out into a job for the caller's sender
//                     thread (a lock-free queue per thread) and returns a
//                     ticket at once; the thread sends from outside the
//                     schedulers.
//   fanout_group_*    a receiver group: a mutable set of local pids kept
//                     natively, so a fan-out to it costs the caller O(1)
//                     (offload) or no list walk (inline).
//   fanout_partition/2, fanout_share_send/2
//                     a node's partitioner: splits a fan-out from another
//                     node into native shares (one pass, no Elixir lists),
//                     and its worker processes send to one share each.
//
// enif_send reaches local pids only, so remote pids are handed back to
// Elixir (inline) or to a sender process (offload), which route them to the
// partitioner on their node. Receivers always get the message term itself.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/fanout/shares.hpp"
#include "core/fanout/worker_pool.hpp"
#include "core/memory.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"
#include "nif/term_size.hpp"

namespace switchboard::nif {
namespace {

using core::fanout::ShareSplitter;
using core::fanout::Task;
using core::fanout::WorkerPool;
using PidVector = std::vector<ErlNifPid, core::Allocator<ErlNifPid>>;

ERL_NIF_TERM& atom_remote_envelope = register_atom("$switchboard_fanout_remote");
ERL_NIF_TERM& atom_not_list = register_atom("not_list");
ERL_NIF_TERM& atom_improper = register_atom("improper");
ERL_NIF_TERM& atom_bad_receiver = register_atom("bad_receiver");
ERL_NIF_TERM& atom_bad_member = register_atom("bad_member");

bool on_normal_scheduler() { return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER; }

// Receivers walked (or small messages sent) between two looks at the clock.
constexpr unsigned kCheckEvery = 16;
// Message bytes copied between two looks at the clock: a send copies the
// message into its receiver, so a larger message is checked more often,
// after every send from about 1 KB on.
constexpr std::size_t kCheckBytes = 16 * 1024;
// A message whose one copy could take most of a time slice by itself (about
// 0.1 ms per 256 KB) is sent from a dirty CPU scheduler: a 1M-element
// message copied to 32 receivers is tens of ms however often the clock is
// read.
constexpr std::size_t kDirtyMessageBytes = 256 * 1024;
// How long a fan-out holds its scheduler before yielding: short, because a
// process woken on the same scheduler (the receivers, a timer) waits for it.
constexpr std::chrono::microseconds kSendSlice{200};
// How much nicer than the schedulers the sender threads are.
constexpr int kNiceOffset = 10;

// How a fan-out of one message paces itself, from the bytes a send copies
// (binaries over 64 bytes are shared, not copied).
struct SendPace {
  unsigned check_every;  // sends between two looks at the clock
  bool dirty;            // too large for a normal scheduler at all
};

SendPace pace_for(ErlNifEnv* env, ERL_NIF_TERM message) {
  const std::size_t bytes = term_bytes_up_to(env, message, kDirtyMessageBytes, BinaryBytes::shared);
  const std::size_t every =
      std::clamp<std::size_t>(kCheckBytes / std::max<std::size_t>(bytes, 1), 1, kCheckEvery);
  return {static_cast<unsigned>(every), bytes > kDirtyMessageBytes};
}

// ---------------------------------------------------------------------------
// Sender threads: started with the library, stopped before it is unloaded.

WorkerPool& sender_pool() {
  // Never destroyed, like the reply thread: stop() joins the threads.
  static WorkerPool* pool = new WorkerPool();
  return *pool;
}

// One core is left to the schedulers' own work; at most eight threads.
std::size_t sender_thread_count() {
  const unsigned cpus = std::thread::hardware_concurrency();
  return std::clamp<std::size_t>(cpus > 1 ? cpus - 1 : 1, 1, 8);
}

// Sender threads yield the CPU to the schedulers: at the same OS priority a
// busy sender thread roughly doubles the scheduler probe's p99 wake-up delay
// on a loaded machine (bench/fanout.exs); at +19 it can starve. Linux
// applies a thread's nice value to that thread only.
void lower_thread_priority() {
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  if (errno == 0) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), current + kNiceOffset);
}

void start_sender_threads() {
  try {
    sender_pool().start(sender_thread_count(), &lower_thread_priority);
  } catch (...) {
    // Without threads, inline fan-outs still work; offload raises.
  }
}

void stop_sender_threads() { sender_pool().stop(); }

const bool sender_threads_registered = [] {
  register_thread_service({&start_sender_threads, &stop_sender_threads});
  return true;
}();

// Sends a copy of `message` (a term of a process-independent env) from a
// sender thread. With no message env, enif_send copies the term straight
// into one new message: about twice as fast as building the copy in a
// scratch env and handing that over. False when the receiver is not alive.
bool send_copy(const ErlNifPid& pid, ERL_NIF_TERM message) {
  return enif_send(nullptr, &pid, nullptr, message) != 0;
}

// ---------------------------------------------------------------------------
// Receiver lists

std::invalid_argument not_a_list(ErlNifEnv* env, ERL_NIF_TERM term) {
  return bad_argument(env, "a list of pids", term);
}

std::invalid_argument improper_list(ErlNifEnv* env, ERL_NIF_TERM tail) {
  return std::invalid_argument("expected a proper list of pids, got a list ending in: " +
                               format_term(env, tail));
}

std::invalid_argument bad_receiver(ErlNifEnv* env, ERL_NIF_TERM item) {
  return bad_argument(env, "a pid or nil in the receiver list", item);
}

enum class Receiver { local, remote, none, invalid };

// Pids are tested for first: enif_is_identical on a boxed term (a remote
// pid) and an atom takes a full term comparison, as long as the rest of the
// test for a remote pid.
Receiver classify(ErlNifEnv* env, ERL_NIF_TERM item, ErlNifPid& pid) {
  if (enif_get_local_pid(env, item, &pid)) return Receiver::local;
  if (enif_is_pid(env, item)) return Receiver::remote;
  if (enif_is_identical(item, atoms::nil)) return Receiver::none;
  return Receiver::invalid;
}

// The one walk over a receiver list: calls visit(kind, item, pid) for each
// entry (raising on a bad one) and looks at the clock every `check_every`
// entries. Returns the tail still to walk once the time slice is spent (the
// caller yields with it), or nothing when the whole proper list is done. On
// a dirty scheduler it walks the whole list.
template <class Visit>
std::optional<ERL_NIF_TERM> walk_receivers(ErlNifEnv* env, ERL_NIF_TERM list, Visit&& visit,
                                           unsigned check_every = kCheckEvery) {
  TimeSlice slice(env, kSendSlice);
  if (!on_normal_scheduler()) check_every = 0;  // never equal to a count from 1
  unsigned since_check = 0;
  ERL_NIF_TERM head;
  while (enif_get_list_cell(env, list, &head, &list)) {
    ErlNifPid pid;
    const Receiver kind = classify(env, head, pid);
    if (kind == Receiver::invalid) throw bad_receiver(env, head);
    visit(kind, head, pid);
    if (++since_check == check_every) {
      since_check = 0;
      if (slice.spent()) return list;
    }
  }
  if (!enif_is_empty_list(env, list)) throw improper_list(env, list);
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Inline fan-out

ERL_NIF_TERM fanout_send_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

// Remote entries shared with the caller's list before it is copied: copying
// this many list cells takes well under 1 ms, so the copy, when it comes,
// fits in a time slice.
constexpr uint64_t kMaxSharedRemote = 65536;

// The remote pids an inline walk has met so far. While every entry walked
// is a remote pid (a fan-out to other nodes only), they are the walked
// prefix of the original list and nothing is built: the answer is then the
// caller's own list, shared, not a copy (building a list of 4,000 remote
// pids costs more than the rest of the walk). The first other entry, or a
// prefix longer than kMaxSharedRemote, turns the prefix into a list of its
// own.
struct RemoteAcc {
  ERL_NIF_TERM original;  // the list as passed in, or nil once copied
  uint64_t shared;        // entries of `original` walked, all remote
  ERL_NIF_TERM list;      // remote pids met since the copy (reversed)
  bool sharing;           // the same as `original` not being nil, but cheaper

  RemoteAcc(ERL_NIF_TERM original_, uint64_t shared_, ERL_NIF_TERM list_)
      : original(original_),
        shared(shared_),
        list(list_),
        sharing(!enif_is_identical(original_, atoms::nil)) {}

  void add(ErlNifEnv* env, ERL_NIF_TERM pid) {
    if (sharing && shared < kMaxSharedRemote) {
      ++shared;
      return;
    }
    stop_sharing(env);
    list = enif_make_list_cell(env, pid, list);
  }

  void stop_sharing(ErlNifEnv* env) {
    if (!sharing) return;
    ERL_NIF_TERM head, rest = original;
    for (uint64_t i = 0; i < shared && enif_get_list_cell(env, rest, &head, &rest); ++i) {
      list = enif_make_list_cell(env, head, list);
    }
    original = atoms::nil;
    sharing = false;
  }

  ERL_NIF_TERM result() const { return sharing ? original : list; }
};

// Walks `list` from the calling process: sends to local pids, counts nils
// and dead pids, gathers remote pids. Yields whenever the time slice is
// spent, carrying its progress in argv: [Tail, Message, Delivered, Skipped,
// Original | nil, Shared, RemoteList, CheckEvery].
ERL_NIF_TERM run_inline(ErlNifEnv* env, ERL_NIF_TERM list, ERL_NIF_TERM message, uint64_t delivered,
                        uint64_t skipped, RemoteAcc remote, unsigned check_every) {
  const auto rest = walk_receivers(
      env, list,
      [&](Receiver kind, ERL_NIF_TERM item, ErlNifPid& pid) {
        if (kind == Receiver::remote) {
          remote.add(env, item);
          return;
        }
        remote.stop_sharing(env);
        if (kind == Receiver::local && enif_send(env, &pid, nullptr, message)) {
          // The message is copied from the caller's heap into the receiver's.
          ++delivered;
        } else {
          ++skipped;  // nil, or a dead local pid
        }
      },
      check_every);
  if (rest) {
    const ERL_NIF_TERM next[] = {*rest,
                                 message,
                                 enif_make_uint64(env, delivered),
                                 enif_make_uint64(env, skipped),
                                 remote.original,
                                 enif_make_uint64(env, remote.shared),
                                 remote.list,
                                 enif_make_uint(env, check_every)};
    return yield(env, "fanout_send", raw_entry<fanout_send_continue>, 8, next);
  }
  return enif_make_tuple3(env, enif_make_uint64(env, delivered), enif_make_uint64(env, skipped),
                          remote.result());
}

ERL_NIF_TERM fanout_send_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ErlNifUInt64 delivered, skipped, shared;
  unsigned check_every;
  if (!enif_get_uint64(env, argv[2], &delivered) || !enif_get_uint64(env, argv[3], &skipped) ||
      !enif_get_uint64(env, argv[5], &shared) || !enif_get_uint(env, argv[7], &check_every)) {
    throw std::runtime_error("corrupt fan-out continuation");
  }
  return run_inline(env, argv[0], argv[1], delivered, skipped, RemoteAcc{argv[4], shared, argv[6]},
                    check_every);
}

// fanout_send(Pids, Message) -> {Delivered, Skipped, RemotePids}
//
// RemotePids is Pids itself when every entry is a remote pid. A large
// message is sent from a dirty CPU scheduler.
ERL_NIF_TERM fanout_send(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  if (!enif_is_list(env, argv[0])) throw not_a_list(env, argv[0]);
  const SendPace pace = pace_for(env, argv[1]);
  if (pace.dirty && on_normal_scheduler()) {
    return run_dirty_cpu(env, "fanout_send", raw_entry<fanout_send>, argc, argv);
  }
  return run_inline(env, argv[0], argv[1], 0, 0, RemoteAcc{argv[0], 0, enif_make_list(env, 0)},
                    pace.check_every);
}
SWITCHBOARD_RAW_NIF(fanout_send, 2, 0);

// ---------------------------------------------------------------------------
// Offloaded fan-out

// Done once the job's local receivers have the message and its remote
// receivers have been handed to the sender process.
struct FanoutTicket {
  std::atomic<bool> done{false};
};
SWITCHBOARD_RESOURCE(FanoutTicket, "FanoutTicket");

struct Notify {
  ErlNifPid pid;
  ERL_NIF_TERM ref;  // in the job's env
};

// One offloaded fan-out: built by the caller (which walks and checks the
// list), run by the caller's home sender thread.
class OffloadJob : public Task {
 public:
  explicit OffloadJob(ResourcePtr<FanoutTicket> ticket)
      : remote(enif_make_list(forward.get(), 0)), ticket_(std::move(ticket)) {}

  OwnedEnv env;  // message, packed payload, notify ref
  ERL_NIF_TERM message = 0;
  std::optional<ERL_NIF_TERM> packed;  // the encoded message, for remote nodes
  std::optional<ErlNifPid> sender;
  std::optional<Notify> notify;
  PidVector local;
  std::shared_ptr<const PidVector> group;  // a receiver group's members, instead of `local`
  OwnedEnv forward;                        // the remote pids, sent on to the sender process
  ERL_NIF_TERM remote;                     // in forward
  uint64_t remote_count = 0;
  uint64_t nils = 0;

  void run() noexcept override {
    uint64_t delivered = 0;
    uint64_t skipped = nils;
    try {
      deliver(delivered, skipped);
    } catch (...) {
      // Out of memory part-way: what was sent is counted.
    }
    ticket_->done.store(true, std::memory_order_release);
    if (notify) report(delivered, skipped);
  }

 private:
  void deliver(uint64_t& delivered, uint64_t& skipped) {
    // Remote nodes first: their partitioners work while we send locally.
    if (remote_count > 0 && sender) {
      ErlNifEnv* f = forward.get();
      const ERL_NIF_TERM envelope =
          enif_make_tuple4(f, atom_remote_envelope, remote, packed ? atoms::true_ : atoms::false_,
                           enif_make_copy(f, packed ? *packed : message));
      enif_send(nullptr, &*sender, f, envelope);
    } else {
      skipped += remote_count;  // nowhere to route them (a partitioner's share)
    }
    for (const ErlNifPid& pid : group ? *group : local) {
      if (send_copy(pid, message)) {
        ++delivered;
      } else {
        ++skipped;
      }
    }
  }

  void report(uint64_t delivered, uint64_t skipped) noexcept {
    try {
      OwnedEnv reply;
      ErlNifEnv* r = reply.get();
      enif_send(nullptr, &notify->pid, r,
                enif_make_tuple3(r, enif_make_copy(r, notify->ref), enif_make_uint64(r, delivered),
                                 enif_make_uint64(r, skipped)));
    } catch (...) {
    }
  }

  ResourcePtr<FanoutTicket> ticket_;
};

// A job being built, across the caller's yields.
struct OffloadDraft {
  std::unique_ptr<OffloadJob> job;
};
SWITCHBOARD_RESOURCE(OffloadDraft, "FanoutOffloadDraft");

ERL_NIF_TERM fanout_offload_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

// NotifyOrNil: {Pid, Ref} asks the thread for {Ref, Delivered, Skipped}.
std::optional<Notify> notify_argument(ErlNifEnv* env, OwnedEnv& into, ERL_NIF_TERM term) {
  if (enif_is_identical(term, atoms::nil)) return std::nullopt;
  int arity;
  const ERL_NIF_TERM* items;
  ErlNifPid pid;
  if (!enif_get_tuple(env, term, &arity, &items) || arity != 2 ||
      !enif_get_local_pid(env, items[0], &pid)) {
    throw bad_argument(env, "{pid, ref} or nil", term);
  }
  return Notify{pid, into.copy(items[1])};
}

// One home thread per caller: its offloaded fan-outs run in order.
void submit_for_caller(ErlNifEnv* env, std::unique_ptr<OffloadJob> job) {
  ErlNifPid self;
  if (!enif_self(env, &self)) throw std::runtime_error("fan-out called outside a process");
  const ERL_NIF_TERM caller = enif_make_pid(env, &self);
  sender_pool().submit(enif_hash(ERL_NIF_PHASH2, caller, 0), std::move(job));
}

// Walks the list once: checks every entry, collects local pids, copies remote
// pids for the sender process, counts nils. Nothing is queued unless the
// whole list is good. argv of a continuation: [Tail, Draft, Ticket].
ERL_NIF_TERM build_offload(ErlNifEnv* env, ERL_NIF_TERM list, ResourcePtr<OffloadDraft> draft,
                           ERL_NIF_TERM ticket) {
  OffloadJob& job = *draft->job;
  ErlNifEnv* f = job.forward.get();
  const auto rest =
      walk_receivers(env, list, [&](Receiver kind, ERL_NIF_TERM item, ErlNifPid& pid) {
        switch (kind) {
          case Receiver::local:
            job.local.push_back(pid);
            break;
          case Receiver::remote:
            job.remote = enif_make_list_cell(f, enif_make_copy(f, item), job.remote);
            ++job.remote_count;
            break;
          default:
            ++job.nils;
        }
      });
  if (rest) {
    const ERL_NIF_TERM next[] = {*rest, draft.make_term(env), ticket};
    return yield(env, "fanout_offload", raw_entry<fanout_offload_continue>, 3, next);
  }

  const uint64_t local = job.local.size();
  const uint64_t remote = job.remote_count;
  const uint64_t nils = job.nils;
  submit_for_caller(env, std::move(draft->job));
  return enif_make_tuple4(env, ticket, enif_make_uint64(env, local), enif_make_uint64(env, remote),
                          enif_make_uint64(env, nils));
}

ERL_NIF_TERM fanout_offload_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ResourcePtr<OffloadDraft> draft;
  if (!Decoder<ResourcePtr<OffloadDraft>>::decode(env, argv[1], draft) || !draft->job) {
    throw std::runtime_error("corrupt fan-out continuation");
  }
  return build_offload(env, argv[0], std::move(draft), argv[2]);
}

// fanout_offload(Pids, Message, PackedOrNil, SenderOrNil, NotifyOrNil)
//   -> {Ticket, Local, Remote, Nils}
//
// Checks and collects the list in the caller (yielding on long lists), then
// queues the job on the caller's home sender thread and returns. Remote
// pids go to Sender (if given) as
// {'$switchboard_fanout_remote', Pids, Packed, PackedOrMessage}. With
// Notify = {Pid, Ref} the thread sends {Ref, Delivered, Skipped} when done.
ERL_NIF_TERM fanout_offload(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  if (!enif_is_list(env, argv[0])) throw not_a_list(env, argv[0]);
  if (!sender_pool().running()) throw std::runtime_error("fan-out sender threads are not running");
  // The caller copies the message into the job: a large one, dirty.
  if (on_normal_scheduler() && pace_for(env, argv[1]).dirty) {
    return run_dirty_cpu(env, "fanout_offload", raw_entry<fanout_offload>, argc, argv);
  }

  auto ticket = make_resource<FanoutTicket>();
  auto job = std::make_unique<OffloadJob>(ticket);
  job->message = job->env.copy(argv[1]);
  if (!enif_is_identical(argv[2], atoms::nil)) {
    if (!enif_is_binary(env, argv[2])) throw bad_argument(env, "a binary or nil", argv[2]);
    job->packed = job->env.copy(argv[2]);  // a refc binary: shared, not copied
  }
  if (!enif_is_identical(argv[3], atoms::nil)) {
    ErlNifPid sender;
    if (!enif_get_local_pid(env, argv[3], &sender)) {
      throw bad_argument(env, "a local pid or nil", argv[3]);
    }
    job->sender = sender;
  }
  job->notify = notify_argument(env, job->env, argv[4]);
  auto draft = make_resource<OffloadDraft>();
  draft->job = std::move(job);
  return build_offload(env, argv[0], std::move(draft), ticket.make_term(env));
}
SWITCHBOARD_RAW_NIF(fanout_offload, 5, 0);

bool fanout_ticket_done(ErlNifEnv*, ResourcePtr<FanoutTicket> ticket) {
  return ticket->done.load(std::memory_order_acquire);
}
SWITCHBOARD_NIF(fanout_ticket_done, 0);

// ---------------------------------------------------------------------------
// Receiver groups

// A mutable set of local pids. Fan-outs take a snapshot of the members (a
// shared pointer, O(1)); a change while a snapshot is out copies the members
// first (copy on write), so a fan-out in flight always sees the set as it
// was when it started. The mutex is only held for O(1) work, or for one copy
// of the pid array on a change after a fan-out (about 0.1 ms at 100k).
struct FanoutGroup {
  using Index =
      std::unordered_map<ERL_NIF_TERM, std::size_t, std::hash<ERL_NIF_TERM>, std::equal_to<>,
                         core::Allocator<std::pair<const ERL_NIF_TERM, std::size_t>>>;

  std::mutex mutex;
  std::shared_ptr<PidVector> members = std::make_shared<PidVector>();
  Index index;  // a local pid is an immediate term: a stable key

  std::shared_ptr<const PidVector> snapshot() {
    std::lock_guard lock(mutex);
    return members;
  }

  std::size_t size() {
    std::lock_guard lock(mutex);
    return members->size();
  }

  bool contains(const ErlNifPid& pid) {
    std::lock_guard lock(mutex);
    return index.contains(pid.pid);
  }

  bool add(const ErlNifPid& pid) {
    std::lock_guard lock(mutex);
    if (index.contains(pid.pid)) return false;
    PidVector& writable = owned_members();
    index.emplace(pid.pid, writable.size());
    writable.push_back(pid);
    return true;
  }

  // Moves the last member into the removed one's place.
  bool remove(const ErlNifPid& pid) {
    std::lock_guard lock(mutex);
    const auto found = index.find(pid.pid);
    if (found == index.end()) return false;
    const std::size_t at = found->second;
    index.erase(found);
    PidVector& writable = owned_members();
    if (at + 1 != writable.size()) {
      writable[at] = writable.back();
      index[writable[at].pid] = at;
    }
    writable.pop_back();
    return true;
  }

 private:
  PidVector& owned_members() {
    if (members.use_count() > 1) members = std::make_shared<PidVector>(*members);
    return *members;
  }
};
SWITCHBOARD_RESOURCE(FanoutGroup, "FanoutGroup");

// Lists longer than this are added on a dirty scheduler.
constexpr unsigned kDirtyGroupItems = 4096;

ResourcePtr<FanoutGroup> group_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ResourcePtr<FanoutGroup> group;
  if (!Decoder<ResourcePtr<FanoutGroup>>::decode(env, term, group)) {
    throw bad_argument(env, "a fan-out group", term);
  }
  return group;
}

// fanout_group_new(Pids) -> Group | {not_list, Term} | {improper, Tail} |
// {bad_member, Term}. Every entry must be a local pid; duplicates are kept
// once. Bad input is returned, not raised, so Elixir words the error the
// way its pure twin does.
ERL_NIF_TERM fanout_group_new(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  if (on_normal_scheduler() && list_longer_than(env, argv[0], kDirtyGroupItems)) {
    return run_dirty_cpu(env, "fanout_group_new", raw_entry<fanout_group_new>, argc, argv);
  }
  unsigned length;
  if (!enif_get_list_length(env, argv[0], &length)) {
    if (!enif_is_list(env, argv[0])) return enif_make_tuple2(env, atom_not_list, argv[0]);
    ERL_NIF_TERM head, tail = argv[0];
    while (enif_get_list_cell(env, tail, &head, &tail)) {
    }
    return enif_make_tuple2(env, atom_improper, tail);
  }
  auto group = make_resource<FanoutGroup>();
  group->members->reserve(length);
  group->index.reserve(length);
  ERL_NIF_TERM head, list = argv[0];
  while (enif_get_list_cell(env, list, &head, &list)) {
    ErlNifPid pid;
    if (!enif_get_local_pid(env, head, &pid)) return enif_make_tuple2(env, atom_bad_member, head);
    if (group->index.emplace(pid.pid, group->members->size()).second) {
      group->members->push_back(pid);
    }
  }
  return group.make_term(env);
}
SWITCHBOARD_RAW_NIF(fanout_group_new, 1, 0);

bool fanout_group_add(ErlNifEnv*, ResourcePtr<FanoutGroup> group, LocalPid pid) {
  return group->add(pid.pid);
}
SWITCHBOARD_NIF(fanout_group_add, 0);

bool fanout_group_remove(ErlNifEnv*, ResourcePtr<FanoutGroup> group, LocalPid pid) {
  return group->remove(pid.pid);
}
SWITCHBOARD_NIF(fanout_group_remove, 0);

bool fanout_group_member(ErlNifEnv*, ResourcePtr<FanoutGroup> group, LocalPid pid) {
  return group->contains(pid.pid);
}
SWITCHBOARD_NIF(fanout_group_member, 0);

int64_t fanout_group_size(ErlNifEnv*, ResourcePtr<FanoutGroup> group) {
  return static_cast<int64_t>(group->size());
}
SWITCHBOARD_NIF(fanout_group_size, 0);

// fanout_group_to_list(Group) -> [Pid] (dirty when large)
ERL_NIF_TERM fanout_group_to_list(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  ResourcePtr<FanoutGroup> group = group_argument(env, argv[0]);
  const std::shared_ptr<const PidVector> members = group->snapshot();
  if (members->size() > kDirtyGroupItems && on_normal_scheduler()) {
    return run_dirty_cpu(env, "fanout_group_to_list", raw_entry<fanout_group_to_list>, argc, argv);
  }
  ERL_NIF_TERM list = enif_make_list(env, 0);
  for (auto it = members->rbegin(); it != members->rend(); ++it) {
    list = enif_make_list_cell(env, enif_make_pid(env, &*it), list);
  }
  return list;
}
SWITCHBOARD_RAW_NIF(fanout_group_to_list, 1, 0);

ERL_NIF_TERM fanout_cursor_send_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

// A fan-out to a fixed array of local pids (a group's snapshot, a
// partitioner's share) in progress in the calling process, across its yields.
struct SendCursor {
  std::shared_ptr<const PidVector> members;
  unsigned check_every = kCheckEvery;
  std::size_t next = 0;
  uint64_t delivered = 0;
  uint64_t skipped = 0;
};
SWITCHBOARD_RESOURCE(SendCursor, "FanoutSendCursor");

// Sends from the calling process, yielding when the time slice is spent.
// argv of a continuation: [Cursor, Message].
ERL_NIF_TERM run_cursor_inline(ErlNifEnv* env, ResourcePtr<SendCursor> cursor,
                               ERL_NIF_TERM message) {
  TimeSlice slice(env, kSendSlice);
  const PidVector& members = *cursor->members;
  // On a dirty scheduler (a large message) every member is sent to at once.
  const unsigned check_every = on_normal_scheduler() ? cursor->check_every : 0;
  unsigned since_check = 0;
  while (cursor->next < members.size()) {
    if (enif_send(env, &members[cursor->next++], nullptr, message)) {
      ++cursor->delivered;
    } else {
      ++cursor->skipped;
    }
    if (++since_check == check_every) {
      since_check = 0;
      if (cursor->next < members.size() && slice.spent()) {
        const ERL_NIF_TERM next[] = {cursor.make_term(env), message};
        return yield(env, "fanout_cursor_send", raw_entry<fanout_cursor_send_continue>, 2, next);
      }
    }
  }
  return enif_make_tuple2(env, enif_make_uint64(env, cursor->delivered),
                          enif_make_uint64(env, cursor->skipped));
}

ResourcePtr<SendCursor> cursor_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ResourcePtr<SendCursor> cursor;
  if (!Decoder<ResourcePtr<SendCursor>>::decode(env, term, cursor) || !cursor->members) {
    throw bad_argument(env, "a fan-out share", term);
  }
  return cursor;
}

ERL_NIF_TERM fanout_cursor_send_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  return run_cursor_inline(env, cursor_argument(env, argv[0]), argv[1]);
}

// Sends argv[1] to `members` from the calling process, from the first; a
// large message re-runs `self` (the whole call) on a dirty CPU scheduler.
ERL_NIF_TERM send_to_members(ErlNifEnv* env, std::shared_ptr<const PidVector> members,
                             const char* name, RawNif self, int argc, const ERL_NIF_TERM argv[]) {
  const SendPace pace = pace_for(env, argv[1]);
  if (pace.dirty && on_normal_scheduler()) return run_dirty_cpu(env, name, self, argc, argv);
  auto cursor = make_resource<SendCursor>();
  cursor->members = std::move(members);
  cursor->check_every = pace.check_every;
  return run_cursor_inline(env, std::move(cursor), argv[1]);
}

// fanout_group_send(Group, Message) -> {Delivered, Skipped}
ERL_NIF_TERM fanout_group_send(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return send_to_members(env, group_argument(env, argv[0])->snapshot(), "fanout_group_send",
                         raw_entry<fanout_group_send>, argc, argv);
}
SWITCHBOARD_RAW_NIF(fanout_group_send, 2, 0);

// fanout_group_offload(Group, Message, NotifyOrNil) -> {Ticket, Members}
// O(1) for the caller: a snapshot of the members and a copy of the message
// go to the caller's home sender thread.
ERL_NIF_TERM fanout_group_offload(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  ResourcePtr<FanoutGroup> group = group_argument(env, argv[0]);
  if (!sender_pool().running()) throw std::runtime_error("fan-out sender threads are not running");
  if (on_normal_scheduler() && pace_for(env, argv[1]).dirty) {
    return run_dirty_cpu(env, "fanout_group_offload", raw_entry<fanout_group_offload>, argc, argv);
  }
  auto ticket = make_resource<FanoutTicket>();
  auto job = std::make_unique<OffloadJob>(ticket);
  job->message = job->env.copy(argv[1]);
  job->notify = notify_argument(env, job->env, argv[2]);
  job->group = group->snapshot();
  const uint64_t members = job->group->size();
  submit_for_caller(env, std::move(job));
  return enif_make_tuple2(env, ticket.make_term(env), enif_make_uint64(env, members));
}
SWITCHBOARD_RAW_NIF(fanout_group_offload, 3, 0);

// ---------------------------------------------------------------------------
// A node's partitioner

// A fan-out from another node being split into shares, across the
// partitioner's yields.
struct PartitionDraft {
  explicit PartitionDraft(std::size_t shares) : splitter(shares) {}
  ShareSplitter<ErlNifPid, PidVector> splitter;
  uint64_t skipped = 0;
};
SWITCHBOARD_RESOURCE(PartitionDraft, "FanoutPartitionDraft");

// More shares than this is a broken call, not a big machine.
constexpr unsigned kMaxShares = 1024;

ERL_NIF_TERM fanout_partition_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

// Walks the list once: each local pid goes to share hash(pid) rem Count, so
// a receiver is always in the same share; nils and pids of other nodes are
// counted as skipped. argv of a continuation: [Tail, Draft].
ERL_NIF_TERM run_partition(ErlNifEnv* env, ERL_NIF_TERM list, ResourcePtr<PartitionDraft> draft) {
  const auto rest =
      walk_receivers(env, list, [&](Receiver kind, ERL_NIF_TERM item, ErlNifPid& pid) {
        if (kind == Receiver::local) {
          draft->splitter.add(enif_hash(ERL_NIF_INTERNAL_HASH, item, 0), pid);
        } else {
          ++draft->skipped;
        }
      });
  if (rest) {
    const ERL_NIF_TERM next[] = {*rest, draft.make_term(env)};
    return yield(env, "fanout_partition", raw_entry<fanout_partition_continue>, 2, next);
  }

  const auto shares = draft->splitter.take();
  std::vector<ERL_NIF_TERM> items(shares.size(), atoms::nil);
  for (std::size_t i = 0; i < shares.size(); ++i) {
    if (!shares[i]) continue;
    auto cursor = make_resource<SendCursor>();
    cursor->members = shares[i];
    items[i] = cursor.make_term(env);
  }
  return enif_make_tuple2(
      env, enif_make_tuple_from_array(env, items.data(), static_cast<unsigned>(items.size())),
      enif_make_uint64(env, draft->skipped));
}

ERL_NIF_TERM fanout_partition_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ResourcePtr<PartitionDraft> draft;
  if (!Decoder<ResourcePtr<PartitionDraft>>::decode(env, argv[1], draft)) {
    throw std::runtime_error("corrupt fan-out continuation");
  }
  return run_partition(env, argv[0], std::move(draft));
}

// fanout_partition(Pids, Count) -> {Shares, Skipped}
//
// Shares is a tuple of Count entries, each a share (for fanout_share_send/2)
// or nil when no receiver fell in it. Raises on anything but a proper list
// of pids and nils, before any share exists.
ERL_NIF_TERM fanout_partition(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  if (!enif_is_list(env, argv[0])) throw not_a_list(env, argv[0]);
  unsigned count;
  if (!enif_get_uint(env, argv[1], &count) || count == 0 || count > kMaxShares) {
    throw bad_argument(env, "a share count from 1 to 1024", argv[1]);
  }
  return run_partition(env, argv[0], make_resource<PartitionDraft>(count));
}
SWITCHBOARD_RAW_NIF(fanout_partition, 2, 0);

// fanout_share_send(Share, Message) -> {Delivered, Skipped}: sends from the
// calling process in time slices, like an inline fan-out.
ERL_NIF_TERM fanout_share_send(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  // A share is a list of receivers: each send starts afresh from its first.
  return send_to_members(env, cursor_argument(env, argv[0])->members, "fanout_share_send",
                         raw_entry<fanout_share_send>, argc, argv);
}
SWITCHBOARD_RAW_NIF(fanout_share_send, 2, 0);

// Raises the ArgumentError the native walks raise for the same bad input:
// Elixir's own check of an inline fan-out (before anything is sent) calls
// it when it finds a bad entry, so every path reports identically.
ERL_NIF_TERM fanout_reject(ErlNifEnv* env, Term kind, Term term) {
  if (enif_is_identical(kind.value, atom_not_list)) throw not_a_list(env, term.value);
  if (enif_is_identical(kind.value, atom_improper)) throw improper_list(env, term.value);
  if (enif_is_identical(kind.value, atom_bad_receiver)) throw bad_receiver(env, term.value);
  throw bad_argument(env, "not_list, improper or bad_receiver", kind.value);
}
SWITCHBOARD_NIF(fanout_reject, 0);

// {SenderThreads, TasksCompleted}
std::tuple<int64_t, int64_t> fanout_info(ErlNifEnv*) {
  return {static_cast<int64_t>(sender_pool().size()),
          static_cast<int64_t>(sender_pool().completed())};
}
SWITCHBOARD_NIF(fanout_info, 0);

}  // namespace
}  // namespace switchboard::nif
