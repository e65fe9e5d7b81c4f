#include "core/member_list/member_list.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

namespace switchboard::core {

namespace {

constexpr std::size_t kPayloadBytes = 8;

// The tree key: sort key then the member's user payload, big-endian. The
// sort key is prefix-free, so the payload only orders members whose sort
// keys are equal; a key found by rank gives its member's payload without
// touching the member table.
TermKey make_tree_key(std::string_view sort_key, MemberList::Payload payload) {
  std::string bytes(sort_key);
  for (int shift = 56; shift >= 0; shift -= 8) {
    bytes.push_back(static_cast<char>((payload >> shift) & 0xFF));
  }
  std::span<const std::uint8_t> view(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                     bytes.size());
  return TermKey(view, view.size());
}

MemberList::Payload payload_of(TermKeyView key) noexcept {
  const std::uint8_t* end = key.data() + key.size();
  MemberList::Payload payload = 0;
  for (std::size_t i = kPayloadBytes; i > 0; --i) payload = (payload << 8) | *(end - i);
  return payload;
}

std::string_view prefix_of(const TermKey& key, std::size_t size) {
  return {reinterpret_cast<const char*>(key.data()), size};
}

std::uint64_t mix(std::uint64_t hash, std::uint64_t value) noexcept {
  hash ^= value + 0x9E3779B97F4A7C15ull + (hash << 6) + (hash >> 2);
  return hash;
}

std::uint64_t hash_ops(std::span<const MemberList::Op> ops) noexcept {
  std::uint64_t hash = ops.size();
  for (const auto& op : ops) {
    hash = mix(hash, (static_cast<std::uint64_t>(op.kind) << 32) | op.index);
    hash = mix(hash, op.item.payload);
    hash = mix(hash, (static_cast<std::uint64_t>(op.item.is_group) << 32) | op.item.count);
  }
  return hash;
}

}  // namespace

// ---------------------------------------------------------------------------
// Lookups

std::optional<MemberList::Payload> MemberList::user_payload(std::string_view user_key) const {
  const auto it = by_user_.find(std::string(user_key));
  if (it == by_user_.end()) return std::nullopt;
  return members_[it->second].user;
}

std::optional<MemberList::Payload> MemberList::group_payload(std::string_view group_key) const {
  const std::size_t position = group_position(group_key);
  if (position < groups_.size() && groups_[position].key == group_key) {
    return groups_[position].payload;
  }
  return std::nullopt;
}

std::optional<MemberList::Payload> MemberList::session_payload(std::string_view session_key) const {
  const auto it = by_session_.find(std::string(session_key));
  if (it == by_session_.end()) return std::nullopt;
  return sessions_[it->second].payload;
}

std::size_t MemberList::group_position(std::string_view key) const {
  return static_cast<std::size_t>(
      std::lower_bound(groups_.begin(), groups_.end(), key,
                       [](const Group& group, std::string_view k) { return group.key < k; }) -
      groups_.begin());
}

std::vector<MemberList::LayoutEntry> MemberList::layout() const {
  std::vector<LayoutEntry> result;
  result.reserve(groups_.size() + 1);
  for (const auto& group : groups_) {
    result.push_back({group.key, group.payload, group.count, group.count});
  }
  return result;
}

std::size_t MemberList::layout_size(const std::vector<LayoutEntry>& layout) {
  std::size_t size = 0;
  for (const auto& entry : layout) size += entry.members + 1;
  return size;
}

std::size_t MemberList::header_index(const std::vector<LayoutEntry>& layout, std::string_view key) {
  std::size_t index = 0;
  for (const auto& entry : layout) {
    if (entry.key == key) return index;
    index += entry.members + 1;
  }
  throw std::logic_error("member list: header of a missing group");
}

std::size_t MemberList::index_in(const std::vector<LayoutEntry>& layout, TermKeyView key,
                                 std::string_view group) const {
  std::size_t headers = 0;
  for (const auto& entry : layout) {
    if (entry.key <= group) ++headers;
  }
  const auto rank = tree_.find_index(key);
  if (!rank) throw std::logic_error("member list: member missing from the tree");
  return *rank + headers;
}

MemberList::Item MemberList::item_at(const std::vector<LayoutEntry>& layout,
                                     std::size_t index) const {
  std::size_t base = 0;
  for (const auto& entry : layout) {
    if (index == 0) return {true, entry.shown, entry.payload};
    if (index <= entry.members) {
      const TermKeyView key = tree_.at(base + index - 1);
      return {false, 0, payload_of(key)};
    }
    index -= entry.members + 1;
    base += entry.members;
  }
  throw std::logic_error("member list: item past the end");
}

std::size_t MemberList::size() const noexcept {
  std::size_t size = 0;
  for (const auto& group : groups_) size += group.count + 1;
  return size;
}

void MemberList::items(std::size_t first, std::size_t last, std::vector<Item>& out) const {
  std::size_t start = 0;
  std::size_t base = 0;
  for (const auto& group : groups_) {
    if (start > last) break;
    const std::size_t next = start + group.count + 1;
    if (next > first) {
      if (first <= start) out.push_back({true, group.count, group.payload});
      const std::size_t low = std::max(first, start + 1);
      const std::size_t high = std::min(last, start + group.count);
      if (high >= low) {
        std::size_t wanted = high - low + 1;
        for (auto cursor = tree_.cursor_at(base + low - start - 1); !cursor.done() && wanted > 0;
             cursor.advance(), --wanted) {
          out.push_back({false, 0, payload_of(cursor.key())});
        }
      }
    }
    start = next;
    base += group.count;
  }
}

std::optional<std::size_t> MemberList::member_index(std::string_view user_key) const {
  const auto it = by_user_.find(std::string(user_key));
  if (it == by_user_.end()) return std::nullopt;
  const Member& member = members_[it->second];
  if (!member.listed) return std::nullopt;
  const auto current = layout();
  return index_in(current, member.key, prefix_of(member.key, member.group_size));
}

MemberList::ChangeWork MemberList::change_work(std::string_view user_key,
                                               const MemberSpec* spec) const {
  // A change shifts or redraws every index from the first it removes or
  // inserts (the member's entry on either side, a header that comes or goes
  // just above it); further up it only updates headers, which reach just the
  // ranges that hold them.
  std::size_t low = std::numeric_limits<std::size_t>::max();
  std::size_t headers[2];
  std::size_t header_count = 0;
  const auto it = by_user_.find(std::string(user_key));
  if (it != by_user_.end() && members_[it->second].listed) {
    const Member& member = members_[it->second];
    const std::string_view group = prefix_of(member.key, member.group_size);
    const std::size_t header = header_index_of(group);
    if (const auto rank = tree_.find_index(member.key)) {
      low = *rank + headers_up_to(group);
      // The header goes too when the member is its group's last.
      low = low > 0 ? low - 1 : 0;
    }
    headers[header_count++] = header;
  }
  if (spec != nullptr && spec->listed && spec->group_size <= spec->sort_key.size()) {
    const std::string_view group = spec->sort_key.substr(0, spec->group_size);
    const std::size_t rank = tree_.lower_bound_index(make_tree_key(spec->sort_key, 0));
    const std::size_t at = rank + headers_up_to(group);
    low = std::min(low, at > 0 ? at - 1 : 0);
    headers[header_count++] = header_index_of(group);
  }
  ChangeWork work{0, range_order_.size(), by_session_.size()};
  if (low == std::numeric_limits<std::size_t>::max()) return work;
  const auto first_at_or_after = [&](std::size_t index) {
    return std::lower_bound(
        range_order_.begin(), range_order_.end(),
        Range{static_cast<std::uint32_t>(std::min<std::size_t>(index, UINT32_MAX)), 0},
        [](const std::pair<Range, std::uint32_t>& entry, const Range& r) {
          return entry.first < r;
        });
  };
  const auto from = [](std::size_t index) {
    return index >= kMaxRangeItems ? index - kMaxRangeItems + 1 : 0;
  };
  const auto shifted = first_at_or_after(from(low));
  work.reached_ranges = static_cast<std::size_t>(range_order_.end() - shifted);
  for (std::size_t h = 0; h < header_count; ++h) {
    if (headers[h] >= from(low)) continue;
    for (auto range = first_at_or_after(from(headers[h]));
         range != range_order_.end() && range->first.first <= headers[h]; ++range) {
      work.reached_ranges += range->first.last >= headers[h] ? 1u : 0u;
    }
  }
  return work;
}

namespace {

template <class Slots, class Free, class Index>
bool growth_due(const Slots& slots, const Free& free, const Index& index, std::size_t min) {
  const bool slots_grow = free.empty() && slots.size() == slots.capacity() && slots.size() >= min;
  const bool index_grows = index.size() >= min && static_cast<double>(index.size() + 1) >
                                                      static_cast<double>(index.max_load_factor()) *
                                                          static_cast<double>(index.bucket_count());
  return slots_grow || index_grows;
}

}  // namespace

bool MemberList::member_growth_due(std::size_t min) const noexcept {
  return growth_due(members_, free_members_, by_user_, min);
}

bool MemberList::session_growth_due(std::size_t min) const noexcept {
  return growth_due(sessions_, free_sessions_, by_session_, min) ||
         (session_order_.size() == session_order_.capacity() && session_order_.size() >= min);
}

// Headers at or above the group `key` (its own, if it exists, included),
// whether or not the group exists.
std::size_t MemberList::headers_up_to(std::string_view key) const {
  return static_cast<std::size_t>(
      std::upper_bound(groups_.begin(), groups_.end(), key,
                       [](std::string_view k, const Group& group) { return k < group.key; }) -
      groups_.begin());
}

// Where the header of group `key` is, or would go.
std::size_t MemberList::header_index_of(std::string_view key) const {
  std::size_t index = 0;
  for (const auto& group : groups_) {
    if (group.key >= key) break;
    index += group.count + 1;
  }
  return index;
}

std::vector<std::pair<MemberList::Payload, std::uint32_t>> MemberList::groups() const {
  std::vector<std::pair<Payload, std::uint32_t>> result;
  result.reserve(groups_.size());
  for (const auto& group : groups_) result.emplace_back(group.payload, group.count);
  return result;
}

std::size_t MemberList::memory_bytes() const noexcept {
  constexpr std::size_t kNode = 2 * sizeof(void*) + sizeof(std::size_t);
  std::size_t bytes = tree_.memory_bytes() + members_.capacity() * sizeof(Member) +
                      free_members_.capacity() * sizeof(std::uint32_t);
  bytes += by_user_.bucket_count() * sizeof(void*);
  for (const auto& [key, slot] : by_user_) {
    bytes += kNode + sizeof(std::pair<const std::string, std::uint32_t>) +
             (key.size() > 15 ? key.capacity() + 1 : 0);
    const Member& member = members_[slot];
    if (member.key.size() > TermKey::kInlineCapacity) bytes += member.key.size();
  }
  bytes += sessions_.capacity() * sizeof(Session) + by_session_.bucket_count() * sizeof(void*);
  for (const auto& [key, slot] : by_session_) {
    bytes += kNode + sizeof(std::pair<const std::string, std::uint32_t>) +
             (key.size() > 15 ? key.capacity() + 1 : 0);
  }
  for (const auto& set : range_sets_) {
    bytes += sizeof(RangeSet) + set.ranges.capacity() * sizeof(std::uint32_t) +
             set.sessions.capacity() * sizeof(std::uint32_t);
  }
  bytes += by_ranges_.size() * (kNode + sizeof(std::vector<Range>) + kMaxRanges * sizeof(Range));
  for (const auto& info : ranges_) {
    bytes += sizeof(RangeInfo) + info.range_sets.capacity() * sizeof(std::uint32_t);
  }
  bytes += by_range_.size() * (kNode + sizeof(std::pair<const Range, std::uint32_t>));
  return bytes;
}

std::vector<MemberList::Payload> MemberList::take_released() noexcept {
  std::vector<Payload> result;
  result.swap(released_);
  return result;
}

void MemberList::clear_updates() noexcept {
  entries_.clear();
  session_out_.clear();
  op_out_.clear();
}

// ---------------------------------------------------------------------------
// Members

std::uint32_t MemberList::new_member_slot() {
  if (!free_members_.empty()) {
    const std::uint32_t slot = free_members_.back();
    free_members_.pop_back();
    return slot;
  }
  if (members_.size() >= 0xFFFFFFFFu) throw std::length_error("member list: too many members");
  members_.emplace_back();
  return static_cast<std::uint32_t>(members_.size() - 1);
}

void MemberList::put(const MemberSpec& spec, Payload user, Payload group) {
  clear_updates();
  if (spec.group_size + spec.name_size > spec.sort_key.size() || spec.group_size > 0xFFFF ||
      spec.name_size > 0xFFFF) {
    throw std::invalid_argument("member list: bad member key sizes");
  }
  const std::string_view new_group = spec.sort_key.substr(0, spec.group_size);
  const bool group_existed = group_payload(new_group).has_value();

  const auto it = by_user_.find(std::string(spec.user_key));
  std::uint32_t slot;
  TermKey old_key;
  Side old_side;
  bool redraw = false;
  if (it == by_user_.end()) {
    slot = new_member_slot();
    try {
      by_user_.emplace(std::string(spec.user_key), slot);
    } catch (...) {
      free_members_.push_back(slot);
      throw;
    }
    members_[slot].user = user;
    members_[slot].used = true;
  } else {
    slot = it->second;
    Member& member = members_[slot];
    const std::string_view old_name(
        reinterpret_cast<const char*>(member.key.data()) + member.group_size, member.name_size);
    const std::string_view new_name = spec.sort_key.substr(spec.group_size, spec.name_size);
    const std::string_view old_sort(reinterpret_cast<const char*>(member.key.data()),
                                    member.key.size() - kPayloadBytes);
    if (old_sort == spec.sort_key && member.status == spec.status && member.listed == spec.listed) {
      if (!group_existed) released_.push_back(group);
      return;
    }
    redraw = old_name != new_name || member.status != spec.status;
    old_key = member.key;
    if (member.listed) old_side = {&old_key, prefix_of(old_key, member.group_size)};
    online_ -= member.online ? 1 : 0;
  }

  Member& member = members_[slot];
  TermKey new_key = make_tree_key(spec.sort_key, member.user);
  member.key = std::move(new_key);
  member.group_size = static_cast<std::uint16_t>(spec.group_size);
  member.name_size = static_cast<std::uint16_t>(spec.name_size);
  member.status = spec.status;
  member.online = spec.online;
  member.listed = spec.listed;
  online_ += spec.online ? 1 : 0;
  // The group key view must outlive the change: it points into the member's key.
  Side new_side;
  if (spec.listed) new_side = {&member.key, prefix_of(member.key, spec.group_size)};
  adopted_group_ = false;
  change(member.user, old_side, new_side, group, redraw);
  if (!group_existed && !adopted_group_) released_.push_back(group);
}

bool MemberList::erase(std::string_view user_key) {
  clear_updates();
  const auto it = by_user_.find(std::string(user_key));
  if (it == by_user_.end()) return false;
  const std::uint32_t slot = it->second;
  Member& member = members_[slot];
  const TermKey old_key = member.key;
  online_ -= member.online ? 1 : 0;
  if (member.listed) {
    change(member.user, {&old_key, prefix_of(old_key, member.group_size)}, {}, 0, false);
  }
  released_.push_back(member.user);
  by_user_.erase(it);
  members_[slot] = Member{};
  free_members_.push_back(slot);
  return true;
}

// ---------------------------------------------------------------------------
// A change

void MemberList::change(Payload user, Side old_side, Side new_side, Payload group_payload,
                        bool redraw) {
  if (old_side.key == nullptr && new_side.key == nullptr) return;
  ++epoch_;
  Marks marks;
  const Item member_item{false, 0, user};
  std::vector<LayoutEntry> layout0 = layout();
  marks.size_before = layout_size(layout0);

  // Steps and the layout after each; the tree is changed when they run.
  Step steps[4];
  std::vector<LayoutEntry> after[4];
  bool removes_member[4] = {false, false, false, false};
  bool inserts_member[4] = {false, false, false, false};
  std::size_t step_count = 0;
  std::size_t a = 0, b = 0;

  const auto find = [](std::vector<LayoutEntry>& layout, std::string_view key) {
    return std::find_if(layout.begin(), layout.end(),
                        [key](const LayoutEntry& e) { return e.key == key; });
  };
  // The rank of the new key once the old one is gone.
  const auto new_rank = [&]() {
    std::size_t rank = tree_.lower_bound_index(*new_side.key);
    if (old_side.key != nullptr && compare(*old_side.key, *new_side.key) < 0) --rank;
    return rank;
  };
  const auto headers_through = [](const std::vector<LayoutEntry>& layout, std::string_view key) {
    std::size_t count = 0;
    for (const auto& entry : layout) count += entry.key <= key ? 1u : 0u;
    return count;
  };

  std::vector<LayoutEntry> final_layout;
  if (old_side.key != nullptr && new_side.key != nullptr && old_side.group == new_side.group) {
    a = index_in(layout0, *old_side.key, old_side.group);
    b = compare(*old_side.key, *new_side.key) == 0
            ? a
            : new_rank() + headers_through(layout0, new_side.group);
    final_layout = layout0;
    if (a == b) {
      steps[0] = {OpKind::update, static_cast<std::uint32_t>(a), member_item, marks.size_before};
      after[0] = layout0;
      removes_member[0] = inserts_member[0] = true;
      step_count = 1;
      marks.updated[marks.updated_count++] = static_cast<std::uint32_t>(a);
    } else {
      std::vector<LayoutEntry> layout1 = layout0;
      find(layout1, old_side.group)->members -= 1;
      steps[0] = {OpKind::remove, static_cast<std::uint32_t>(a), {}, marks.size_before};
      after[0] = std::move(layout1);
      removes_member[0] = true;
      steps[1] = {OpKind::insert, static_cast<std::uint32_t>(b), member_item,
                  marks.size_before - 1};
      after[1] = layout0;
      inserts_member[1] = true;
      step_count = 2;
      marks.deleted[marks.deleted_count++] = static_cast<std::uint32_t>(a);
      marks.inserted[marks.inserted_count++] = static_cast<std::uint32_t>(b);
      marks.member_moved_both = true;
      marks.member_old = static_cast<std::uint32_t>(a);
      marks.member_new = static_cast<std::uint32_t>(b);
      if (redraw) marks.updated[marks.updated_count++] = static_cast<std::uint32_t>(b);
    }
  } else {
    std::vector<LayoutEntry> current = layout0;
    std::size_t size = marks.size_before;
    bool old_header_updated = false;
    if (old_side.key != nullptr) {
      a = index_in(layout0, *old_side.key, old_side.group);
      auto entry = find(current, old_side.group);
      const std::uint32_t count = entry->members;
      entry->members -= 1;
      steps[step_count] = {OpKind::remove, static_cast<std::uint32_t>(a), {}, size};
      removes_member[step_count] = true;
      after[step_count++] = current;
      size -= 1;
      marks.deleted[marks.deleted_count++] = static_cast<std::uint32_t>(a);
      const std::size_t header = header_index(current, old_side.group);
      if (count == 1) {
        current.erase(find(current, old_side.group));
        steps[step_count] = {OpKind::remove, static_cast<std::uint32_t>(header), {}, size};
        after[step_count++] = current;
        size -= 1;
        marks.deleted[marks.deleted_count++] = static_cast<std::uint32_t>(header);
      } else {
        entry = find(current, old_side.group);
        entry->shown -= 1;
        steps[step_count] = {OpKind::update, static_cast<std::uint32_t>(header),
                             Item{true, count - 1, entry->payload}, size};
        after[step_count++] = current;
        old_header_updated = true;
      }
    }
    if (new_side.key != nullptr) {
      auto entry = find(current, new_side.group);
      std::size_t header;
      if (entry == current.end()) {
        const auto position =
            std::find_if(current.begin(), current.end(),
                         [&](const LayoutEntry& e) { return e.key > new_side.group; });
        current.insert(position, LayoutEntry{new_side.group, group_payload, 1, 0});
        header = header_index(current, new_side.group);
        steps[step_count] = {OpKind::insert, static_cast<std::uint32_t>(header),
                             Item{true, 1, group_payload}, size};
        after[step_count++] = current;
        size += 1;
        marks.inserted[marks.inserted_count++] = static_cast<std::uint32_t>(header);
      } else {
        entry->shown += 1;
        header = header_index(current, new_side.group);
        steps[step_count] = {OpKind::update, static_cast<std::uint32_t>(header),
                             Item{true, entry->shown, entry->payload}, size};
        after[step_count++] = current;
        marks.updated[marks.updated_count++] = static_cast<std::uint32_t>(header);
      }
      find(current, new_side.group)->members += 1;
      b = new_rank() + headers_through(current, new_side.group);
      steps[step_count] = {OpKind::insert, static_cast<std::uint32_t>(b), member_item, size};
      inserts_member[step_count] = true;
      after[step_count++] = current;
      marks.inserted[marks.inserted_count++] = static_cast<std::uint32_t>(b);
    }
    if (old_header_updated) {
      marks.updated[marks.updated_count++] =
          static_cast<std::uint32_t>(header_index(current, old_side.group));
    }
    if (old_side.key != nullptr && new_side.key != nullptr) {
      marks.member_moved_both = true;
      marks.member_old = static_cast<std::uint32_t>(a);
      marks.member_new = static_cast<std::uint32_t>(b);
      if (redraw) marks.updated[marks.updated_count++] = static_cast<std::uint32_t>(b);
    }
    final_layout = std::move(current);
  }
  marks.size_after = layout_size(final_layout);

  // Ranges that show something different: none ends before the first mark.
  std::size_t first_mark = std::min(marks.size_before, marks.size_after);
  for (std::size_t i = 0; i < marks.deleted_count; ++i)
    first_mark = std::min<std::size_t>(first_mark, marks.deleted[i]);
  for (std::size_t i = 0; i < marks.inserted_count; ++i)
    first_mark = std::min<std::size_t>(first_mark, marks.inserted[i]);
  for (std::size_t i = 0; i < marks.updated_count; ++i)
    first_mark = std::min<std::size_t>(first_mark, marks.updated[i]);
  changed_ranges_.clear();
  const std::uint32_t from = first_mark >= kMaxRangeItems
                                 ? static_cast<std::uint32_t>(first_mark - kMaxRangeItems + 1)
                                 : 0u;
  const auto start = std::lower_bound(
      range_order_.begin(), range_order_.end(), Range{from, 0},
      [](const std::pair<Range, std::uint32_t>& entry, const Range& r) { return entry.first < r; });
  for (auto it = start; it != range_order_.end(); ++it) {
    if (it->first.last >= first_mark && changed(marks, it->first)) {
      changed_ranges_.push_back(it->second);
    }
  }

  // Run the steps: the tree follows them, each changed range gets its ops.
  range_op_buffer_.clear();
  chunk_offsets_.clear();
  for (std::size_t s = 0; s < step_count; ++s) {
    if (removes_member[s]) tree_.erase(*old_side.key);
    if (inserts_member[s]) tree_.insert(*new_side.key);
    for (const std::uint32_t id : changed_ranges_) {
      chunk_offsets_.push_back(static_cast<std::uint32_t>(range_op_buffer_.size()));
      range_ops(steps[s], after[s], ranges_[id].range, range_op_buffer_);
    }
  }
  chunk_offsets_.push_back(static_cast<std::uint32_t>(range_op_buffer_.size()));

  // The groups as they are now; a group that vanished releases its payload.
  const bool same_group =
      old_side.key != nullptr && new_side.key != nullptr && old_side.group == new_side.group;
  if (old_side.key != nullptr && !same_group) {
    const std::size_t position = group_position(old_side.group);
    if (--groups_[position].count == 0) {
      released_.push_back(groups_[position].payload);
      groups_.erase(groups_.begin() + static_cast<std::ptrdiff_t>(position));
    }
  }
  if (new_side.key != nullptr && !same_group) {
    const std::size_t position = group_position(new_side.group);
    if (position < groups_.size() && groups_[position].key == new_side.group) {
      groups_[position].count += 1;
    } else {
      groups_.insert(groups_.begin() + static_cast<std::ptrdiff_t>(position),
                     Group{std::string(new_side.group), group_payload, 1});
      adopted_group_ = true;
    }
  }
  build_updates(step_count);
}

bool MemberList::changed(const Marks& marks, const Range& range) {
  if (marks.updated_count > 0) {
    for (std::size_t i = 0; i < marks.updated_count; ++i) {
      if (marks.updated[i] >= range.first && marks.updated[i] <= range.last) return true;
    }
  }
  const std::size_t longer = std::max(marks.size_before, marks.size_after);
  if (longer == 0 || range.first > longer - 1) return false;
  const std::size_t last = std::min<std::size_t>(range.last, longer - 1);
  const std::size_t shorter = std::min(marks.size_before, marks.size_after);

  const auto is_deleted = [&](std::size_t p) {
    for (std::size_t i = 0; i < marks.deleted_count; ++i)
      if (marks.deleted[i] == p) return true;
    return false;
  };
  const auto is_inserted = [&](std::size_t p) {
    for (std::size_t i = 0; i < marks.inserted_count; ++i)
      if (marks.inserted[i] == p) return true;
    return false;
  };
  const auto differs = [&](std::size_t p) {
    if (p >= shorter) return true;
    const bool deleted = is_deleted(p), inserted = is_inserted(p);
    if (deleted && inserted) {
      return !(marks.member_moved_both && marks.member_old == p && marks.member_new == p);
    }
    if (deleted || inserted) return true;
    std::size_t before_deleted = 0, before_inserted = 0;
    for (std::size_t i = 0; i < marks.deleted_count; ++i) before_deleted += marks.deleted[i] < p;
    for (std::size_t i = 0; i < marks.inserted_count; ++i) before_inserted += marks.inserted[i] < p;
    return before_deleted != before_inserted;
  };
  const auto check = [&](std::size_t p) { return p >= range.first && p <= last && differs(p); };

  if (check(range.first) || check(shorter)) return true;
  for (std::size_t i = 0; i < marks.deleted_count; ++i) {
    if (check(marks.deleted[i]) || check(marks.deleted[i] + std::size_t{1})) return true;
  }
  for (std::size_t i = 0; i < marks.inserted_count; ++i) {
    if (check(marks.inserted[i]) || check(marks.inserted[i] + std::size_t{1})) return true;
  }
  return false;
}

// The ops that keep the window [first, last] equal to the list across one
// step, without shifting the slots after it while the list goes on past it.
void MemberList::range_ops(const Step& step, const std::vector<LayoutEntry>& after,
                           const Range& range, std::vector<Op>& out) const {
  const std::size_t f = range.first, l = range.last, n = step.size_before, i = step.index;
  // Removing one slot and inserting another; the same slot is an update.
  const auto pair = [&](std::size_t removed, std::size_t inserted, const Item& item) {
    if (removed == inserted) {
      out.push_back({OpKind::update, static_cast<std::uint32_t>(inserted), item});
    } else {
      out.push_back({OpKind::remove, static_cast<std::uint32_t>(removed), {}});
      out.push_back({OpKind::insert, static_cast<std::uint32_t>(inserted), item});
    }
  };
  switch (step.kind) {
    case OpKind::remove: {
      if (i > l || n <= f) return;
      const std::size_t p = std::max(i, f);
      if (n - 1 > l) {
        pair(p, l, item_at(after, l));
      } else {
        out.push_back({OpKind::remove, static_cast<std::uint32_t>(p), {}});
      }
      return;
    }
    case OpKind::insert: {
      if (i > l) return;
      if (i >= f) {
        if (n > l) {
          pair(l, i, step.item);
        } else {
          out.push_back({OpKind::insert, static_cast<std::uint32_t>(i), step.item});
        }
        return;
      }
      if (n < f) return;
      const Item item = item_at(after, f);
      if (n > l) {
        pair(l, f, item);
      } else {
        out.push_back({OpKind::insert, static_cast<std::uint32_t>(f), item});
      }
      return;
    }
    case OpKind::update:
      if (i >= f && i <= l)
        out.push_back({OpKind::update, static_cast<std::uint32_t>(i), step.item});
      return;
  }
}

// Groups the changed ranges' ops by range set, range sets by op list.
void MemberList::build_updates(std::size_t step_count) {
  const std::size_t changed_count = changed_ranges_.size();
  if (changed_count == 0) return;
  if (range_stamp_.size() < ranges_.size()) {
    range_stamp_.resize(ranges_.size(), 0);
    range_slot_.resize(ranges_.size(), 0);
  }
  if (set_stamp_.size() < range_sets_.size()) {
    set_stamp_.resize(range_sets_.size(), 0);
    set_next_.resize(range_sets_.size(), 0);
  }
  const auto chunk = [&](std::size_t s, std::size_t c) {
    const std::size_t at = s * changed_count + c;
    return std::pair<std::uint32_t, std::uint32_t>{chunk_offsets_[at], chunk_offsets_[at + 1]};
  };
  // Ranges without any op are not changed after all.
  touched_sets_.clear();
  for (std::size_t c = 0; c < changed_count; ++c) {
    std::size_t total = 0;
    for (std::size_t s = 0; s < step_count; ++s) {
      const auto [begin, end] = chunk(s, c);
      total += end - begin;
    }
    if (total == 0) continue;
    const std::uint32_t id = changed_ranges_[c];
    range_stamp_[id] = epoch_;
    range_slot_[id] = static_cast<std::uint32_t>(c);
    for (const std::uint32_t set : ranges_[id].range_sets) {
      if (set_stamp_[set] != epoch_) {
        set_stamp_[set] = epoch_;
        touched_sets_.push_back(set);
      }
    }
  }

  // Entries by op list, found through an open-addressing table of hashes.
  std::size_t table_size = 16;
  while (table_size < 2 * touched_sets_.size()) table_size *= 2;
  entry_table_.assign(table_size, 0);
  entry_hash_.clear();
  entry_ops_.clear();
  entry_last_set_.clear();
  entry_first_set_.clear();
  entry_first_seq_.clear();
  for (const std::uint32_t set : touched_sets_) {
    candidate_.clear();
    const RangeSet& range_set = range_sets_[set];
    for (std::size_t s = 0; s < step_count; ++s) {
      for (const std::uint32_t id : range_set.ranges) {
        if (range_stamp_[id] != epoch_) continue;
        const auto [begin, end] = chunk(s, range_slot_[id]);
        candidate_.insert(candidate_.end(), range_op_buffer_.begin() + begin,
                          range_op_buffer_.begin() + end);
      }
    }
    const std::uint64_t hash = hash_ops(candidate_);
    const std::uint64_t seq = sessions_[range_set.sessions.front()].seq;
    std::size_t probe = hash & (table_size - 1);
    bool found = false;
    while (entry_table_[probe] != 0) {
      const std::uint32_t entry = entry_table_[probe] - 1;
      const auto [begin, count] = entry_ops_[entry];
      if (entry_hash_[entry] == hash && count == candidate_.size() &&
          std::equal(candidate_.begin(), candidate_.end(), op_out_.begin() + begin)) {
        set_next_[entry_last_set_[entry]] = set;
        set_next_[set] = UINT32_MAX;
        entry_last_set_[entry] = set;
        entry_first_seq_[entry] = std::min(entry_first_seq_[entry], seq);
        found = true;
        break;
      }
      probe = (probe + 1) & (table_size - 1);
    }
    if (found) continue;
    const auto entry = static_cast<std::uint32_t>(entry_ops_.size());
    entry_table_[probe] = entry + 1;
    entry_hash_.push_back(hash);
    entry_ops_.emplace_back(static_cast<std::uint32_t>(op_out_.size()),
                            static_cast<std::uint32_t>(candidate_.size()));
    op_out_.insert(op_out_.end(), candidate_.begin(), candidate_.end());
    entry_first_set_.push_back(set);
    entry_last_set_.push_back(set);
    entry_first_seq_.push_back(seq);
    set_next_[set] = UINT32_MAX;
  }

  // By first session: seqs are distinct, so sorting the pairs themselves
  // (no indirection through the entry tables) gives the order.
  entry_order_.clear();
  for (std::uint32_t e = 0; e < entry_ops_.size(); ++e) {
    entry_order_.emplace_back(entry_first_seq_[e], e);
  }
  std::sort(entry_order_.begin(), entry_order_.end());
  entries_.reserve(entry_order_.size());
  for (const auto& [first_seq, e] : entry_order_) {
    const auto session_begin = static_cast<std::uint32_t>(session_out_.size());
    const std::uint32_t first = entry_first_set_[e];
    if (set_next_[first] == UINT32_MAX) {
      for (const std::uint32_t session : range_sets_[first].sessions) {
        session_out_.push_back(sessions_[session].payload);
      }
    } else {
      merge_scratch_.clear();
      for (std::uint32_t set = first; set != UINT32_MAX; set = set_next_[set]) {
        for (const std::uint32_t session : range_sets_[set].sessions) {
          merge_scratch_.emplace_back(sessions_[session].seq, session);
        }
      }
      if (merge_scratch_.size() * 8 < session_order_.size()) {
        std::sort(merge_scratch_.begin(), merge_scratch_.end());
        for (const auto& [seq, session] : merge_scratch_) {
          session_out_.push_back(sessions_[session].payload);
        }
      } else {
        // Many sessions: mark them and walk all sessions in subscription
        // order, linear instead of a sort.
        ++merge_mark_;
        if (session_mark_.size() < sessions_.size()) session_mark_.resize(sessions_.size(), 0);
        for (const auto& [seq, session] : merge_scratch_) session_mark_[session] = merge_mark_;
        for (const auto& [seq, session] : session_order_) {
          if (session != UINT32_MAX && session_mark_[session] == merge_mark_) {
            session_out_.push_back(sessions_[session].payload);
          }
        }
      }
    }
    entries_.push_back({session_begin,
                        static_cast<std::uint32_t>(session_out_.size()) - session_begin,
                        entry_ops_[e].first, entry_ops_[e].second});
  }
}

// ---------------------------------------------------------------------------
// Sessions

MemberList::Subscription MemberList::subscribe(std::string_view session_key, Payload payload,
                                               std::span<const Range> ranges) {
  clear_updates();
  if (ranges.size() > kMaxRanges) throw std::invalid_argument("member list: too many ranges");
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].last < ranges[i].first || ranges[i].last - ranges[i].first >= kMaxRangeItems ||
        (i > 0 && ranges[i].first <= ranges[i - 1].last)) {
      throw std::invalid_argument("member list: ranges must be sorted, short and apart");
    }
  }
  std::vector<Range> wanted(ranges.begin(), ranges.end());
  Subscription result;
  const auto it = by_session_.find(std::string(session_key));
  std::vector<Range> old;
  if (it != by_session_.end()) {
    const Session& session = sessions_[it->second];
    for (const std::uint32_t id : range_sets_[session.range_set].ranges) {
      old.push_back(ranges_[id].range);
    }
    if (session.payload != payload) released_.push_back(payload);
  }
  if (old == wanted) {
    if (it == by_session_.end()) released_.push_back(payload);
    return result;
  }
  std::set_difference(old.begin(), old.end(), wanted.begin(), wanted.end(),
                      std::back_inserter(result.dropped));
  std::set_difference(wanted.begin(), wanted.end(), old.begin(), old.end(),
                      std::back_inserter(result.added));

  std::uint32_t slot;
  if (it != by_session_.end()) {
    slot = it->second;
    leave_range_set(slot);
    if (wanted.empty()) {
      released_.push_back(sessions_[slot].payload);
      forget_order(slot);
      by_session_.erase(it);
      free_sessions_.push_back(slot);
      return result;
    }
  } else {
    if (!free_sessions_.empty()) {
      slot = free_sessions_.back();
      free_sessions_.pop_back();
    } else {
      sessions_.emplace_back();
      slot = static_cast<std::uint32_t>(sessions_.size() - 1);
    }
    sessions_[slot] = Session{payload, next_seq_++, 0};
    by_session_.emplace(std::string(session_key), slot);
    session_order_.emplace_back(sessions_[slot].seq, slot);
  }
  join_range_set(slot, std::move(wanted));
  return result;
}

bool MemberList::unsubscribe(std::string_view session_key) {
  clear_updates();
  const auto it = by_session_.find(std::string(session_key));
  if (it == by_session_.end()) return false;
  const std::uint32_t slot = it->second;
  leave_range_set(slot);
  released_.push_back(sessions_[slot].payload);
  forget_order(slot);
  by_session_.erase(it);
  free_sessions_.push_back(slot);
  return true;
}

// Leaves a hole in the subscription order, squeezed out once holes are half.
void MemberList::forget_order(std::uint32_t slot) {
  const auto position =
      std::lower_bound(session_order_.begin(), session_order_.end(),
                       std::pair<std::uint64_t, std::uint32_t>{sessions_[slot].seq, 0});
  position->second = UINT32_MAX;
  if (++order_holes_ * 2 > session_order_.size()) {
    std::erase_if(session_order_, [](const auto& entry) { return entry.second == UINT32_MAX; });
    order_holes_ = 0;
  }
}

void MemberList::leave_range_set(std::uint32_t slot) {
  const std::uint32_t set = sessions_[slot].range_set;
  RangeSet& range_set = range_sets_[set];
  const std::uint64_t seq = sessions_[slot].seq;
  const auto position = std::lower_bound(
      range_set.sessions.begin(), range_set.sessions.end(), seq,
      [&](std::uint32_t s, std::uint64_t value) { return sessions_[s].seq < value; });
  range_set.sessions.erase(position);
  if (!range_set.sessions.empty()) return;
  std::vector<Range> key;
  for (const std::uint32_t id : range_set.ranges) {
    RangeInfo& info = ranges_[id];
    key.push_back(info.range);
    info.range_sets.erase(std::find(info.range_sets.begin(), info.range_sets.end(), set));
    if (--info.refs == 0) {
      by_range_.erase(info.range);
      range_order_.erase(std::lower_bound(range_order_.begin(), range_order_.end(),
                                          std::pair<Range, std::uint32_t>{info.range, 0}));
      info.range_sets.shrink_to_fit();
      free_ranges_.push_back(id);
    }
  }
  by_ranges_.erase(key);
  range_set.ranges.clear();
  free_range_sets_.push_back(set);
}

void MemberList::join_range_set(std::uint32_t slot, std::vector<Range> ranges) {
  std::uint32_t set;
  const auto found = by_ranges_.find(ranges);
  if (found != by_ranges_.end()) {
    set = found->second;
  } else {
    if (!free_range_sets_.empty()) {
      set = free_range_sets_.back();
      free_range_sets_.pop_back();
    } else {
      range_sets_.emplace_back();
      set = static_cast<std::uint32_t>(range_sets_.size() - 1);
    }
    RangeSet& range_set = range_sets_[set];
    range_set.sessions.clear();
    for (const Range& range : ranges) {
      std::uint32_t id;
      const auto known = by_range_.find(range);
      if (known != by_range_.end()) {
        id = known->second;
      } else {
        if (!free_ranges_.empty()) {
          id = free_ranges_.back();
          free_ranges_.pop_back();
        } else {
          ranges_.emplace_back();
          id = static_cast<std::uint32_t>(ranges_.size() - 1);
        }
        ranges_[id].range = range;
        ranges_[id].refs = 0;
        ranges_[id].range_sets.clear();
        by_range_.emplace(range, id);
        range_order_.insert(std::lower_bound(range_order_.begin(), range_order_.end(),
                                             std::pair<Range, std::uint32_t>{range, 0}),
                            {range, id});
      }
      ranges_[id].refs += 1;
      ranges_[id].range_sets.push_back(set);
      range_set.ranges.push_back(id);
    }
    by_ranges_.emplace(std::move(ranges), set);
  }
  RangeSet& range_set = range_sets_[set];
  const std::uint64_t seq = sessions_[slot].seq;
  const auto position = std::lower_bound(
      range_set.sessions.begin(), range_set.sessions.end(), seq,
      [&](std::uint32_t s, std::uint64_t value) { return sessions_[s].seq < value; });
  range_set.sessions.insert(position, slot);
  sessions_[slot].range_set = set;
}

// ---------------------------------------------------------------------------

void MemberList::check_invariants() const {
  tree_.check_invariants();
  std::size_t listed = 0, online = 0;
  std::map<std::string, std::uint32_t> counts;
  for (const auto& [key, slot] : by_user_) {
    const Member& member = members_[slot];
    if (!member.used) throw std::logic_error("member list: unused member slot in the index");
    online += member.online ? 1 : 0;
    if (!member.listed) continue;
    ++listed;
    counts[std::string(prefix_of(member.key, member.group_size))] += 1;
    if (!tree_.find_index(member.key)) throw std::logic_error("member list: member not in tree");
  }
  if (listed != tree_.size()) throw std::logic_error("member list: tree size");
  if (online != online_) throw std::logic_error("member list: online count");
  if (counts.size() != groups_.size()) throw std::logic_error("member list: group count");
  std::size_t i = 0;
  for (const auto& [key, count] : counts) {
    if (groups_[i].key != key || groups_[i].count != count) {
      throw std::logic_error("member list: group table");
    }
    ++i;
  }
}

}  // namespace switchboard::core
