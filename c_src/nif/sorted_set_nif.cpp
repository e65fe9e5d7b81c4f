// Switchboard.SortedSet: NIFs over core::SortedSet. Thin by design: terms
// become TermKeys (term_key_glue), the core does the work, and this file only
// picks the scheduler and the lock mode.
//
// Scheduling rules, with work counted in bytes as well as items:
//   * single-item calls run on the normal scheduler and only try the lock; a
//     set that is busy (a writer, or a long reader) sends the call to a
//     dirty CPU scheduler, where waiting for the lock is allowed;
//   * an argument whose key would take more than about a millisecond to
//     build (a 100 MB binary as much as a list of a million items) is
//     encoded on a dirty CPU scheduler; so is a result whose items add up to
//     too many bytes (a slice of large items, a large set's to_list);
//   * copy and clear of a large set go dirty too.
//
// Items that hold references or funs are kept alive with the set: a key
// holds only their external bytes, and a magic reference (a NIF resource,
// an atomics ref) decodes back to the live object only while the original
// exists. Each such item keeps a copy of its term in an environment of its
// own (a Pin) for as long as the set holds it, as ETS keeps its copy.
#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/sorted_set/sorted_set.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"
#include "nif/term_key_glue.hpp"
#include "nif/term_size.hpp"

namespace switchboard::nif {
namespace {

// Items encoded or decoded per millisecond is well above the item limits on
// this hardware class (roughly 100-300 ns per item); bytes are the other
// half of the work (building a key copies every byte of its binaries,
// making a term copies the key's bytes out again). Below both a call stays
// on the normal scheduler.
constexpr std::size_t kDirtyEncodeBytes = 64 * 1024;  // estimated by term_size
constexpr std::size_t kDirtyDecodeItems = 8000;
constexpr std::size_t kDecodeBytesPerItem = 64;  // a term's cells, beside its key bytes
constexpr std::size_t kDirtyDecodeBytes = kDirtyDecodeItems * kDecodeBytesPerItem;
constexpr std::size_t kDirtyTreeItems = 20000;
constexpr std::size_t kDirtyTreeBytes = 1024 * 1024;  // tree::memory_bytes() of a copy

// Copies of the items that hold references or funs, by their keys'
// comparable bytes (unique in a set). Guarded by the set's lock.
struct Pin {
  OwnedEnv env;
  ERL_NIF_TERM term;
};
using Pins = std::unordered_map<std::string, Pin>;

std::string pin_key(core::TermKeyView key) {
  const auto bytes = key.comparable();
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void pin(Pins& pins, core::TermKeyView key, ERL_NIF_TERM term) {
  std::string name = pin_key(key);
  if (pins.contains(name)) return;
  OwnedEnv env;
  const ERL_NIF_TERM copy = env.copy(term);
  pins.emplace(std::move(name), Pin{std::move(env), copy});
}

void unpin(Pins& pins, core::TermKeyView key) {
  if (!pins.empty()) pins.erase(pin_key(key));
}

Pins copy_pins(const Pins& pins) {
  Pins copy;
  for (const auto& [key, original] : pins) {
    OwnedEnv env;
    const ERL_NIF_TERM term = env.copy(original.term);
    copy.emplace(key, Pin{std::move(env), term});
  }
  return copy;
}

// The set as a resource. Its destructor runs wherever the last reference is
// garbage collected, usually a normal scheduler: freeing a million items
// takes about 5 ms there, so a large tree is handed to the reply thread and
// freed off the schedulers.
struct SortedSetResource : core::SortedSet {
  using core::SortedSet::SortedSet;
  SortedSetResource(core::OrderStatisticTree tree, Pins pins_)
      : core::SortedSet(std::move(tree)), pins(std::move(pins_)) {}
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

  Pins pins;  // under the set's lock, like the tree
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

// True on a normal scheduler when building the key of `term` is too much
// work for it.
bool large_input(ErlNifEnv* env, ERL_NIF_TERM term) {
  return on_normal_scheduler() &&
         term_larger_than(env, term, kDirtyEncodeBytes, BinaryBytes::copied);
}

// Runs `body(set)` under the set's lock (shared for Read, exclusive for
// Write); the body reaches the tree and the pins. On a normal scheduler the
// lock is only tried; when it is taken the whole call is re-run on a dirty
// CPU scheduler that may wait for it.
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

// Work for a normal scheduler is bounded; on a dirty one anything goes.
struct DecodeBudget {
  bool bounded = on_normal_scheduler();
  std::size_t bytes = 0;
  // False once `key` takes the total over the budget.
  bool take(core::TermKeyView key) {
    bytes += key.size() + kDecodeBytesPerItem;
    return !bounded || bytes <= kDirtyDecodeBytes;
  }
};

// Terms for `count` keys from `start`, in order (a proper list), or nothing
// when they are too many bytes for a normal scheduler (the caller goes dirty).
std::optional<ERL_NIF_TERM> make_slice(ErlNifEnv* env, const core::OrderStatisticTree& tree,
                                       std::size_t start, std::size_t count) {
  if (start >= tree.size() || count == 0) return enif_make_list(env, 0);
  count = std::min(count, tree.size() - start);
  std::vector<core::TermKeyView> keys;
  keys.reserve(std::min(count, kDirtyDecodeItems));
  DecodeBudget budget;
  for (auto cursor = tree.cursor_at(start); !cursor.done() && keys.size() < count;
       cursor.advance()) {
    if (!budget.take(cursor.key())) return std::nullopt;
    keys.push_back(cursor.key());
  }
  std::vector<ERL_NIF_TERM> items(keys.size());
  make_terms_from_keys(env, keys, items.data());
  return enif_make_list_from_array(env, items.data(), static_cast<unsigned>(items.size()));
}

// A read that may find its result too large for a normal scheduler: `body`
// returns nothing then, and the call is re-run dirty after the lock is
// released.
template <bool Write, class Body>
ERL_NIF_TERM with_lock_or_dirty(ErlNifEnv* env, SortedSetResource& set, const char* name,
                                RawNif self, int argc, const ERL_NIF_TERM argv[], Body&& body) {
  bool too_long = false;
  const ERL_NIF_TERM result =
      with_lock<Write>(env, set, self, argc, argv, [&](auto& tree) -> ERL_NIF_TERM {
        std::optional<ERL_NIF_TERM> made = body(tree);
        if (made) return *made;
        too_long = true;
        return atoms::undefined;
      });
  return too_long ? run_dirty_cpu(env, name, self, argc, argv) : result;
}

// The item at `index` (negative from the end) as {ok, Item}, or error; for
// remove_at, removed (and unpinned) too.
template <bool Remove, class Tree>
std::optional<ERL_NIF_TERM> item_at(ErlNifEnv* env, SortedSetResource& set, Tree& tree,
                                    int64_t index) {
  const auto size = static_cast<int64_t>(tree.size());
  const int64_t position = index < 0 ? index + size : index;
  if (position < 0 || position >= size) return atoms::error;
  const auto at = static_cast<std::size_t>(position);
  if (DecodeBudget budget; !budget.take(tree.at(at))) return std::nullopt;
  if constexpr (Remove) {
    const core::TermKey removed = tree.erase_at(at);
    const ERL_NIF_TERM item = make_term_from_key(env, removed);
    unpin(set.pins, removed);
    return enif_make_tuple2(env, atoms::ok, item);
  } else {
    return enif_make_tuple2(env, atoms::ok, make_term_from_key(env, tree.at(at)));
  }
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
  if (large_input(env, argv[0])) {
    return run_dirty_cpu(env, "sorted_set_from_list", raw_entry<sorted_set_from_list>, argc, argv);
  }
  unsigned length;
  if (!enif_get_list_length(env, argv[0], &length)) {
    throw bad_argument(env, "a proper list of items", argv[0]);
  }

  std::vector<core::TermKey> keys;
  keys.reserve(length);
  std::vector<std::pair<std::size_t, ERL_NIF_TERM>> holding_references;  // key index, item
  auto& builder = thread_term_key_builder();
  ERL_NIF_TERM rest = argv[0], head;
  while (enif_get_list_cell(env, rest, &head, &rest)) {
    bool holds_references;
    keys.push_back(make_term_key(env, head, builder, &holds_references));
    if (holds_references) holding_references.emplace_back(keys.size() - 1, head);
  }
  // Pinned before the keys are sorted: the first of equal items is the one
  // kept, and equal items hold the same references.
  Pins pins;
  for (const auto& [index, item] : holding_references) pin(pins, keys[index], item);

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
  return make_resource<SortedSetResource>(std::move(tree), std::move(pins)).make_term(env);
}
SWITCHBOARD_RAW_NIF(sorted_set_from_list, 2, 0);

// Returns the index the item landed at, or nil when an equal one was present.
ERL_NIF_TERM sorted_set_add(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  if (large_input(env, argv[1])) {
    return run_dirty_cpu(env, "sorted_set_add", raw_entry<sorted_set_add>, argc, argv);
  }
  bool holds_references;
  const core::TermKey key =
      make_term_key(env, argv[1], thread_term_key_builder(), &holds_references);
  return with_lock<true>(env, *set, raw_entry<sorted_set_add>, argc, argv,
                         [&](core::OrderStatisticTree& tree) {
                           const auto result = tree.insert(key);
                           if (!result.inserted) return atoms::nil;
                           if (holds_references) pin(set->pins, key, argv[1]);
                           return make_index(env, result.index);
                         });
}
SWITCHBOARD_RAW_NIF(sorted_set_add, 2, 0);

// Returns the index the item had, or nil when it was absent.
ERL_NIF_TERM sorted_set_remove(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  if (large_input(env, argv[1])) {
    return run_dirty_cpu(env, "sorted_set_remove", raw_entry<sorted_set_remove>, argc, argv);
  }
  const core::TermKey key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock<true>(env, *set, raw_entry<sorted_set_remove>, argc, argv,
                         [&](core::OrderStatisticTree& tree) {
                           const auto index = tree.erase(key);
                           if (index) unpin(set->pins, key);
                           return make_optional_index(env, index);
                         });
}
SWITCHBOARD_RAW_NIF(sorted_set_remove, 2, 0);

// Index may be negative (from the end). Returns {ok, Item} or error.
ERL_NIF_TERM sorted_set_remove_at(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t index = integer_argument(env, argv[1], "an integer index");
  return with_lock_or_dirty<true>(
      env, *set, "sorted_set_remove_at", raw_entry<sorted_set_remove_at>, argc, argv,
      [&](core::OrderStatisticTree& tree) { return item_at<true>(env, *set, tree, index); });
}
SWITCHBOARD_RAW_NIF(sorted_set_remove_at, 2, 0);

// The index of the item (or nil), or with `Bound` the index where it would go.
template <bool Bound>
ERL_NIF_TERM locate(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[], RawNif self) {
  auto set = set_argument(env, argv[0]);
  if (large_input(env, argv[1])) return run_dirty_cpu(env, "sorted_set_locate", self, argc, argv);
  const core::TermKey key = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock<false>(env, *set, self, argc, argv, [&](const core::OrderStatisticTree& tree) {
    if constexpr (Bound) {
      return make_index(env, tree.lower_bound_index(key));
    } else {
      return make_optional_index(env, tree.find_index(key));
    }
  });
}

ERL_NIF_TERM sorted_set_find_index(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return locate<false>(env, argc, argv, raw_entry<sorted_set_find_index>);
}
SWITCHBOARD_RAW_NIF(sorted_set_find_index, 2, 0);

ERL_NIF_TERM sorted_set_lower_bound(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  return locate<true>(env, argc, argv, raw_entry<sorted_set_lower_bound>);
}
SWITCHBOARD_RAW_NIF(sorted_set_lower_bound, 2, 0);

// Index may be negative (from the end). Returns {ok, Item} or error.
ERL_NIF_TERM sorted_set_at(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t index = integer_argument(env, argv[1], "an integer index");
  return with_lock_or_dirty<false>(
      env, *set, "sorted_set_at", raw_entry<sorted_set_at>, argc, argv,
      [&](const core::OrderStatisticTree& tree) { return item_at<false>(env, *set, tree, index); });
}
SWITCHBOARD_RAW_NIF(sorted_set_at, 2, 0);

ERL_NIF_TERM sorted_set_slice(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t start = integer_argument(env, argv[1], "a non-negative integer start");
  const int64_t amount = integer_argument(env, argv[2], "a non-negative integer amount");
  if (start < 0) throw bad_argument(env, "a non-negative integer start", argv[1]);
  if (amount < 0) throw bad_argument(env, "a non-negative integer amount", argv[2]);
  return with_lock_or_dirty<false>(env, *set, "sorted_set_slice", raw_entry<sorted_set_slice>, argc,
                                   argv, [&](const core::OrderStatisticTree& tree) {
                                     return make_slice(env, tree, static_cast<std::size_t>(start),
                                                       static_cast<std::size_t>(amount));
                                   });
}
SWITCHBOARD_RAW_NIF(sorted_set_slice, 3, 0);

// sorted_set_slice_after(Set, Item, Amount): up to Amount items strictly
// after Item (the `==` one itself excluded), in order. An enumeration
// continues from the last item it saw, so writes elsewhere in the set
// (which shift indexes) make it neither skip nor repeat an item.
ERL_NIF_TERM sorted_set_slice_after(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  const int64_t amount = integer_argument(env, argv[2], "a non-negative integer amount");
  if (amount < 0) throw bad_argument(env, "a non-negative integer amount", argv[2]);
  if (large_input(env, argv[1])) {
    return run_dirty_cpu(env, "sorted_set_slice_after", raw_entry<sorted_set_slice_after>, argc,
                         argv);
  }
  const core::TermKey after = make_term_key(env, argv[1], thread_term_key_builder());
  return with_lock_or_dirty<false>(env, *set, "sorted_set_slice_after",
                                   raw_entry<sorted_set_slice_after>, argc, argv,
                                   [&](const core::OrderStatisticTree& tree) {
                                     return make_slice(env, tree, tree.upper_bound_index(after),
                                                       static_cast<std::size_t>(amount));
                                   });
}
SWITCHBOARD_RAW_NIF(sorted_set_slice_after, 3, 0);

// Items with Min =< Item =< Max (term order, == inclusive).
ERL_NIF_TERM sorted_set_range(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  if (large_input(env, argv[1]) || large_input(env, argv[2])) {
    return run_dirty_cpu(env, "sorted_set_range", raw_entry<sorted_set_range>, argc, argv);
  }
  auto& builder = thread_term_key_builder();
  const core::TermKey min = make_term_key(env, argv[1], builder);
  const core::TermKey max = make_term_key(env, argv[2], builder);
  return with_lock_or_dirty<false>(
      env, *set, "sorted_set_range", raw_entry<sorted_set_range>, argc, argv,
      [&](const core::OrderStatisticTree& tree) -> std::optional<ERL_NIF_TERM> {
        if (core::compare(min, max) > 0) return enif_make_list(env, 0);
        const std::size_t first = tree.lower_bound_index(min);
        const std::size_t last = tree.upper_bound_index(max);
        return make_slice(env, tree, first, last - first);
      });
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
  return with_lock_or_dirty<false>(
      env, *set, "sorted_set_to_list", raw_entry<sorted_set_to_list>, argc, argv,
      [&](const core::OrderStatisticTree& tree) { return make_slice(env, tree, 0, tree.size()); });
}
SWITCHBOARD_RAW_NIF(sorted_set_to_list, 1, 0);

// Clears by swapping in an empty tree; freeing a large one goes dirty.
ERL_NIF_TERM sorted_set_clear(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  core::OrderStatisticTree old;
  Pins old_pins;
  const bool dirty = !on_normal_scheduler();
  return with_lock_or_dirty<true>(
      env, *set, "sorted_set_clear", raw_entry<sorted_set_clear>, argc, argv,
      [&](core::OrderStatisticTree& tree) -> std::optional<ERL_NIF_TERM> {
        if (tree.size() > kDirtyTreeItems && !dirty) return std::nullopt;
        old.swap(tree);
        old_pins.swap(set->pins);
        return atoms::ok;
      });
  // `old` and `old_pins` are freed here, outside the lock
}
SWITCHBOARD_RAW_NIF(sorted_set_clear, 1, 0);

ERL_NIF_TERM sorted_set_copy(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  auto set = set_argument(env, argv[0]);
  std::optional<core::OrderStatisticTree> copy;
  Pins pins;
  const bool dirty = !on_normal_scheduler();
  const ERL_NIF_TERM waited = with_lock_or_dirty<false>(
      env, *set, "sorted_set_copy", raw_entry<sorted_set_copy>, argc, argv,
      [&](const core::OrderStatisticTree& tree) -> std::optional<ERL_NIF_TERM> {
        if ((tree.size() > kDirtyTreeItems || tree.memory_bytes() > kDirtyTreeBytes) && !dirty) {
          return std::nullopt;
        }
        copy.emplace(tree);
        pins = copy_pins(set->pins);
        return atoms::ok;
      });
  if (!copy) return waited;  // the call continues on a dirty scheduler
  return make_resource<SortedSetResource>(std::move(*copy), std::move(pins)).make_term(env);
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
