#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/memory.hpp"
#include "core/sorted_set/order_statistic_tree.hpp"
#include "core/sorted_set/term_key.hpp"
#include "core/sorted_set/term_key_builder.hpp"

using switchboard::core::allocated_bytes;
using switchboard::core::compare;
using switchboard::core::OrderStatisticTree;
using switchboard::core::TermKey;
using switchboard::core::TermKeyBuilder;
using switchboard::core::TermKeyView;

namespace {

struct KeyLess {
  bool operator()(const TermKey& a, const TermKey& b) const { return compare(a, b) < 0; }
};
using Model = std::set<TermKey, KeyLess>;

bool same(TermKeyView a, TermKeyView b) {
  return a.comparable_size() == b.comparable_size() && a.size() == b.size() &&
         std::equal(a.data(), a.data() + a.size(), b.data());
}

// Keys of several shapes, from a space small enough that operations often
// hit existing keys: member-list tuples, small integers (stored inline in
// the tree), floats equal to some of those integers, atoms.
class KeyFactory {
 public:
  explicit KeyFactory(std::uint64_t seed, std::size_t names = 200) : random_(seed), names_(names) {}

  TermKey member() {
    builder_.begin_tuple(3);
    builder_.small_int(-static_cast<std::int64_t>(pick(4)));
    const std::string name = "user" + std::to_string(pick(names_));
    builder_.binary({reinterpret_cast<const std::uint8_t*>(name.data()), name.size()});
    builder_.small_int(static_cast<std::int64_t>(pick(3)) * 1'000'000'007LL +
                       81'234'567'890'123'456LL);
    builder_.end_tuple();
    return builder_.finish();
  }

  TermKey any() {
    switch (pick(6)) {
      case 0:
        builder_.small_int(static_cast<std::int64_t>(pick(300)) - 150);
        break;
      case 1:
        builder_.float64(static_cast<double>(static_cast<std::int64_t>(pick(300)) - 150) / 2);
        break;
      case 2:
        builder_.atom("atom" + std::to_string(pick(50)));
        break;
      default:
        return member();
    }
    return builder_.finish();
  }

  std::size_t pick(std::size_t bound) { return static_cast<std::size_t>(random_() % bound); }

 private:
  std::mt19937_64 random_;
  std::size_t names_;
  TermKeyBuilder builder_;
};

std::size_t rank_in(const Model& model, const TermKey& key) {
  return static_cast<std::size_t>(std::distance(model.begin(), model.lower_bound(key)));
}

void require_same_contents(const OrderStatisticTree& tree, const Model& model) {
  REQUIRE(tree.size() == model.size());
  auto cursor = tree.cursor_at(0);
  for (const TermKey& key : model) {
    REQUIRE(!cursor.done());
    REQUIRE(same(cursor.key(), key));
    cursor.advance();
  }
  REQUIRE(cursor.done());
}

// One random operation on both the tree and the model, checking every result.
void random_step(OrderStatisticTree& tree, Model& model, KeyFactory& keys) {
  const TermKey key = keys.any();
  const std::size_t size = model.size();
  switch (keys.pick(20)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5: {
      const auto expected = model.insert(key);
      const auto result = tree.insert(key);
      REQUIRE(result.inserted == expected.second);
      REQUIRE(result.index == rank_in(model, key));
      if (!result.inserted)
        REQUIRE(same(tree.at(result.index), *expected.first));  // first one kept
      break;
    }
    case 6:
    case 7: {
      const auto found = model.find(key);
      const auto result = tree.erase(key);
      if (found == model.end()) {
        REQUIRE(!result);
      } else {
        REQUIRE(result == rank_in(model, key));
        model.erase(found);
      }
      break;
    }
    case 8: {
      if (size == 0) {
        REQUIRE_THROWS_AS(tree.erase_at(0), std::out_of_range);
        break;
      }
      const std::size_t index = keys.pick(size);
      const auto expected = std::next(model.begin(), static_cast<std::ptrdiff_t>(index));
      const TermKey removed = tree.erase_at(index);
      REQUIRE(same(removed, *expected));
      model.erase(expected);
      break;
    }
    case 9:
    case 10: {
      const auto found = model.find(key);
      const auto result = tree.find_index(key);
      if (found == model.end()) {
        REQUIRE(!result);
      } else {
        REQUIRE(result == rank_in(model, key));
      }
      break;
    }
    case 11:
      REQUIRE(tree.lower_bound_index(key) == rank_in(model, key));
      break;
    case 12:
      REQUIRE(tree.upper_bound_index(key) ==
              static_cast<std::size_t>(std::distance(model.begin(), model.upper_bound(key))));
      break;
    case 13:
    case 14: {
      if (size == 0) {
        REQUIRE_THROWS_AS(tree.at(0), std::out_of_range);
        break;
      }
      const std::size_t index = keys.pick(size);
      REQUIRE(same(tree.at(index), *std::next(model.begin(), static_cast<std::ptrdiff_t>(index))));
      REQUIRE_THROWS_AS(tree.at(size), std::out_of_range);
      break;
    }
    case 15:
    case 16: {
      const std::size_t start = keys.pick(size + 2);
      const std::size_t count = keys.pick(100);
      auto cursor = tree.cursor_at(start);
      auto expected = model.begin();
      std::advance(expected, static_cast<std::ptrdiff_t>(std::min(start, size)));
      for (std::size_t i = 0; i < count && expected != model.end(); ++i, ++expected) {
        REQUIRE(!cursor.done());
        REQUIRE(same(cursor.key(), *expected));
        cursor.advance();
      }
      if (expected == model.end()) REQUIRE(cursor.done());
      break;
    }
    case 17: {
      // Rebuild from a sorted sample of the model plus fresh keys.
      Model sample;
      for (const TermKey& existing : model) {
        if (keys.pick(4) != 0) sample.insert(existing);
      }
      for (std::size_t i = keys.pick(50); i > 0; --i) sample.insert(keys.any());
      const std::vector<TermKey> sorted(sample.begin(), sample.end());
      REQUIRE(!tree.build_from_sorted(sorted));
      model = std::move(sample);
      break;
    }
    case 18: {
      const OrderStatisticTree copy = tree;
      copy.check_invariants();
      require_same_contents(copy, model);
      tree = copy;
      break;
    }
    default:
      if (keys.pick(20) == 0) {
        tree.clear();
        model.clear();
      }
      break;
  }
}

}  // namespace

TEST_CASE("random operations agree with a std::set model", "[order_statistic_tree]") {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    KeyFactory keys(seed, 60 * seed);
    OrderStatisticTree tree;
    Model model;
    for (int step = 0; step < 6000; ++step) {
      INFO("seed " << seed << " step " << step);
      random_step(tree, model, keys);
      tree.check_invariants();
      REQUIRE(tree.size() == model.size());
    }
    require_same_contents(tree, model);
  }
}

TEST_CASE("a deep tree of 100k items agrees with the model", "[order_statistic_tree]") {
  KeyFactory keys(99, 40000);
  OrderStatisticTree tree;
  Model model;
  while (model.size() < 100'000) {
    const TermKey key = keys.member();
    const auto expected = model.insert(key);
    const auto result = tree.insert(key);
    REQUIRE(result.inserted == expected.second);
    if (model.size() % 25'000 == 0) tree.check_invariants();
  }
  tree.check_invariants();
  require_same_contents(tree, model);

  // Ranks of a sample, both ways.
  std::vector<TermKey> sorted(model.begin(), model.end());
  for (std::size_t i = 0; i < sorted.size(); i += 997) {
    REQUIRE(tree.find_index(sorted[i]) == i);
    REQUIRE(same(tree.at(i), sorted[i]));
  }

  // Mixed removal down to nothing, rebalancing all the way.
  std::size_t step = 0;
  while (!model.empty()) {
    if (keys.pick(2) == 0) {
      const std::size_t index = keys.pick(model.size());
      const auto expected = model.begin();  // the model's rank lookup is linear: check cheaply
      if (index == 0) {
        REQUIRE(same(tree.erase_at(0), *expected));
        model.erase(expected);
      } else {
        const TermKey removed = tree.erase_at(index);
        REQUIRE(model.erase(removed) == 1);
      }
    } else {
      const TermKey key = keys.member();
      const bool present = model.erase(key) == 1;
      REQUIRE(tree.erase(key).has_value() == present);
    }
    if (++step % 20'000 == 0) {
      tree.check_invariants();
      require_same_contents(tree, model);
    }
  }
  tree.check_invariants();
  REQUIRE(tree.empty());
  REQUIRE(tree.memory_bytes() == 0);
}

TEST_CASE("ascending and descending inserts fill leaves", "[order_statistic_tree]") {
  std::vector<TermKey> keys;
  TermKeyBuilder builder;
  for (std::int64_t i = 0; i < 20'000; ++i) {
    builder.begin_tuple(2);
    builder.small_int(i);
    builder.atom("x");
    builder.end_tuple();
    keys.push_back(builder.finish());
  }
  OrderStatisticTree ascending;
  for (const TermKey& key : keys) {
    const std::size_t index = ascending.insert(key).index;
    REQUIRE(index == ascending.size() - 1);
  }
  ascending.check_invariants();
  OrderStatisticTree descending;
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) REQUIRE(descending.insert(*it).index == 0);
  descending.check_invariants();
  OrderStatisticTree built;
  REQUIRE(!built.build_from_sorted(keys));
  built.check_invariants();
  // Full leaves: within a few percent of the bulk-built tree.
  CHECK(ascending.memory_bytes() <= built.memory_bytes() * 105 / 100);
  CHECK(descending.memory_bytes() <= built.memory_bytes() * 105 / 100);
}

TEST_CASE("build_from_sorted reports the first key out of order", "[order_statistic_tree]") {
  TermKeyBuilder builder;
  auto integer = [&](std::int64_t value) {
    builder.small_int(value);
    return builder.finish();
  };
  OrderStatisticTree tree;
  REQUIRE(!tree.build_from_sorted(std::vector<TermKey>{integer(1), integer(2), integer(3)}));
  builder.float64(2.0);
  const TermKey float_two = builder.finish();
  REQUIRE(tree.build_from_sorted(std::vector<TermKey>{integer(1), integer(3), integer(2)}) == 2);
  REQUIRE(tree.build_from_sorted(std::vector<TermKey>{integer(1), integer(2), float_two}) == 2);
  REQUIRE(tree.size() == 3);  // failed builds leave the contents alone
  REQUIRE(tree.build_from_sorted(std::vector<TermKeyView>{integer(5).view()}) == std::nullopt);
  REQUIRE(tree.size() == 1);
  REQUIRE(!tree.build_from_sorted(std::vector<TermKey>{}));
  REQUIRE(tree.empty());
}

TEST_CASE("a failed build leaves the tree unchanged", "[order_statistic_tree]") {
  TermKeyBuilder builder;
  std::vector<TermKey> keys;
  for (std::int64_t value : {1, 2, 3}) {
    builder.small_int(value);
    keys.push_back(builder.finish());
  }
  OrderStatisticTree tree;
  REQUIRE(!tree.build_from_sorted(keys));
  std::swap(keys[0], keys[2]);
  REQUIRE(tree.build_from_sorted(keys) == 1);
  REQUIRE(tree.size() == 3);
  REQUIRE(tree.find_index(keys[2]) == 0);
}

TEST_CASE("memory is accounted for and released", "[order_statistic_tree]") {
  KeyFactory factory(7, 100'000);
  std::vector<TermKey> keys;
  std::size_t payload = 0;
  {
    Model unique;
    while (unique.size() < 50'000) unique.insert(factory.member());
    keys.assign(unique.begin(), unique.end());
  }
  std::shuffle(keys.begin(), keys.end(), std::mt19937_64(3));
  for (const TermKey& key : keys) payload += key.size();

  const std::size_t before = allocated_bytes();
  {
    OrderStatisticTree tree;
    REQUIRE(tree.memory_bytes() == 0);
    std::size_t previous = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      tree.insert(keys[i]);
      if (i % 5000 == 0) {
        REQUIRE(tree.memory_bytes() > previous);
        previous = tree.memory_bytes();
      }
    }
    REQUIRE(tree.memory_bytes() == allocated_bytes() - before);
    const double overhead =
        static_cast<double>(tree.memory_bytes() - payload) / static_cast<double>(keys.size());
    INFO("overhead per item beyond the encoded key: " << overhead << " bytes");
    CHECK(overhead <= 48.0);

    for (std::size_t i = 0; i < keys.size() / 2; ++i) REQUIRE(tree.erase(keys[i]));
    REQUIRE(tree.memory_bytes() < previous);
    REQUIRE(tree.memory_bytes() == allocated_bytes() - before);
    tree.check_invariants();

    OrderStatisticTree copy = tree;
    REQUIRE(copy.memory_bytes() <= tree.memory_bytes());
    copy.clear();
    REQUIRE(copy.memory_bytes() == 0);
    tree.clear();
    REQUIRE(tree.memory_bytes() == 0);
    REQUIRE(allocated_bytes() == before);
    tree.insert(keys[0]);
    REQUIRE(allocated_bytes() > before);
  }
  REQUIRE(allocated_bytes() == before);
}

TEST_CASE("equal keys of different types are one item", "[order_statistic_tree]") {
  TermKeyBuilder builder;
  builder.small_int(1);
  const TermKey integer = builder.finish();
  builder.float64(1.0);
  const TermKey floating = builder.finish();
  OrderStatisticTree tree;
  REQUIRE(tree.insert(floating).inserted);
  const auto again = tree.insert(integer);
  REQUIRE(!again.inserted);
  REQUIRE(again.index == 0);
  REQUIRE(same(tree.at(0), floating));  // the first one stays
  REQUIRE(tree.erase(integer) == 0);
  REQUIRE(tree.empty());
}

TEST_CASE("moved-from and swapped trees stay usable", "[order_statistic_tree]") {
  KeyFactory factory(11);
  OrderStatisticTree a;
  for (int i = 0; i < 500; ++i) a.insert(factory.any());
  const std::size_t size = a.size();
  OrderStatisticTree b = std::move(a);
  REQUIRE(b.size() == size);
  REQUIRE(a.empty());
  a.insert(factory.any());
  a.swap(b);
  REQUIRE(a.size() == size);
  REQUIRE(b.size() == 1);
  a.check_invariants();
  b.check_invariants();
  b = std::move(a);
  REQUIRE(b.size() == size);
  b.check_invariants();
}

namespace {

// Keys of every size a leaf stores differently: short ones in its arena in
// the one-byte form, longer ones or ones with side data (floats) in the
// sized form, and keys over 128 bytes out of line.
TermKey sized_key(std::mt19937_64& random, TermKeyBuilder& builder) {
  static const std::size_t kLengths[] = {0, 1, 5, 20, 100, 118, 122, 126, 130, 200, 400};
  const std::size_t length = kLengths[random() % std::size(kLengths)] + random() % 4;
  std::string text(length, 'a');
  for (char& c : text) c = static_cast<char>('a' + random() % 3);  // shared prefixes are common
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(text.data()),
                                            text.size());
  switch (random() % 4) {
    case 0:
      builder.binary(bytes);
      break;
    case 1:
      builder.begin_tuple(2);
      builder.float64(static_cast<double>(random() % 50) / 4);  // side data
      builder.binary(bytes);
      builder.end_tuple();
      break;
    case 2:
      builder.small_int(static_cast<std::int64_t>(random() % 1000) - 500);
      break;
    default:
      builder.begin_tuple(2);
      builder.binary(bytes);
      builder.small_int(static_cast<std::int64_t>(random() % 3));
      builder.end_tuple();
      break;
  }
  return builder.finish();
}

}  // namespace

TEST_CASE("keys of every size and form agree with the model", "[order_statistic_tree]") {
  std::mt19937_64 random(31);
  const std::size_t before = allocated_bytes();
  {
    TermKeyBuilder builder;
    OrderStatisticTree tree;
    Model model;
    for (int step = 0; step < 20000; ++step) {
      INFO("step " << step);
      const TermKey key = sized_key(random, builder);
      switch (random() % 8) {
        case 0:
        case 1:
        case 2:
        case 3: {
          const auto expected = model.insert(key);
          const auto result = tree.insert(key);
          REQUIRE(result.inserted == expected.second);
          REQUIRE(result.index == rank_in(model, key));
          break;
        }
        case 4:
        case 5: {
          const bool present = model.erase(key) == 1;
          REQUIRE(tree.erase(key).has_value() == present);
          break;
        }
        case 6: {
          if (model.empty()) break;
          const std::size_t index = random() % model.size();
          const auto expected = std::next(model.begin(), static_cast<std::ptrdiff_t>(index));
          REQUIRE(same(tree.at(index), *expected));
          REQUIRE(tree.find_index(*expected) == index);
          break;
        }
        default: {
          if (model.empty()) break;
          const std::size_t index = random() % model.size();
          const auto expected = std::next(model.begin(), static_cast<std::ptrdiff_t>(index));
          REQUIRE(same(tree.erase_at(index), *expected));
          model.erase(expected);
          break;
        }
      }
      if (step % 500 == 0) tree.check_invariants();  // memory accounting included
    }
    tree.check_invariants();
    require_same_contents(tree, model);
    const OrderStatisticTree copy = tree;
    copy.check_invariants();
    require_same_contents(copy, model);
    tree.clear();
    REQUIRE(tree.memory_bytes() == 0);
  }
  REQUIRE(allocated_bytes() == before);
}

TEST_CASE("leaves of long keys split and merge by bytes", "[order_statistic_tree]") {
  // 120-byte keys fill a leaf's arena at about 15 keys, well before its 64
  // slots, so every split and merge here is decided by bytes.
  std::vector<TermKey> keys;
  TermKeyBuilder builder;
  for (int i = 0; i < 3000; ++i) {
    std::string text = std::to_string(i * 7919 % 3001);
    text.resize(120, '.');
    builder.binary({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
    keys.push_back(builder.finish());
  }
  std::shuffle(keys.begin(), keys.end(), std::mt19937_64(5));
  OrderStatisticTree tree;
  Model model;
  for (const TermKey& key : keys) {
    REQUIRE(tree.insert(key).inserted);
    model.insert(key);
  }
  tree.check_invariants();
  require_same_contents(tree, model);
  const std::size_t full = tree.memory_bytes();
  std::size_t index = 0;
  for (const TermKey& key : model) REQUIRE(tree.find_index(key) == index++);
  // Erase all but every tenth key: the leaves merge and memory goes down.
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i % 10 != 0) REQUIRE(tree.erase(keys[i]).has_value());
  }
  tree.check_invariants();
  REQUIRE(tree.size() == keys.size() / 10);
  CHECK(tree.memory_bytes() < full / 4);
  for (std::size_t i = 0; i < keys.size(); i += 10) REQUIRE(tree.erase(keys[i]).has_value());
  REQUIRE(tree.empty());
  REQUIRE(tree.memory_bytes() == 0);
}
