// Native cost of OrderStatisticTree operations at 1M member-list keys
// {-role_position, name, user_id}, inserted and queried in random order.
// std::set over the same keys (no ranks) is the baseline, measured in the
// same run. Times are this thread's CPU time: on a shared machine wall-clock
// time mostly measures waiting for a core. Usage: bench_sorted_set [items] [rounds]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/memory.hpp"
#include "core/sorted_set/order_statistic_tree.hpp"
#include "core/sorted_set/term_key.hpp"
#include "core/sorted_set/term_key_builder.hpp"

using switchboard::core::compare;
using switchboard::core::OrderStatisticTree;
using switchboard::core::TermKey;
using switchboard::core::TermKeyBuilder;

namespace {

double thread_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

struct KeyLess {
  bool operator()(const TermKey& a, const TermKey& b) const { return compare(a, b) < 0; }
};

std::vector<TermKey> member_keys(std::size_t count, std::mt19937_64& random) {
  TermKeyBuilder builder;
  std::vector<TermKey> keys;
  keys.reserve(count);
  std::string name;
  for (std::size_t i = 0; i < count; ++i) {
    // Most members hold no role; a few roles are common.
    const std::uint64_t roll = random() % 100;
    const std::int64_t role = roll < 70 ? 0 : static_cast<std::int64_t>(roll % 20);
    name.clear();
    const std::size_t length = 4 + random() % 13;
    for (std::size_t c = 0; c < length; ++c) name.push_back(static_cast<char>('a' + random() % 26));
    const auto user_id = static_cast<std::int64_t>((std::uint64_t{1} << 56) + (random() >> 8));
    builder.begin_tuple(3);
    builder.small_int(-role);
    builder.binary({reinterpret_cast<const std::uint8_t*>(name.data()), name.size()});
    builder.small_int(user_id);
    builder.end_tuple();
    keys.push_back(builder.finish());
  }
  return keys;
}

template <class Work>
double nanoseconds_per_op(std::size_t operations, Work work) {
  const double start = thread_seconds();
  work();
  return (thread_seconds() - start) * 1e9 / static_cast<double>(operations);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t items = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::mt19937_64 random(20240601);
  std::vector<TermKey> keys = member_keys(items, random);
  std::size_t payload = 0;
  for (const TermKey& key : keys) payload += key.size();

  std::vector<std::size_t> indices(items);
  for (std::size_t i = 0; i < items; ++i) indices[i] = i;

  std::vector<double> insert, find_index, at, erase, slice, build, set_insert, set_find, set_erase;
  std::size_t memory = 0;
  std::size_t checksum = 0;
  for (int round = 0; round < rounds; ++round) {
    std::shuffle(keys.begin(), keys.end(), random);
    OrderStatisticTree tree;
    insert.push_back(nanoseconds_per_op(items, [&] {
      for (const TermKey& key : keys) checksum += tree.insert(key).index;
    }));
    memory = tree.memory_bytes();
    std::shuffle(keys.begin(), keys.end(), random);
    find_index.push_back(nanoseconds_per_op(items, [&] {
      for (const TermKey& key : keys) checksum += *tree.find_index(key);
    }));
    std::shuffle(indices.begin(), indices.end(), random);
    at.push_back(nanoseconds_per_op(items, [&] {
      for (std::size_t index : indices) checksum += tree.at(index).size();
    }));
    slice.push_back(nanoseconds_per_op(items, [&] {
      for (std::size_t start = 0; start < items; start += 100) {
        auto cursor = tree.cursor_at(start);
        for (int i = 0; i < 100 && !cursor.done(); ++i, cursor.advance())
          checksum += cursor.key().size();
      }
    }));
    std::shuffle(keys.begin(), keys.end(), random);
    erase.push_back(nanoseconds_per_op(items, [&] {
      for (const TermKey& key : keys) checksum += *tree.erase(key);
    }));
    if (!tree.empty()) return 1;

    std::vector<TermKey> sorted = keys;
    std::sort(sorted.begin(), sorted.end(), KeyLess());
    build.push_back(nanoseconds_per_op(items, [&] {
      if (tree.build_from_sorted(sorted)) std::abort();
    }));

    std::set<TermKey, KeyLess> baseline;
    std::shuffle(keys.begin(), keys.end(), random);
    set_insert.push_back(nanoseconds_per_op(items, [&] {
      for (const TermKey& key : keys) checksum += baseline.insert(key).second;
    }));
    std::shuffle(keys.begin(), keys.end(), random);
    set_find.push_back(nanoseconds_per_op(items, [&] {
      for (const TermKey& key : keys) checksum += baseline.find(key)->size();
    }));
    std::shuffle(keys.begin(), keys.end(), random);
    set_erase.push_back(nanoseconds_per_op(items, [&] {
      for (const TermKey& key : keys) checksum += baseline.erase(key);
    }));
  }

  std::printf(
      "bench_sorted_set: %zu member-list keys {-role, name, user_id}, random order, "
      "median of %d rounds, thread CPU time\n",
      items, rounds);
  std::printf("  average key: %.1f bytes encoded\n",
              static_cast<double>(payload) / static_cast<double>(items));
  std::printf(
      "  native memory: %.1f bytes/item, %.1f beyond the encoded key (after random inserts)\n",
      static_cast<double>(memory) / static_cast<double>(items),
      static_cast<double>(memory - payload) / static_cast<double>(items));
  std::printf("  %-28s %8s %18s\n", "operation", "ns/op", "std::set ns/op");
  std::printf("  %-28s %8.1f %10.1f (%.2fx)\n", "insert", median(insert), median(set_insert),
              median(set_insert) / median(insert));
  std::printf("  %-28s %8.1f %10.1f (%.2fx, find only)\n", "find_index (rank)", median(find_index),
              median(set_find), median(set_find) / median(find_index));
  std::printf("  %-28s %8.1f %18s\n", "at (select)", median(at), "-");
  std::printf("  %-28s %8.1f %10.1f (%.2fx)\n", "erase", median(erase), median(set_erase),
              median(set_erase) / median(erase));
  std::printf("  %-28s %8.1f %18s\n", "slice of 100, per item", median(slice), "-");
  std::printf("  %-28s %8.1f %18s\n", "build_from_sorted, per item", median(build), "-");
  std::printf("  (checksum %zu)\n", checksum);
  return 0;
}
