// A node's partitioner: fanout_partition/2 splits a fan-out from another
// node into shares; fanout_share_send/2 sends to one.
#include "nif/fanout_glue.hpp"

#include "core/fanout/shares.hpp"

namespace switchboard::nif::fanout {
namespace {

// A fan-out from another node being split into shares, across the
// partitioner's yields.
struct PartitionDraft {
  explicit PartitionDraft(std::size_t shares) : splitter(shares) {}
  core::fanout::ShareSplitter<ErlNifPid, PidVector> splitter;
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
ERL_NIF_TERM fanout_partition(ErlNifEnv* env, Term pids, Term count_term) {
  if (!enif_is_list(env, pids.value)) throw not_a_list(env, pids.value);
  unsigned count;
  if (!enif_get_uint(env, count_term.value, &count) || count == 0 || count > kMaxShares) {
    throw bad_argument(env, "a share count from 1 to 1024", count_term.value);
  }
  return run_partition(env, pids.value, make_resource<PartitionDraft>(count));
}
SWITCHBOARD_NIF(fanout_partition, 0);

// fanout_share_send(Share, Message) -> {Delivered, Skipped}: sends from the
// calling process in time slices, like an inline fan-out.
Scheduled<ERL_NIF_TERM> fanout_share_send(Call& call, Term share, Term message) {
  // A share is a list of receivers: each send starts afresh from its first.
  return send_to_members(call, cursor_argument(call, share.value)->members, message.value);
}
SWITCHBOARD_NIF(fanout_share_send, 0);

}  // namespace
}  // namespace switchboard::nif::fanout
