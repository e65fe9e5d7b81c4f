// Switchboard.SortedSet: NIFs over core::SortedSet. Thin by design: terms
// become TermKeys (term_key_glue), the core does the work, and this file only
// picks the scheduler and the lock mode. Every NIF is typed (nif.hpp): a
// call that must move asks its Call for `dirty()`, which runs it again, same
// arguments, on a dirty CPU scheduler.
//
// Scheduling rules, with work counted in bytes as well as items:
//   * single-item calls run on the normal scheduler and only try the lock,
//     spinning a bounded tens of microseconds (core::DistributedRwLock: readers
//     write only their own slot, so reads scale with schedulers; add and
//     remove are combined, one writer applying the queued writes of the
//     others, so writers keep their throughput under contention); a set
//     that stays busy (a long reader, a long queue of writers) sends the
//     call to a dirty CPU scheduler, where waiting for the lock is allowed;
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
SWITCHBOARD_RESOURCE(SortedSetResource, "SortedSet", "a Switchboard.SortedSet reference");

ERL_NIF_TERM& atom_not_ascending = register_atom("not_ascending");

using SetArgument = Borrowed<SortedSetResource>;
using Result = Scheduled<ERL_NIF_TERM>;

// True on a normal scheduler when building the key of `term` is too much
// work for it.
bool large_input(const Call& call, ERL_NIF_TERM term) {
  return call.on_normal_scheduler() &&
         term_larger_than(call, term, kDirtyEncodeBytes, BinaryBytes::copied);
}

// Runs `body(tree)` under the set's lock (shared for Read, exclusive for
// Write); the body may reach the set's pins too. On a normal scheduler the
// lock is only tried (a bounded spin, DistributedRwLock::kDefaultSpins);
// when it stays taken the whole call is re-run on a dirty CPU scheduler
// that may wait for it. A body returns nothing when its work
// turns out too large for a normal scheduler: the call is then re-run dirty,
// after the lock is released.
template <bool Write, class Body>
Result with_lock(Call& call, SortedSetResource& set, Body&& body) {
  std::optional<ERL_NIF_TERM> made;
  if (call.on_normal_scheduler()) {
    if constexpr (Write) {
      auto access = set.try_write();
      if (!access) return call.dirty();
      made = body(access->tree());
    } else {
      auto access = set.try_read();
      if (!access) return call.dirty();
      made = body(access->tree());
    }
    if (!made) return call.dirty();
    return *made;
  }
  if constexpr (Write) {
    auto access = set.write();
    made = body(access.tree());
  } else {
    auto access = set.read();
    made = body(access.tree());
  }
  if (!made) throw std::logic_error("sorted set work refused on a dirty scheduler");
  return *made;
}

// A short write through the set's combining lock (core::SortedSet::update):
// under contention another writer may apply it in its own exclusive turn, so
// `write` makes no terms and touches no environment; it leaves plain results
// for the caller to turn into its reply. On a normal scheduler the wait is
// bounded (false: nothing applied, the call goes dirty); on a dirty one it
// blocks.
template <class Write>
bool combined_write(const Call& call, SortedSetResource& set, Write&& write) {
  if (call.on_normal_scheduler()) return set.try_update(write);
  set.update(write);
  return true;
}

ERL_NIF_TERM make_index(ErlNifEnv* env, std::size_t index) {
  return enif_make_uint64(env, static_cast<ErlNifUInt64>(index));
}

ERL_NIF_TERM make_optional_index(ErlNifEnv* env, std::optional<std::size_t> index) {
  return index ? make_index(env, *index) : atoms::nil;
}

// Work for a normal scheduler is bounded; on a dirty one anything goes.
struct DecodeBudget {
  bool bounded = enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER;
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
    const core::TermKeyView key = cursor.key();
    if (!budget.take(key)) return std::nullopt;
    keys.push_back(key);
  }
  std::vector<ERL_NIF_TERM> items(keys.size());
  make_terms_from_keys(env, keys, items.data());
  return enif_make_list_from_array(env, items.data(), static_cast<unsigned>(items.size()));
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
  // One descent: the key found is both measured and made (a second
  // descent of a million-item tree costs as much as making a small item).
  const core::TermKeyView key = tree.at(at);
  if (DecodeBudget budget; !budget.take(key)) return std::nullopt;
  if constexpr (Remove) {
    const core::TermKey removed = tree.erase_at(at);
    const ERL_NIF_TERM item = make_term_from_key(env, removed);
    unpin(set.pins, removed);
    return enif_make_tuple2(env, atoms::ok, item);
  } else {
    return enif_make_tuple2(env, atoms::ok, make_term_from_key(env, key));
  }
}

// ---------------------------------------------------------------------------

ResourcePtr<SortedSetResource> sorted_set_new(ErlNifEnv*, int64_t /*capacity*/) {
  return make_resource<SortedSetResource>();
}
SWITCHBOARD_NIF(sorted_set_new, 0);

// sorted_set_from_list(Items, StrictlyAscending): encodes every item, then
// either sorts and drops later duplicates, or checks strict order, and bulk
// builds the tree in O(n). Returns the set or {not_ascending, Position}.
Result sorted_set_from_list(Call& call, Term list, bool strictly_ascending) {
  if (large_input(call, list.value)) return call.dirty();
  unsigned length;
  if (!enif_get_list_length(call, list.value, &length)) {
    throw bad_argument(call, "a proper list of items", list.value);
  }

  std::vector<core::TermKey> keys;
  keys.reserve(length);
  std::vector<std::pair<std::size_t, ERL_NIF_TERM>> holding_references;  // key index, item
  auto& builder = thread_term_key_builder();
  ERL_NIF_TERM rest = list.value, head;
  while (enif_get_list_cell(call, rest, &head, &rest)) {
    bool holds_references;
    keys.push_back(make_term_key(call, head, builder, &holds_references));
    if (holds_references) holding_references.emplace_back(keys.size() - 1, head);
  }
  // Pinned before the keys are sorted: the first of equal items is the one
  // kept, and equal items hold the same references.
  Pins pins;
  for (const auto& [index, item] : holding_references) pin(pins, keys[index], item);

  core::OrderStatisticTree tree;
  if (strictly_ascending) {
    if (auto position = tree.build_from_sorted(std::span<const core::TermKey>(keys))) {
      return enif_make_tuple2(call, atom_not_ascending, make_index(call, *position));
    }
  } else {
    // Stable, so among equal (==) items the first one given stays first.
    std::stable_sort(keys.begin(), keys.end(), [](const core::TermKey& a, const core::TermKey& b) {
      return core::compare(a, b) < 0;
    });
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    tree.build_from_sorted(std::span<const core::TermKey>(keys));
  }
  return make_resource<SortedSetResource>(std::move(tree), std::move(pins)).make_term(call);
}
SWITCHBOARD_NIF(sorted_set_from_list, 0);

// Returns the index the item landed at, or nil when an equal one was present.
Result sorted_set_add(Call& call, SetArgument set, Term item) {
  if (large_input(call, item.value)) return call.dirty();
  bool holds_references;
  const core::TermKey key =
      make_term_key(call, item.value, thread_term_key_builder(), &holds_references);
  if (holds_references) {  // the pin copies the term: only this thread may
    return with_lock<true>(call, *set, [&](core::OrderStatisticTree& tree) {
      const auto result = tree.insert(key);
      if (!result.inserted) return atoms::nil;
      pin(set->pins, key, item.value);
      return make_index(call, result.index);
    });
  }
  core::OrderStatisticTree::InsertResult result{};
  if (!combined_write(call, *set,
                      [&](core::OrderStatisticTree& tree) { result = tree.insert(key); })) {
    return call.dirty();
  }
  return result.inserted ? make_index(call, result.index) : atoms::nil;
}
SWITCHBOARD_NIF(sorted_set_add, 0);

// Returns the index the item had, or nil when it was absent.
Result sorted_set_remove(Call& call, SetArgument set, Term item) {
  if (large_input(call, item.value)) return call.dirty();
  const core::TermKey key = make_term_key(call, item.value, thread_term_key_builder());
  std::optional<std::size_t> index;
  if (!combined_write(call, *set, [&](core::OrderStatisticTree& tree) {
        index = tree.erase(key);
        // Freeing a pin's environment is allowed on any thread.
        if (index) unpin(set->pins, key);
      })) {
    return call.dirty();
  }
  return make_optional_index(call, index);
}
SWITCHBOARD_NIF(sorted_set_remove, 0);

// Index may be negative (from the end). Returns {ok, Item} or error.
Result sorted_set_remove_at(Call& call, SetArgument set, int64_t index) {
  return with_lock<true>(call, *set, [&](core::OrderStatisticTree& tree) {
    return item_at<true>(call, *set, tree, index);
  });
}
SWITCHBOARD_NIF(sorted_set_remove_at, 0);

Result sorted_set_find_index(Call& call, SetArgument set, Term item) {
  if (large_input(call, item.value)) return call.dirty();
  const core::TermKey key = make_term_key(call, item.value, thread_term_key_builder());
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_optional_index(call, tree.find_index(key));
  });
}
SWITCHBOARD_NIF(sorted_set_find_index, 0);

Result sorted_set_lower_bound(Call& call, SetArgument set, Term item) {
  if (large_input(call, item.value)) return call.dirty();
  const core::TermKey key = make_term_key(call, item.value, thread_term_key_builder());
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_index(call, tree.lower_bound_index(key));
  });
}
SWITCHBOARD_NIF(sorted_set_lower_bound, 0);

// Index may be negative (from the end). Returns {ok, Item} or error.
Result sorted_set_at(Call& call, SetArgument set, int64_t index) {
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return item_at<false>(call, *set, tree, index);
  });
}
SWITCHBOARD_NIF(sorted_set_at, 0);

Result sorted_set_slice(Call& call, SetArgument set, NonNegative<uint64_t> start,
                        NonNegative<uint64_t> amount) {
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_slice(call, tree, start, amount);
  });
}
SWITCHBOARD_NIF(sorted_set_slice, 0);

// sorted_set_slice_after(Set, Item, Amount): up to Amount items strictly
// after Item (the `==` one itself excluded), in order. An enumeration
// continues from the last item it saw, so writes elsewhere in the set
// (which shift indexes) make it neither skip nor repeat an item.
Result sorted_set_slice_after(Call& call, SetArgument set, Term item,
                              NonNegative<uint64_t> amount) {
  if (large_input(call, item.value)) return call.dirty();
  const core::TermKey after = make_term_key(call, item.value, thread_term_key_builder());
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_slice(call, tree, tree.upper_bound_index(after), amount);
  });
}
SWITCHBOARD_NIF(sorted_set_slice_after, 0);

// Items with Min =< Item =< Max (term order, == inclusive).
Result sorted_set_range(Call& call, SetArgument set, Term min_item, Term max_item) {
  if (large_input(call, min_item.value) || large_input(call, max_item.value)) {
    return call.dirty();
  }
  auto& builder = thread_term_key_builder();
  const core::TermKey min = make_term_key(call, min_item.value, builder);
  const core::TermKey max = make_term_key(call, max_item.value, builder);
  return with_lock<false>(call, *set,
                          [&](const core::OrderStatisticTree& tree) -> std::optional<ERL_NIF_TERM> {
                            if (core::compare(min, max) > 0) return enif_make_list(call, 0);
                            const std::size_t first = tree.lower_bound_index(min);
                            const std::size_t last = tree.upper_bound_index(max);
                            return make_slice(call, tree, first, last - first);
                          });
}
SWITCHBOARD_NIF(sorted_set_range, 0);

Result sorted_set_size(Call& call, SetArgument set) {
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_index(call, tree.size());
  });
}
SWITCHBOARD_NIF(sorted_set_size, 0);

Result sorted_set_to_list(Call& call, SetArgument set) {
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_slice(call, tree, 0, tree.size());
  });
}
SWITCHBOARD_NIF(sorted_set_to_list, 0);

// Clears by swapping in an empty tree; freeing a large one goes dirty.
Result sorted_set_clear(Call& call, SetArgument set) {
  core::OrderStatisticTree old;
  Pins old_pins;
  const bool dirty = !call.on_normal_scheduler();
  return with_lock<true>(call, *set,
                         [&](core::OrderStatisticTree& tree) -> std::optional<ERL_NIF_TERM> {
                           if (tree.size() > kDirtyTreeItems && !dirty) return std::nullopt;
                           old.swap(tree);
                           old_pins.swap(set->pins);
                           return atoms::ok;
                         });
  // `old` and `old_pins` are freed here, outside the lock
}
SWITCHBOARD_NIF(sorted_set_clear, 0);

Result sorted_set_copy(Call& call, SetArgument set) {
  std::optional<core::OrderStatisticTree> copy;
  Pins pins;
  const bool dirty = !call.on_normal_scheduler();
  Result copied = with_lock<false>(
      call, *set, [&](const core::OrderStatisticTree& tree) -> std::optional<ERL_NIF_TERM> {
        if ((tree.size() > kDirtyTreeItems || tree.memory_bytes() > kDirtyTreeBytes) && !dirty) {
          return std::nullopt;
        }
        copy.emplace(tree);
        pins = copy_pins(set->pins);
        return atoms::ok;
      });
  if (!copy) return copied;  // the call continues on a dirty scheduler
  return make_resource<SortedSetResource>(std::move(*copy), std::move(pins)).make_term(call);
}
SWITCHBOARD_NIF(sorted_set_copy, 0);

Result sorted_set_memory(Call& call, SetArgument set) {
  return with_lock<false>(call, *set, [&](const core::OrderStatisticTree& tree) {
    return make_index(call,
                      sizeof(SortedSetResource) + set->lock_memory_bytes() + tree.memory_bytes());
  });
}
SWITCHBOARD_NIF(sorted_set_memory, 0);

}  // namespace
}  // namespace switchboard::nif
