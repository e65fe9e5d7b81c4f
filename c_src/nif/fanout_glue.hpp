// Fan-out glue shared by the fan-out NIFs, one file per concern:
//
//   fanout_send_nif.cpp       fanout_send/2 inline: the calling process walks
//                             the list and sends, in time slices with
//                             enif_schedule_nif between them;
//   fanout_offload_nif.cpp    fanout_offload/5: copies the fan-out into a job
//                             for the caller's sender thread (a lock-free
//                             queue per thread) and returns a ticket at once;
//                             fanout_split/2: whether to split an inline one;
//   fanout_group_nif.cpp      fanout_group_*: a receiver group, a mutable set
//                             of local pids kept natively, so a fan-out to it
//                             costs the caller O(1) (offload) or no list walk;
//   fanout_partition_nif.cpp  fanout_partition/2, fanout_split_list/2,
//                             fanout_share_send/2: a node's partitioner (a
//                             fan-out from another node) or a large inline
//                             fan-out splits its receivers into native
//                             shares, and one process sends each;
//   fanout_glue.cpp           what they share: the receiver walk, pacing by
//                             message bytes, the sender threads and their
//                             jobs, sends to a fixed array of pids.
//
// enif_send reaches local pids only, so remote pids are handed back to
// Elixir (inline) or to a sender process (offload), which route them to the
// partitioner on their node. Receivers always get the message term itself.
#pragma once

#include <erl_nif.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "core/fanout/worker_pool.hpp"
#include "core/memory.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif::fanout {

using PidVector = std::vector<ErlNifPid, core::Allocator<ErlNifPid>>;

extern ERL_NIF_TERM& atom_remote_envelope;
extern ERL_NIF_TERM& atom_not_list;
extern ERL_NIF_TERM& atom_improper;
extern ERL_NIF_TERM& atom_bad_receiver;
extern ERL_NIF_TERM& atom_bad_member;

inline bool on_normal_scheduler() { return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER; }

// A fan-out's work is counted in WorkSlice bytes (scheduling.hpp, the one
// budget of every NIF), kCheckBytes per `check_every` receivers: a send of a
// small message counts 1 KiB (kCheckBytes / kCheckEvery: a send, with its
// allocation and the receiver's wake-up, costs about as much as copying
// that), a send of a larger one what it copies (pace_for), and a receiver
// only walked (classified, not sent to) a list cell's 16 bytes (kWalkOnly).
inline constexpr unsigned kCheckEvery = 16;
inline constexpr std::size_t kCheckBytes = 16 * 1024;
inline constexpr unsigned kWalkOnly = kCheckBytes / 16;
// A message whose one copy could take most of a time slice by itself (about
// 0.1 ms per 256 KB) is sent from a dirty CPU scheduler: a 1M-element
// message copied to 32 receivers is tens of ms however often the clock is
// read.
inline constexpr std::size_t kDirtyMessageBytes = 256 * 1024;

// How a fan-out of one message paces itself, from the bytes a send copies
// (binaries over 64 bytes are shared, not copied).
struct SendPace {
  unsigned check_every;  // sends per kCheckBytes of work (1..kCheckEvery)
  bool dirty;            // too large for a normal scheduler at all
};

// The WorkSlice bytes one receiver counts for at this pace.
inline std::size_t bytes_per_receiver(unsigned check_every) {
  return kCheckBytes / std::max(check_every, 1u);
}

SendPace pace_for(ErlNifEnv* env, ERL_NIF_TERM message);

// The sender threads: started with the library, stopped before it is unloaded.
core::fanout::WorkerPool& sender_pool();

// A fan-out to many local receivers is split into shares of at least
// split_share() receivers each, sent at once: an inline one by one process
// per share (Elixir), an offloaded one by several sender threads, its own
// taking kSplitChunk receivers at a time and helpers the same (the job ends
// once all are sent, so the next job of the same caller starts after it).
inline constexpr std::size_t kSplitChunk = 256;
std::size_t split_share();
void set_split_share(std::size_t receivers);
// Into how many shares (at most `most`) a fan-out to `local` receivers is
// split: 1, not split, below two shares' worth.
std::size_t split_shares(std::size_t local, std::size_t most);

// Split fan-outs so far and the chunks of them that helper threads sent.
struct SplitStats {
  uint64_t fanouts;
  uint64_t helper_chunks;
};
SplitStats split_stats();

// Sends a copy of `message` (a term of a process-independent env) from a
// sender thread; false when the receiver is not alive.
bool send_copy(const ErlNifPid& pid, ERL_NIF_TERM message);

// ---------------------------------------------------------------------------
// Receiver lists

// ArgumentErrors worded as Switchboard.Fanout.Receivers words them.
BadArgument not_a_list(ErlNifEnv* env, ERL_NIF_TERM term);
BadArgument improper_list(ErlNifEnv* env, ERL_NIF_TERM tail);
BadArgument bad_receiver(ErlNifEnv* env, ERL_NIF_TERM item);

enum class Receiver { local, remote, none, invalid };

// Pids are tested for first: enif_is_identical on a boxed term (a remote
// pid) and an atom takes a full term comparison, as long as the rest of the
// test for a remote pid.
Receiver classify(ErlNifEnv* env, ERL_NIF_TERM item, ErlNifPid& pid);

// The one walk over a receiver list: calls visit(kind, item, pid) for each
// entry (raising on a bad one) and counts each entry's work in a WorkSlice,
// `check_every` entries per kCheckBytes (a visit that sends passes its
// SendPace's; one that only collects, kWalkOnly). Returns the tail still to
// walk once the slice is spent (the caller yields with it), or nothing when
// the whole proper list is done. On a dirty scheduler it walks the whole list.
template <class Visit>
std::optional<ERL_NIF_TERM> walk_receivers(ErlNifEnv* env, ERL_NIF_TERM list, Visit&& visit,
                                           unsigned check_every = kWalkOnly) {
  WorkSlice slice(env, on_normal_scheduler() ? SliceClock::from_start : SliceClock::unlimited);
  const std::size_t entry_bytes = bytes_per_receiver(check_every);
  ERL_NIF_TERM head;
  while (enif_get_list_cell(env, list, &head, &list)) {
    ErlNifPid pid;
    const Receiver kind = classify(env, head, pid);
    if (kind == Receiver::invalid) throw bad_receiver(env, head);
    visit(kind, head, pid);
    if (slice.spend(entry_bytes)) return list;
  }
  if (!enif_is_empty_list(env, list)) throw improper_list(env, list);
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Offloaded fan-outs: jobs for the sender threads

// Done once the job's local receivers have the message and its remote
// receivers have been handed to the sender process.
struct FanoutTicket {
  std::atomic<bool> done{false};
};

struct Notify {
  ErlNifPid pid;
  ERL_NIF_TERM ref;  // in the job's env
};

// One offloaded fan-out: built by the caller (which walks and checks the
// list), run by the caller's home sender thread, which splits the local
// sends over several sender threads when there are enough (split_shares()).
class OffloadJob : public core::fanout::Task {
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

  void run() noexcept override;

 private:
  void deliver(uint64_t& delivered, uint64_t& skipped);
  void send_range(const PidVector& receivers, std::size_t begin, std::size_t end,
                  uint64_t& delivered, uint64_t& skipped) const noexcept;
  void report(uint64_t delivered, uint64_t skipped) noexcept;

  ResourcePtr<FanoutTicket> ticket_;
};

// NotifyOrNil: {Pid, Ref} asks the thread for {Ref, Delivered, Skipped}.
std::optional<Notify> notify_argument(ErlNifEnv* env, OwnedEnv& into, ERL_NIF_TERM term);

// One home thread per caller: its offloaded fan-outs run in order.
void submit_for_caller(ErlNifEnv* env, std::unique_ptr<OffloadJob> job);

// ---------------------------------------------------------------------------
// Sends to a fixed array of local pids

// A fan-out to a fixed array of local pids (a group's snapshot, a
// partitioner's share, one share of a split fan-out) in progress in the
// calling process, across its yields: members[begin, end).
struct SendCursor {
  std::shared_ptr<const PidVector> members;
  std::size_t begin = 0;
  std::size_t end = 0;
  unsigned check_every = kCheckEvery;
  std::size_t next = 0;
  uint64_t delivered = 0;
  uint64_t skipped = 0;
};

// A share of `members` (all of them unless given a range) as a term for
// fanout_share_send/2.
ERL_NIF_TERM make_share(ErlNifEnv* env, std::shared_ptr<const PidVector> members, std::size_t begin,
                        std::size_t end);

// A share count from 1 to kMaxShares, or an ArgumentError.
inline constexpr unsigned kMaxShares = 1024;
unsigned share_count_argument(ErlNifEnv* env, ERL_NIF_TERM term);

// The share behind a term, or an ArgumentError.
ResourcePtr<SendCursor> cursor_argument(ErlNifEnv* env, ERL_NIF_TERM term);

// Sends `message` to members[begin, end) from the calling process; a large
// message runs the whole call again on a dirty CPU scheduler.
Scheduled<ERL_NIF_TERM> send_to_members(Call& call, std::shared_ptr<const PidVector> members,
                                        std::size_t begin, std::size_t end, ERL_NIF_TERM message);

}  // namespace switchboard::nif::fanout
