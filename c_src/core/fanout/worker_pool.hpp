// A fixed set of worker threads, each draining its own WorkQueue of tasks.
// A task goes to the worker chosen by its key, so tasks submitted with one
// key run one after another in submission order (per-key FIFO) while tasks
// with different keys may run in parallel. A task can split its own work
// over the other workers (split()) and still finish before the next task
// with its key starts: the per-key order holds for all of its work.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/fanout/split_work.hpp"
#include "core/fanout/work_queue.hpp"

namespace switchboard::core::fanout {

// One unit of work for a worker thread. run() must not throw: a worker has
// nobody to report to, so a task reports its own outcome.
class Task {
 public:
  virtual ~Task() = default;
  virtual void run() noexcept = 0;
};

class WorkerPool {
 public:
  WorkerPool() = default;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool();

  // Starts `threads` workers (at least one). `on_thread_start`, if set, runs
  // first on each worker (to set its OS priority, say). Throws
  // std::logic_error if already running.
  void start(std::size_t threads, std::function<void()> on_thread_start = {});

  // Lets every worker finish the tasks queued so far, then joins them.
  // Tasks submitted concurrently with stop() may be dropped unrun (a split
  // task running then may find its helpers gone and do all of its work).
  void stop();

  bool running() const noexcept { return !workers_.empty(); }
  std::size_t size() const noexcept { return workers_.size(); }

  // Queues `task` on worker `key % size()`. Throws std::logic_error if the
  // pool is not running, std::bad_alloc if the queue cannot grow.
  void submit(std::size_t key, std::unique_ptr<Task> task);

  // Runs `work` (a SplitWork::Body over `items` items, `chunk` at a time) on
  // the calling thread, with help from up to `helpers` other workers (a
  // helper task queued on each, behind what they already have), and returns
  // once every item has been run, whoever ran it. Call it from a task (or
  // from outside the pool); the body must not call split() itself. Returns
  // the chunks the helpers ran. A helper that cannot be queued (out of
  // memory) leaves its share to the caller; throws std::bad_alloc only if
  // the job itself cannot be allocated (then no item has run).
  std::size_t split(std::size_t items, std::size_t chunk, std::size_t helpers,
                    SplitWork::Body work);

  // Tasks run to completion since start (for statistics and tests).
  std::uint64_t completed() const noexcept { return completed_.load(std::memory_order_relaxed); }

 private:
  struct Worker {
    WorkQueue<Task> queue;
    std::thread thread;
  };

  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::uint64_t> completed_{0};
};

}  // namespace switchboard::core::fanout
