// A multi-producer, single-consumer queue of owned work items: producers
// never block (a lock-free push), the one consumer sleeps until there is work.
#pragma once

#include <atomic>
#include <boost/lockfree/queue.hpp>
#include <cstddef>
#include <memory>
#include <new>
#include <semaphore>

namespace switchboard::core::fanout {

template <class T>
class WorkQueue {
 public:
  // `capacity` nodes are allocated up front; the queue grows past it on demand.
  explicit WorkQueue(std::size_t capacity = 1024) : queue_(capacity) {}
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;
  ~WorkQueue() {
    T* raw = nullptr;
    while (queue_.pop(raw)) delete raw;
  }

  // Takes ownership of `item`. Items from one producer are popped in the
  // order that producer pushed them. Throws std::bad_alloc if the queue
  // cannot grow (the item is then still the caller's).
  void push(std::unique_ptr<T> item) {
    if (!queue_.push(item.get())) throw std::bad_alloc();
    item.release();
    ready_.release();
  }

  // Blocks until an item is available. Returns nullptr once the queue is
  // closed and every item pushed before close() has been popped.
  std::unique_ptr<T> pop() {
    for (;;) {
      ready_.acquire();
      T* raw = nullptr;
      if (queue_.pop(raw)) return std::unique_ptr<T>(raw);
      if (closed_.load(std::memory_order_acquire)) {
        // Leave the wake-up for the next pop: a closed queue stays closed.
        ready_.release();
        return nullptr;
      }
    }
  }

  // Wakes the consumer; pop() returns nullptr once the queue is drained.
  void close() noexcept {
    closed_.store(true, std::memory_order_release);
    ready_.release();
  }

  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

 private:
  boost::lockfree::queue<T*> queue_;
  // One release per pushed item, plus one for close().
  std::counting_semaphore<> ready_{0};
  std::atomic<bool> closed_{false};
};

}  // namespace switchboard::core::fanout
