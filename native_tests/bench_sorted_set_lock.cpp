// Read locks of a sorted set with 1..N reader threads: std::shared_mutex
// (one reader count every reader writes) against core::DistributedRwLock
// (a counter per thread slot), and no lock at all as the floor. Each reader
// does lock, find_index of an integer key, unlock, in a loop; the tree is
// small (cache resident) so the lock's own cost is not hidden behind cache
// misses of the tree. Printed per thread count: ops/s (wall) and the CPU ns
// per op (thread CPU time, the figure to trust on a shared machine; cache
// line transfers between cores show up in it as stalls).
// Usage: bench_sorted_set_lock [max_threads] [ops_per_thread] [items]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "core/sorted_set/distributed_rw_lock.hpp"
#include "core/sorted_set/order_statistic_tree.hpp"
#include "core/sorted_set/term_key_builder.hpp"
#include "sorted_set_bench_support.hpp"

namespace core = switchboard::core;
namespace bench = switchboard::bench;
using bench::integer_key;
using core::TermKey;

namespace {

struct Result {
  double ops_per_second;
  double cpu_ns_per_op;
};

// `read(key)` is one locked lookup; runs `threads` readers at once.
template <class Read>
Result run(int threads, std::size_t ops, const std::vector<TermKey>& keys, Read read) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> cpu(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      const double start = bench::cpu_seconds(RUSAGE_THREAD);
      std::size_t found = 0;
      for (std::size_t i = 0; i < ops; ++i)
        found += static_cast<std::size_t>(
            read(keys[(i * 7919 + static_cast<std::size_t>(t)) % keys.size()]));
      cpu[static_cast<std::size_t>(t)] = bench::cpu_seconds(RUSAGE_THREAD) - start;
      if (found == 0) std::abort();
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const auto wall_start = std::chrono::steady_clock::now();
  go.store(true);
  for (auto& thread : pool) thread.join();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  double cpu_total = 0;
  for (double seconds : cpu) cpu_total += seconds;
  const double total_ops = static_cast<double>(ops) * threads;
  return {total_ops / wall, cpu_total * 1e9 / total_ops};
}

}  // namespace

int main(int argc, char** argv) {
  const int max_threads =
      argc > 1 ? std::atoi(argv[1]) : static_cast<int>(std::thread::hardware_concurrency());
  const std::size_t ops = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2'000'000;
  const std::size_t items = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1000;

  core::OrderStatisticTree tree;
  std::vector<TermKey> keys;
  for (std::size_t i = 0; i < items; ++i) keys.push_back(integer_key(static_cast<std::int64_t>(i)));
  tree.build_from_sorted(std::span<const TermKey>(keys));

  std::shared_mutex shared_mutex;
  core::DistributedRwLock distributed;
  std::printf("%zu items, %zu lookups per thread, %u hardware threads\n\n", items, ops,
              std::thread::hardware_concurrency());
  std::printf("| readers | lock | ops/s (wall) | x vs 1 reader | CPU ns/op |\n");
  std::printf("|---:|---|---:|---:|---:|\n");
  std::vector<double> single(3);
  std::vector<int> counts;
  for (int threads = 1; threads < max_threads; threads *= 2) counts.push_back(threads);
  counts.push_back(std::max(max_threads, 1));
  for (const int threads : counts) {
    const Result results[] = {
        run(threads, ops, keys, [&](const TermKey& key) { return tree.find_index(key) ? 1 : 0; }),
        run(threads, ops, keys,
            [&](const TermKey& key) {
              std::shared_lock lock(shared_mutex);
              return tree.find_index(key) ? 1 : 0;
            }),
        run(threads, ops, keys, [&](const TermKey& key) {
          const std::size_t slot = distributed.lock_shared();
          const int found = tree.find_index(key) ? 1 : 0;
          distributed.unlock_shared(slot);
          return found;
        })};
    const char* names[] = {"none (floor)", "std::shared_mutex", "DistributedRwLock"};
    for (std::size_t i = 0; i < 3; ++i) {
      if (threads == 1) single[i] = results[i].ops_per_second;
      std::printf("| %d | %s | %.2f M | %.2fx | %.1f |\n", threads, names[i],
                  results[i].ops_per_second / 1e6, results[i].ops_per_second / single[i],
                  results[i].cpu_ns_per_op);
    }
  }
  return 0;
}
