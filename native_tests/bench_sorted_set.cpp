// Native cost of OrderStatisticTree operations at 1M member-list keys
// {-role_position, name, user_id}, inserted and queried in random order,
// and of building and reading those keys. std::set over the same keys (no
// ranks) is the baseline, measured in the same run. Times are this thread's
// CPU time: on a shared machine wall-clock time mostly measures waiting for
// a core. Usage: bench_sorted_set [items] [rounds]
//
// The last row is the memory floor: one dependent load in a working set the
// size of the tree (see dependent_load_ns).
//
// Instruction counts, which do not depend on the machine's load:
//   valgrind --tool=callgrind --callgrind-out-file=cg.out bench_sorted_set 100000 1
//   callgrind_annotate --inclusive=yes cg.out
// and divide the rows for read_keys and OrderStatisticTree::insert,
// find_index, at and erase by items * rounds, build_keys by items * (rounds + 1).
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
#include "core/sorted_set/term_key_reader.hpp"

using switchboard::core::compare;
using switchboard::core::OpaqueKind;
using switchboard::core::OrderStatisticTree;
using switchboard::core::read_term_key;
using switchboard::core::TermKey;
using switchboard::core::TermKeyBuilder;
using switchboard::core::TermVisitor;

namespace {

double thread_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

struct KeyLess {
  bool operator()(const TermKey& a, const TermKey& b) const { return compare(a, b) < 0; }
};

struct Member {
  std::int64_t role;
  std::string name;
  std::int64_t user_id;
};

std::vector<Member> members(std::size_t count, std::mt19937_64& random) {
  std::vector<Member> result(count);
  for (Member& member : result) {
    // Most members hold no role; a few roles are common.
    const std::uint64_t roll = random() % 100;
    member.role = roll < 70 ? 0 : static_cast<std::int64_t>(roll % 20);
    const std::size_t length = 4 + random() % 13;
    for (std::size_t c = 0; c < length; ++c) {
      member.name.push_back(static_cast<char>('a' + random() % 26));
    }
    member.user_id = static_cast<std::int64_t>((std::uint64_t{1} << 56) + (random() >> 8));
  }
  return result;
}

// What the NIF does per add/remove/find_index: one key from one term.
[[gnu::noinline]] void build_keys(const std::vector<Member>& from, std::vector<TermKey>& keys) {
  TermKeyBuilder builder;
  keys.clear();
  for (const Member& member : from) {
    builder.begin_tuple(3);
    builder.small_int(-member.role);
    builder.binary({reinterpret_cast<const std::uint8_t*>(member.name.data()), member.name.size()});
    builder.small_int(member.user_id);
    builder.end_tuple();
    keys.push_back(builder.finish());
  }
}

// Stands in for the NIF's term maker: sees every event, builds nothing.
class CountingVisitor final : public TermVisitor {
 public:
  std::size_t total = 0;
  void integer(std::int64_t value) override { total += static_cast<std::size_t>(value); }
  void big_integer(bool, std::span<const std::uint8_t> magnitude) override {
    total += magnitude.size();
  }
  void float64(double) override { ++total; }
  void atom(std::string_view utf8) override { total += utf8.size(); }
  void binary(std::span<const std::uint8_t> bytes) override { total += bytes.size(); }
  void bitstring(std::span<const std::uint8_t> bytes, unsigned) override { total += bytes.size(); }
  void begin_tuple(std::size_t arity) override { total += arity; }
  void end_tuple() override {}
  void begin_list(std::size_t count) override { total += count; }
  void improper_tail() override {}
  void end_list() override {}
  void nil() override {}
  void begin_map(std::size_t size) override { total += size; }
  void end_map() override {}
  void opaque(OpaqueKind, std::span<const std::uint8_t> bytes) override { total += bytes.size(); }
};

// What the NIF does per at/slice item: a term from a key.
[[gnu::noinline]] std::size_t read_keys(const std::vector<TermKey>& keys) {
  CountingVisitor visitor;
  for (const TermKey& key : keys) read_term_key(key, visitor);
  return visitor.total;
}

template <class Work>
double nanoseconds_per_op(std::size_t operations, Work work) {
  const double start = thread_seconds();
  work();
  return (thread_seconds() - start) * 1e9 / static_cast<double>(operations);
}

// The memory floor of a random query: one dependent load (a pointer chase
// over a random cycle of cache lines) in a working set of `bytes`, the size
// of the tree. A rank query at 1M items needs a few such loads (the leaf, its
// parent, the key bytes) whatever the code around them does.
[[gnu::noinline]] double dependent_load_ns(std::size_t bytes, std::mt19937_64& random) {
  struct alignas(64) Line {
    std::size_t next;
  };
  const std::size_t count = std::max<std::size_t>(bytes / sizeof(Line), 2);
  std::vector<std::size_t> order(count);
  for (std::size_t i = 0; i < count; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), random);
  std::vector<Line> lines(count);
  for (std::size_t i = 0; i < count; ++i) lines[order[i]].next = order[(i + 1) % count];
  const std::size_t steps = 4 * count;
  std::size_t at = 0;
  const double ns = nanoseconds_per_op(steps, [&] {
    for (std::size_t i = 0; i < steps; ++i) at = lines[at].next;
  });
  if (at >= count) std::abort();  // keeps the chase from being optimised away
  return ns;
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
  const std::vector<Member> people = members(items, random);
  std::vector<TermKey> keys;
  keys.reserve(items);
  build_keys(people, keys);
  std::size_t payload = 0;
  for (const TermKey& key : keys) payload += key.size();

  std::vector<std::size_t> indices(items);
  for (std::size_t i = 0; i < items; ++i) indices[i] = i;

  std::vector<double> build_key, read_key, insert, find_index, at, erase, slice, build, set_insert,
      set_find, set_erase;
  std::size_t memory = 0;
  std::size_t checksum = 0;
  for (int round = 0; round < rounds; ++round) {
    build_key.push_back(nanoseconds_per_op(items, [&] { build_keys(people, keys); }));
    read_key.push_back(nanoseconds_per_op(items, [&] { checksum += read_keys(keys); }));
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
  std::printf("  %-28s %8.1f %18s\n", "build key (TermKeyBuilder)", median(build_key), "-");
  std::printf("  %-28s %8.1f %18s\n", "read key (read_term_key)", median(read_key), "-");
  std::printf("  %-28s %8.1f %10.1f (%.2fx)\n", "insert", median(insert), median(set_insert),
              median(set_insert) / median(insert));
  std::printf("  %-28s %8.1f %10.1f (%.2fx, find only)\n", "find_index (rank)", median(find_index),
              median(set_find), median(set_find) / median(find_index));
  std::printf("  %-28s %8.1f %18s\n", "at (select)", median(at), "-");
  std::printf("  %-28s %8.1f %10.1f (%.2fx)\n", "erase", median(erase), median(set_erase),
              median(set_erase) / median(erase));
  std::printf("  %-28s %8.1f %18s\n", "slice of 100, per item", median(slice), "-");
  std::printf("  %-28s %8.1f %18s\n", "build_from_sorted, per item", median(build), "-");
  std::printf("  %-28s %8.1f %18s\n", "dependent load (memory floor)",
              dependent_load_ns(memory, random), "-");
  std::printf("  (checksum %zu)\n", checksum);
  return 0;
}
