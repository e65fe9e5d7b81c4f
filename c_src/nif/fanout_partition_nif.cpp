// Splitting a fan-out into shares that several processes send at once:
// fanout_partition/2 for a node's partitioner (a fan-out from another
// node), fanout_split_list/2 for a large inline fan-out (local pids into
// shares, remote pids and nils handed back); fanout_share_send/2 sends to
// one share.
#include "nif/fanout_glue.hpp"

#include "core/fanout/shares.hpp"

namespace switchboard::nif::fanout {
namespace {

// A receiver list being split into shares, across the caller's yields.
struct PartitionDraft {
  PartitionDraft(std::size_t shares, bool keep_remote_)
      : splitter(shares), keep_remote(keep_remote_) {}
  core::fanout::ShareSplitter<ErlNifPid, PidVector> splitter;
  // Split mode: remote pids are gathered (in argv across yields) and nils
  // counted; partitioner mode: both are skipped.
  const bool keep_remote;
  uint64_t skipped = 0;
};
SWITCHBOARD_RESOURCE(PartitionDraft, "FanoutPartitionDraft");

ERL_NIF_TERM partition_continue(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

ERL_NIF_TERM shares_tuple(ErlNifEnv* env, PartitionDraft& draft) {
  const auto shares = draft.splitter.take();
  std::vector<ERL_NIF_TERM> items(shares.size(), atoms::nil);
  for (std::size_t i = 0; i < shares.size(); ++i) {
    if (shares[i]) items[i] = make_share(env, shares[i], 0, shares[i]->size());
  }
  return enif_make_tuple_from_array(env, items.data(), static_cast<unsigned>(items.size()));
}

// Walks the list once: each local pid goes to share hash(pid) rem Count, so
// a receiver is always in the same share. argv of a continuation: [Tail,
// Draft, RemoteSoFar].
ERL_NIF_TERM run_partition(ErlNifEnv* env, ERL_NIF_TERM list, ResourcePtr<PartitionDraft> draft,
                           ERL_NIF_TERM remote) {
  const auto rest =
      walk_receivers(env, list, [&](Receiver kind, ERL_NIF_TERM item, ErlNifPid& pid) {
        if (kind == Receiver::local) {
          draft->splitter.add(enif_hash(ERL_NIF_INTERNAL_HASH, item, 0), pid);
        } else if (kind == Receiver::remote && draft->keep_remote) {
          remote = enif_make_list_cell(env, item, remote);
        } else {
          ++draft->skipped;
        }
      });
  if (rest) {
    const ERL_NIF_TERM next[] = {*rest, draft.make_term(env), remote};
    return yield(env, "fanout_partition", raw_entry<partition_continue>, 3, next);
  }
  const ERL_NIF_TERM shares = shares_tuple(env, *draft);
  const ERL_NIF_TERM skipped = enif_make_uint64(env, draft->skipped);
  return draft->keep_remote ? enif_make_tuple3(env, shares, skipped, remote)
                            : enif_make_tuple2(env, shares, skipped);
}

ERL_NIF_TERM partition_continue(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ResourcePtr<PartitionDraft> draft;
  if (!Decoder<ResourcePtr<PartitionDraft>>::decode(env, argv[1], draft)) {
    throw std::runtime_error("corrupt fan-out continuation");
  }
  return run_partition(env, argv[0], std::move(draft), argv[2]);
}

ERL_NIF_TERM start_partition(ErlNifEnv* env, ERL_NIF_TERM pids, ERL_NIF_TERM count,
                             bool keep_remote) {
  if (!enif_is_list(env, pids)) throw not_a_list(env, pids);
  const unsigned shares = share_count_argument(env, count);
  return run_partition(env, pids, make_resource<PartitionDraft>(shares, keep_remote),
                       enif_make_list(env, 0));
}

// fanout_partition(Pids, Count) -> {Shares, Skipped}
//
// Shares is a tuple of Count entries, each a share (for fanout_share_send/2)
// or nil when no receiver fell in it; nils and pids of other nodes are
// skipped. Raises on anything but a proper list of pids and nils, before
// any share exists.
ERL_NIF_TERM fanout_partition(ErlNifEnv* env, Term pids, Term count) {
  return start_partition(env, pids.value, count.value, false);
}
SWITCHBOARD_NIF(fanout_partition, 0);

// fanout_split_list(Pids, Count) -> {Shares, Nils, RemotePids}: as
// fanout_partition/2, but the remote pids come back (in reverse order) for
// the caller to route, and only nils are counted.
ERL_NIF_TERM fanout_split_list(ErlNifEnv* env, Term pids, Term count) {
  return start_partition(env, pids.value, count.value, true);
}
SWITCHBOARD_NIF(fanout_split_list, 0);

// fanout_share_send(Share, Message) -> {Delivered, Skipped}: sends from the
// calling process in time slices, like an inline fan-out.
Scheduled<ERL_NIF_TERM> fanout_share_send(Call& call, Term share, Term message) {
  // A share is a range of receivers: each send starts afresh from its first.
  const ResourcePtr<SendCursor> range = cursor_argument(call, share.value);
  return send_to_members(call, range->members, range->begin, range->end, message.value);
}
SWITCHBOARD_NIF(fanout_share_send, 0);

}  // namespace
}  // namespace switchboard::nif::fanout
