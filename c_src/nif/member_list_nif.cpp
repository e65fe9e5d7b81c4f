// Switchboard.MemberList: NIFs over core::MemberList. The core works on byte
// keys and opaque payloads; this file turns terms into keys (term_key_glue),
// keeps the terms it must give back (user, group and session ids) in a
// TermStore, builds the updates as terms, and picks the scheduler.
//
// Scheduling: a change costs O(log n) plus the ops and session lists it
// returns (a few hundred microseconds with 10k sessions), a subscribe at most
// five 100-item syncs: plain NIFs. Only items/1 of a large list and the
// release of a large list go elsewhere (dirty scheduler, reply thread).
#include <algorithm>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/member_list/member_list.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"
#include "nif/term_key_glue.hpp"

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
SWITCHBOARD_RESOURCE(MemberListResource, "MemberList");

MemberListResource* list_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  auto* list = borrow_resource<MemberListResource>(env, term);
  if (list == nullptr) throw bad_argument(env, "a Switchboard.MemberList reference", term);
  return list;
}

bool on_normal_scheduler() { return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER; }

// Runs `body(state)` under the list's lock. A normal scheduler only tries
// the lock; a list busy in another process re-runs the call dirty, where
// waiting is allowed.
template <class Body>
ERL_NIF_TERM with_list(ErlNifEnv* env, RawNif self, int argc, const ERL_NIF_TERM argv[],
                       Body&& body) {
  MemberListResource* resource = list_argument(env, argv[0]);
  State& state = *resource->state;
  if (on_normal_scheduler()) {
    std::unique_lock<std::mutex> guard(resource->lock, std::try_to_lock);
    if (!guard.owns_lock()) return run_dirty_cpu(env, "member_list_wait", self, argc, argv);
    if (state.terms.compaction_due()) {
      // Copying many live terms would hold the scheduler: the call goes dirty.
      if (state.terms.live_boxed() > kDirtyItems) {
        guard.unlock();
        return run_dirty_cpu(env, "member_list_compact", self, argc, argv);
      }
      state.terms.compact();
    }
    return body(state);
  }
  std::lock_guard<std::mutex> guard(resource->lock);
  if (state.terms.compaction_due()) state.terms.compact();
  return body(state);
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

std::uint32_t uint32_argument(ErlNifEnv* env, ERL_NIF_TERM term, std::string_view what) {
  unsigned value;
  if (!enif_get_uint(env, term, &value)) throw bad_argument(env, what, term);
  return value;
}

// ---------------------------------------------------------------------------

ERL_NIF_TERM member_list_new(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  bool hidden;
  if (!Decoder<bool>::decode(env, argv[0], hidden)) throw bad_argument(env, "a boolean", argv[0]);
  auto resource = make_resource<MemberListResource>();
  resource->state->hidden = hidden;
  return resource.make_term(env);
}
SWITCHBOARD_RAW_NIF(member_list_new, 1, 0);

// member_list_put(List, Id, Name, Status, Class, GroupTuple, GroupId): Status
// 0..3 (3 offline), Class 0 (hoisted: GroupTuple = {-Position, RoleId}), 1
// (online) or 2 (offline); GroupId is the header's group id.
ERL_NIF_TERM member_list_put(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  BinaryView name;
  if (!Decoder<BinaryView>::decode(env, argv[2], name)) {
    throw bad_argument(env, "a binary name", argv[2]);
  }
  const std::uint32_t status = uint32_argument(env, argv[3], "a status code");
  const std::uint32_t group_class = uint32_argument(env, argv[4], "a group class");
  if (status > 3 || group_class > 2) throw bad_argument(env, "a status and class", argv[3]);
  auto& builder = thread_term_key_builder();
  const core::TermKey user_key = make_term_key(env, argv[1], builder);
  const core::TermKey name_key = make_term_key(env, argv[2], builder);
  std::string group_key(1, static_cast<char>(group_class));
  if (group_class == 0) group_key.append(comparable_of(make_term_key(env, argv[5], builder)));
  std::string sort_key = group_key;
  sort_key.append(comparable_of(name_key));
  sort_key.append(comparable_of(user_key));

  return with_list(env, raw_entry<member_list_put>, argc, argv, [&](State& state) {
    const bool offline = status == 3;
    const MemberList::MemberSpec spec{bytes_of(user_key),
                                      sort_key,
                                      group_key.size(),
                                      name_key.comparable_size(),
                                      static_cast<std::uint8_t>(status),
                                      !offline,
                                      !(offline && state.hidden)};
    const auto known_user = state.list.user_payload(spec.user_key);
    const Payload user = known_user ? *known_user : state.terms.store(env, argv[1]);
    const auto known_group = state.list.group_payload(group_key);
    const Payload group = known_group ? *known_group : state.terms.store(env, argv[6]);
    try {
      state.list.put(spec, user, group);
    } catch (...) {
      if (!known_user) state.terms.release(user);
      if (!known_group) state.terms.release(group);
      throw;
    }
    const ERL_NIF_TERM updates = make_updates(env, state);
    state.release_payloads();
    return updates;
  });
}
SWITCHBOARD_RAW_NIF(member_list_put, 7, 0);

ERL_NIF_TERM member_list_delete(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  const core::TermKey user_key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_list(env, raw_entry<member_list_delete>, argc, argv, [&](State& state) {
    state.list.erase(bytes_of(user_key));
    const ERL_NIF_TERM updates = make_updates(env, state);
    state.release_payloads();
    return updates;
  });
}
SWITCHBOARD_RAW_NIF(member_list_delete, 2, 0);

// member_list_subscribe(List, Session, Ranges): Ranges sorted {First, Last}
// tuples, checked by the caller (the core checks again and throws).
ERL_NIF_TERM member_list_subscribe(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  std::vector<MemberList::Range> ranges;
  ERL_NIF_TERM rest = argv[2], head;
  while (enif_get_list_cell(env, rest, &head, &rest)) {
    int arity;
    const ERL_NIF_TERM* pair;
    if (ranges.size() >= MemberList::kMaxRanges || !enif_get_tuple(env, head, &arity, &pair) ||
        arity != 2) {
      throw bad_argument(env, "ranges as {first, last} tuples", argv[2]);
    }
    ranges.push_back({uint32_argument(env, pair[0], "a range start"),
                      uint32_argument(env, pair[1], "a range end")});
  }
  const core::TermKey session_key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_list(env, raw_entry<member_list_subscribe>, argc, argv, [&](State& state) {
    const auto known = state.list.session_payload(bytes_of(session_key));
    const Payload payload = known ? *known : state.terms.store(env, argv[1]);
    MemberList::Subscription result;
    try {
      result = state.list.subscribe(bytes_of(session_key), payload, ranges);
    } catch (const std::invalid_argument&) {
      if (!known) state.terms.release(payload);
      throw bad_argument(env, "sorted, non-overlapping ranges of at most 100 items", argv[2]);
    }
    std::vector<ERL_NIF_TERM> ops;
    for (const auto& range : result.dropped) {
      ops.push_back(enif_make_tuple2(env, atom_invalidate, make_range(env, range)));
    }
    for (const auto& range : result.added) {
      ops.push_back(enif_make_tuple3(env, atom_sync, make_range(env, range),
                                     make_items(env, state, range.first, range.last)));
    }
    state.release_payloads();
    if (ops.empty()) return enif_make_list(env, 0);
    const ERL_NIF_TERM op_list =
        enif_make_list_from_array(env, ops.data(), static_cast<unsigned>(ops.size()));
    return enif_make_list1(env, enif_make_tuple2(env, enif_make_list1(env, argv[1]), op_list));
  });
}
SWITCHBOARD_RAW_NIF(member_list_subscribe, 3, 0);

ERL_NIF_TERM member_list_unsubscribe(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  const core::TermKey session_key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_list(env, raw_entry<member_list_unsubscribe>, argc, argv, [&](State& state) {
    state.list.unsubscribe(bytes_of(session_key));
    state.release_payloads();
    return atoms::ok;
  });
}
SWITCHBOARD_RAW_NIF(member_list_unsubscribe, 2, 0);

ERL_NIF_TERM member_list_items(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  bool too_long = false;
  const bool dirty = !on_normal_scheduler();
  const ERL_NIF_TERM result =
      with_list(env, raw_entry<member_list_items>, argc, argv, [&](State& state) {
        const std::size_t size = state.list.size();
        if (size > kDirtyItems && !dirty) {
          too_long = true;
          return atoms::undefined;
        }
        if (size == 0) return enif_make_list(env, 0);
        return make_items(env, state, 0, size - 1);
      });
  if (too_long)
    return run_dirty_cpu(env, "member_list_items", raw_entry<member_list_items>, argc, argv);
  return result;
}
SWITCHBOARD_RAW_NIF(member_list_items, 1, 0);

ERL_NIF_TERM member_list_size(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return with_list(env, raw_entry<member_list_size>, argc, argv,
                   [&](State& state) { return enif_make_uint64(env, state.list.size()); });
}
SWITCHBOARD_RAW_NIF(member_list_size, 1, 0);

ERL_NIF_TERM member_list_counts(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return with_list(env, raw_entry<member_list_counts>, argc, argv, [&](State& state) {
    std::vector<ERL_NIF_TERM> groups;
    for (const auto& [payload, count] : state.list.groups()) {
      groups.push_back(
          enif_make_tuple2(env, state.terms.get(env, payload), enif_make_uint(env, count)));
    }
    ERL_NIF_TERM keys[] = {atom_member_count, atom_online_count, atom_groups};
    ERL_NIF_TERM values[] = {
        enif_make_uint64(env, state.list.member_count()),
        enif_make_uint64(env, state.list.online_count()),
        enif_make_list_from_array(env, groups.data(), static_cast<unsigned>(groups.size()))};
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(env, keys, values, 3, &map);
    return map;
  });
}
SWITCHBOARD_RAW_NIF(member_list_counts, 1, 0);

ERL_NIF_TERM member_list_member_index(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  const core::TermKey user_key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_list(env, raw_entry<member_list_member_index>, argc, argv, [&](State& state) {
    const auto index = state.list.member_index(bytes_of(user_key));
    return index ? enif_make_uint64(env, *index) : atoms::nil;
  });
}
SWITCHBOARD_RAW_NIF(member_list_member_index, 2, 0);

ERL_NIF_TERM member_list_memory(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return with_list(env, raw_entry<member_list_memory>, argc, argv, [&](State& state) {
    return enif_make_uint64(env, sizeof(MemberListResource) + sizeof(State) +
                                     state.list.memory_bytes() + state.terms.memory_bytes());
  });
}
SWITCHBOARD_RAW_NIF(member_list_memory, 1, 0);

}  // namespace
}  // namespace switchboard::nif
