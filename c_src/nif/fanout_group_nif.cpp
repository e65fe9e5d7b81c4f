// Receiver groups: a mutable native set of local pids to fan out to.
#include "nif/fanout_glue.hpp"

#include <mutex>
#include <unordered_map>

namespace switchboard::nif::fanout {
namespace {

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
SWITCHBOARD_RESOURCE(FanoutGroup, "FanoutGroup", "a fan-out group");

using GroupArgument = Borrowed<FanoutGroup>;
using Result = Scheduled<ERL_NIF_TERM>;

// Lists longer than this are added on a dirty scheduler.
constexpr unsigned kDirtyGroupItems = 4096;

// fanout_group_new(Pids) -> Group | {not_list, Term} | {improper, Tail} |
// {bad_member, Term}. Every entry must be a local pid; duplicates are kept
// once. Bad input is returned, not raised, so Elixir words the error the
// way its pure twin does.
Result fanout_group_new(Call& call, Term pids) {
  ErlNifEnv* env = call;
  if (call.on_normal_scheduler() && list_longer_than(env, pids.value, kDirtyGroupItems)) {
    return call.dirty();
  }
  unsigned length;
  if (!enif_get_list_length(env, pids.value, &length)) {
    if (!enif_is_list(env, pids.value)) return enif_make_tuple2(env, atom_not_list, pids.value);
    ERL_NIF_TERM head, tail = pids.value;
    while (enif_get_list_cell(env, tail, &head, &tail)) {
    }
    return enif_make_tuple2(env, atom_improper, tail);
  }
  auto group = make_resource<FanoutGroup>();
  group->members->reserve(length);
  group->index.reserve(length);
  ERL_NIF_TERM head, list = pids.value;
  while (enif_get_list_cell(env, list, &head, &list)) {
    ErlNifPid pid;
    if (!enif_get_local_pid(env, head, &pid)) return enif_make_tuple2(env, atom_bad_member, head);
    if (group->index.emplace(pid.pid, group->members->size()).second) {
      group->members->push_back(pid);
    }
  }
  return group.make_term(env);
}
SWITCHBOARD_NIF(fanout_group_new, 0);

bool fanout_group_add(ErlNifEnv*, GroupArgument group, LocalPid pid) { return group->add(pid.pid); }
SWITCHBOARD_NIF(fanout_group_add, 0);

bool fanout_group_remove(ErlNifEnv*, GroupArgument group, LocalPid pid) {
  return group->remove(pid.pid);
}
SWITCHBOARD_NIF(fanout_group_remove, 0);

bool fanout_group_member(ErlNifEnv*, GroupArgument group, LocalPid pid) {
  return group->contains(pid.pid);
}
SWITCHBOARD_NIF(fanout_group_member, 0);

int64_t fanout_group_size(ErlNifEnv*, GroupArgument group) {
  return static_cast<int64_t>(group->size());
}
SWITCHBOARD_NIF(fanout_group_size, 0);

// fanout_group_to_list(Group) -> [Pid] (dirty when large)
Result fanout_group_to_list(Call& call, GroupArgument group) {
  ErlNifEnv* env = call;
  const std::shared_ptr<const PidVector> members = group->snapshot();
  if (members->size() > kDirtyGroupItems && call.on_normal_scheduler()) return call.dirty();
  ERL_NIF_TERM list = enif_make_list(env, 0);
  for (auto it = members->rbegin(); it != members->rend(); ++it) {
    list = enif_make_list_cell(env, enif_make_pid(env, &*it), list);
  }
  return list;
}
SWITCHBOARD_NIF(fanout_group_to_list, 0);

// fanout_group_send(Group, Message) -> {Delivered, Skipped}
Result fanout_group_send(Call& call, GroupArgument group, Term message) {
  auto members = group->snapshot();
  const std::size_t size = members->size();
  return send_to_members(call, std::move(members), 0, size, message.value);
}
SWITCHBOARD_NIF(fanout_group_send, 0);

// fanout_group_split(Group, Most) -> Shares: into how many shares (1 to
// Most) an inline fan-out to the group is worth splitting.
int64_t fanout_group_split(ErlNifEnv* env, GroupArgument group, Term most) {
  return static_cast<int64_t>(split_shares(group->size(), share_count_argument(env, most.value)));
}
SWITCHBOARD_NIF(fanout_group_split, 0);

// fanout_group_shares(Group, Count) -> {Share | nil, ...}: one snapshot of
// the members cut into Count ranges of nearly equal size (nil where empty),
// each for fanout_share_send/2. O(Count).
ERL_NIF_TERM fanout_group_shares(ErlNifEnv* env, GroupArgument group, Term count_term) {
  const unsigned count = share_count_argument(env, count_term.value);
  const std::shared_ptr<const PidVector> members = group->snapshot();
  const std::size_t size = members->size();
  std::vector<ERL_NIF_TERM> items(count, atoms::nil);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t begin = size * i / count;
    const std::size_t end = size * (i + 1) / count;
    if (begin < end) items[i] = make_share(env, members, begin, end);
  }
  return enif_make_tuple_from_array(env, items.data(), count);
}
SWITCHBOARD_NIF(fanout_group_shares, 0);

// fanout_group_offload(Group, Message, NotifyOrNil) -> {Ticket, Members}
// O(1) for the caller: a snapshot of the members and a copy of the message
// go to the caller's home sender thread.
Result fanout_group_offload(Call& call, GroupArgument group, Term message, Term notify) {
  ErlNifEnv* env = call;
  if (!sender_pool().running()) throw std::runtime_error("fan-out sender threads are not running");
  // The caller copies the message into the job: a large one, dirty.
  if (call.on_normal_scheduler() && pace_for(env, message.value).dirty) return call.dirty();
  auto ticket = make_resource<FanoutTicket>();
  auto job = std::make_unique<OffloadJob>(ticket);
  job->message = job->env.copy(message.value);
  job->notify = notify_argument(env, job->env, notify.value);
  job->group = group->snapshot();
  const uint64_t members = job->group->size();
  submit_for_caller(env, std::move(job));
  return enif_make_tuple2(env, ticket.make_term(env), enif_make_uint64(env, members));
}
SWITCHBOARD_NIF(fanout_group_offload, 0);

}  // namespace
}  // namespace switchboard::nif::fanout
