// Switchboard.Semaphore: named counting semaphores in a sharded native table.
//
// Each name is a resource (NamedSemaphore) that monitors the processes
// holding its slots, so a holder's death gives its slots back in the VM's
// `down` callback, at once, with no sweeper. A slot and its holder's record
// are taken in one call under the name's shard lock.
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/semaphore/sharded_index.hpp"
#include "core/semaphore/slot_ledger.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"
#include "nif/term_size.hpp"

namespace switchboard::nif {
namespace {

// Names larger than this are hashed and copied on a dirty scheduler.
constexpr std::size_t kNormalSchedulerNameBytes = 16 * 1024;

struct NamedSemaphore;
using SemaphoreIndex = core::ShardedIndex<NamedSemaphore, 64>;

// The table lives as long as the library; its entries are kept by `owned`.
struct SemaphoreTable {
  SemaphoreIndex index;
  std::mutex owned_lock;
  std::vector<ResourcePtr<NamedSemaphore>> owned;
};

SemaphoreTable& table() {
  static SemaphoreTable* instance = new SemaphoreTable();
  return *instance;
}

std::uint64_t holder_key(const ErlNifPid& pid) { return static_cast<std::uint64_t>(pid.pid); }

struct NamedSemaphore {
  OwnedEnv env;
  ERL_NIF_TERM name;
  std::uint64_t hash;
  void* resource = nullptr;  // this object's resource, for enif_monitor_process
  core::SlotLedger<ErlNifMonitor> ledger;

  NamedSemaphore(ERL_NIF_TERM name_term, std::uint64_t name_hash)
      : name(env.copy(name_term)), hash(name_hash) {}

  void on_down(ErlNifEnv*, const ErlNifPid& pid, const ErlNifMonitor&) noexcept {
    auto& shard = table().index.shard_for(hash);
    std::lock_guard guard(shard.lock);
    ledger.holder_down(holder_key(pid));
  }
};
SWITCHBOARD_RESOURCE(NamedSemaphore, "NamedSemaphore");

std::uint64_t name_hash(ErlNifEnv* env, ERL_NIF_TERM name) {
  // An atom is one word for its whole life: its hash is the word.
  if (enif_is_atom(env, name)) return static_cast<std::uint64_t>(name);
  return enif_hash(ERL_NIF_INTERNAL_HASH, name, 0);
}

bool same_name(ErlNifEnv* env, const NamedSemaphore& entry, ERL_NIF_TERM name) {
  return entry.name == name || (!enif_is_atom(env, name) && enif_is_identical(entry.name, name));
}

NamedSemaphore* find(SemaphoreIndex::Shard& shard, ErlNifEnv* env, ERL_NIF_TERM name,
                     std::uint64_t hash) {
  return shard.find(hash, [&](const NamedSemaphore& entry) { return same_name(env, entry, name); });
}

// Called with the shard locked; the new entry is owned by the table.
NamedSemaphore* create(SemaphoreIndex::Shard& shard, ERL_NIF_TERM name, std::uint64_t hash) {
  auto entry = make_resource<NamedSemaphore>(name, hash);
  entry->resource = entry.raw();
  NamedSemaphore* raw = entry.get();
  {
    SemaphoreTable& owner = table();
    std::lock_guard guard(owner.owned_lock);
    owner.owned.push_back(std::move(entry));
  }
  shard.insert(hash, raw);
  return raw;
}

bool large_name(ErlNifEnv* env, ERL_NIF_TERM name) {
  return on_normal_scheduler_thread() && !enif_is_atom(env, name) &&
         term_larger_than(env, name, kNormalSchedulerNameBytes, BinaryBytes::copied);
}

std::int64_t decode_limit(ErlNifEnv* env, ERL_NIF_TERM term) {
  ErlNifSInt64 value;
  if (enif_get_int64(env, term, &value)) {
    if (value < 0) throw bad_argument(env, "a non-negative integer", term);
    return value;
  }
  // The Elixir API lets only non-negative integers through: past 64 bits
  // there is no limit.
  if (enif_is_number(env, term)) return INT64_MAX;
  throw bad_argument(env, "a non-negative integer", term);
}

// Each NIF takes the name as a term (any term names a semaphore) and reruns
// itself on a dirty scheduler when the name is large.
Scheduled<bool> semaphore_acquire(Call& call, Term name_term, Term limit) {
  if (large_name(call, name_term.value)) return call.dirty();
  ErlNifEnv* env = call;
  const ERL_NIF_TERM name = name_term.value;
  const std::int64_t max = decode_limit(env, limit.value);
  ErlNifPid self;
  if (enif_self(env, &self) == nullptr) throw std::runtime_error("semaphore: no calling process");
  const std::uint64_t holder = holder_key(self);
  const std::uint64_t hash = name_hash(env, name);
  auto& shard = table().index.shard_for(hash);
  NamedSemaphore* entry;
  core::SlotLedger<ErlNifMonitor>::Acquired result;
  {
    std::lock_guard guard(shard.lock);
    entry = find(shard, env, name, hash);
    if (entry == nullptr) {
      if (max == 0) return false;
      entry = create(shard, name, hash);
    }
    result = entry->ledger.acquire(holder, max);
  }
  if (result.monitor_needed) {
    // The caller is running this NIF, so it is alive until we return: the
    // slot and its record were taken together, and the monitor cannot miss
    // the caller's death.
    ErlNifMonitor monitor;
    if (enif_monitor_process(env, entry->resource, &self, &monitor) != 0) {
      std::lock_guard guard(shard.lock);
      entry->ledger.holder_down(holder);
      throw std::runtime_error("semaphore: could not monitor the calling process");
    }
    bool kept;
    {
      std::lock_guard guard(shard.lock);
      kept = entry->ledger.watching(holder, monitor);
    }
    if (!kept) enif_demonitor_process(env, entry->resource, &monitor);
  }
  return result.acquired;
}
SWITCHBOARD_NIF(semaphore_acquire, 0);

Scheduled<Term> semaphore_release(Call& call, Term name_term) {
  if (large_name(call, name_term.value)) return call.dirty();
  ErlNifEnv* env = call;
  const ERL_NIF_TERM name = name_term.value;
  ErlNifPid self;
  if (enif_self(env, &self) == nullptr) throw std::runtime_error("semaphore: no calling process");
  const std::uint64_t hash = name_hash(env, name);
  auto& shard = table().index.shard_for(hash);
  NamedSemaphore* entry;
  core::SlotLedger<ErlNifMonitor>::Released result;
  {
    std::lock_guard guard(shard.lock);
    entry = find(shard, env, name, hash);
    if (entry == nullptr) return Term{atoms::ok};
    result = entry->ledger.release(holder_key(self));
  }
  if (result.demonitor) enif_demonitor_process(env, entry->resource, &result.monitor);
  return Term{atoms::ok};
}
SWITCHBOARD_NIF(semaphore_release, 0);

Scheduled<NonNegative<std::int64_t>> semaphore_count(Call& call, Term name_term) {
  if (large_name(call, name_term.value)) return call.dirty();
  ErlNifEnv* env = call;
  const std::uint64_t hash = name_hash(env, name_term.value);
  auto& shard = table().index.shard_for(hash);
  std::lock_guard guard(shard.lock);
  NamedSemaphore* entry = find(shard, env, name_term.value, hash);
  return NonNegative<std::int64_t>(entry == nullptr ? 0 : entry->ledger.count());
}
SWITCHBOARD_NIF(semaphore_count, 0);

Scheduled<Term> semaphore_reset(Call& call, Term name_term, Term count) {
  if (large_name(call, name_term.value)) return call.dirty();
  ErlNifEnv* env = call;
  const ERL_NIF_TERM name = name_term.value;
  const std::int64_t value = decode_limit(env, count.value);
  const std::uint64_t hash = name_hash(env, name);
  auto& shard = table().index.shard_for(hash);
  std::lock_guard guard(shard.lock);
  NamedSemaphore* entry = find(shard, env, name, hash);
  if (entry == nullptr) {
    if (value == 0) return Term{atoms::ok};
    entry = create(shard, name, hash);
  }
  entry->ledger.reset(value);
  return Term{atoms::ok};
}
SWITCHBOARD_NIF(semaphore_reset, 0);

// {holders recorded, idle holders}, or nil: for tests of the holder records.
std::optional<std::tuple<NonNegative<std::uint64_t>, NonNegative<std::uint64_t>>> semaphore_info(
    ErlNifEnv* env, Term name) {
  const std::uint64_t hash = name_hash(env, name.value);
  auto& shard = table().index.shard_for(hash);
  std::lock_guard guard(shard.lock);
  NamedSemaphore* entry = find(shard, env, name.value, hash);
  if (entry == nullptr) return std::nullopt;
  return std::tuple{NonNegative<std::uint64_t>(entry->ledger.holders_recorded()),
                    NonNegative<std::uint64_t>(entry->ledger.idle_holders())};
}
SWITCHBOARD_NIF(semaphore_info, 0);

}  // namespace
}  // namespace switchboard::nif
