// Switchboard.Metrics: counters, gauges and histograms in native storage.
//
// Every scheduler thread writes to its own shard (found through a
// thread_local pointer): a counter add or a histogram record is a load and a
// store on memory no other thread writes, with no lock and no shared cache
// line. A metric is keyed by {kind, name, tags}; the first use of a key on a
// thread validates it, sorts its tags and interns it in the global registry
// (under a mutex); later uses find it in the thread's own index by hash.
// The common call, a name with no tags, is found before that in a small
// direct-mapped cache keyed by the name's term word (no hash of the name).
// Gauges are one value per key (last write wins), under the key's own lock.
// snapshot() reads every shard on a dirty scheduler.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/metrics/flat_index.hpp"
#include "core/metrics/log_linear_histogram.hpp"
#include "core/semaphore/spin_lock.hpp"
#include "nif/nif.hpp"

namespace switchboard::nif {
namespace {

constexpr std::size_t kMaxNameBytes = 255;
constexpr std::size_t kMaxTags = 32;

ERL_NIF_TERM& atom_bad_name = register_atom("bad_name");
ERL_NIF_TERM& atom_bad_tags = register_atom("bad_tags");
ERL_NIF_TERM& atom_bad_value = register_atom("bad_value");
ERL_NIF_TERM& atom_counters = register_atom("counters");
ERL_NIF_TERM& atom_gauges = register_atom("gauges");
ERL_NIF_TERM& atom_histograms = register_atom("histograms");
ERL_NIF_TERM& atom_count = register_atom("count");
ERL_NIF_TERM& atom_min = register_atom("min");
ERL_NIF_TERM& atom_max = register_atom("max");
ERL_NIF_TERM& atom_mean = register_atom("mean");
ERL_NIF_TERM& atom_sum = register_atom("sum");
ERL_NIF_TERM& atom_p50 = register_atom("p50");
ERL_NIF_TERM& atom_p90 = register_atom("p90");
ERL_NIF_TERM& atom_p99 = register_atom("p99");
ERL_NIF_TERM& atom_p999 = register_atom("p999");
ERL_NIF_TERM& atom_buckets = register_atom("buckets");
ERL_NIF_TERM& atom_values = register_atom("values");

enum class Kind : std::uint8_t { counter = 1, gauge = 2, histogram = 3 };

// A number as the user gave it: gauges hand back what was set.
struct Number {
  bool is_float = false;
  std::int64_t integer = 0;
  double real = 0;
  ERL_NIF_TERM make(ErlNifEnv* env) const {
    return is_float ? enif_make_double(env, real) : enif_make_int64(env, integer);
  }
};

// One {kind, name, sorted tags}, interned for the library's life.
struct MetricKey {
  Kind kind;
  std::uint32_t id;
  OwnedEnv env;
  ERL_NIF_TERM name;
  ERL_NIF_TERM tags;
  core::SpinLock gauge_lock;
  Number gauge;
  MetricKey(Kind key_kind, std::uint32_t key_id) : kind(key_kind), id(key_id) {}
};

// One key's storage on one thread.
struct Slot {
  MetricKey* key;
  std::atomic<std::int64_t> counter{0};
  std::unique_ptr<core::HistogramRecorder> histogram;
  explicit Slot(MetricKey* metric_key) : key(metric_key) {
    if (key->kind == Kind::histogram) histogram = std::make_unique<core::HistogramRecorder>();
  }
};

// A {kind, name, tags} exactly as a caller on this thread wrote it.
struct Alias {
  Kind kind;
  ERL_NIF_TERM name;
  ERL_NIF_TERM tags;
  Slot* slot;
};

// A name with no tags, as last seen on this thread: its term word, and for a
// string its bytes (a word can be reused for another binary once the first
// is garbage; an atom's word is the atom for the VM's life).
struct PlainEntry {
  ERL_NIF_TERM name = 0;
  Slot* slot = nullptr;
  const unsigned char* bytes = nullptr;  // nullptr for an atom
  std::size_t size = 0;
};

constexpr std::size_t kPlainWays = 256;

struct ThreadShard {
  // Owner thread only.
  // One direct-mapped table per kind (counter, gauge, histogram).
  std::array<std::array<PlainEntry, kPlainWays>, 3> plain{};
  core::FlatIndex<Alias> aliases;
  std::deque<Alias> alias_store;
  OwnedEnv alias_env;
  std::unordered_map<std::uint32_t, Slot*> slot_by_key;
  // Appended by the owner, read by snapshots.
  std::mutex slots_lock;
  std::vector<std::unique_ptr<Slot>> slots;
};

struct Registry {
  std::mutex lock;
  std::unordered_multimap<std::uint64_t, MetricKey*> by_hash;
  std::vector<std::unique_ptr<MetricKey>> keys;
  std::vector<std::unique_ptr<ThreadShard>> shards;
};

Registry& registry() {
  static Registry* instance = new Registry();  // lives as long as the library
  return *instance;
}

// (The initial-exec TLS model would save a __tls_get_addr call per write,
// but glibc's static TLS space is full by the time the VM loads us.)
thread_local ThreadShard* t_shard = nullptr;

ThreadShard& this_thread_shard() {
  if (t_shard != nullptr) return *t_shard;
  auto shard = std::make_unique<ThreadShard>();
  t_shard = shard.get();
  Registry& all = registry();
  std::lock_guard guard(all.lock);
  all.shards.push_back(std::move(shard));
  return *t_shard;
}

std::uint64_t mix(std::uint64_t value) {
  value ^= value >> 31;
  value *= 0x7FB5D329728EA185ull;
  return value ^ (value >> 27);
}

// The hash a caller's own spelling is looked up by on its thread.
std::uint64_t alias_hash(ErlNifEnv* env, Kind kind, ERL_NIF_TERM name, ERL_NIF_TERM tags) {
  std::uint64_t name_part = enif_is_atom(env, name) ? static_cast<std::uint64_t>(name)
                                                    : enif_hash(ERL_NIF_INTERNAL_HASH, name, 0);
  std::uint64_t tags_part =
      enif_is_empty_list(env, tags) ? 0 : enif_hash(ERL_NIF_INTERNAL_HASH, tags, 1);
  return mix(name_part ^ (tags_part * 0x9E3779B97F4A7C15ull) ^ static_cast<std::uint64_t>(kind));
}

bool same_term(ERL_NIF_TERM a, ERL_NIF_TERM b) { return a == b || enif_is_identical(a, b); }

bool valid_name(ErlNifEnv* env, ERL_NIF_TERM name) {
  ErlNifBinary binary;
  if (enif_is_atom(env, name)) return true;
  return enif_inspect_binary(env, name, &binary) && binary.size <= kMaxNameBytes;
}

bool valid_tag_value(ErlNifEnv* env, ERL_NIF_TERM value) {
  ErlNifBinary binary;
  ErlNifSInt64 integer;
  if (enif_is_atom(env, value) || enif_get_int64(env, value, &integer)) return true;
  return enif_inspect_binary(env, value, &binary) && binary.size <= kMaxNameBytes;
}

// A proper list of at most kMaxTags {atom, atom | string | integer} pairs
// with distinct keys. Reads at most kMaxTags + 1 cells.
bool valid_tags(ErlNifEnv* env, ERL_NIF_TERM tags, std::vector<ERL_NIF_TERM>* pairs) {
  ERL_NIF_TERM head;
  std::size_t cells = 0;
  // On the stack: this runs on every tagged write.
  std::array<ERL_NIF_TERM, kMaxTags> keys;
  while (enif_get_list_cell(env, tags, &head, &tags)) {
    if (cells == kMaxTags) return false;
    int arity;
    const ERL_NIF_TERM* pair;
    if (!enif_get_tuple(env, head, &arity, &pair) || arity != 2 || !enif_is_atom(env, pair[0]) ||
        !valid_tag_value(env, pair[1])) {
      return false;
    }
    if (std::find(keys.begin(), keys.begin() + cells, pair[0]) != keys.begin() + cells) {
      return false;
    }
    keys[cells++] = pair[0];
    if (pairs != nullptr) pairs->push_back(head);
  }
  return enif_is_empty_list(env, tags);
}

// Interns {kind, name, tags} (validated) and returns its key.
MetricKey* intern(ErlNifEnv* env, Kind kind, ERL_NIF_TERM name, ERL_NIF_TERM tags,
                  const Number* gauge) {
  std::vector<ERL_NIF_TERM> pairs;
  valid_tags(env, tags, &pairs);
  std::sort(pairs.begin(), pairs.end(), [env](ERL_NIF_TERM a, ERL_NIF_TERM b) {
    int arity;
    const ERL_NIF_TERM *left, *right;
    enif_get_tuple(env, a, &arity, &left);
    enif_get_tuple(env, b, &arity, &right);
    return enif_compare(left[0], right[0]) < 0;
  });
  const ERL_NIF_TERM sorted =
      enif_make_list_from_array(env, pairs.data(), static_cast<unsigned>(pairs.size()));
  const std::uint64_t hash =
      mix(enif_hash(ERL_NIF_INTERNAL_HASH, name, 0) ^
          enif_hash(ERL_NIF_INTERNAL_HASH, sorted, 1) * 31u ^ static_cast<std::uint64_t>(kind));
  Registry& all = registry();
  std::lock_guard guard(all.lock);
  auto [first, last] = all.by_hash.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    MetricKey* key = it->second;
    if (key->kind == kind && same_term(key->name, name) && same_term(key->tags, sorted)) return key;
  }
  auto key = std::make_unique<MetricKey>(kind, static_cast<std::uint32_t>(all.keys.size()));
  key->name = key->env.copy(name);
  key->tags = key->env.copy(sorted);
  if (gauge != nullptr) key->gauge = *gauge;
  MetricKey* raw = key.get();
  all.keys.push_back(std::move(key));
  all.by_hash.emplace(hash, raw);
  return raw;
}

PlainEntry& plain_entry(ThreadShard& shard, Kind kind, ERL_NIF_TERM name) {
  const std::size_t way = static_cast<std::size_t>((name * 0x9E3779B97F4A7C15ull) >> 56);
  return shard.plain[static_cast<std::size_t>(kind) - 1][way % kPlainWays];
}

// The entry's slot when `name` is the name it caches.
Slot* plain_hit(ErlNifEnv* env, const PlainEntry& entry, ERL_NIF_TERM name) {
  if (entry.name != name || entry.slot == nullptr) return nullptr;
  if (entry.bytes == nullptr) return entry.slot;  // the same atom
  ErlNifBinary binary;
  if (!enif_inspect_binary(env, name, &binary) || binary.size != entry.size ||
      std::memcmp(binary.data, entry.bytes, entry.size) != 0) {
    return nullptr;
  }
  return entry.slot;
}

// Caches a plain name's slot, the alias's own copy of the name holding the bytes.
void remember_plain(ErlNifEnv* env, ThreadShard& shard, Kind kind, ERL_NIF_TERM name,
                    const Alias& alias) {
  PlainEntry& entry = plain_entry(shard, kind, name);
  entry = PlainEntry{name, alias.slot, nullptr, 0};
  if (enif_is_atom(env, name)) return;
  ErlNifBinary copy;
  if (!enif_inspect_binary(shard.alias_env.get(), alias.name, &copy)) {
    entry = PlainEntry{};
    return;
  }
  entry.bytes = copy.data;
  entry.size = copy.size;
}

// This thread's slot for {kind, name, tags}, or nullptr with `error` set.
Slot* find_slot(ErlNifEnv* env, Kind kind, ERL_NIF_TERM name, ERL_NIF_TERM tags,
                ERL_NIF_TERM* error, const Number* gauge = nullptr) {
  ThreadShard& shard = this_thread_shard();
  const bool no_tags = enif_is_empty_list(env, tags);
  if (no_tags) {
    if (Slot* slot = plain_hit(env, plain_entry(shard, kind, name), name)) return slot;
  }
  const bool plain = no_tags && enif_is_atom(env, name);
  if (!plain) {
    // Checked before hashing: hashing a huge term would hold the scheduler.
    if (!valid_name(env, name)) {
      *error = atom_bad_name;
      return nullptr;
    }
    if (!valid_tags(env, tags, nullptr)) {
      *error = atom_bad_tags;
      return nullptr;
    }
  }
  const std::uint64_t hash = alias_hash(env, kind, name, tags);
  Alias* alias = shard.aliases.find(hash, [&](const Alias& candidate) {
    return candidate.kind == kind && same_term(candidate.name, name) &&
           same_term(candidate.tags, tags);
  });
  if (alias != nullptr) {
    if (no_tags) remember_plain(env, shard, kind, name, *alias);
    return alias->slot;
  }

  MetricKey* key = intern(env, kind, name, tags, gauge);
  Slot*& slot = shard.slot_by_key[key->id];
  if (slot == nullptr) {
    auto fresh = std::make_unique<Slot>(key);
    slot = fresh.get();
    std::lock_guard guard(shard.slots_lock);
    shard.slots.push_back(std::move(fresh));
  }
  shard.alias_store.push_back(
      Alias{kind, shard.alias_env.copy(name), shard.alias_env.copy(tags), slot});
  shard.aliases.insert(hash, &shard.alias_store.back());
  if (no_tags) remember_plain(env, shard, kind, name, shard.alias_store.back());
  return slot;
}

// The write NIFs take their arguments as terms and answer :ok or the reason
// (:bad_name, :bad_tags, :bad_value) for Switchboard.Metrics.Behaviour to
// word, with the value named as a counter's, a gauge's or a histogram's.
Term metrics_increment(ErlNifEnv* env, Term name, Term increment, Term tags) {
  ErlNifSInt64 value;
  if (!enif_get_int64(env, increment.value, &value)) return Term{atom_bad_value};
  ERL_NIF_TERM error;
  Slot* slot = find_slot(env, Kind::counter, name.value, tags.value, &error);
  if (slot == nullptr) return Term{error};
  // Only this thread writes this slot: no read-modify-write instruction.
  slot->counter.store(slot->counter.load(std::memory_order_relaxed) + value,
                      std::memory_order_relaxed);
  return Term{atoms::ok};
}
SWITCHBOARD_NIF(metrics_increment, 0);

bool decode_number(ErlNifEnv* env, ERL_NIF_TERM term, Number& out) {
  ErlNifSInt64 integer;
  if (enif_get_int64(env, term, &integer)) {
    out = Number{false, integer, 0};
    return true;
  }
  double real;
  if (enif_get_double(env, term, &real)) {
    out = Number{true, 0, real};
    return true;
  }
  return false;
}

Term metrics_gauge(ErlNifEnv* env, Term name, Term number, Term tags) {
  Number value;
  if (!decode_number(env, number.value, value)) return Term{atom_bad_value};
  ERL_NIF_TERM error;
  Slot* slot = find_slot(env, Kind::gauge, name.value, tags.value, &error, &value);
  if (slot == nullptr) return Term{error};
  std::lock_guard guard(slot->key->gauge_lock);
  slot->key->gauge = value;
  return Term{atoms::ok};
}
SWITCHBOARD_NIF(metrics_gauge, 0);

Term metrics_histogram(ErlNifEnv* env, Term name, Term number, Term tags) {
  ErlNifUInt64 value;
  if (!enif_get_uint64(env, number.value, &value)) {
    double real;
    if (!enif_get_double(env, number.value, &real) || !(real >= 0)) return Term{atom_bad_value};
    // Floats are recorded rounded to the nearest integer.
    value =
        real >= 18446744073709549568.0 ? UINT64_MAX : static_cast<ErlNifUInt64>(std::llround(real));
  }
  ERL_NIF_TERM error;
  Slot* slot = find_slot(env, Kind::histogram, name.value, tags.value, &error);
  if (slot == nullptr) return Term{error};
  slot->histogram->record(value);
  return Term{atoms::ok};
}
SWITCHBOARD_NIF(metrics_histogram, 0);

ERL_NIF_TERM make_map(ErlNifEnv* env, std::vector<ERL_NIF_TERM> keys,
                      std::vector<ERL_NIF_TERM> values) {
  ERL_NIF_TERM map;
  if (!enif_make_map_from_arrays(env, keys.data(), values.data(), keys.size(), &map)) {
    throw std::runtime_error("metrics: duplicate key in snapshot");
  }
  return map;
}

// The bounds for cumulative bucket counts: a list of non-negative integers.
std::vector<std::uint64_t> decode_bounds(ErlNifEnv* env, ERL_NIF_TERM list) {
  std::vector<std::uint64_t> bounds;
  ERL_NIF_TERM head;
  ERL_NIF_TERM rest = list;
  while (enif_get_list_cell(env, rest, &head, &rest)) {
    ErlNifUInt64 bound;
    if (!enif_get_uint64(env, head, &bound) || bounds.size() >= 1024) {
      throw bad_argument(env, "a list of at most 1024 non-negative integers", list);
    }
    bounds.push_back(bound);
  }
  if (!enif_is_empty_list(env, rest)) throw bad_argument(env, "a proper list", list);
  return bounds;
}

ERL_NIF_TERM metrics_snapshot(ErlNifEnv* env, Term bucket_bounds, bool with_values) {
  const std::vector<std::uint64_t> bounds = decode_bounds(env, bucket_bounds.value);
  Registry& all = registry();
  std::vector<MetricKey*> keys;
  std::vector<ThreadShard*> shards;
  {
    std::lock_guard guard(all.lock);
    for (auto& key : all.keys) keys.push_back(key.get());
    for (auto& shard : all.shards) shards.push_back(shard.get());
  }
  std::vector<std::int64_t> counters(keys.size(), 0);
  // Slots are never freed: their recorders can be read after the lock.
  std::vector<std::vector<const Slot*>> histogram_slots(keys.size());
  for (ThreadShard* shard : shards) {
    std::lock_guard guard(shard->slots_lock);
    for (auto& slot : shard->slots) {
      if (slot->key->id >= keys.size()) continue;  // interned after we listed the keys
      if (slot->key->kind == Kind::counter) {
        counters[slot->key->id] += slot->counter.load(std::memory_order_relaxed);
      } else if (slot->key->kind == Kind::histogram) {
        histogram_slots[slot->key->id].push_back(slot.get());
      }
    }
  }
  core::HistogramSummary summary;
  std::vector<ERL_NIF_TERM> counter_keys, counter_values, gauge_keys, gauge_values, histogram_keys,
      histogram_values;
  for (MetricKey* key : keys) {
    const ERL_NIF_TERM id =
        enif_make_tuple2(env, enif_make_copy(env, key->name), enif_make_copy(env, key->tags));
    switch (key->kind) {
      case Kind::counter:
        counter_keys.push_back(id);
        counter_values.push_back(enif_make_int64(env, counters[key->id]));
        break;
      case Kind::gauge: {
        Number value;
        {
          std::lock_guard guard(key->gauge_lock);
          value = key->gauge;
        }
        gauge_keys.push_back(id);
        gauge_values.push_back(value.make(env));
        break;
      }
      case Kind::histogram: {
        summary.reset();
        for (const Slot* slot : histogram_slots[key->id]) summary.merge(*slot->histogram);
        if (summary.count() == 0) break;
        std::vector<ERL_NIF_TERM> names{atom_count, atom_min, atom_max, atom_mean,
                                        atom_p50,   atom_p90, atom_p99, atom_p999};
        std::vector<ERL_NIF_TERM> values{enif_make_uint64(env, summary.count()),
                                         enif_make_uint64(env, summary.min()),
                                         enif_make_uint64(env, summary.max()),
                                         enif_make_double(env, summary.mean()),
                                         enif_make_uint64(env, summary.quantile(0.5)),
                                         enif_make_uint64(env, summary.quantile(0.9)),
                                         enif_make_uint64(env, summary.quantile(0.99)),
                                         enif_make_uint64(env, summary.quantile(0.999))};
        // The exposition formats also want the exact sum and bucket counts.
        if (with_values) {
          // [{midpoint, count}] for every non-empty bucket: what a StatsD
          // reporter sends as sampled |h lines.
          std::vector<ERL_NIF_TERM> pairs;
          summary.for_each_bucket([&](std::size_t bucket, std::uint64_t count) {
            pairs.push_back(enif_make_tuple2(
                env, enif_make_uint64(env, core::LogLinearBuckets::midpoint(bucket)),
                enif_make_uint64(env, count)));
          });
          names.push_back(atom_values);
          values.push_back(
              enif_make_list_from_array(env, pairs.data(), static_cast<unsigned>(pairs.size())));
        }
        if (!bounds.empty() || with_values) {
          names.push_back(atom_sum);
          values.push_back(enif_make_uint64(env, summary.sum()));
        }
        if (!bounds.empty()) {
          std::vector<ERL_NIF_TERM> cumulative;
          for (std::uint64_t bound : bounds) {
            cumulative.push_back(
                enif_make_tuple2(env, enif_make_uint64(env, bound),
                                 enif_make_uint64(env, summary.count_at_most(bound))));
          }
          names.push_back(atom_buckets);
          values.push_back(enif_make_list_from_array(env, cumulative.data(),
                                                     static_cast<unsigned>(cumulative.size())));
        }
        histogram_keys.push_back(id);
        histogram_values.push_back(make_map(env, names, values));
        break;
      }
    }
  }
  return make_map(
      env, {atom_counters, atom_gauges, atom_histograms},
      {make_map(env, counter_keys, counter_values), make_map(env, gauge_keys, gauge_values),
       make_map(env, histogram_keys, histogram_values)});
}
SWITCHBOARD_NIF(metrics_snapshot, ERL_NIF_DIRTY_JOB_CPU_BOUND);

}  // namespace
}  // namespace switchboard::nif
