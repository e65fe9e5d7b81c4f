#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "core/fanout/work_queue.hpp"

using switchboard::core::fanout::WorkQueue;

namespace {

struct Item {
  int producer;
  int sequence;
};

// Counts live instances so tests can see the queue frees what it holds.
struct Tracked {
  static inline std::atomic<int> live{0};
  Tracked() { ++live; }
  ~Tracked() { --live; }
};

}  // namespace

TEST_CASE("a single producer's items come out in order", "[fanout][work_queue]") {
  WorkQueue<Item> queue(4);  // smaller than the item count: the queue grows
  for (int i = 0; i < 100; ++i) queue.push(std::make_unique<Item>(Item{0, i}));
  for (int i = 0; i < 100; ++i) {
    auto item = queue.pop();
    REQUIRE(item != nullptr);
    REQUIRE(item->sequence == i);
  }
}

TEST_CASE("many producers: nothing lost, each producer's order kept", "[fanout][work_queue]") {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20000;
  WorkQueue<Item> queue;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&queue, p] {
      for (int i = 0; i < kPerProducer; ++i) queue.push(std::make_unique<Item>(Item{p, i}));
    });
  }
  std::vector<int> next(kProducers, 0);
  for (int received = 0; received < kProducers * kPerProducer; ++received) {
    auto item = queue.pop();
    REQUIRE(item != nullptr);
    REQUIRE(item->sequence == next[static_cast<std::size_t>(item->producer)]);
    ++next[static_cast<std::size_t>(item->producer)];
  }
  for (auto& producer : producers) producer.join();
  for (int count : next) REQUIRE(count == kPerProducer);
}

TEST_CASE("a closed queue is drained, then pop returns nullptr", "[fanout][work_queue]") {
  WorkQueue<Item> queue;
  queue.push(std::make_unique<Item>(Item{0, 1}));
  queue.push(std::make_unique<Item>(Item{0, 2}));
  queue.close();
  REQUIRE(queue.closed());
  REQUIRE(queue.pop()->sequence == 1);
  REQUIRE(queue.pop()->sequence == 2);
  REQUIRE(queue.pop() == nullptr);
  REQUIRE(queue.pop() == nullptr);  // stays closed
}

TEST_CASE("close wakes a consumer blocked in pop", "[fanout][work_queue]") {
  WorkQueue<Item> queue;
  std::atomic<bool> returned{false};
  std::thread consumer([&] {
    REQUIRE(queue.pop() == nullptr);
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE_FALSE(returned);
  queue.close();
  consumer.join();
  REQUIRE(returned);
}

TEST_CASE("items still queued are freed with the queue", "[fanout][work_queue]") {
  {
    WorkQueue<Tracked> queue;
    for (int i = 0; i < 10; ++i) queue.push(std::make_unique<Tracked>());
    REQUIRE(Tracked::live == 10);
    queue.pop();  // popped and dropped at once
    REQUIRE(Tracked::live == 9);
  }
  REQUIRE(Tracked::live == 0);
}
