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

// ---------------------------------------------------------------------------
// Split work

namespace {

// Waits (at most 30 s) until `done` is set: stop() right after submit()
// would close the other workers' queues before a split task posts its
// helpers there.
void await(const std::atomic<bool>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
}

}  // namespace

using switchboard::core::fanout::SplitWork;

TEST_CASE("split work: every item runs once, whoever helps", "[fanout][split]") {
  constexpr std::size_t kItems = 10'007;
  std::vector<std::atomic<int>> runs(kItems);
  SplitWork work(kItems, 13, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) runs[i].fetch_add(1);
  });
  REQUIRE(work.chunks() == (kItems + 12) / 13);
  std::vector<std::thread> helpers;
  std::atomic<std::size_t> helped{0};
  for (int i = 0; i < 3; ++i) helpers.emplace_back([&] { helped += work.help(); });
  const std::size_t owned = work.help(false);
  work.wait();
  for (auto& helper : helpers) helper.join();
  REQUIRE(owned + helped == work.chunks());
  REQUIRE(work.helper_chunks() == helped);
  REQUIRE(std::all_of(runs.begin(), runs.end(), [](const auto& n) { return n == 1; }));
  // A helper arriving after the end runs nothing.
  REQUIRE(work.help() == 0);
}

TEST_CASE("split work: no items, and a zero chunk is refused", "[fanout][split]") {
  int calls = 0;
  SplitWork empty(0, 4, [&](std::size_t, std::size_t) { ++calls; });
  REQUIRE(empty.chunks() == 0);
  REQUIRE(empty.help(false) == 0);
  empty.wait();
  REQUIRE(calls == 0);
  REQUIRE_THROWS_AS(SplitWork(5, 0, [](std::size_t, std::size_t) {}), std::invalid_argument);
}

TEST_CASE("a split task's items all run before the next task with its key starts",
          "[fanout][split]") {
  // Each task is one fan-out: it appends its number to every receiver's log,
  // split over the pool. A receiver's log must read 0, 1, 2, ... per key.
  constexpr std::size_t kReceivers = 3'000;
  constexpr int kTasks = 40;
  std::vector<std::vector<int>> logs(2 * kReceivers);
  std::atomic<std::size_t> helper_chunks{0};
  {
    WorkerPool pool;
    pool.start(4);
    std::atomic<int> finished{0};
    std::atomic<bool> all_finished{false};
    for (int task = 0; task < kTasks; ++task) {
      const std::size_t key = static_cast<std::size_t>(task % 2);
      pool.submit(key, std::make_unique<FunctionTask>([&, task, key] {
                    std::vector<int>* mine = logs.data() + key * kReceivers;
                    helper_chunks += pool.split(kReceivers, 64, 3,
                                                [mine, task](std::size_t begin, std::size_t end) {
                                                  for (std::size_t i = begin; i < end; ++i)
                                                    mine[i].push_back(task);
                                                });
                    if (++finished == kTasks) all_finished = true;
                  }));
    }
    await(all_finished);
    pool.stop();
  }
  for (std::size_t key = 0; key < 2; ++key) {
    std::vector<int> expected;
    for (int task = static_cast<int>(key); task < kTasks; task += 2) expected.push_back(task);
    for (std::size_t i = 0; i < kReceivers; ++i) REQUIRE(logs[key * kReceivers + i] == expected);
  }
  INFO("chunks run by helpers: " << helper_chunks.load());
}

TEST_CASE("idle workers help a split task", "[fanout][split]") {
  WorkerPool pool;
  pool.start(3);
  std::atomic<std::size_t> helped{0};
  std::atomic<bool> other_thread_ran{false};
  std::atomic<bool> finished{false};
  pool.submit(0, std::make_unique<FunctionTask>([&] {
                const auto owner = std::this_thread::get_id();
                bool waited = false;  // only the owner's thread touches it
                helped = pool.split(64, 1, 2, [&](std::size_t, std::size_t) {
                  if (std::this_thread::get_id() != owner) {
                    other_thread_ran = true;
                  } else if (!waited) {
                    // The owner's first chunk waits for a helper's (a
                    // helper may have taken every chunk before it: fine).
                    waited = true;
                    const auto deadline =
                        std::chrono::steady_clock::now() + std::chrono::seconds(10);
                    while (!other_thread_ran && std::chrono::steady_clock::now() < deadline)
                      std::this_thread::yield();
                  }
                });
                finished = true;
              }));
  await(finished);
  pool.stop();
  REQUIRE(other_thread_ran);
  REQUIRE(helped > 0);
}

TEST_CASE("helpers queued behind busy workers arrive late and find nothing", "[fanout][split]") {
  WorkerPool pool;
  pool.start(3);
  std::atomic<bool> release{false};
  std::atomic<std::size_t> helped{99};
  std::atomic<std::size_t> items_run{0};
  std::atomic<bool> each_once{false};
  // Workers 1 and 2 are busy until the split on worker 0 is over.
  for (std::size_t key = 1; key <= 2; ++key) {
    pool.submit(key, std::make_unique<FunctionTask>([&] {
                  while (!release) std::this_thread::yield();
                }));
  }
  pool.submit(0, std::make_unique<FunctionTask>([&] {
                {
                  // Destroyed before the helpers run: they must not touch it.
                  std::vector<int> owned_by_the_task(500, 0);
                  helped = pool.split(500, 7, 2, [&](std::size_t begin, std::size_t end) {
                    for (std::size_t i = begin; i < end; ++i) ++owned_by_the_task[i];
                    items_run += end - begin;
                  });
                  each_once = std::all_of(owned_by_the_task.begin(), owned_by_the_task.end(),
                                          [](int n) { return n == 1; });
                }
                release = true;
              }));
  // The helpers run once workers 1 and 2 are released: wait for all five.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (pool.completed() < 5 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  pool.stop();
  REQUIRE(helped == 0);
  REQUIRE(items_run == 500);
  REQUIRE(each_once);
  // Three tasks and the two helpers, which ran (and found nothing) after it.
  REQUIRE(pool.completed() == 5);
}
