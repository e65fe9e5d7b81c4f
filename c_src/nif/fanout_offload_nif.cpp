// Offloaded fan-out: fanout_offload/5 builds a job for the caller's sender
// thread; fanout_ticket_done/1 and fanout_info/0 report on them.
#include "nif/fanout_glue.hpp"

namespace switchboard::nif::fanout {
namespace {

// A job being built, across the caller's yields.
struct OffloadDraft {
  std::unique_ptr<OffloadJob> job;
};
SWITCHBOARD_RESOURCE(OffloadDraft, "FanoutOffloadDraft");

ERL_NIF_TERM fanout_offload_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

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
Scheduled<ERL_NIF_TERM> fanout_offload(Call& call, Term pids, Term message, Term packed,
                                       Term sender, Term notify) {
  ErlNifEnv* env = call;
  const ERL_NIF_TERM argv[] = {pids.value, message.value, packed.value, sender.value, notify.value};
  if (!enif_is_list(env, argv[0])) throw not_a_list(env, argv[0]);
  if (!sender_pool().running()) throw std::runtime_error("fan-out sender threads are not running");
  // The caller copies the message into the job: a large one, dirty.
  if (call.on_normal_scheduler() && pace_for(env, argv[1]).dirty) return call.dirty();

  auto ticket = make_resource<FanoutTicket>();
  auto job = std::make_unique<OffloadJob>(ticket);
  job->message = job->env.copy(argv[1]);
  if (!enif_is_identical(argv[2], atoms::nil)) {
    if (!enif_is_binary(env, argv[2])) throw bad_argument(env, "a binary or nil", argv[2]);
    job->packed = job->env.copy(argv[2]);  // a refc binary: shared, not copied
  }
  if (!enif_is_identical(argv[3], atoms::nil)) {
    ErlNifPid sender_pid;
    if (!enif_get_local_pid(env, argv[3], &sender_pid)) {
      throw bad_argument(env, "a local pid or nil", argv[3]);
    }
    job->sender = sender_pid;
  }
  job->notify = notify_argument(env, job->env, argv[4]);
  auto draft = make_resource<OffloadDraft>();
  draft->job = std::move(job);
  return build_offload(env, argv[0], std::move(draft), ticket.make_term(env));
}
SWITCHBOARD_NIF(fanout_offload, 0);

bool fanout_ticket_done(ErlNifEnv*, Borrowed<FanoutTicket> ticket) {
  return ticket->done.load(std::memory_order_acquire);
}
SWITCHBOARD_NIF(fanout_ticket_done, 0);

// {SenderThreads, TasksCompleted, SplitFanouts, HelperChunks, SplitShare}
std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t> fanout_info(ErlNifEnv*) {
  const SplitStats split = split_stats();
  return {static_cast<int64_t>(sender_pool().size()),
          static_cast<int64_t>(sender_pool().completed()), static_cast<int64_t>(split.fanouts),
          static_cast<int64_t>(split.helper_chunks), static_cast<int64_t>(split_share())};
}
SWITCHBOARD_NIF(fanout_info, 0);

// The most list cells fanout_split/2 looks at: about 0.1 ms.
constexpr std::size_t kSplitScanCells = 65536;

// fanout_split(Pids, Most) -> Shares: into how many shares (1 to Most) an
// inline fan-out to Pids is worth splitting, from the local pids among the
// list's first entries (a bounded walk: a list whose first entries are
// mostly remote pids or nils stays whole). 1 for anything but a list.
int64_t fanout_split(ErlNifEnv* env, Term pids, Term most_term) {
  const std::size_t most = share_count_argument(env, most_term.value);
  const std::size_t wanted = most * split_share();
  const std::size_t limit = std::min(2 * wanted + 64, kSplitScanCells);
  std::size_t local = 0;
  ERL_NIF_TERM head, list = pids.value;
  for (std::size_t seen = 0;
       seen < limit && local < wanted && enif_get_list_cell(env, list, &head, &list); ++seen) {
    ErlNifPid pid;
    if (enif_get_local_pid(env, head, &pid)) ++local;
  }
  return static_cast<int64_t>(split_shares(local, most));
}
SWITCHBOARD_NIF(fanout_split, 0);

// fanout_set_split_share(Receivers) -> ok: the fewest receivers per share
// (at least 1), for tests and benchmarks.
ERL_NIF_TERM fanout_set_split_share(ErlNifEnv*, NonNegative<int64_t> receivers) {
  set_split_share(static_cast<std::size_t>(receivers.value));
  return atoms::ok;
}
SWITCHBOARD_NIF(fanout_set_split_share, 0);

}  // namespace
}  // namespace switchboard::nif::fanout
