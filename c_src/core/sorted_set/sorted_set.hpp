// An OrderStatisticTree behind a reader/writer lock. Readers share, writers
// are exclusive; the try_ forms never block, so code running on a thread that
// must not stall (a BEAM scheduler) can back off and retry instead.
#pragma once

#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "core/sorted_set/order_statistic_tree.hpp"

namespace switchboard::core {

class SortedSet {
 public:
  // Shared access for as long as the object lives.
  class ReadAccess {
   public:
    const OrderStatisticTree& tree() const noexcept { return *tree_; }
    const OrderStatisticTree* operator->() const noexcept { return tree_; }

   private:
    friend class SortedSet;
    ReadAccess(std::shared_lock<std::shared_mutex> lock, const OrderStatisticTree& tree) noexcept
        : lock_(std::move(lock)), tree_(&tree) {}
    std::shared_lock<std::shared_mutex> lock_;
    const OrderStatisticTree* tree_;
  };

  // Exclusive access for as long as the object lives.
  class WriteAccess {
   public:
    OrderStatisticTree& tree() const noexcept { return *tree_; }
    OrderStatisticTree* operator->() const noexcept { return tree_; }

   private:
    friend class SortedSet;
    WriteAccess(std::unique_lock<std::shared_mutex> lock, OrderStatisticTree& tree) noexcept
        : lock_(std::move(lock)), tree_(&tree) {}
    std::unique_lock<std::shared_mutex> lock_;
    OrderStatisticTree* tree_;
  };

  SortedSet() = default;
  explicit SortedSet(OrderStatisticTree tree) noexcept : tree_(std::move(tree)) {}
  SortedSet(const SortedSet&) = delete;
  SortedSet& operator=(const SortedSet&) = delete;

  ReadAccess read() { return {std::shared_lock(mutex_), tree_}; }
  WriteAccess write() { return {std::unique_lock(mutex_), tree_}; }

  std::optional<ReadAccess> try_read() {
    std::shared_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return std::nullopt;
    return ReadAccess(std::move(lock), tree_);
  }

  std::optional<WriteAccess> try_write() {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return std::nullopt;
    return WriteAccess(std::move(lock), tree_);
  }

 private:
  std::shared_mutex mutex_;
  OrderStatisticTree tree_;
};

}  // namespace switchboard::core
