// Writers of a sorted set under contention, with more threads than cores:
// each of T threads adds then removes keys of its own (a pair is one
// operation) in a tree of `items` keys, through one lock:
//   * std::mutex (futex: spins briefly, then sleeps);
//   * a test-and-test-and-set spin lock (pure spinning, the shape of a
//     writer that only spins);
//   * DistributedRwLock::lock (one word: the writers' lock and readers' flag);
//   * DistributedRwLock::combine (flat combining: one writer applies the
//     published writes of the others);
//   * try_combine, then combine when it fails (how the NIF runs a write: a
//     bounded try on a normal scheduler, then a blocking one on a dirty one).
// A lock whose waiters spin collapses when threads outnumber cores (the
// holder loses its core to a spinner); one that sleeps and combines keeps
// the throughput of one thread. Rounds go through every lock in turn, so a
// burst of load from the rest of the machine falls on all alike. Printed:
// total ops/s (wall) and its ratio to one thread with the same lock, and
// the CPU ns per op (process CPU time: the figure to trust on a shared
// machine, since spinning shows up in it).
// Usage: bench_sorted_set_writers [max_threads] [ops_per_round] [items] [rounds] [only]
// (`only`: run the locks whose name contains it)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/sorted_set/sorted_set.hpp"
#include "core/sorted_set/term_key_builder.hpp"
#include "sorted_set_bench_support.hpp"

namespace core = switchboard::core;
using core::TermKey;
using switchboard::bench::cpu_seconds;
using switchboard::bench::integer_key;

namespace {

class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

struct Result {
  double ops_per_second;
  double cpu_ns_per_op;
};

// `write(tree_op)` runs one locked write; T threads share `total` pairs.
template <class Write>
Result run(int threads, std::size_t total, const std::vector<TermKey>& own, Write write) {
  const std::size_t per_thread = total / static_cast<std::size_t>(threads);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      const std::size_t base = static_cast<std::size_t>(t) * 1000;
      for (std::size_t i = 0; i < per_thread; ++i) write(own[base + i % 1000]);
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const double cpu_start = cpu_seconds(RUSAGE_SELF);
  const auto wall_start = std::chrono::steady_clock::now();
  go.store(true);
  for (auto& thread : pool) thread.join();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const double ops = static_cast<double>(per_thread) * threads;
  return {ops / wall, (cpu_seconds(RUSAGE_SELF) - cpu_start) * 1e9 / ops};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : 16;
  const std::size_t ops = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 200'000;
  const std::size_t items = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 100'000;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 3;
  const std::string only = argc > 5 ? argv[5] : "";

  // Even keys in the set; each thread adds and removes odd keys of its own.
  std::vector<TermKey> present, own;
  for (std::size_t i = 0; i < items; ++i) present.push_back(integer_key(std::int64_t(i) * 2));
  for (int i = 0; i < max_threads * 1000; ++i) {
    own.push_back(integer_key((std::int64_t(i) * 7919 % std::int64_t(items)) * 2 + 1));
  }
  core::OrderStatisticTree plain;  // guarded by the std:: locks
  plain.build_from_sorted(std::span<const TermKey>(present));
  core::SortedSet set{core::OrderStatisticTree(plain)};
  std::mutex mutex;
  SpinLock spin;

  const auto pair = [](core::OrderStatisticTree& tree, const TermKey& key) {
    tree.insert(key);
    tree.erase(key);
  };
  struct Lock {
    const char* name;
    std::function<void(const TermKey&)> write;
  };
  const std::vector<Lock> locks = {
      {"std::mutex",
       [&](const TermKey& key) {
         std::lock_guard guard(mutex);
         pair(plain, key);
       }},
      {"spin lock",
       [&](const TermKey& key) {
         std::lock_guard guard(spin);
         pair(plain, key);
       }},
      {"DistributedRwLock::lock", [&](const TermKey& key) { pair(set.write().tree(), key); }},
      {"combine", [&](const TermKey& key) { set.update([&](auto& tree) { pair(tree, key); }); }},
      {"try_combine, then combine",
       [&](const TermKey& key) {
         const auto write = [&](auto& tree) { pair(tree, key); };
         if (!set.try_update(write)) set.update(write);
       }},
  };
  std::vector<std::size_t> chosen;
  for (std::size_t lock = 0; lock < locks.size(); ++lock) {
    if (std::string(locks[lock].name).find(only) != std::string::npos) chosen.push_back(lock);
  }

  std::vector<int> counts;
  for (int threads = 1; threads <= max_threads; threads *= 2) counts.push_back(threads);
  std::map<std::pair<std::size_t, int>, std::vector<Result>> results;
  for (int round = 0; round < rounds; ++round) {
    for (const int threads : counts) {
      for (const std::size_t lock : chosen) {
        results[{lock, threads}].push_back(run(threads, ops, own, locks[lock].write));
      }
    }
  }

  std::printf("%zu items, %zu add+remove pairs per run, %u hardware threads, median of %d\n\n",
              items, ops, std::thread::hardware_concurrency(), rounds);
  std::printf("| lock | threads | ops/s (wall) | x vs 1 thread | CPU ns/op | CPU x vs 1 |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const std::size_t lock : chosen) {
    double base_rate = 0, base_cpu = 0;
    for (const int threads : counts) {
      std::vector<double> rates, cpus;
      for (const Result& result : results[{lock, threads}]) {
        rates.push_back(result.ops_per_second);
        cpus.push_back(result.cpu_ns_per_op);
      }
      const double rate = median(rates), cpu = median(cpus);
      if (threads == 1) base_rate = rate, base_cpu = cpu;
      std::printf("| %s | %d | %.3f M | %.2fx | %.0f | %.2fx |\n", locks[lock].name, threads,
                  rate / 1e6, rate / base_rate, cpu, cpu / base_cpu);
    }
  }
  return 0;
}
