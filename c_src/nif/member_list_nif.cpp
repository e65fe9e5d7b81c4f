// Switchboard.MemberList: NIFs over core::MemberList. The core works on byte
// keys and opaque payloads; this file turns terms into keys (term_key_glue),
// keeps the terms it must give back (user, group and session ids) in a
// TermStore, builds the updates as terms, and picks the scheduler.
//
// Scheduling: a change costs O(log n) plus the ops and session lists it
// returns, which grow with the subscribed ranges it shifts. Before changing
// anything it counts that work (MemberList::change_work, O(log n)) and goes
// dirty when it would hold a normal scheduler for more than about half a
// millisecond. A subscribe is at most five 100-item syncs. items/1 of a
// large list, large ids and a busy list go dirty; a large list is freed on
// the reply thread.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/member_list/member_list.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"
#include "nif/term_key_glue.hpp"
#include "nif/term_size.hpp"

namespace switchboard::nif {
namespace {

using core::MemberList;
using Payload = MemberList::Payload;

constexpr std::size_t kDirtyItems = 20000;
constexpr std::size_t kDetachedFreeMembers = 20000;
// Dead boxed terms tolerated before the store is copied into a fresh env.
constexpr std::size_t kCompactAfter = 4096;

ERL_NIF_TERM& atom_member = register_atom("member");
ERL_NIF_TERM& atom_group = register_atom("group");
ERL_NIF_TERM& atom_insert = register_atom("insert");
ERL_NIF_TERM& atom_update = register_atom("update");
ERL_NIF_TERM& atom_delete = register_atom("delete");
ERL_NIF_TERM& atom_sync = register_atom("sync");
ERL_NIF_TERM& atom_invalidate = register_atom("invalidate");
ERL_NIF_TERM& atom_member_count = register_atom("member_count");
ERL_NIF_TERM& atom_online_count = register_atom("online_count");
ERL_NIF_TERM& atom_groups = register_atom("groups");

// Terms the list hands back (ids of users, groups and sessions), addressed by
// slot. Immediate terms (atoms, small integers, local pids) are kept as they
// are; others are copied into a process-independent env, which is rebuilt
// when more of it is garbage than live.
class TermStore {
 public:
  Payload store(ErlNifEnv* env, ERL_NIF_TERM term) {
    const bool boxed = !is_immediate(env, term);
    Slot slot{boxed ? enif_make_copy(env_->get(), term) : term, boxed, true};
    live_boxed_ += boxed ? 1 : 0;
    if (!free_.empty()) {
      const Payload payload = free_.back();
      free_.pop_back();
      slots_[payload] = slot;
      return payload;
    }
    slots_.push_back(slot);
    return slots_.size() - 1;
  }

  ERL_NIF_TERM get(ErlNifEnv* env, Payload payload) const {
    const Slot& slot = slots_[payload];
    return slot.boxed ? enif_make_copy(env, slot.term) : slot.term;
  }

  void release(Payload payload) {
    Slot& slot = slots_[payload];
    if (slot.boxed) {
      --live_boxed_;
      ++dead_boxed_;
    }
    slot = Slot{0, false, false};
    free_.push_back(payload);
  }

  // More of the env is garbage than live: time to copy the live terms into a
  // fresh one (done by the next call, before it changes anything).
  bool compaction_due() const noexcept {
    return dead_boxed_ > kCompactAfter && dead_boxed_ > live_boxed_;
  }
  std::size_t live_boxed() const noexcept { return live_boxed_; }

  void compact() {
    auto fresh = std::make_unique<OwnedEnv>();
    for (Slot& slot : slots_) {
      if (slot.used && slot.boxed) slot.term = enif_make_copy(fresh->get(), slot.term);
    }
    env_ = std::move(fresh);
    dead_boxed_ = 0;
  }

  std::size_t memory_bytes() const noexcept {
    return slots_.capacity() * sizeof(Slot) + free_.capacity() * sizeof(Payload);
  }

  // True when storing one more term reallocates a table of at least `min`.
  bool growth_due(std::size_t min) const noexcept {
    return free_.empty() && slots_.size() == slots_.capacity() && slots_.size() >= min;
  }

 private:
  struct Slot {
    ERL_NIF_TERM term;
    bool boxed;
    bool used;
  };

  static bool is_immediate(ErlNifEnv* env, ERL_NIF_TERM term) {
    if (enif_is_atom(env, term)) return true;
    ErlNifSInt64 value;
    // Small integers on a 64-bit VM hold 60 bits.
    if (enif_get_int64(env, term, &value)) {
      return value >= -(ErlNifSInt64{1} << 59) && value < (ErlNifSInt64{1} << 59);
    }
    ErlNifPid pid;
    return enif_get_local_pid(env, term, &pid) != 0;
  }

  std::unique_ptr<OwnedEnv> env_ = std::make_unique<OwnedEnv>();
  std::vector<Slot> slots_;
  std::vector<Payload> free_;
  std::size_t live_boxed_ = 0;
  std::size_t dead_boxed_ = 0;
};

struct State {
  MemberList list;
  TermStore terms;
  bool hidden = false;

  void release_payloads() {
    for (const Payload payload : list.take_released()) terms.release(payload);
  }
};

struct MemberListResource {
  std::mutex lock;
  std::unique_ptr<State> state = std::make_unique<State>();

  MemberListResource() = default;
  MemberListResource(const MemberListResource&) = delete;
  MemberListResource& operator=(const MemberListResource&) = delete;

  // Freeing a million members takes milliseconds: off the schedulers.
  ~MemberListResource() {
    try {
      if (state && state->list.member_count() > kDetachedFreeMembers) {
        std::shared_ptr<State> doomed(std::move(state));
        ReplyThread::instance().run_detached([doomed]() mutable { doomed.reset(); });
      }
    } catch (...) {
      // No thread: freed here.
    }
  }
};
SWITCHBOARD_RESOURCE(MemberListResource, "MemberList", "a Switchboard.MemberList reference");

using ListArgument = Borrowed<MemberListResource>;
using Result = Scheduled<ERL_NIF_TERM>;

// Runs `body(state)` under the list's lock. A normal scheduler only tries
// the lock; a list busy in another process re-runs the call dirty, where
// waiting is allowed. A body returns nothing when its work turns out too
// large for a normal scheduler (it must decide before changing anything):
// the call is then re-run dirty, after the lock is released.
//
// On a normal scheduler the call's time is reported to the VM (one percent
// of a timeslice per started 10 us): a NIF call otherwise counts as one
// reduction, and a process looping over changes (each ~100 us) or
// subscribes would keep its scheduler for thousands of them, milliseconds,
// before the VM let anyone else run.
class TimesliceReport {
 public:
  explicit TimesliceReport(ErlNifEnv* env) : env_(env), start_(Clock::now()) {}
  TimesliceReport(const TimesliceReport&) = delete;
  TimesliceReport& operator=(const TimesliceReport&) = delete;
  ~TimesliceReport() {
    const auto nanos =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count();
    const auto percent = std::clamp<std::int64_t>((nanos + 9'999) / 10'000, 1, 100);
    enif_consume_timeslice(env_, static_cast<int>(percent));
  }

 private:
  using Clock = std::chrono::steady_clock;
  ErlNifEnv* env_;
  Clock::time_point start_;
};

template <class Body>
Result with_list(Call& call, MemberListResource& resource, Body&& body) {
  State& state = *resource.state;
  if (call.on_normal_scheduler()) {
    const TimesliceReport report(call);
    std::unique_lock<std::mutex> guard(resource.lock, std::try_to_lock);
    if (!guard.owns_lock()) return call.dirty();
    if (state.terms.compaction_due()) {
      // Copying many live terms would hold the scheduler: the call goes dirty.
      if (state.terms.live_boxed() > kDirtyItems) return call.dirty();
      state.terms.compact();
    }
    const std::optional<ERL_NIF_TERM> made = body(state);
    if (!made) return call.dirty();
    return *made;
  }
  std::lock_guard<std::mutex> guard(resource.lock);
  if (state.terms.compaction_due()) state.terms.compact();
  const std::optional<ERL_NIF_TERM> made = body(state);
  if (!made) throw std::logic_error("member list work refused on a dirty scheduler");
  return *made;
}

std::string_view bytes_of(const core::TermKey& key) {
  return {reinterpret_cast<const char*>(key.data()), key.size()};
}

std::string_view comparable_of(const core::TermKey& key) {
  return {reinterpret_cast<const char*>(key.data()), key.comparable_size()};
}

ERL_NIF_TERM make_item(ErlNifEnv* env, const State& state, const MemberList::Item& item) {
  if (item.is_group) {
    return enif_make_tuple3(env, atom_group, state.terms.get(env, item.payload),
                            enif_make_uint(env, item.count));
  }
  return enif_make_tuple2(env, atom_member, state.terms.get(env, item.payload));
}

ERL_NIF_TERM make_range(ErlNifEnv* env, const MemberList::Range& range) {
  return enif_make_list2(env, enif_make_uint(env, range.first), enif_make_uint(env, range.last));
}

ERL_NIF_TERM make_op(ErlNifEnv* env, const State& state, const MemberList::Op& op) {
  const ERL_NIF_TERM index = enif_make_uint(env, op.index);
  switch (op.kind) {
    case MemberList::OpKind::insert:
      return enif_make_tuple3(env, atom_insert, index, make_item(env, state, op.item));
    case MemberList::OpKind::update:
      return enif_make_tuple3(env, atom_update, index, make_item(env, state, op.item));
    case MemberList::OpKind::remove:
      break;
  }
  return enif_make_tuple2(env, atom_delete, index);
}

// The last change's updates as [{session_ids, ops}].
ERL_NIF_TERM make_updates(ErlNifEnv* env, const State& state) {
  const auto& entries = state.list.entries();
  const auto& sessions = state.list.sessions();
  const auto& ops = state.list.ops();
  ERL_NIF_TERM result = enif_make_list(env, 0);
  for (auto entry = entries.rbegin(); entry != entries.rend(); ++entry) {
    ERL_NIF_TERM session_list = enif_make_list(env, 0);
    for (std::uint32_t i = entry->session_count; i > 0; --i) {
      session_list = enif_make_list_cell(
          env, state.terms.get(env, sessions[entry->session_begin + i - 1]), session_list);
    }
    ERL_NIF_TERM op_list = enif_make_list(env, 0);
    for (std::uint32_t i = entry->op_count; i > 0; --i) {
      op_list =
          enif_make_list_cell(env, make_op(env, state, ops[entry->op_begin + i - 1]), op_list);
    }
    result = enif_make_list_cell(env, enif_make_tuple2(env, session_list, op_list), result);
  }
  return result;
}

ERL_NIF_TERM make_items(ErlNifEnv* env, const State& state, std::size_t first, std::size_t last) {
  std::vector<MemberList::Item> items;
  state.list.items(first, last, items);
  std::vector<ERL_NIF_TERM> terms;
  terms.reserve(items.size());
  for (const auto& item : items) terms.push_back(make_item(env, state, item));
  return enif_make_list_from_array(env, terms.data(), static_cast<unsigned>(terms.size()));
}

// The work of a change, counted in bytes like every slice budget
// (scheduling.hpp: 1 MiB is about 400 us, so a byte is about 0.4 ns): each
// range that gets ops costs its op generation, its entry and the terms of
// both (about 450 ns at 1M members and 10k sessions, 340 ns at 100k:
// bench/member_list.exs); the walk over all ranges and each session told
// cost less. A change cannot be split: one that counts more than a slice
// (about 400 us) runs dirty (at two slices the scheduler probe's p99 during
// a stream of changes at 1M members was 2.1-2.3 ms, at one 1.2 ms).
// Tests shrink the budget (set_work_budget/1) to send every change there.
constexpr std::size_t kBytesPerReachedRange = 1200;
constexpr std::size_t kBytesPerRange = 40;
constexpr std::size_t kBytesPerSession = 26;

bool change_fits_normal(const MemberList& list, std::string_view user_key,
                        const MemberList::MemberSpec* spec) {
  const auto work = list.change_work(user_key, spec);
  return work.reached_ranges * kBytesPerReachedRange + work.ranges * kBytesPerRange +
             work.sessions * kBytesPerSession <=
         slice_budget().bytes;
}

// A new member or session that grows a table this large (a reallocation or
// a rehash moving every entry: ~1 ms at this size, 40-90 ms at a million)
// goes dirty.
constexpr std::size_t kDirtyGrowth = 32768;

// Ids become keys (and are copied into the store): a large one is work.
constexpr std::size_t kDirtyKeyBytes = 64 * 1024;

bool large_key(const Call& call, ERL_NIF_TERM term) {
  return call.on_normal_scheduler() &&
         term_larger_than(call, term, kDirtyKeyBytes, BinaryBytes::copied);
}

// ---------------------------------------------------------------------------

ResourcePtr<MemberListResource> member_list_new(ErlNifEnv*, bool hidden) {
  auto resource = make_resource<MemberListResource>();
  resource->state->hidden = hidden;
  return resource;
}
SWITCHBOARD_NIF(member_list_new, 0);

// member_list_put(List, Id, Name, Status, Class, GroupTuple, GroupId): Status
// 0..3 (3 offline), Class 0 (hoisted: GroupTuple = {-Position, RoleId}), 1
// (online) or 2 (offline); GroupId is the header's group id.
Result member_list_put(Call& call, ListArgument list, Term id, BinaryView name,
                       NonNegative<std::uint32_t> status, NonNegative<std::uint32_t> group_class,
                       Term group_tuple, Term group_id) {
  if (status > 3) throw bad_argument(call, "argument 4", "a status code 0..3", call.arguments()[3]);
  if (group_class > 2) {
    throw bad_argument(call, "argument 5", "a group class 0..2", call.arguments()[4]);
  }
  if (large_key(call, id.value) || large_key(call, group_tuple.value) ||
      large_key(call, group_id.value) ||
      (call.on_normal_scheduler() && name.binary.size > kDirtyKeyBytes)) {
    return call.dirty();
  }
  auto& builder = thread_term_key_builder();
  const core::TermKey user_key = make_term_key(call, id.value, builder);
  const core::TermKey name_key = make_term_key(call, call.arguments()[2], builder);
  std::string group_key(1, static_cast<char>(group_class.value));
  if (group_class == 0) {
    group_key.append(comparable_of(make_term_key(call, group_tuple.value, builder)));
  }
  std::string sort_key = group_key;
  sort_key.append(comparable_of(name_key));
  sort_key.append(comparable_of(user_key));

  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    const bool offline = status == 3;
    const MemberList::MemberSpec spec{bytes_of(user_key),
                                      sort_key,
                                      group_key.size(),
                                      name_key.comparable_size(),
                                      static_cast<std::uint8_t>(status.value),
                                      !offline,
                                      !(offline && state.hidden)};
    if (call.on_normal_scheduler() && !change_fits_normal(state.list, spec.user_key, &spec)) {
      return std::nullopt;
    }
    const auto known_user = state.list.user_payload(spec.user_key);
    if (!known_user && call.on_normal_scheduler() &&
        (state.list.member_growth_due(kDirtyGrowth) || state.terms.growth_due(kDirtyGrowth))) {
      return std::nullopt;
    }
    const Payload user = known_user ? *known_user : state.terms.store(call, id.value);
    const auto known_group = state.list.group_payload(group_key);
    const Payload group = known_group ? *known_group : state.terms.store(call, group_id.value);
    try {
      state.list.put(spec, user, group);
    } catch (...) {
      if (!known_user) state.terms.release(user);
      if (!known_group) state.terms.release(group);
      throw;
    }
    const ERL_NIF_TERM updates = make_updates(call, state);
    state.release_payloads();
    return updates;
  });
}
SWITCHBOARD_NIF(member_list_put, 0);

Result member_list_delete(Call& call, ListArgument list, Term id) {
  if (large_key(call, id.value)) return call.dirty();
  const core::TermKey user_key = make_term_key(call, id.value, thread_term_key_builder());
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    if (call.on_normal_scheduler() &&
        !change_fits_normal(state.list, bytes_of(user_key), nullptr)) {
      return std::nullopt;
    }
    state.list.erase(bytes_of(user_key));
    const ERL_NIF_TERM updates = make_updates(call, state);
    state.release_payloads();
    return updates;
  });
}
SWITCHBOARD_NIF(member_list_delete, 0);

// member_list_subscribe(List, Session, Ranges): Ranges sorted {First, Last}
// tuples, checked by the caller (the core checks again and throws).
Result member_list_subscribe(Call& call, ListArgument list, Term session, Term ranges_term) {
  if (large_key(call, session.value)) return call.dirty();
  std::vector<MemberList::Range> ranges;
  ERL_NIF_TERM rest = ranges_term.value, head;
  while (enif_get_list_cell(call, rest, &head, &rest)) {
    int arity;
    const ERL_NIF_TERM* pair;
    unsigned first, last;
    if (ranges.size() >= MemberList::kMaxRanges || !enif_get_tuple(call, head, &arity, &pair) ||
        arity != 2 || !enif_get_uint(call, pair[0], &first) ||
        !enif_get_uint(call, pair[1], &last)) {
      throw bad_argument(call, "argument 3", "ranges as {first, last} tuples", ranges_term.value);
    }
    ranges.push_back({first, last});
  }
  const core::TermKey session_key = make_term_key(call, session.value, thread_term_key_builder());
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    const auto known = state.list.session_payload(bytes_of(session_key));
    if (!known && call.on_normal_scheduler() &&
        (state.list.session_growth_due(kDirtyGrowth) || state.terms.growth_due(kDirtyGrowth))) {
      return std::nullopt;
    }
    const Payload payload = known ? *known : state.terms.store(call, session.value);
    MemberList::Subscription result;
    try {
      result = state.list.subscribe(bytes_of(session_key), payload, ranges);
    } catch (const std::invalid_argument&) {
      if (!known) state.terms.release(payload);
      throw bad_argument(call, "argument 3", "sorted, non-overlapping ranges of at most 100 items",
                         ranges_term.value);
    }
    std::vector<ERL_NIF_TERM> ops;
    for (const auto& range : result.dropped) {
      ops.push_back(enif_make_tuple2(call, atom_invalidate, make_range(call, range)));
    }
    for (const auto& range : result.added) {
      ops.push_back(enif_make_tuple3(call, atom_sync, make_range(call, range),
                                     make_items(call, state, range.first, range.last)));
    }
    state.release_payloads();
    if (ops.empty()) return enif_make_list(call, 0);
    const ERL_NIF_TERM op_list =
        enif_make_list_from_array(call, ops.data(), static_cast<unsigned>(ops.size()));
    return enif_make_list1(call,
                           enif_make_tuple2(call, enif_make_list1(call, session.value), op_list));
  });
}
SWITCHBOARD_NIF(member_list_subscribe, 0);

Result member_list_unsubscribe(Call& call, ListArgument list, Term session) {
  if (large_key(call, session.value)) return call.dirty();
  const core::TermKey session_key = make_term_key(call, session.value, thread_term_key_builder());
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    state.list.unsubscribe(bytes_of(session_key));
    state.release_payloads();
    return atoms::ok;
  });
}
SWITCHBOARD_NIF(member_list_unsubscribe, 0);

Result member_list_items(Call& call, ListArgument list) {
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    const std::size_t size = state.list.size();
    if (size > kDirtyItems && call.on_normal_scheduler()) return std::nullopt;
    if (size == 0) return enif_make_list(call, 0);
    return make_items(call, state, 0, size - 1);
  });
}
SWITCHBOARD_NIF(member_list_items, 0);

Result member_list_size(Call& call, ListArgument list) {
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    return enif_make_uint64(call, state.list.size());
  });
}
SWITCHBOARD_NIF(member_list_size, 0);

Result member_list_counts(Call& call, ListArgument list) {
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    std::vector<ERL_NIF_TERM> groups;
    for (const auto& [payload, count] : state.list.groups()) {
      groups.push_back(
          enif_make_tuple2(call, state.terms.get(call, payload), enif_make_uint(call, count)));
    }
    ERL_NIF_TERM keys[] = {atom_member_count, atom_online_count, atom_groups};
    ERL_NIF_TERM values[] = {
        enif_make_uint64(call, state.list.member_count()),
        enif_make_uint64(call, state.list.online_count()),
        enif_make_list_from_array(call, groups.data(), static_cast<unsigned>(groups.size()))};
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(call, keys, values, 3, &map);
    return map;
  });
}
SWITCHBOARD_NIF(member_list_counts, 0);

Result member_list_member_index(Call& call, ListArgument list, Term id) {
  if (large_key(call, id.value)) return call.dirty();
  const core::TermKey user_key = make_term_key(call, id.value, thread_term_key_builder());
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    const auto index = state.list.member_index(bytes_of(user_key));
    return index ? enif_make_uint64(call, *index) : atoms::nil;
  });
}
SWITCHBOARD_NIF(member_list_member_index, 0);

Result member_list_memory(Call& call, ListArgument list) {
  return with_list(call, *list, [&](State& state) -> std::optional<ERL_NIF_TERM> {
    return enif_make_uint64(call, sizeof(MemberListResource) + sizeof(State) +
                                      state.list.memory_bytes() + state.terms.memory_bytes());
  });
}
SWITCHBOARD_NIF(member_list_memory, 0);

}  // namespace
}  // namespace switchboard::nif
