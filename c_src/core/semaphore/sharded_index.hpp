// A concurrent index from names to long-lived entries, split into shards by
// the name's hash, each shard guarded by its own SpinLock on its own cache
// line. Callers lock the shard, look the entry up and work on it under the
// same lock, so a lookup and the update it leads to are one atomic step.
// Entries are never removed (their number is the number of distinct names).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "core/semaphore/spin_lock.hpp"

namespace switchboard::core {

template <class Entry, std::size_t ShardCount = 64>
class ShardedIndex {
  static_assert((ShardCount & (ShardCount - 1)) == 0, "ShardCount must be a power of two");

 public:
  struct alignas(64) Shard {
    SpinLock lock;
    std::unordered_multimap<std::uint64_t, Entry*> entries;

    // The entry with this hash for which `same(entry)` holds, or nullptr.
    template <class Same>
    Entry* find(std::uint64_t hash, Same&& same) const {
      auto [first, last] = entries.equal_range(hash);
      for (auto it = first; it != last; ++it) {
        if (same(*it->second)) return it->second;
      }
      return nullptr;
    }
    void insert(std::uint64_t hash, Entry* entry) { entries.emplace(hash, entry); }
  };

  Shard& shard_for(std::uint64_t hash) noexcept {
    // The low bits pick the bucket inside the shard's map; mix before using
    // the high bits so clustered hashes still spread over shards.
    std::uint64_t mixed = hash * 0x9E3779B97F4A7C15ull;
    return shards_[static_cast<std::size_t>(mixed >> 40) & (ShardCount - 1)];
  }

  std::size_t size() {
    std::size_t total = 0;
    for (Shard& shard : shards_) {
      std::lock_guard guard(shard.lock);
      total += shard.entries.size();
    }
    return total;
  }

  template <class Visit>
  void for_each(Visit&& visit) {
    for (Shard& shard : shards_) {
      std::lock_guard guard(shard.lock);
      for (auto& [hash, entry] : shard.entries) visit(*entry);
    }
  }

 private:
  std::array<Shard, ShardCount> shards_;
};

}  // namespace switchboard::core
