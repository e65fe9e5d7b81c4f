#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/member_list/member_list.hpp"

using switchboard::core::MemberList;
using Item = MemberList::Item;
using Op = MemberList::Op;
using OpKind = MemberList::OpKind;
using Range = MemberList::Range;

namespace {

// Test encoding: group key = class byte (+ role byte for hoisted), name ended
// by 0x00 (test names hold no zero byte), user as 4 big-endian bytes. User
// payloads are the user ids; group payloads 1000 + class * 100 + role.
struct Member {
  std::uint32_t id;
  std::string name;
  bool online;
  int role;  // -1: no hoist
};

std::string user_key(std::uint32_t id) {
  std::string key;
  for (int shift = 24; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((id >> shift) & 0xFF));
  return key;
}

std::string group_key(const Member& m) {
  if (!m.online) return std::string(1, '\x02');
  if (m.role < 0) return std::string(1, '\x01');
  std::string key(2, '\0');
  key[1] = static_cast<char>(m.role);
  return key;
}

MemberList::Payload group_payload(const Member& m) {
  if (!m.online) return 1200;
  if (m.role < 0) return 1100;
  return 1000 + static_cast<MemberList::Payload>(m.role);
}

// Built by append: GCC 12's -Wrestrict misreads `"m" + std::to_string(...)`.
std::string name_of(const char* prefix, std::uint64_t number) {
  std::string name = prefix;
  name.append(std::to_string(number));
  return name;
}

// Calls `use(spec)` with the member as the list takes it.
template <class Use>
void with_spec(const Member& m, bool hide_offline, Use&& use) {
  const std::string group = group_key(m);
  std::string sort = group;
  sort.append(m.name);
  sort.push_back('\0');
  sort.append(user_key(m.id));
  const std::string user = user_key(m.id);
  const MemberList::MemberSpec spec{user,
                                    sort,
                                    group.size(),
                                    m.name.size() + 1,
                                    static_cast<std::uint8_t>(m.online ? 1 : 0),
                                    m.online,
                                    m.online || !hide_offline};
  use(spec);
}

void put(MemberList& list, const Member& m, bool hide_offline = false) {
  with_spec(m, hide_offline,
            [&](const MemberList::MemberSpec& spec) { list.put(spec, m.id, group_payload(m)); });
  (void)list.take_released();
}

// The model: the list's items from the members, naively.
std::vector<Item> model_items(const std::map<std::uint32_t, Member>& members, bool hide_offline) {
  std::map<std::string, std::vector<const Member*>> groups;
  for (const auto& [id, m] : members) {
    if (!m.online && hide_offline) continue;
    groups[group_key(m)].push_back(&m);
  }
  std::vector<Item> items;
  for (auto& [key, list] : groups) {
    std::sort(list.begin(), list.end(), [](const Member* a, const Member* b) {
      return std::tie(a->name, a->id) < std::tie(b->name, b->id);
    });
    items.push_back({true, static_cast<std::uint32_t>(list.size()), group_payload(*list.front())});
    for (const Member* m : list) items.push_back({false, 0, m->id});
  }
  return items;
}

std::vector<Item> all_items(const MemberList& list) {
  std::vector<Item> out;
  list.items(0, list.size() == 0 ? 0 : list.size() - 1, out);
  if (list.size() == 0) out.clear();
  return out;
}

// A client's slots: known items or nothing.
using Slots = std::vector<std::optional<Item>>;

void apply(Slots& slots, const Op& op) {
  const std::size_t index = op.index;
  switch (op.kind) {
    case OpKind::insert:
      if (slots.size() < index) slots.resize(index);
      slots.insert(slots.begin() + static_cast<std::ptrdiff_t>(index), op.item);
      break;
    case OpKind::remove:
      if (slots.size() <= index) slots.resize(index + 1);
      slots.erase(slots.begin() + static_cast<std::ptrdiff_t>(index));
      break;
    case OpKind::update:
      if (slots.size() <= index) slots.resize(index + 1);
      slots[index] = op.item;
      break;
  }
}

void sync(Slots& slots, const MemberList& list, Range range) {
  std::vector<Item> items;
  list.items(range.first, range.last, items);
  if (slots.size() <= range.last) slots.resize(range.last + 1);
  for (std::size_t i = range.first; i <= range.last; ++i) {
    const std::size_t at = i - range.first;
    slots[i] = at < items.size() ? std::optional<Item>(items[at]) : std::nullopt;
  }
}

}  // namespace

TEST_CASE("member list: order, groups, counts and indexes") {
  MemberList list;
  put(list, {1, "zed", true, -1});
  put(list, {2, "amy", false, 9});
  put(list, {3, "bob", true, 5});
  put(list, {4, "cat", true, 9});
  put(list, {5, "ann", true, 5});
  const std::vector<Item> expected = {{true, 2, 1005}, {false, 0, 5},   {false, 0, 3},
                                      {true, 1, 1009}, {false, 0, 4},   {true, 1, 1100},
                                      {false, 0, 1},   {true, 1, 1200}, {false, 0, 2}};
  CHECK(all_items(list) == expected);
  CHECK(list.size() == 9);
  CHECK(list.member_count() == 5);
  CHECK(list.online_count() == 4);
  CHECK(list.member_index(user_key(4)) == 4);
  CHECK(!list.member_index(user_key(77)));
  CHECK(list.erase(user_key(2)));
  CHECK(!list.erase(user_key(2)));
  CHECK(list.size() == 7);
  list.check_invariants();
}

TEST_CASE("member list: subscribe reports dropped and added ranges, validates") {
  MemberList list;
  const std::vector<Range> first = {{0, 99}};
  auto result = list.subscribe("s", 7, first);
  CHECK(result.added == first);
  CHECK(result.dropped.empty());
  result = list.subscribe("s", 7, first);
  CHECK(result.added.empty());
  const std::vector<Range> second = {{0, 99}, {100, 199}};
  result = list.subscribe("s", 7, second);
  CHECK(result.added == std::vector<Range>{{100, 199}});
  const std::vector<Range> overlapping = {{0, 10}, {10, 20}};
  CHECK_THROWS_AS(list.subscribe("s", 7, overlapping), std::invalid_argument);
  const std::vector<Range> long_range = {{0, 100}};
  CHECK_THROWS_AS(list.subscribe("s", 7, long_range), std::invalid_argument);
  CHECK(list.unsubscribe("s"));
  CHECK(list.session_count() == 0);
}

TEST_CASE("member list: random changes keep every client's windows equal to the list") {
  for (const bool hide : {false, true}) {
    std::mt19937 random(hide ? 7 : 11);
    MemberList list;
    std::map<std::uint32_t, Member> members;
    std::map<std::string, std::vector<Range>> subscriptions;
    std::map<MemberList::Payload, Slots> clients;
    const std::vector<std::vector<Range>> choices = {
        {{0, 4}}, {{0, 2}, {3, 5}}, {{2, 9}, {12, 13}}, {{6, 6}}, {{1, 3}, {5, 8}, {10, 30}}};
    for (int step = 0; step < 4000; ++step) {
      const auto roll = random() % 10;
      if (roll < 2) {
        const auto session = random() % 5;
        const auto& ranges = choices[random() % choices.size()];
        const std::string key(1, static_cast<char>('0' + session));
        auto result = list.subscribe(key, session, ranges);
        (void)list.take_released();
        Slots& slots = clients[session];
        for (const Range& range : result.dropped) {
          for (std::size_t i = range.first; i <= range.last && i < slots.size(); ++i) slots[i] = {};
        }
        for (const Range& range : result.added) sync(slots, list, range);
        subscriptions[key] = ranges;
        CHECK(list.entries().empty());
      } else if (roll < 4 && !members.empty()) {
        auto it = members.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(random() % members.size()));
        const std::uint32_t id = it->first;
        members.erase(it);
        list.erase(user_key(id));
        (void)list.take_released();
      } else {
        Member m{static_cast<std::uint32_t>(random() % 30), std::string(1, 'a' + random() % 4),
                 random() % 3 != 0, static_cast<int>(random() % 4) - 2};
        members[m.id] = m;
        put(list, m, hide);
      }
      // Apply the updates and check every window.
      for (const auto& entry : list.entries()) {
        REQUIRE(entry.op_count > 0);
        for (std::uint32_t s = 0; s < entry.session_count; ++s) {
          Slots& slots = clients[list.sessions()[entry.session_begin + s]];
          for (std::uint32_t o = 0; o < entry.op_count; ++o) {
            apply(slots, list.ops()[entry.op_begin + o]);
          }
        }
      }
      const auto items = model_items(members, hide);
      REQUIRE(all_items(list) == items);
      for (const auto& [key, ranges] : subscriptions) {
        const Slots& slots = clients[static_cast<MemberList::Payload>(key[0] - '0')];
        for (const Range& range : ranges) {
          for (std::size_t i = range.first; i <= range.last; ++i) {
            const std::optional<Item> slot = i < slots.size() ? slots[i] : std::nullopt;
            const std::optional<Item> want =
                i < items.size() ? std::optional<Item>(items[i]) : std::nullopt;
            REQUIRE(slot == want);
          }
        }
      }
    }
    list.check_invariants();
  }
}

TEST_CASE("member list: change_work bounds the ranges a change gives ops to") {
  // One session per range, so the sessions told are the ranges with ops.
  std::mt19937 random(7);
  for (const bool hide : {false, true}) {
    MemberList list;
    std::map<std::uint32_t, Member> members;
    for (std::uint32_t id = 1; id <= 400; ++id) {
      const Member m{id, name_of("n", random() % 1000), random() % 3 != 0,
                     random() % 4 == 0 ? static_cast<int>(random() % 3) : -1};
      members[id] = m;
      put(list, m, hide);
    }
    for (std::uint32_t s = 0; s < 60; ++s) {
      const std::uint32_t first = s * 7;  // distinct ranges
      const Range range{first, first + static_cast<std::uint32_t>(random() % 100)};
      list.subscribe(user_key(s), s, std::span<const Range>(&range, 1));
      (void)list.take_released();
    }
    for (int c = 0; c < 400; ++c) {
      const auto id = static_cast<std::uint32_t>(1 + random() % 420);
      MemberList::ChangeWork work{};
      if (random() % 5 == 0) {
        work = list.change_work(user_key(id), nullptr);
        list.erase(user_key(id));
        members.erase(id);
      } else {
        const Member m{id, name_of("n", random() % 1000), random() % 3 != 0,
                       random() % 4 == 0 ? static_cast<int>(random() % 3) : -1};
        with_spec(m, hide, [&](const MemberList::MemberSpec& spec) {
          work = list.change_work(user_key(id), &spec);
        });
        members[id] = m;
        put(list, m, hide);
      }
      std::size_t told = 0;
      for (const auto& entry : list.entries()) told += entry.session_count;
      REQUIRE(work.reached_ranges >= told);
      REQUIRE(work.ranges == list.session_count());  // one distinct range each
      REQUIRE(work.sessions == list.session_count());
      (void)list.take_released();
    }
  }
}

TEST_CASE("member list: change_work of a change at the end reaches only the last ranges") {
  MemberList list;
  for (std::uint32_t id = 1; id <= 1000; ++id) put(list, {id, name_of("m", id + 1000), true, -1});
  for (std::uint32_t s = 0; s < 10; ++s) {
    const Range range{s * 100, s * 100 + 99};
    list.subscribe(user_key(s), s, std::span<const Range>(&range, 1));
  }
  // "m1500x" goes in the middle: the five ranges from there on shift, and
  // the one holding the header (index 0) sees its count. "z" goes last: only
  // the header's range.
  Member middle{5000, "m1500x", true, -1};
  with_spec(middle, false, [&](const MemberList::MemberSpec& spec) {
    const auto work = list.change_work(user_key(5000), &spec);
    CHECK(work.reached_ranges == 6);
    CHECK(work.ranges == 10);
  });
  Member last{5001, "z", true, -1};
  with_spec(last, false, [&](const MemberList::MemberSpec& spec) {
    CHECK(list.change_work(user_key(5001), &spec).reached_ranges == 1);
  });
  CHECK(list.change_work(user_key(4242), nullptr).reached_ranges == 0);
}
