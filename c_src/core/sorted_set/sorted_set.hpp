// An OrderStatisticTree behind a DistributedRwLock: readers share the tree
// and write only a cache line of their own, so reads scale with cores;
// writers are exclusive, and small writes (update) are combined: under
// contention one writer applies the others' writes in its exclusive turn.
// The try_ forms never block for long, so code running on a thread that must
// not stall (a BEAM scheduler) can back off and retry elsewhere instead.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <utility>

#include "core/sorted_set/distributed_rw_lock.hpp"
#include "core/sorted_set/order_statistic_tree.hpp"

namespace switchboard::core {

class SortedSet {
 public:
  // Shared access for as long as the object lives.
  class ReadAccess {
   public:
    ReadAccess(ReadAccess&& other) noexcept
        : lock_(std::exchange(other.lock_, nullptr)), slot_(other.slot_), tree_(other.tree_) {}
    ReadAccess(const ReadAccess&) = delete;
    ReadAccess& operator=(const ReadAccess&) = delete;
    ReadAccess& operator=(ReadAccess&&) = delete;
    ~ReadAccess() {
      if (lock_ != nullptr) lock_->unlock_shared(slot_);
    }

    const OrderStatisticTree& tree() const noexcept { return *tree_; }
    const OrderStatisticTree* operator->() const noexcept { return tree_; }

   private:
    friend class SortedSet;
    ReadAccess(DistributedRwLock& lock, std::size_t slot, const OrderStatisticTree& tree) noexcept
        : lock_(&lock), slot_(slot), tree_(&tree) {}
    DistributedRwLock* lock_;
    std::size_t slot_;
    const OrderStatisticTree* tree_;
  };

  // Exclusive access for as long as the object lives.
  class WriteAccess {
   public:
    WriteAccess(WriteAccess&& other) noexcept
        : lock_(std::exchange(other.lock_, nullptr)), tree_(other.tree_) {}
    WriteAccess(const WriteAccess&) = delete;
    WriteAccess& operator=(const WriteAccess&) = delete;
    WriteAccess& operator=(WriteAccess&&) = delete;
    ~WriteAccess() {
      if (lock_ != nullptr) lock_->unlock();
    }

    OrderStatisticTree& tree() const noexcept { return *tree_; }
    OrderStatisticTree* operator->() const noexcept { return tree_; }

   private:
    friend class SortedSet;
    WriteAccess(DistributedRwLock& lock, OrderStatisticTree& tree) noexcept
        : lock_(&lock), tree_(&tree) {}
    DistributedRwLock* lock_;
    OrderStatisticTree* tree_;
  };

  SortedSet() = default;
  explicit SortedSet(OrderStatisticTree tree) noexcept : tree_(std::move(tree)) {}
  SortedSet(const SortedSet&) = delete;
  SortedSet& operator=(const SortedSet&) = delete;

  ReadAccess read() {
    const std::size_t slot = lock_.lock_shared();
    return {lock_, slot, tree_};
  }
  WriteAccess write() {
    lock_.lock();
    return {lock_, tree_};
  }

  // Fail after `spins` spins (DistributedRwLock) waiting for a writer, or
  // for a writer and the readers in.
  std::optional<ReadAccess> try_read(std::uint32_t spins = DistributedRwLock::kDefaultSpins) {
    std::size_t slot;
    if (!lock_.try_lock_shared(slot, spins)) return std::nullopt;
    return ReadAccess(lock_, slot, tree_);
  }
  std::optional<WriteAccess> try_write(std::uint32_t spins = DistributedRwLock::kDefaultSpins) {
    if (!lock_.try_lock(spins)) return std::nullopt;
    return WriteAccess(lock_, tree_);
  }

  // Applies `write(tree)` exactly once under the exclusive lock, on this
  // thread or on the writer combining the waiting writes; returns when it is
  // done. `write` must be short (it may run inside another caller's turn),
  // may touch only the tree and memory of its own, and is applied on
  // another thread, so it must not use anything bound to this one; what it
  // throws is thrown here. try_update returns false, nothing applied, when
  // no turn came within about `spins` spins.
  template <class Write>
  bool try_update(Write&& write, std::uint32_t spins = DistributedRwLock::kDefaultSpins) {
    Update<Write> update{write, tree_, {}};
    const DistributedRwLock::Operation operation{&Update<Write>::apply, &update};
    if (!lock_.try_combine(operation, spins)) return false;
    if (update.error) std::rethrow_exception(update.error);
    return true;
  }
  template <class Write>
  void update(Write&& write) {
    Update<Write> update{write, tree_, {}};
    lock_.combine({&Update<Write>::apply, &update});
    if (update.error) std::rethrow_exception(update.error);
  }

  // Heap bytes of the lock's reader slots (the tree counts its own).
  std::size_t lock_memory_bytes() const noexcept { return lock_.memory_bytes(); }

 private:
  template <class Write>
  struct Update {
    Write& write;
    OrderStatisticTree& tree;
    std::exception_ptr error;
    static void apply(void* context) noexcept {
      auto& self = *static_cast<Update*>(context);
      try {
        self.write(self.tree);
      } catch (...) {
        self.error = std::current_exception();
      }
    }
  };

  DistributedRwLock lock_;
  OrderStatisticTree tree_;
};

}  // namespace switchboard::core
