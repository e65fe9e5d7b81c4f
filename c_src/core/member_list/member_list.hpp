// The lazy member list of a guild and the ops that keep every subscribed
// window of it up to date (Discord's GUILD_MEMBER_LIST_UPDATE).
//
// The list is a sequence of items: a header per non-empty group, then that
// group's members. Members live in an OrderStatisticTree under a byte key
// that sorts them (group key, then name, then user: the caller encodes each
// part prefix-free, so byte order is list order), followed by the member's
// payload, so a key found by rank names its member without another lookup. Groups are
// few: a sorted vector, header positions are prefix sums over it.
//
// A change (put/erase) is applied as up to four steps on the whole list:
// remove the member's entry, update or remove its old header, update or add
// its new header, insert its entry. Each subscribed range gets, per step, at
// most two ops that keep its window equal to the list without shifting any
// slot after the window while the list goes on past it, so the ops of a
// range are computed once and shared by every session that holds it; a
// session's op list is its ranges' ops, step by step, ranges ascending. A
// range whose window shows the same items after the change gets nothing (an
// exact test from the positions removed, added and updated, done before any
// op is built). Sessions whose op lists are equal share one entry.
//
// Payloads are opaque 64-bit values the caller attaches to users, groups and
// sessions (the NIF keeps term handles there); payloads the list stops using
// are handed back through take_released().
//
// Not thread-safe.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/sorted_set/order_statistic_tree.hpp"

namespace switchboard::core {

class MemberList {
 public:
  using Payload = std::uint64_t;

  struct Item {
    bool is_group = false;
    std::uint32_t count = 0;  // a header's count
    Payload payload = 0;      // the member's user payload, or the group's payload
    bool operator==(const Item&) const = default;
  };

  enum class OpKind : std::uint8_t { insert, update, remove };

  struct Op {
    OpKind kind;
    std::uint32_t index;
    Item item;  // unused for remove
    bool operator==(const Op&) const = default;
  };

  struct Range {
    std::uint32_t first;
    std::uint32_t last;
    auto operator<=>(const Range&) const = default;
  };

  // A member as the caller encodes it.
  struct MemberSpec {
    std::string_view user_key;  // identity of the user (any bytes, equal iff same user)
    std::string_view sort_key;  // group key, then name, then user, each prefix-free
    std::size_t group_size;     // leading bytes of sort_key that are the group key
    std::size_t name_size;      // the bytes after them that are the name
    std::uint8_t status;        // any code; a change of it redraws the member
    bool online;
    bool listed;
  };

  // One entry of a change's updates: sessions()[session_begin, +session_count)
  // receive ops()[op_begin, +op_count).
  struct Entry {
    std::uint32_t session_begin;
    std::uint32_t session_count;
    std::uint32_t op_begin;
    std::uint32_t op_count;
  };

  // What subscribe changed for the session: invalidate `dropped`, sync `added`.
  struct Subscription {
    std::vector<Range> dropped;
    std::vector<Range> added;
  };

  static constexpr std::uint32_t kMaxRangeItems = 100;
  static constexpr std::size_t kMaxRanges = 5;

  MemberList() = default;
  MemberList(const MemberList&) = delete;
  MemberList& operator=(const MemberList&) = delete;
  MemberList(MemberList&&) noexcept = default;
  MemberList& operator=(MemberList&&) noexcept = default;
  ~MemberList() = default;

  // The payload already attached to this user, or to this group key.
  std::optional<Payload> user_payload(std::string_view user_key) const;
  std::optional<Payload> group_payload(std::string_view group_key) const;
  std::optional<Payload> session_payload(std::string_view session_key) const;

  // Adds or changes a member; `user` and `group` are adopted when new
  // (otherwise released). The change's updates are in entries()/sessions()/ops().
  void put(const MemberSpec& member, Payload user, Payload group);
  // Removes a member; false (and no updates) when absent.
  bool erase(std::string_view user_key);

  // Replaces the session's ranges (sorted, non-overlapping, validated by the
  // caller: throws std::invalid_argument otherwise). An empty set removes the
  // session. `payload` is adopted for a new session, released otherwise.
  Subscription subscribe(std::string_view session_key, Payload payload,
                         std::span<const Range> ranges);
  // Removes the session silently; false when absent.
  bool unsubscribe(std::string_view session_key);

  // Before a put (`spec`) or an erase (`spec` null) of this user, an upper
  // bound on its work, in O(log n): the ranges that may get ops (every range
  // that can reach past the first index the change shifts or redraws), all
  // ranges (the walk that finds them), and the sessions that may be told.
  struct ChangeWork {
    std::size_t reached_ranges;
    std::size_t ranges;
    std::size_t sessions;
  };
  ChangeWork change_work(std::string_view user_key, const MemberSpec* spec) const;

  // Items at indexes [first, last] clipped to the list, appended to `out`.
  void items(std::size_t first, std::size_t last, std::vector<Item>& out) const;
  std::optional<std::size_t> member_index(std::string_view user_key) const;
  std::size_t size() const noexcept;
  std::size_t member_count() const noexcept { return by_user_.size(); }
  std::size_t online_count() const noexcept { return online_; }
  // Listed groups in order: {payload, count}.
  std::vector<std::pair<Payload, std::uint32_t>> groups() const;
  std::size_t session_count() const noexcept { return by_session_.size(); }
  // True when one more member (session) would grow a table of at least
  // `min` entries: a reallocation or rehash that moves all of them, tens of
  // milliseconds at a million. The caller moves such a call off a normal
  // scheduler.
  bool member_growth_due(std::size_t min) const noexcept;
  bool session_growth_due(std::size_t min) const noexcept;
  std::size_t memory_bytes() const noexcept;

  // The last change's updates.
  const std::vector<Entry>& entries() const noexcept { return entries_; }
  const std::vector<Payload>& sessions() const noexcept { return session_out_; }
  const std::vector<Op>& ops() const noexcept { return op_out_; }

  // Payloads no longer used; the caller frees them. Clears the list.
  std::vector<Payload> take_released() noexcept;

  // Checks the structure against a recount; throws std::logic_error. O(n).
  void check_invariants() const;

 private:
  struct Member {
    TermKey key;  // sort key + 8-byte user payload
    Payload user = 0;
    std::uint16_t group_size = 0;
    std::uint16_t name_size = 0;
    std::uint8_t status = 0;
    bool online = false;
    bool listed = false;
    bool used = false;
  };
  struct Group {
    std::string key;
    Payload payload;
    std::uint32_t count;
  };
  struct Session {
    Payload payload;
    std::uint64_t seq;
    std::uint32_t range_set;
  };
  struct RangeSet {
    std::vector<std::uint32_t> ranges;    // range ids, ascending by first
    std::vector<std::uint32_t> sessions;  // session slots, ascending by seq
  };
  struct RangeInfo {
    Range range;
    std::uint32_t refs;                     // range sets holding it
    std::vector<std::uint32_t> range_sets;  // those range sets
  };
  // The list during a change: groups with the count their header shows and
  // the members under them in the tree.
  struct LayoutEntry {
    std::string_view key;
    Payload payload;
    std::uint32_t shown;
    std::uint32_t members;
  };
  struct Step {
    OpKind kind;
    std::uint32_t index;
    Item item;
    std::size_t size_before;
  };
  struct Marks {
    std::uint32_t deleted[2];
    std::uint32_t inserted[2];
    std::uint32_t updated[3];
    std::uint8_t deleted_count = 0, inserted_count = 0, updated_count = 0;
    bool member_moved_both = false;  // the member is in deleted and inserted
    std::uint32_t member_old = 0, member_new = 0;
    std::size_t size_before = 0, size_after = 0;
  };

  std::uint32_t new_member_slot();
  std::size_t group_position(std::string_view key) const;  // lower bound in groups_
  std::size_t headers_up_to(std::string_view key) const;
  std::size_t header_index_of(std::string_view key) const;
  static std::size_t header_index(const std::vector<LayoutEntry>& layout, std::string_view key);
  static std::size_t layout_size(const std::vector<LayoutEntry>& layout);
  std::size_t index_in(const std::vector<LayoutEntry>& layout, TermKeyView key,
                       std::string_view group) const;
  Item item_at(const std::vector<LayoutEntry>& layout, std::size_t index) const;
  std::vector<LayoutEntry> layout() const;

  // One side of a change: the member's key and group key, or nothing.
  struct Side {
    const TermKey* key = nullptr;
    std::string_view group;
  };
  void change(Payload user, Side old_side, Side new_side, Payload group_payload, bool redraw);
  static bool changed(const Marks& marks, const Range& range);
  void range_ops(const Step& step, const std::vector<LayoutEntry>& after, const Range& range,
                 std::vector<Op>& out) const;
  void build_updates(std::size_t step_count);
  void clear_updates() noexcept;

  void leave_range_set(std::uint32_t session_slot);
  void forget_order(std::uint32_t session_slot);
  void join_range_set(std::uint32_t session_slot, std::vector<Range> ranges);

  OrderStatisticTree tree_;
  std::vector<Member> members_;
  std::vector<std::uint32_t> free_members_;
  std::unordered_map<std::string, std::uint32_t> by_user_;
  std::vector<Group> groups_;  // listed, non-empty, in list order
  std::size_t online_ = 0;

  std::vector<Session> sessions_;
  std::vector<std::uint32_t> free_sessions_;
  std::unordered_map<std::string, std::uint32_t> by_session_;
  std::uint64_t next_seq_ = 0;
  std::vector<RangeSet> range_sets_;
  std::vector<std::uint32_t> free_range_sets_;
  std::map<std::vector<Range>, std::uint32_t> by_ranges_;
  std::vector<RangeInfo> ranges_;
  std::vector<std::uint32_t> free_ranges_;
  std::map<Range, std::uint32_t> by_range_;
  // The same ranges as a sorted array: a change walks it from its first mark.
  std::vector<std::pair<Range, std::uint32_t>> range_order_;

  std::vector<Payload> released_;
  std::vector<Entry> entries_;
  std::vector<Payload> session_out_;
  std::vector<Op> op_out_;
  // Scratch for a change, kept to avoid allocating per call.
  std::vector<Op> range_op_buffer_;
  std::vector<std::uint64_t> range_stamp_;     // per range id: epoch when changed
  std::vector<std::uint32_t> range_slot_;      // per range id: index among changed ranges
  std::vector<std::uint64_t> set_stamp_;       // per range set: epoch when touched
  std::vector<std::uint32_t> set_next_;        // per range set: next set of the same entry
  std::vector<std::uint32_t> changed_ranges_;  // range ids with ops, ascending
  std::vector<std::uint32_t> chunk_offsets_;   // per (step, changed range): ops begin
  std::vector<Op> candidate_;
  std::vector<std::uint32_t> entry_table_;  // open addressing: entry + 1, 0 when free
  std::vector<std::uint64_t> entry_hash_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> entry_ops_;  // begin, count in op_out_
  std::vector<std::uint32_t> entry_last_set_;
  std::vector<std::uint32_t> touched_sets_;
  std::vector<std::uint32_t> entry_first_set_;
  std::vector<std::uint64_t> entry_first_seq_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> entry_order_;    // first seq, entry
  std::vector<std::pair<std::uint64_t, std::uint32_t>> merge_scratch_;  // seq, session slot
  // Every session in subscription order ({seq, slot}; slot UINT32_MAX for a
  // session that left), so a large entry lists its sessions without a sort.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> session_order_;
  std::size_t order_holes_ = 0;
  std::vector<std::uint64_t> session_mark_;
  std::uint64_t merge_mark_ = 0;
  std::uint64_t epoch_ = 0;
  bool adopted_group_ = false;
};

}  // namespace switchboard::core
