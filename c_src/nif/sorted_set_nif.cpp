// Switchboard.SortedSet: NIFs over core::SortedSet. Thin by design: terms
// become TermKeys (term_key_glue), the core does the work, and this file only
// picks the scheduler and the lock mode.
//
// Scheduling rules:
//   * single-item calls run on the normal scheduler and only try the lock; a
//     set that is busy (a writer, or a long reader) sends the call to a
//     dirty CPU scheduler, where waiting for the lock is allowed;
//   * calls whose work grows with their input (bulk build, to_list, large
//     slices and ranges, copy, clear of a large set) go dirty above a size
//     where they could take more than about a millisecond.
#include <algorithm>
#include <optional>
#include <vector>

#include "core/sorted_set/sorted_set.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"
#include "nif/term_key_glue.hpp"

namespace switchboard::nif {
namespace {

// Items encoded or decoded per millisecond is well above these on this
// hardware class (roughly 100-300 ns per item); below them a call stays on
// the normal scheduler.
constexpr std::size_t kDirtyEncodeItems = 2000;
constexpr std::size_t kDirtyDecodeItems = 8000;
constexpr std::size_t kDirtyTreeItems = 20000;

// The set as a resource. Its destructor runs wherever the last reference is
// garbage collected, usually a normal scheduler: freeing a million items
// takes about 5 ms there, so a large tree is handed to the reply thread and
// freed off the schedulers.
struct SortedSetResource : core::SortedSet {
  using core::SortedSet::SortedSet;
  SortedSetResource(const SortedSetResource&) = delete;
  SortedSetResource& operator=(const SortedSetResource&) = delete;

  ~SortedSetResource() {
    try {
      auto access = write();  // uncontended: nothing else can reach the set now
      if (access->size() <= kDirtyTreeItems) return;
      auto doomed = std::make_shared<core::OrderStatisticTree>();
      access->swap(*doomed);
      ReplyThread::instance().run_detached([doomed] { doomed->clear(); });
    } catch (...) {
      // No thread (or no memory for the job): the tree is freed here.
    }
  }
};
SWITCHBOARD_RESOURCE(SortedSetResource, "SortedSet");

ERL_NIF_TERM& atom_not_ascending = register_atom("not_ascending");

// Borrowed for the duration of the call: the argument term keeps the
// resource alive, so no keep/release pair is needed on the hot path.
SortedSetResource* set_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  SortedSetResource* set = borrow_resource<SortedSetResource>(env, term);
  if (set == nullptr) throw bad_argument(env, "a Switchboard.SortedSet reference", term);
  return set;
}

int64_t integer_argument(ErlNifEnv* env, ERL_NIF_TERM term, std::string_view what) {
  ErlNifSInt64 value;
  if (!enif_get_int64(env, term, &value)) throw bad_argument(env, what, term);
  return value;
}

bool on_normal_scheduler() { return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER; }

// Runs `body(access)` under the set's lock (shared for Read, exclusive for
// Write). On a normal scheduler the lock is only tried; when it is taken the
// whole call is re-run on a dirty CPU scheduler that may wait for it.
template <bool Write, class Body>
ERL_NIF_TERM with_lock(ErlNifEnv* env, SortedSetResource& set, RawNif self, int argc,
                       const ERL_NIF_TERM argv[], Body&& body) {
  if (on_normal_scheduler()) {
    if constexpr (Write) {
      if (auto access = set.try_write()) return body(access->tree());
    } else {
      if (auto access = set.try_read()) return body(access->tree());
    }
    return run_dirty_cpu(env, "sorted_set_wait", self, argc, argv);
  }
  if constexpr (Write) {
    auto access = set.write();
    return body(access.tree());
  } else {
    auto access = set.read();
    return body(access.tree());
  }
}

ERL_NIF_TERM make_index(ErlNifEnv* env, std::size_t index) {
  return enif_make_uint64(env, static_cast<ErlNifUInt64>(index));
}

ERL_NIF_TERM make_optional_index(ErlNifEnv* env, std::optional<std::size_t> index) {
  return index ? make_index(env, *index) : atoms::nil;
}

// Terms for `count` keys from `start`, in order (a proper list).
ERL_NIF_TERM make_slice(ErlNifEnv* env, const core::OrderStatisticTree& tree, std::size_t start,
                        std::size_t count) {
  if (start >= tree.size() || count == 0) return enif_make_list(env, 0);
  count = std::min(count, tree.size() - start);
  std::vector<core::TermKeyView> keys;
  keys.reserve(count);
  for (auto cursor = tree.cursor_at(start); !cursor.done() && keys.size() < count;
       cursor.advance()) {
    keys.push_back(cursor.key());
  }
  std::vector<ERL_NIF_TERM> items(keys.size());
  make_terms_from_keys(env, keys, items.data());
  return enif_make_list_from_array(env, items.data(), static_cast<unsigned>(items.size()));
}

// ---------------------------------------------------------------------------

ERL_NIF_TERM sorted_set_new(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  integer_argument(env, argv[0], "a non-negative integer capacity");
  return make_resource<SortedSetResource>().make_term(env);
}
SWITCHBOARD_RAW_NIF(sorted_set_new, 1, 0);

// sorted_set_from_list(Items, StrictlyAscending): encodes every item, then
// either sorts and drops later duplicates, or checks strict order, and bulk
// builds the tree in O(n). Returns the set or {not_ascending, Position}.
ERL_NIF_TERM sorted_set_from_list(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  bool strictly_ascending;
  if (!Decoder<bool>::decode(env, argv[1], strictly_ascending)) {
    throw bad_argument(env, "a boolean", argv[1]);
  }
  if (on_normal_scheduler() && list_longer_than(env, argv[0], kDirtyEncodeItems)) {
    return run_dirty_cpu(env, "sorted_set_from_list", raw_entry<sorted_set_from_list>, argc, argv);
  }
  unsigned length;
  if (!enif_get_list_length(env, argv[0], &length)) {
    throw bad_argument(env, "a proper list of items", argv[0]);
  }

  std::vector<core::TermKey> keys;
  keys.reserve(length);
  auto& builder = thread_term_key_builder();
  ERL_NIF_TERM rest = argv[0], head;
  while (enif_get_list_cell(env, rest, &head, &rest)) {
    keys.push_back(make_term_key(env, head, builder));
  }

  core::OrderStatisticTree tree;
  if (strictly_ascending) {
    if (auto position = tree.build_from_sorted(std::span<const core::TermKey>(keys))) {
      return enif_make_tuple2(env, atom_not_ascending, make_index(env, *position));
    }
  } else {
    // Stable, so among equal (==) items the first one given stays first.
    std::stable_sort(keys.begin(), keys.end(), [](const core::TermKey& a, const core::TermKey& b) {
      return core::compare(a, b) < 0;
    });
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    tree.build_from_sorted(std::span<const core::TermKey>(keys));
  }
  return make_resource<SortedSetResource>(std::move(tree)).make_term(env);
}
SWITCHBOARD_RAW_NIF(sorted_set_from_list, 2, 0);

// Returns the index the item landed at, or nil when an equal one was present.
ERL_NIF_TERM sorted_set_add(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const core::TermKey key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock<true>(env, *set, raw_entry<sorted_set_add>, argc, argv,
                         [&](core::OrderStatisticTree& tree) {
                           const auto result = tree.insert(key);
                           return result.inserted ? make_index(env, result.index) : atoms::nil;
                         });
}
SWITCHBOARD_RAW_NIF(sorted_set_add, 2, 0);

// Returns the index the item had, or nil when it was absent.
ERL_NIF_TERM sorted_set_remove(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const core::TermKey key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock<true>(
      env, *set, raw_entry<sorted_set_remove>, argc, argv,
      [&](core::OrderStatisticTree& tree) { return make_optional_index(env, tree.erase(key)); });
}
SWITCHBOARD_RAW_NIF(sorted_set_remove, 2, 0);

// Index may be negative (from the end). Returns {ok, Item} or error.
ERL_NIF_TERM sorted_set_remove_at(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t index = integer_argument(env, argv[1], "an integer index");
  return with_lock<true>(
      env, *set, raw_entry<sorted_set_remove_at>, argc, argv, [&](core::OrderStatisticTree& tree) {
        const auto size = static_cast<int64_t>(tree.size());
        const int64_t position = index < 0 ? index + size : index;
        if (position < 0 || position >= size) return atoms::error;
        const core::TermKey removed = tree.erase_at(static_cast<std::size_t>(position));
        return enif_make_tuple2(env, atoms::ok, make_term_from_key(env, removed));
      });
}
SWITCHBOARD_RAW_NIF(sorted_set_remove_at, 2, 0);

ERL_NIF_TERM sorted_set_find_index(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const core::TermKey key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock<false>(env, *set, raw_entry<sorted_set_find_index>, argc, argv,
                          [&](const core::OrderStatisticTree& tree) {
                            return make_optional_index(env, tree.find_index(key));
                          });
}
SWITCHBOARD_RAW_NIF(sorted_set_find_index, 2, 0);

ERL_NIF_TERM sorted_set_lower_bound(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const core::TermKey key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock<false>(env, *set, raw_entry<sorted_set_lower_bound>, argc, argv,
                          [&](const core::OrderStatisticTree& tree) {
                            return make_index(env, tree.lower_bound_index(key));
                          });
}
SWITCHBOARD_RAW_NIF(sorted_set_lower_bound, 2, 0);

// Index may be negative (from the end). Returns {ok, Item} or error.
ERL_NIF_TERM sorted_set_at(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t index = integer_argument(env, argv[1], "an integer index");
  return with_lock<false>(
      env, *set, raw_entry<sorted_set_at>, argc, argv, [&](const core::OrderStatisticTree& tree) {
        const auto size = static_cast<int64_t>(tree.size());
        const int64_t position = index < 0 ? index + size : index;
        if (position < 0 || position >= size) return atoms::error;
        return enif_make_tuple2(
            env, atoms::ok, make_term_from_key(env, tree.at(static_cast<std::size_t>(position))));
      });
}
SWITCHBOARD_RAW_NIF(sorted_set_at, 2, 0);

ERL_NIF_TERM sorted_set_slice(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t start = integer_argument(env, argv[1], "a non-negative integer start");
  const int64_t amount = integer_argument(env, argv[2], "a non-negative integer amount");
  if (start < 0) throw bad_argument(env, "a non-negative integer start", argv[1]);
  if (amount < 0) throw bad_argument(env, "a non-negative integer amount", argv[2]);
  if (static_cast<uint64_t>(amount) > kDirtyDecodeItems && on_normal_scheduler()) {
    return run_dirty_cpu(env, "sorted_set_slice", raw_entry<sorted_set_slice>, argc, argv);
  }
  return with_lock<false>(env, *set, raw_entry<sorted_set_slice>, argc, argv,
                          [&](const core::OrderStatisticTree& tree) {
                            return make_slice(env, tree, static_cast<std::size_t>(start),
                                              static_cast<std::size_t>(amount));
                          });
}
SWITCHBOARD_RAW_NIF(sorted_set_slice, 3, 0);

// Items with Min =< Item =< Max (term order, == inclusive).
ERL_NIF_TERM sorted_set_range(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  auto& builder = thread_term_key_builder();
  const core::TermKey min = make_term_key(env, argv[1], builder);
  const core::TermKey max = make_term_key(env, argv[2], builder);
  const bool dirty = !on_normal_scheduler();
  std::optional<ERL_NIF_TERM> too_long;
  const ERL_NIF_TERM result =
      with_lock<false>(env, *set, raw_entry<sorted_set_range>, argc, argv,
                       [&](const core::OrderStatisticTree& tree) -> ERL_NIF_TERM {
                         if (core::compare(min, max) > 0) return enif_make_list(env, 0);
                         const std::size_t first = tree.lower_bound_index(min);
                         const std::size_t last = tree.upper_bound_index(max);
                         if (last - first > kDirtyDecodeItems && !dirty) {
                           too_long = atoms::undefined;
                           return atoms::undefined;
                         }
                         return make_slice(env, tree, first, last - first);
                       });
  // Re-run a long range on a dirty scheduler (after the lock is released).
  if (too_long)
    return run_dirty_cpu(env, "sorted_set_range", raw_entry<sorted_set_range>, argc, argv);
  return result;
}
SWITCHBOARD_RAW_NIF(sorted_set_range, 3, 0);

ERL_NIF_TERM sorted_set_size(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  return with_lock<false>(
      env, *set, raw_entry<sorted_set_size>, argc, argv,
      [&](const core::OrderStatisticTree& tree) { return make_index(env, tree.size()); });
}
SWITCHBOARD_RAW_NIF(sorted_set_size, 1, 0);

ERL_NIF_TERM sorted_set_to_list(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const bool dirty = !on_normal_scheduler();
  bool too_long = false;
  const ERL_NIF_TERM result =
      with_lock<false>(env, *set, raw_entry<sorted_set_to_list>, argc, argv,
                       [&](const core::OrderStatisticTree& tree) -> ERL_NIF_TERM {
                         if (tree.size() > kDirtyDecodeItems && !dirty) {
                           too_long = true;
                           return atoms::undefined;
                         }
                         return make_slice(env, tree, 0, tree.size());
                       });
  if (too_long) {
    return run_dirty_cpu(env, "sorted_set_to_list", raw_entry<sorted_set_to_list>, argc, argv);
  }
  return result;
}
SWITCHBOARD_RAW_NIF(sorted_set_to_list, 1, 0);

// Clears by swapping in an empty tree; freeing a large one goes dirty.
ERL_NIF_TERM sorted_set_clear(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  core::OrderStatisticTree old;
  bool too_long = false;
  const bool dirty = !on_normal_scheduler();
  const ERL_NIF_TERM result = with_lock<true>(env, *set, raw_entry<sorted_set_clear>, argc, argv,
                                              [&](core::OrderStatisticTree& tree) {
                                                if (tree.size() > kDirtyTreeItems && !dirty) {
                                                  too_long = true;
                                                } else {
                                                  old.swap(tree);
                                                }
                                                return atoms::ok;
                                              });
  if (too_long) {
    return run_dirty_cpu(env, "sorted_set_clear", raw_entry<sorted_set_clear>, argc, argv);
  }
  return result;  // `old` is freed here, outside the lock
}
SWITCHBOARD_RAW_NIF(sorted_set_clear, 1, 0);

ERL_NIF_TERM sorted_set_copy(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  std::optional<core::OrderStatisticTree> copy;
  bool too_long = false;
  const bool dirty = !on_normal_scheduler();
  const ERL_NIF_TERM waited = with_lock<false>(env, *set, raw_entry<sorted_set_copy>, argc, argv,
                                               [&](const core::OrderStatisticTree& tree) {
                                                 if (tree.size() > kDirtyTreeItems && !dirty) {
                                                   too_long = true;
                                                 } else {
                                                   copy.emplace(tree);
                                                 }
                                                 return atoms::ok;
                                               });
  if (too_long) {
    return run_dirty_cpu(env, "sorted_set_copy", raw_entry<sorted_set_copy>, argc, argv);
  }
  if (!copy) return waited;  // the set was busy: the call continues on a dirty scheduler
  return make_resource<SortedSetResource>(std::move(*copy)).make_term(env);
}
SWITCHBOARD_RAW_NIF(sorted_set_copy, 1, 0);

ERL_NIF_TERM sorted_set_memory(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  return with_lock<false>(env, *set, raw_entry<sorted_set_memory>, argc, argv,
                          [&](const core::OrderStatisticTree& tree) {
                            return make_index(env, sizeof(SortedSetResource) + tree.memory_bytes());
                          });
}
SWITCHBOARD_RAW_NIF(sorted_set_memory, 1, 0);

}  // namespace
}  // namespace switchboard::nif
