#include "core/fanout/worker_pool.hpp"

#include <algorithm>
#include <new>
#include <stdexcept>

namespace switchboard::core::fanout {

namespace {

// The worker this thread is, if it is one: helpers go to the others.
thread_local const void* current_pool = nullptr;
thread_local std::size_t current_worker = 0;

// Takes chunks of a split job; the job outlives the owner's wait for as long
// as a helper still holds it (it then finds every chunk taken).
class HelpTask : public Task {
 public:
  explicit HelpTask(std::shared_ptr<SplitWork> work) : work_(std::move(work)) {}
  void run() noexcept override { work_->help(); }

 private:
  std::shared_ptr<SplitWork> work_;
};

}  // namespace

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::start(std::size_t threads, std::function<void()> on_thread_start) {
  if (running()) throw std::logic_error("worker pool already running");
  if (threads == 0) threads = 1;
  std::vector<std::unique_ptr<Worker>> workers;
  workers.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers.push_back(std::make_unique<Worker>());
  try {
    for (auto& worker : workers) {
      worker->thread = std::thread([this, index = &worker - workers.data(), queue = &worker->queue,
                                    counter = &completed_, on_thread_start] {
        current_pool = this;
        current_worker = static_cast<std::size_t>(index);
        if (on_thread_start) on_thread_start();
        while (auto task = queue->pop()) {
          task->run();
          task.reset();
          counter->fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
  } catch (...) {
    // A thread could not be created: stop the ones that were.
    for (auto& worker : workers) {
      worker->queue.close();
      if (worker->thread.joinable()) worker->thread.join();
    }
    throw;
  }
  workers_ = std::move(workers);
}

void WorkerPool::stop() {
  for (auto& worker : workers_) worker->queue.close();
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  workers_.clear();
}

void WorkerPool::submit(std::size_t key, std::unique_ptr<Task> task) {
  if (!running()) throw std::logic_error("worker pool is not running");
  workers_[key % workers_.size()]->queue.push(std::move(task));
}

std::size_t WorkerPool::split(std::size_t items, std::size_t chunk, std::size_t helpers,
                              SplitWork::Body work) {
  auto shared = std::make_shared<SplitWork>(items, chunk, std::move(work));
  const bool on_worker = current_pool == this;
  const std::size_t others = workers_.empty() ? 0 : workers_.size() - (on_worker ? 1 : 0);
  helpers = std::min({helpers, others, shared->chunks() > 0 ? shared->chunks() - 1 : 0});
  for (std::size_t i = 1; i <= helpers; ++i) {
    const std::size_t target = on_worker ? current_worker + i : i - 1;
    try {
      workers_[target % workers_.size()]->queue.push(std::make_unique<HelpTask>(shared));
    } catch (const std::bad_alloc&) {
      break;  // fewer helpers: the owner takes what they would have
    }
  }
  shared->help(false);
  shared->wait();
  return shared->helper_chunks();
}

}  // namespace switchboard::core::fanout
