#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/fanout/worker_pool.hpp"

using switchboard::core::fanout::Task;
using switchboard::core::fanout::WorkerPool;

namespace {

// Appends (key, sequence) to a shared log when run.
class LoggingTask : public Task {
 public:
  LoggingTask(std::vector<std::pair<int, int>>& log, std::mutex& mutex, int key, int sequence)
      : log_(log), mutex_(mutex), key_(key), sequence_(sequence) {}
  void run() noexcept override {
    std::lock_guard lock(mutex_);
    log_.emplace_back(key_, sequence_);
  }

 private:
  std::vector<std::pair<int, int>>& log_;
  std::mutex& mutex_;
  int key_;
  int sequence_;
};

class FunctionTask : public Task {
 public:
  explicit FunctionTask(std::function<void()> body) : body_(std::move(body)) {}
  void run() noexcept override { body_(); }

 private:
  std::function<void()> body_;
};

}  // namespace

TEST_CASE("tasks with one key run in submission order", "[fanout][worker_pool]") {
  std::vector<std::pair<int, int>> log;
  std::mutex mutex;
  {
    WorkerPool pool;
    pool.start(3);
    REQUIRE(pool.size() == 3);
    for (int i = 0; i < 3000; ++i) {
      const int key = i % 7;
      pool.submit(static_cast<std::size_t>(key), std::make_unique<LoggingTask>(log, mutex, key, i));
    }
    pool.stop();  // runs everything queued so far
    REQUIRE(pool.completed() == 3000);
  }
  REQUIRE(log.size() == 3000);
  std::vector<int> last(7, -1);
  for (auto [key, sequence] : log) {
    REQUIRE(sequence > last[static_cast<std::size_t>(key)]);
    last[static_cast<std::size_t>(key)] = sequence;
  }
}

TEST_CASE("different workers run in parallel", "[fanout][worker_pool]") {
  WorkerPool pool;
  pool.start(2);
  // Task A waits for task B: only possible if they run on two threads.
  std::atomic<bool> b_ran{false};
  std::atomic<bool> a_saw_b{false};
  pool.submit(0, std::make_unique<FunctionTask>([&] {
                const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
                while (!b_ran && std::chrono::steady_clock::now() < deadline)
                  std::this_thread::yield();
                a_saw_b = b_ran.load();
              }));
  pool.submit(1, std::make_unique<FunctionTask>([&] { b_ran = true; }));
  pool.stop();
  REQUIRE(a_saw_b);
}

TEST_CASE("submitting to a stopped pool throws and start twice throws", "[fanout][worker_pool]") {
  WorkerPool pool;
  REQUIRE_FALSE(pool.running());
  REQUIRE_THROWS_AS(pool.submit(0, std::make_unique<FunctionTask>([] {})), std::logic_error);
  pool.start(1);
  REQUIRE_THROWS_AS(pool.start(1), std::logic_error);
  pool.stop();
  REQUIRE_FALSE(pool.running());
  // A stopped pool can be started again.
  std::atomic<int> ran{0};
  pool.start(0);  // zero means one thread
  REQUIRE(pool.size() == 1);
  pool.submit(5, std::make_unique<FunctionTask>([&] { ++ran; }));
  pool.stop();
  REQUIRE(ran == 1);
}

TEST_CASE("the start hook runs once on every worker thread, before its tasks",
          "[fanout][worker_pool]") {
  std::mutex mutex;
  std::vector<std::thread::id> started;
  std::atomic<bool> task_saw_its_hook{false};
  WorkerPool pool;
  pool.start(4, [&] {
    std::lock_guard lock(mutex);
    started.push_back(std::this_thread::get_id());
  });
  pool.submit(0, std::make_unique<FunctionTask>([&] {
                std::lock_guard lock(mutex);
                task_saw_its_hook = std::find(started.begin(), started.end(),
                                              std::this_thread::get_id()) != started.end();
              }));
  pool.stop();
  REQUIRE(started.size() == 4);
  REQUIRE(task_saw_its_hook);
}
