#include "nif/fanout_glue.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "nif/term_size.hpp"

namespace switchboard::nif::fanout {

using core::fanout::WorkerPool;

ERL_NIF_TERM& atom_remote_envelope = register_atom("$switchboard_fanout_remote");
ERL_NIF_TERM& atom_not_list = register_atom("not_list");
ERL_NIF_TERM& atom_improper = register_atom("improper");
ERL_NIF_TERM& atom_bad_receiver = register_atom("bad_receiver");
ERL_NIF_TERM& atom_bad_member = register_atom("bad_member");

namespace {
// How much nicer than the schedulers the sender threads are.
constexpr int kNiceOffset = 10;
}  // namespace

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

namespace {

// Sender threads: SWITCHBOARD_FANOUT_THREADS (1 to 256) if set to a number,
// else one per core (at most 64). Read once, when the library loads.
constexpr std::size_t kMaxSenderThreads = 256;
constexpr std::size_t kMaxDefaultSenderThreads = 64;

std::size_t sender_thread_count() {
  if (const char* text = std::getenv("SWITCHBOARD_FANOUT_THREADS")) {
    std::size_t threads = 0;
    const char* end = text + std::strlen(text);
    const auto [last, error] = std::from_chars(text, end, threads);
    if (error == std::errc() && last == end && threads >= 1 && threads <= kMaxSenderThreads) {
      return threads;
    }
  }
  const unsigned cpus = std::thread::hardware_concurrency();
  return std::clamp<std::size_t>(cpus, 1, kMaxDefaultSenderThreads);
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

// Starting a process or waking a helper thread costs a few microseconds: a
// share of 512 receivers (0.3-1 ms of sends) pays for it many times over
// (bench/fanout_parallel.exs, the split share table).
constexpr std::size_t kDefaultSplitShare = 512;
std::atomic<std::size_t> split_share_receivers{kDefaultSplitShare};
std::atomic<uint64_t> split_fanouts{0};
std::atomic<uint64_t> split_helper_chunks{0};

}  // namespace

std::size_t split_share() { return split_share_receivers.load(std::memory_order_relaxed); }

void set_split_share(std::size_t receivers) {
  split_share_receivers.store(std::max<std::size_t>(receivers, 1), std::memory_order_relaxed);
}

std::size_t split_shares(std::size_t local, std::size_t most) {
  const std::size_t shares = local / split_share();
  return shares >= 2 ? std::min(shares, std::max<std::size_t>(most, 1)) : 1;
}

SplitStats split_stats() {
  return {split_fanouts.load(std::memory_order_relaxed),
          split_helper_chunks.load(std::memory_order_relaxed)};
}

// Sends a copy of `message` (a term of a process-independent env) from a
// sender thread. With no message env, enif_send copies the term straight
// into one new message: about twice as fast as building the copy in a
// scratch env and handing that over. False when the receiver is not alive.
bool send_copy(const ErlNifPid& pid, ERL_NIF_TERM message) {
  return enif_send(nullptr, &pid, nullptr, message) != 0;
}

// ---------------------------------------------------------------------------
// Receiver lists

// The words of Switchboard.Fanout.Receivers, which the twins raise.
BadArgument not_a_list(ErlNifEnv* env, ERL_NIF_TERM term) {
  return bad_argument(env, "a list of pids", term);
}

BadArgument improper_list(ErlNifEnv* env, ERL_NIF_TERM tail) {
  return bad_argument(env, "the end of the list of pids", "[]", tail);
}

BadArgument bad_receiver(ErlNifEnv* env, ERL_NIF_TERM item) {
  return bad_argument(env, "a pid or nil in the receiver list", item);
}

Receiver classify(ErlNifEnv* env, ERL_NIF_TERM item, ErlNifPid& pid) {
  if (enif_get_local_pid(env, item, &pid)) return Receiver::local;
  if (enif_is_pid(env, item)) return Receiver::remote;
  if (enif_is_identical(item, atoms::nil)) return Receiver::none;
  return Receiver::invalid;
}

// ---------------------------------------------------------------------------
// Offloaded fan-outs

SWITCHBOARD_RESOURCE(FanoutTicket, "FanoutTicket");

void OffloadJob::run() noexcept {
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

void OffloadJob::deliver(uint64_t& delivered, uint64_t& skipped) {
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
  const PidVector& receivers = group ? *group : local;
  WorkerPool& pool = sender_pool();
  const std::size_t shares = split_shares(receivers.size(), pool.size());
  if (shares <= 1) {
    send_range(receivers, 0, receivers.size(), delivered, skipped);
    return;
  }
  // Every sender thread takes chunks; the message env is only read (each
  // enif_send copies from it), so they can share it.
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> dead{0};
  const std::size_t helped =
      pool.split(receivers.size(), kSplitChunk, shares - 1,
                 [this, &receivers, &sent, &dead](std::size_t begin, std::size_t end) {
                   uint64_t chunk_sent = 0;
                   uint64_t chunk_dead = 0;
                   send_range(receivers, begin, end, chunk_sent, chunk_dead);
                   sent.fetch_add(chunk_sent, std::memory_order_relaxed);
                   dead.fetch_add(chunk_dead, std::memory_order_relaxed);
                 });
  split_fanouts.fetch_add(1, std::memory_order_relaxed);
  split_helper_chunks.fetch_add(helped, std::memory_order_relaxed);
  delivered += sent.load(std::memory_order_relaxed);
  skipped += dead.load(std::memory_order_relaxed);
}

void OffloadJob::send_range(const PidVector& receivers, std::size_t begin, std::size_t end,
                            uint64_t& delivered, uint64_t& skipped) const noexcept {
  for (std::size_t i = begin; i < end; ++i) {
    if (send_copy(receivers[i], message)) {
      ++delivered;
    } else {
      ++skipped;
    }
  }
}

void OffloadJob::report(uint64_t delivered, uint64_t skipped) noexcept {
  try {
    OwnedEnv reply;
    ErlNifEnv* r = reply.get();
    enif_send(nullptr, &notify->pid, r,
              enif_make_tuple3(r, enif_make_copy(r, notify->ref), enif_make_uint64(r, delivered),
                               enif_make_uint64(r, skipped)));
  } catch (...) {
  }
}

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

void submit_for_caller(ErlNifEnv* env, std::unique_ptr<OffloadJob> job) {
  ErlNifPid self;
  if (!enif_self(env, &self)) throw std::runtime_error("fan-out called outside a process");
  const ERL_NIF_TERM caller = enif_make_pid(env, &self);
  sender_pool().submit(enif_hash(ERL_NIF_PHASH2, caller, 0), std::move(job));
}

// ---------------------------------------------------------------------------
// Sends to a fixed array of local pids

SWITCHBOARD_RESOURCE(SendCursor, "FanoutSendCursor");

namespace {
ERL_NIF_TERM fanout_cursor_send_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

// Sends from the calling process, yielding when the time slice is spent.
// argv of a continuation: [Cursor, Message].
ERL_NIF_TERM run_cursor_inline(ErlNifEnv* env, ResourcePtr<SendCursor> cursor,
                               ERL_NIF_TERM message) {
  // On a dirty scheduler (a large message) every member is sent to at once.
  WorkSlice slice(env, on_normal_scheduler() ? SliceClock::from_start : SliceClock::unlimited);
  const PidVector& members = *cursor->members;
  const std::size_t send_bytes = bytes_per_receiver(cursor->check_every);
  while (cursor->next < cursor->end) {
    if (enif_send(env, &members[cursor->next++], nullptr, message)) {
      ++cursor->delivered;
    } else {
      ++cursor->skipped;
    }
    if (slice.spend(send_bytes)) {
      if (cursor->next < cursor->end) {
        const ERL_NIF_TERM next[] = {cursor.make_term(env), message};
        return yield(env, "fanout_cursor_send", raw_entry<fanout_cursor_send_continue>, 2, next);
      }
    }
  }
  return enif_make_tuple2(env, enif_make_uint64(env, cursor->delivered),
                          enif_make_uint64(env, cursor->skipped));
}

}  // namespace

ResourcePtr<SendCursor> cursor_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ResourcePtr<SendCursor> cursor;
  if (!Decoder<ResourcePtr<SendCursor>>::decode(env, term, cursor) || !cursor->members) {
    throw bad_argument(env, "a fan-out share", term);
  }
  return cursor;
}

namespace {
ERL_NIF_TERM fanout_cursor_send_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  return run_cursor_inline(env, cursor_argument(env, argv[0]), argv[1]);
}

}  // namespace

unsigned share_count_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  unsigned count;
  if (!enif_get_uint(env, term, &count) || count == 0 || count > kMaxShares) {
    // More shares than this is a broken call, not a big machine.
    throw bad_argument(env, "a share count from 1 to 1024", term);
  }
  return count;
}

ERL_NIF_TERM make_share(ErlNifEnv* env, std::shared_ptr<const PidVector> members, std::size_t begin,
                        std::size_t end) {
  auto share = make_resource<SendCursor>();
  share->members = std::move(members);
  share->begin = begin;
  share->end = end;
  return share.make_term(env);
}

Scheduled<ERL_NIF_TERM> send_to_members(Call& call, std::shared_ptr<const PidVector> members,
                                        std::size_t begin, std::size_t end, ERL_NIF_TERM message) {
  const SendPace pace = pace_for(call, message);
  if (pace.dirty && call.on_normal_scheduler()) return call.dirty();
  auto cursor = make_resource<SendCursor>();
  cursor->members = std::move(members);
  cursor->begin = cursor->next = begin;
  cursor->end = std::min(end, cursor->members->size());
  cursor->check_every = pace.check_every;
  return run_cursor_inline(call, std::move(cursor), message);
}

}  // namespace switchboard::nif::fanout
