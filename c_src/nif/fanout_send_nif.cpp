// Inline fan-out: fanout_send/2.
#include "nif/fanout_glue.hpp"

namespace switchboard::nif::fanout {
namespace {

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
Scheduled<ERL_NIF_TERM> fanout_send(Call& call, Term pids, Term message) {
  ErlNifEnv* env = call;
  if (!enif_is_list(env, pids.value)) throw not_a_list(env, pids.value);
  const SendPace pace = pace_for(env, message.value);
  if (pace.dirty && call.on_normal_scheduler()) return call.dirty();
  return run_inline(env, pids.value, message.value, 0, 0,
                    RemoteAcc{pids.value, 0, enif_make_list(env, 0)}, pace.check_every);
}
SWITCHBOARD_NIF(fanout_send, 0);

}  // namespace
}  // namespace switchboard::nif::fanout
