// Native cost of one MemberList change, the core alone (no terms): a guild
// of N members (30% online, a quarter of those hoisted under 5 roles) with
// 10k sessions (all on [0, 99], 30% also on one random window) and a stream
// of presence flips, joins, leaves and renames. Times are this thread's CPU
// time per change, median and p99, with the median number of entries and
// ops per change. Usage: bench_member_list [members] [changes] [hide_offline]
// [evict_mib] [sessions]: with evict_mib > 0, a buffer that large is written between
// two changes (outside the timed part), so each change finds the caches as
// a guild does after its sessions ran (the simulator: 25,000 sessions
// between two changes); sessions defaults to 10000.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "core/member_list/member_list.hpp"

using switchboard::core::MemberList;

namespace {

double cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

std::string be32(std::uint32_t value) {
  std::string out(4, '\0');
  for (std::size_t i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (24 - 8 * i)) & 0xFF);
  return out;
}

struct Guild {
  MemberList list;
  bool hide;
  std::vector<std::uint32_t> version;
  std::vector<bool> online;

  void put(std::uint32_t id) {
    std::string group;
    if (!online[id]) {
      group = "\x02";
    } else if (id % 4 == 0) {
      group = std::string(1, '\0');
      group.push_back(static_cast<char>(10 - id % 5));
    } else {
      group = "\x01";
    }
    // Built by append: GCC 12's -Wrestrict misreads `"m" + std::to_string(...)`.
    std::string name = "m";
    name.append(std::to_string((id * 2654435761u + version[id] * 40503u) % 1000000007u));
    std::string sort = group;
    sort.append(name);
    sort.push_back('\0');
    sort.append(be32(id));
    const std::string user = be32(id);
    const MemberList::MemberSpec spec{user,
                                      sort,
                                      group.size(),
                                      name.size() + 1,
                                      static_cast<std::uint8_t>(online[id] ? 1 : 0),
                                      online[id],
                                      online[id] || !hide};
    const auto group_payload = list.group_payload(group);
    list.put(spec, id,
             group_payload ? *group_payload : 1000 + static_cast<unsigned char>(group[0]));
    (void)list.take_released();
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::uint32_t members = argc > 1 ? static_cast<std::uint32_t>(std::atoi(argv[1])) : 100000;
  const int changes = argc > 2 ? std::atoi(argv[2]) : 5000;
  const bool hide = argc > 3 && std::atoi(argv[3]) != 0;
  const std::size_t evict_bytes =
      argc > 4 ? static_cast<std::size_t>(std::atoi(argv[4])) << 20 : std::size_t{0};
  std::vector<std::uint64_t> evict(evict_bytes / sizeof(std::uint64_t));
  const std::uint32_t sessions = argc > 5 ? static_cast<std::uint32_t>(std::atoi(argv[5])) : 10000;
  std::mt19937 random(42);
  Guild guild{MemberList{}, hide, std::vector<std::uint32_t>(members * 2 + 1, 0),
              std::vector<bool>(members * 2 + 1, false)};
  for (std::uint32_t id = 1; id <= members; ++id) {
    guild.online[id] = (id * 7919u) % 10 < 3;
    guild.put(id);
  }
  const std::size_t windows = std::max<std::size_t>(guild.list.size() / 100, 2) - 1;
  for (std::uint32_t s = 0; s < sessions; ++s) {
    std::vector<MemberList::Range> ranges = {{0, 99}};
    if ((s * 7) % 10 < 3) {
      const auto k = static_cast<std::uint32_t>(1 + (s * 104729u) % windows);
      ranges.push_back({k * 100, k * 100 + 99});
    }
    guild.list.subscribe(be32(s), s, ranges);
    (void)guild.list.take_released();
  }
  std::vector<double> times;
  std::vector<std::size_t> entries, ops;
  std::uint32_t next = members;
  for (int c = 0; c < changes; ++c) {
    const std::uint32_t id = 1 + static_cast<std::uint32_t>(random() % members);
    const auto roll = random() % 100;
    for (std::size_t i = 0; i < evict.size(); i += 8) evict[i] += static_cast<std::uint64_t>(c);
    const double start = cpu_ns();
    if (roll < 50) {
      guild.online[id] = !guild.online[id];
      guild.put(id);
    } else if (roll < 70 && next < members * 2) {
      ++next;
      guild.online[next] = next % 3 == 0;
      guild.put(next);
    } else if (roll < 85) {
      guild.list.erase(be32(id));
    } else {
      guild.version[id] += 1;
      guild.put(id);
    }
    times.push_back(cpu_ns() - start);
    entries.push_back(guild.list.entries().size());
    ops.push_back(guild.list.ops().size());
  }
  std::sort(times.begin(), times.end());
  std::sort(entries.begin(), entries.end());
  std::sort(ops.begin(), ops.end());
  std::printf(
      "members %u%s, %u sessions, %d changes, %zu MiB evicted between two: core cost per "
      "change median %.1f us, p99 %.1f us; entries median %zu, distinct ops median %zu; %.1f "
      "bytes/member+sessions\n",
      members, hide ? " (offline hidden)" : "", sessions, changes, evict_bytes >> 20,
      times[times.size() / 2] / 1000, times[times.size() * 99 / 100] / 1000,
      entries[entries.size() / 2], ops[ops.size() / 2],
      static_cast<double>(guild.list.memory_bytes()) / members);
  return 0;
}
