#include "core/fanout/worker_pool.hpp"

#include <stdexcept>

namespace switchboard::core::fanout {

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::start(std::size_t threads, std::function<void()> on_thread_start) {
  if (running()) throw std::logic_error("worker pool already running");
  if (threads == 0) threads = 1;
  std::vector<std::unique_ptr<Worker>> workers;
  workers.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers.push_back(std::make_unique<Worker>());
  try {
    for (auto& worker : workers) {
      worker->thread =
          std::thread([queue = &worker->queue, counter = &completed_, on_thread_start] {
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

}  // namespace switchboard::core::fanout
