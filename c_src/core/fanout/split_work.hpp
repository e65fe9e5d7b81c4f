// One job's items split into chunks that several threads take in turn: the
// thread that owns the job and any number of helpers call help(); each chunk
// is run exactly once, and the owner's wait() returns once every chunk has
// been run. Chunks are claimed from one atomic cursor, so a helper that
// arrives late (every chunk already taken) costs nothing, and a helper that
// never arrives only leaves more chunks to the owner.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <stdexcept>

namespace switchboard::core::fanout {

class SplitWork {
 public:
  // Runs items [begin, end); must not throw (a helper has nobody to report to).
  using Body = std::function<void(std::size_t begin, std::size_t end)>;

  // Throws std::invalid_argument unless 0 < chunk.
  SplitWork(std::size_t items, std::size_t chunk, Body body)
      : items_(items), chunk_(chunk), body_(std::move(body)) {
    if (chunk == 0) throw std::invalid_argument("a split needs a chunk size above zero");
  }
  SplitWork(const SplitWork&) = delete;
  SplitWork& operator=(const SplitWork&) = delete;

  std::size_t chunks() const noexcept { return (items_ + chunk_ - 1) / chunk_; }

  // Claims and runs chunks until none is left; returns how many it ran.
  // `as_helper`: counted in helper_chunks() (the owner passes false).
  std::size_t help(bool as_helper = true) noexcept {
    // Counted as active before claiming, so that wait(), once the cursor is
    // past the end, sees every helper still running a chunk it claimed.
    active_.fetch_add(1, std::memory_order_seq_cst);
    std::size_t ran = 0;
    for (;;) {
      const std::size_t begin = next_.fetch_add(chunk_, std::memory_order_seq_cst);
      if (begin >= items_) break;
      body_(begin, std::min(items_, begin + chunk_));
      ++ran;
    }
    if (as_helper) helper_chunks_.fetch_add(ran, std::memory_order_relaxed);
    if (active_.fetch_sub(1, std::memory_order_seq_cst) == 1) active_.notify_all();
    return ran;
  }

  // Chunks run by helpers; exact once wait() has returned.
  std::size_t helper_chunks() const noexcept {
    return helper_chunks_.load(std::memory_order_relaxed);
  }

  // Blocks until every chunk claimed by anyone has been run. Call it after
  // help() has returned on this thread (the cursor is then past the end).
  void wait() const noexcept {
    for (std::size_t active = active_.load(std::memory_order_seq_cst); active != 0;
         active = active_.load(std::memory_order_seq_cst)) {
      active_.wait(active, std::memory_order_seq_cst);
    }
  }

 private:
  const std::size_t items_;
  const std::size_t chunk_;
  const Body body_;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::size_t> active_{0};
  std::atomic<std::size_t> helper_chunks_{0};
};

}  // namespace switchboard::core::fanout
