#include "core/sorted_set/order_statistic_tree.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/byte_order.hpp"
#include "core/memory.hpp"

namespace switchboard::core {

namespace detail::order_statistic_tree {

static_assert(std::endian::native == std::endian::little,
              "key words tag inline keys in the low byte of a word");

constexpr std::size_t kLeafCapacity = 64;
constexpr std::size_t kInnerChildren = 64;
constexpr std::size_t kInnerKeys = kInnerChildren - 1;
constexpr std::size_t kMaxPrefix = 28;
// Prefix storage rounded up to whole 8-byte words, so the prefix compares a
// word at a time without reading past the array.
constexpr std::size_t kPrefixStorage = 32;
constexpr std::size_t kMaxDepth = 40;
// Low minimums (a quarter) and merging only into a 3/4 full node keep
// alternating inserts and erases from splitting and merging the same node.
constexpr std::size_t kLeafMinimum = kLeafCapacity / 4;
constexpr std::size_t kInnerMinimumChildren = kInnerChildren / 4;
constexpr std::size_t kLeafMergeLimit = kLeafCapacity * 3 / 4;
constexpr std::size_t kInnerMergeLimit = kInnerChildren * 3 / 4;
// Separators in inner nodes: up to 7 bytes live in their key word.
constexpr std::size_t kInlineKeyBytes = 7;
// Subtree counts are 32-bit to keep inner nodes small.
constexpr std::size_t kMaxItems = std::numeric_limits<std::uint32_t>::max();

// A leaf keeps its keys' bytes in its own arena, so finding a key reads one
// node rather than a node and then a separate allocation per key. 2.5 KiB
// holds 64 member-list keys (~28 bytes each) and is a mimalloc size class.
constexpr std::size_t kLeafBytes = 2560;
// Keys longer than this are kept out of line, which bounds an arena entry
// and so guarantees that a full leaf can always be split in two.
constexpr std::size_t kMaxArenaKey = 128;
constexpr std::size_t kMaxEntryBytes = 1 + 2 * 2 + kMaxArenaKey;  // tag, two LEB128 sizes, bytes

// Arena entries, by their first byte:
//   < 0x80   a key of that many bytes, all comparable, follows;
//   0x80     LEB128 comparable size, LEB128 side size, then the bytes;
//   0x81     an unaligned pointer to [LEB128 comparable][LEB128 side][bytes]
//            in core::allocate memory (keys longer than kMaxArenaKey).
constexpr std::uint8_t kEntrySized = 0x80;
constexpr std::uint8_t kEntryOutOfLine = 0x81;
constexpr std::size_t kOutOfLineEntryBytes = 1 + sizeof(std::uintptr_t);

struct Node {
  std::uint16_t count = 0;  // leaf: keys; inner: separators (children = count + 1)
  bool is_leaf = false;
  std::uint8_t prefix_length = 0;  // every key in the node starts with these bytes
  std::uint8_t prefix[kPrefixStorage] = {};
};

// Abbreviation slots past a node's keys hold kPastLastKey (and running
// totals past its children kPastLastChild), so a binary search always spans
// all 64 slots: six steps, unrolled, with no loop or bounds to check.
constexpr std::uint64_t kPastLastKey = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kPastLastChild = std::numeric_limits<std::uint32_t>::max();
constexpr std::size_t kSearchSlots = 64;
static_assert(kLeafCapacity == kSearchSlots && kInnerChildren == kSearchSlots);

// Ordered by use: a descent by index reads the header and offsets, a search
// also the abbreviations (each group prefetched together), then one arena
// entry.
struct LeafIndexed : Node {
  Leaf* next = nullptr;
  std::uint16_t arena_end = 0;           // entries are appended here
  std::uint16_t arena_live = 0;          // bytes of entries still in use
  std::uint16_t offsets[kLeafCapacity];  // of each key's entry in the arena
};

struct LeafFixed : LeafIndexed {
  std::uint64_t abbrev[kLeafCapacity];
};

constexpr std::size_t kArenaBytes = kLeafBytes - sizeof(LeafFixed);
static_assert(3 * kMaxEntryBytes <= kArenaBytes, "a split must always find room on both sides");
static_assert(kArenaBytes <= std::numeric_limits<std::uint16_t>::max());

struct Leaf : LeafFixed {
  std::uint8_t arena[kArenaBytes];
};
static_assert(sizeof(Leaf) == kLeafBytes);

// Key words of separators: an odd word holds up to 7 comparable bytes inline
// (low byte = size * 2 + 1, no side data); an even word points to
// [LEB128 comparable size][LEB128 side size][bytes] from core::allocate.
//
// Ordered by use: a descent by index reads the header and running totals,
// a descent by key also the abbreviations (each group prefetched together),
// then one child. The separator keys are read only to break ties.
struct InnerIndexed : Node {
  std::uint32_t ends[kInnerChildren];  // items under children 0..i (a running total)
};

struct InnerSearched : InnerIndexed {
  std::uint64_t abbrev[kSearchSlots];  // the last slot is always kPastLastKey
};

struct Inner : InnerSearched {
  Node* children[kInnerChildren];
  std::uint64_t keys[kInnerKeys];  // keys[i] <= every key under children[i + 1]
};

struct Step {
  Inner* node;
  std::size_t child;
};

struct Path {
  Step steps[kMaxDepth];
  std::size_t depth = 0;
};

// Everything a cascade of splits will need, allocated before anything
// changes so an insert either completes or leaves the tree untouched.
struct SplitReserve {
  Leaf* leaf = nullptr;
  std::uint64_t separator = 0;
  Inner* inners[kMaxDepth + 1];  // the first inner_count are set
  std::size_t inner_count = 0;
  std::size_t inners_used = 0;

  Inner* take_inner() noexcept { return inners[inners_used++]; }
};

namespace {

std::size_t leb128_size(std::size_t value) noexcept {
  std::size_t length = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++length;
  }
  return length;
}

std::uint8_t* put_leb128(std::uint8_t* out, std::size_t value) noexcept {
  while (value >= 0x80) {
    *out++ = static_cast<std::uint8_t>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<std::uint8_t>(value);
  return out;
}

std::size_t get_leb128(const std::uint8_t*& in) noexcept {
  std::size_t value = 0;
  for (unsigned shift = 0;; shift += 7) {
    const std::uint8_t byte = *in++;
    value |= static_cast<std::size_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return value;
  }
}

bool is_inline(std::uint64_t word) noexcept { return (word & 1) != 0; }

const std::uint8_t* payload_of(std::uint64_t word) noexcept {
  return reinterpret_cast<const std::uint8_t*>(static_cast<std::uintptr_t>(word));
}

TermKeyView payload_view(const std::uint8_t* cursor) noexcept {
  const std::size_t comparable = get_leb128(cursor);
  const std::size_t side = get_leb128(cursor);
  return {cursor, comparable, comparable + side};
}

std::size_t payload_bytes(const std::uint8_t* begin) noexcept {
  const std::uint8_t* cursor = begin;
  const std::size_t comparable = get_leb128(cursor);
  const std::size_t side = get_leb128(cursor);
  return static_cast<std::size_t>(cursor - begin) + comparable + side;
}

// `word` must be the stored word itself: inline keys are read in place.
TermKeyView key_view(const std::uint64_t& word) noexcept {
  if (is_inline(word)) {
    const std::size_t size = (word & 0xFF) >> 1;
    return {reinterpret_cast<const std::uint8_t*>(&word) + 1, size, size};
  }
  return payload_view(payload_of(word));
}

const std::uint8_t* out_of_line_payload(const std::uint8_t* entry) noexcept {
  std::uintptr_t address = 0;
  std::memcpy(&address, entry + 1, sizeof(address));
  return reinterpret_cast<const std::uint8_t*>(address);
}

TermKeyView entry_view(const std::uint8_t* entry) noexcept {
  const std::uint8_t head = entry[0];
  if (head < kEntrySized) [[likely]]
    return {entry + 1, head, head};
  return payload_view(head == kEntryOutOfLine ? out_of_line_payload(entry) : entry + 1);
}

std::size_t entry_bytes(const std::uint8_t* entry) noexcept {
  const std::uint8_t head = entry[0];
  if (head < kEntrySized) return 1u + head;
  if (head == kEntryOutOfLine) return kOutOfLineEntryBytes;
  return 1 + payload_bytes(entry + 1);
}

TermKeyView node_key(const Inner& node, std::size_t i) noexcept { return key_view(node.keys[i]); }

TermKeyView node_key(const Leaf& node, std::size_t i) noexcept {
  return entry_view(node.arena + node.offsets[i]);
}

std::uint64_t load_big_endian(const std::uint8_t* bytes) noexcept {
  return core::load_big_endian<std::uint64_t>(bytes);
}

// Eight bytes starting at `offset`, big-endian, zero padded: comparing two
// abbreviations as integers orders them like their bytes.
std::uint64_t abbreviate(const std::uint8_t* bytes, std::size_t size, std::size_t offset) noexcept {
  if (offset + 8 <= size) [[likely]]
    return load_big_endian(bytes + offset);
  if (offset >= size) return 0;
  std::uint64_t word = 0;
  for (std::size_t i = offset; i < size; ++i) {
    word |= static_cast<std::uint64_t>(bytes[i]) << (56 - 8 * (i - offset));
  }
  return word;
}

std::uint64_t abbreviate(TermKeyView key, std::size_t offset) noexcept {
  return abbreviate(key.data(), key.comparable_size(), offset);
}

// memcmp order of the comparable parts past their first `skip` bytes, which
// both have and share; a word at a time, the last word overlapping.
int compare_after(TermKeyView a, TermKeyView b, std::size_t skip) noexcept {
  const std::uint8_t* x = a.data() + skip;
  const std::uint8_t* y = b.data() + skip;
  const std::size_t x_size = a.comparable_size() - skip;
  const std::size_t y_size = b.comparable_size() - skip;
  const std::size_t common = std::min(x_size, y_size);
  if (common >= 8) {
    std::size_t i = 0;
    for (; i + 8 <= common; i += 8) {
      const std::uint64_t u = load_big_endian(x + i);
      const std::uint64_t v = load_big_endian(y + i);
      if (u != v) return u < v ? -1 : 1;
    }
    if (i < common) {
      const std::uint64_t u = load_big_endian(x + common - 8);
      const std::uint64_t v = load_big_endian(y + common - 8);
      if (u != v) return u < v ? -1 : 1;
    }
  } else {
    for (std::size_t i = 0; i < common; ++i) {
      if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
  }
  // Encodings are prefix-free, so equal common bytes with different lengths
  // only happens for malformed input; ordering by length keeps it total.
  if (x_size == y_size) return 0;
  return x_size < y_size ? -1 : 1;
}

std::size_t common_prefix(const std::uint8_t* a, const std::uint8_t* b,
                          std::size_t limit) noexcept {
  std::size_t length = 0;
  while (length < limit && a[length] == b[length]) ++length;
  return length;
}

// Requests the cache lines of `Bytes` bytes from `start` at once, so their
// misses overlap instead of following one another.
template <std::size_t Bytes>
void prefetch_lines(const void* start) noexcept {
  const auto* bytes = static_cast<const char*>(start);
  for (std::size_t offset = 0; offset < Bytes; offset += 64) __builtin_prefetch(bytes + offset);
}

// What a descent by key reads of the next node before its choice: for a
// leaf everything but the arena, for an inner node everything but the
// children and separators. Running totals are included: an insert or erase
// updates them, and a rank reads one.
void prefetch_for_search(const Node* node, bool is_leaf) noexcept {
  if (is_leaf) {
    prefetch_lines<sizeof(LeafFixed)>(node);
  } else {
    prefetch_lines<sizeof(InnerSearched)>(node);
  }
}

// What a descent by index reads of the next node before its choice.
void prefetch_for_index(const Node* node, bool is_leaf) noexcept {
  if (is_leaf) {
    prefetch_lines<sizeof(LeafIndexed)>(node);
  } else {
    prefetch_lines<sizeof(InnerIndexed)>(node);
  }
}

// Index of the first of kSearchSlots ascending values that is not less than
// `target`, without branches: each step's outcome is unpredictable and a
// misprediction costs more than the arithmetic.
template <class Value>
[[gnu::always_inline]] inline std::size_t lower_bound(const Value* values, Value target) noexcept {
  std::size_t index = 0;
  index += values[index + 31] < target ? 32 : 0;
  index += values[index + 15] < target ? 16 : 0;
  index += values[index + 7] < target ? 8 : 0;
  index += values[index + 3] < target ? 4 : 0;
  index += values[index + 1] < target ? 2 : 0;
  index += values[index] < target ? 1 : 0;
  // Six steps tell 64 outcomes apart; a full leaf has 65.
  if (index == kSearchSlots - 1 && values[index] < target) ++index;
  return index;
}

// Orders `probe` against the prefix all keys of `node` share: negative when
// it sorts before every key, positive after, zero when it has the prefix.
[[gnu::always_inline]] inline int order_against_prefix(const Node& node, const std::uint8_t* probe,
                                                       std::size_t probe_size) noexcept {
  const std::size_t length = node.prefix_length;
  if (length <= 8 && probe_size >= 8) [[likely]] {
    const std::uint64_t mask =
        length == 8 ? ~std::uint64_t{0} : ~(~std::uint64_t{0} >> (8 * length));
    const std::uint64_t a = load_big_endian(probe) & mask;
    const std::uint64_t b = load_big_endian(node.prefix) & mask;
    if (a != b) return a < b ? -1 : 1;
    return 0;
  }
  for (std::size_t offset = 0; offset < length; offset += 8) {
    const std::size_t remaining = length - offset;
    const std::uint64_t mask =
        remaining >= 8 ? ~std::uint64_t{0} : ~(~std::uint64_t{0} >> (8 * remaining));
    const std::uint64_t a = abbreviate(probe, probe_size, offset) & mask;
    const std::uint64_t b = load_big_endian(node.prefix + offset) & mask;
    // Zero padding past a short probe can only make it compare lower.
    if (a != b) return a < b ? -1 : 1;
  }
  return probe_size < length ? -1 : 0;
}

// From `low`, the first key whose abbreviation equals the probe's, the full
// keys decide.
template <class NodeType>
[[gnu::always_inline]] inline std::size_t search_ties(const NodeType& node, TermKeyView probe,
                                                      bool upper, bool& found,
                                                      std::size_t low) noexcept {
  const std::size_t count = node.count;
  const std::uint64_t target = node.abbrev[low];
  std::size_t high = low + 1;
  while (high < count && node.abbrev[high] == target) ++high;
  // Past the prefix the abbreviation's 8 bytes are equal too, unless zero
  // padding made them look so.
  const std::size_t skip = node.prefix_length;
  const std::size_t equal = probe.comparable_size() >= skip + 8 ? skip + 8 : skip;
  while (low < high) {
    const std::size_t middle = low + (high - low) / 2;
    const TermKeyView key = node_key(node, middle);
    const int order = compare_after(key, probe, key.comparable_size() >= equal ? equal : skip);
    if (order == 0 && !upper) {
      found = true;  // keys are unique, so this is the lower bound
      return middle;
    }
    if (order <= 0) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

// Ties are rare in inner nodes (a leaf search that finds its key has one),
// so there they are broken out of line, keeping the common path small.
[[gnu::noinline]] std::size_t search_inner_ties(const Inner& node, TermKeyView probe,
                                                std::size_t low) noexcept {
  bool found = false;
  return search_ties(node, probe, true, found, low);
}

// Key arrays are searched the same way in leaves and inner nodes: prefix,
// then abbreviations, then full keys only among equal abbreviations.
template <class NodeType>
std::size_t search(const NodeType& node, TermKeyView probe, bool upper, bool& found) noexcept {
  found = false;
  const std::size_t count = node.count;
  const std::uint8_t* probe_bytes = probe.data();
  const std::size_t probe_size = probe.comparable_size();
  const int prefix_order = order_against_prefix(node, probe_bytes, probe_size);
  if (prefix_order != 0) return prefix_order < 0 ? 0 : count;
  const std::uint64_t target = abbreviate(probe_bytes, probe_size, node.prefix_length);
  const std::size_t low =
      lower_bound(node.abbrev, target);  // <= count: later slots hold the maximum
  if (low == count || node.abbrev[low] != target) return low;
  if constexpr (std::is_same_v<NodeType, Inner>) {
    return upper ? search_inner_ties(node, probe, low)
                 : search_ties(node, probe, upper, found, low);
  } else {
    return search_ties(node, probe, upper, found, low);
  }
}

// Lowers the shared prefix to `new_length` bytes. The dropped prefix bytes
// and the old abbreviations give the new abbreviations without reading keys.
template <class NodeType>
void shrink_prefix(NodeType& node, std::size_t new_length) noexcept {
  const std::size_t old_length = node.prefix_length;
  if (new_length >= old_length) return;
  const std::size_t gap = old_length - new_length;
  const std::uint64_t head = abbreviate(node.prefix, old_length, new_length);
  for (std::size_t i = 0; i < node.count; ++i) {
    node.abbrev[i] = gap >= 8 ? head : head | (node.abbrev[i] >> (8 * gap));
  }
  std::memset(node.prefix + new_length, 0, kPrefixStorage - new_length);
  node.prefix_length = static_cast<std::uint8_t>(new_length);
}

void set_prefix(Node& node, const std::uint8_t* bytes, std::size_t length) noexcept {
  std::memset(node.prefix, 0, kPrefixStorage);
  if (length != 0) std::memcpy(node.prefix, bytes, length);
  node.prefix_length = static_cast<std::uint8_t>(length);
}

// Makes the node's prefix one that `key` shares too (before `key` joins it).
template <class NodeType>
void cover_key(NodeType& node, TermKeyView key) noexcept {
  if (node.count == 0) {
    set_prefix(node, key.data(), std::min(key.comparable_size(), kMaxPrefix));
    return;
  }
  const std::size_t limit = std::min<std::size_t>(node.prefix_length, key.comparable_size());
  shrink_prefix(node, common_prefix(node.prefix, key.data(), limit));
}

// Grows the prefix to everything the first and last key share, re-reading
// keys only when it does grow (after splits and merges).
template <class NodeType>
void refresh_prefix(NodeType& node) noexcept {
  const std::size_t count = node.count;
  if (count == 0) {
    set_prefix(node, nullptr, 0);
    return;
  }
  const TermKeyView first = node_key(node, 0);
  const TermKeyView last = node_key(node, count - 1);
  const std::size_t limit = std::min({first.comparable_size(), last.comparable_size(), kMaxPrefix});
  const std::size_t length = common_prefix(first.data(), last.data(), limit);
  if (length <= node.prefix_length) return;
  set_prefix(node, first.data(), length);
  if constexpr (std::is_same_v<NodeType, Inner>) {
    for (std::size_t i = 0; i < count; ++i) {
      if (!is_inline(node.keys[i])) __builtin_prefetch(payload_of(node.keys[i]));
    }
  }
  for (std::size_t i = 0; i < count; ++i) node.abbrev[i] = abbreviate(node_key(node, i), length);
}

// Brings two sibling nodes (and optionally a key moving between them) to
// one common prefix so abbreviations can move between them unchanged.
template <class NodeType>
void align_prefixes(NodeType& left, NodeType& right, const TermKeyView* extra = nullptr) noexcept {
  std::size_t length =
      common_prefix(left.prefix, right.prefix, std::min(left.prefix_length, right.prefix_length));
  if (extra != nullptr) {
    length = common_prefix(left.prefix, extra->data(), std::min(length, extra->comparable_size()));
  }
  shrink_prefix(left, length);
  shrink_prefix(right, length);
}

// ---- inner node counts -------------------------------------------------------
// Inner nodes keep running totals so a rank is one read and a descent by
// index a binary search; structural changes go through per-child counts.

std::uint32_t items_before(const Inner& node, std::size_t child) noexcept {
  return child == 0 ? 0 : node.ends[child - 1];
}

std::uint32_t total_items(const Inner& node) noexcept { return node.ends[node.count]; }

std::uint32_t total_items_of_child(const Inner& node, std::size_t child) noexcept {
  return node.ends[child] - items_before(node, child);
}

constexpr std::uint32_t kNoNeighbour = std::numeric_limits<std::uint32_t>::max() / 2;

void counts_of(const Inner& node, std::uint32_t* counts) noexcept {
  std::uint32_t previous = 0;
  for (std::size_t i = 0; i <= node.count; ++i) {
    counts[i] = node.ends[i] - previous;
    previous = node.ends[i];
  }
}

void set_counts(Inner& node, const std::uint32_t* counts, std::size_t children) noexcept {
  std::uint32_t total = 0;
  for (std::size_t i = 0; i < children; ++i) {
    total += counts[i];
    node.ends[i] = total;
  }
}

// An item joined (+1) or left (-1) the subtree of `child`.
void adjust_ends(Inner& node, std::size_t child, std::uint32_t delta) noexcept {
  const std::size_t children = node.count + 1u;
  for (std::size_t i = child; i < children; ++i) node.ends[i] += delta;
}

// Removes child `right` after its items were counted into child `right - 1`.
void drop_child_end(Inner& node, std::size_t right) noexcept {
  std::memmove(node.ends + right - 1, node.ends + right,
               (node.count + 1u - right) * sizeof(std::uint32_t));
}

// Refills the slots past the node's keys (and children) after it shrank.
void seal(Leaf& leaf) noexcept {
  std::fill(leaf.abbrev + leaf.count, leaf.abbrev + kSearchSlots, kPastLastKey);
}

void seal(Inner& inner) noexcept {
  std::fill(inner.abbrev + inner.count, inner.abbrev + kSearchSlots, kPastLastKey);
  std::fill(inner.ends + inner.count + 1, inner.ends + kSearchSlots, kPastLastChild);
}

std::uint64_t sum(const std::uint32_t* counts, std::size_t count) noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < count; ++i) total += counts[i];
  return total;
}

// ---- leaf arenas ---------------------------------------------------------------

// One key's arena entry, wherever it currently is, and its abbreviation.
struct EntryRef {
  std::uint64_t abbrev;
  const std::uint8_t* bytes;
  std::size_t size;
};

// Rewrites the arena with the live entries in key order, leaving the free
// space in one piece at the end.
void compact(Leaf& leaf) noexcept {
  std::uint8_t scratch[kArenaBytes];
  std::size_t end = 0;
  for (std::size_t i = 0; i < leaf.count; ++i) {
    const std::uint8_t* entry = leaf.arena + leaf.offsets[i];
    const std::size_t size = entry_bytes(entry);
    std::memcpy(scratch + end, entry, size);
    leaf.offsets[i] = static_cast<std::uint16_t>(end);
    end += size;
  }
  if (end != 0) std::memcpy(leaf.arena, scratch, end);
  leaf.arena_end = static_cast<std::uint16_t>(end);
  leaf.arena_live = static_cast<std::uint16_t>(end);
}

// Where `size` more bytes of entry go; the caller checked arena_live has room.
std::uint16_t take_arena(Leaf& leaf, std::size_t size) noexcept {
  if (leaf.arena_end + size > kArenaBytes) compact(leaf);
  const std::uint16_t offset = leaf.arena_end;
  leaf.arena_end = static_cast<std::uint16_t>(leaf.arena_end + size);
  leaf.arena_live = static_cast<std::uint16_t>(leaf.arena_live + size);
  return offset;
}

// Lays `refs[0, split)` out in `left` and `refs[split, count)` in `right`,
// each with a compact arena. The refs may point into either arena.
void lay_out(Leaf& left, Leaf& right, const EntryRef* refs, std::size_t count,
             std::size_t split) noexcept {
  std::uint8_t left_arena[kArenaBytes];
  std::uint8_t right_arena[kArenaBytes];
  std::size_t left_end = 0;
  for (std::size_t i = 0; i < split; ++i) {
    std::memcpy(left_arena + left_end, refs[i].bytes, refs[i].size);
    left.offsets[i] = static_cast<std::uint16_t>(left_end);
    left.abbrev[i] = refs[i].abbrev;
    left_end += refs[i].size;
  }
  std::size_t right_end = 0;
  for (std::size_t i = split; i < count; ++i) {
    std::memcpy(right_arena + right_end, refs[i].bytes, refs[i].size);
    right.offsets[i - split] = static_cast<std::uint16_t>(right_end);
    right.abbrev[i - split] = refs[i].abbrev;
    right_end += refs[i].size;
  }
  std::memcpy(left.arena, left_arena, left_end);
  std::memcpy(right.arena, right_arena, right_end);
  left.count = static_cast<std::uint16_t>(split);
  left.arena_end = left.arena_live = static_cast<std::uint16_t>(left_end);
  right.count = static_cast<std::uint16_t>(count - split);
  right.arena_end = right.arena_live = static_cast<std::uint16_t>(right_end);
  seal(left);
  seal(right);
}

// A split point for `count` entries near `preferred` that leaves both sides'
// entries within an arena, or 0 when there is none.
std::size_t fitting_split(const std::size_t* sizes, std::size_t count,
                          std::size_t preferred) noexcept {
  std::size_t total = 0;
  for (std::size_t i = 0; i < count; ++i) total += sizes[i];
  std::size_t split = preferred;
  std::size_t left = 0;
  for (std::size_t i = 0; i < split; ++i) left += sizes[i];
  while (split > 1 && left > kArenaBytes) left -= sizes[--split];
  while (split + 1 < count && total - left > kArenaBytes) left += sizes[split++];
  if (split == 0 || split >= count || left > kArenaBytes || total - left > kArenaBytes) return 0;
  return split;
}

}  // namespace
}  // namespace detail::order_statistic_tree

using namespace detail::order_statistic_tree;

// ---- allocation --------------------------------------------------------------

OrderStatisticTree::Leaf* OrderStatisticTree::new_leaf() {
  void* memory = core::allocate(sizeof(Leaf));
  node_bytes_ += sizeof(Leaf);
  // Default-initialised: the header is set, the arrays and the arena are
  // written before they are read (zeroing 2.5 KiB per split shows up).
  auto* leaf = new (memory) Leaf;
  leaf->is_leaf = true;
  seal(*leaf);
  return leaf;
}

OrderStatisticTree::Inner* OrderStatisticTree::new_inner() {
  void* memory = core::allocate(sizeof(Inner));
  node_bytes_ += sizeof(Inner);
  auto* inner = new (memory) Inner();
  seal(*inner);
  return inner;
}

void OrderStatisticTree::free_node(Node* node) noexcept {
  if (node == nullptr) return;
  const std::size_t bytes = node->is_leaf ? sizeof(Leaf) : sizeof(Inner);
  node_bytes_ -= bytes;
  core::deallocate(node, bytes);
}

// A copy of `key` as [LEB128 comparable size][LEB128 side size][bytes].
std::uint8_t* OrderStatisticTree::copy_payload(TermKeyView key) {
  const std::size_t comparable = key.comparable_size();
  const std::size_t side = key.size() - comparable;
  const std::size_t bytes = leb128_size(comparable) + leb128_size(side) + key.size();
  auto* payload = static_cast<std::uint8_t*>(core::allocate(bytes));
  key_bytes_ += bytes;
  std::uint8_t* cursor = put_leb128(payload, comparable);
  cursor = put_leb128(cursor, side);
  std::memcpy(cursor, key.data(), key.size());
  return payload;
}

void OrderStatisticTree::free_payload(const std::uint8_t* payload) noexcept {
  const std::size_t bytes = payload_bytes(payload);
  key_bytes_ -= bytes;
  core::deallocate(const_cast<std::uint8_t*>(payload), bytes);
}

std::uint64_t OrderStatisticTree::copy_key(TermKeyView key) {
  const std::size_t comparable = key.comparable_size();
  if (key.size() == comparable && comparable <= kInlineKeyBytes) {
    std::uint8_t bytes[8] = {};
    bytes[0] = static_cast<std::uint8_t>(comparable * 2 + 1);
    if (comparable != 0) std::memcpy(bytes + 1, key.data(), comparable);
    std::uint64_t word = 0;
    std::memcpy(&word, bytes, sizeof(word));
    return word;
  }
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(copy_payload(key)));
}

void OrderStatisticTree::free_key(std::uint64_t key) noexcept {
  if (is_inline(key) || key == 0) return;
  free_payload(payload_of(key));
}

std::size_t OrderStatisticTree::make_entry(TermKeyView key, std::uint8_t* entry) {
  const std::size_t size = key.size();
  const std::size_t comparable = key.comparable_size();
  if (size == comparable && size < kEntrySized) {
    entry[0] = static_cast<std::uint8_t>(size);
    if (size != 0) std::memcpy(entry + 1, key.data(), size);
    return 1 + size;
  }
  if (size <= kMaxArenaKey) {
    entry[0] = kEntrySized;
    std::uint8_t* cursor = put_leb128(entry + 1, comparable);
    cursor = put_leb128(cursor, size - comparable);
    std::memcpy(cursor, key.data(), size);
    return static_cast<std::size_t>(cursor - entry) + size;
  }
  const auto address = reinterpret_cast<std::uintptr_t>(copy_payload(key));
  entry[0] = kEntryOutOfLine;
  std::memcpy(entry + 1, &address, sizeof(address));
  return kOutOfLineEntryBytes;
}

void OrderStatisticTree::free_entry(const std::uint8_t* entry) noexcept {
  if (entry[0] == kEntryOutOfLine) free_payload(out_of_line_payload(entry));
}

void OrderStatisticTree::destroy_subtree(Node* node) noexcept {
  if (node == nullptr) return;
  if (node->is_leaf) {
    auto* leaf = static_cast<Leaf*>(node);
    for (std::size_t i = 0; i < leaf->count; ++i) free_entry(leaf->arena + leaf->offsets[i]);
  } else {
    auto* inner = static_cast<Inner*>(node);
    for (std::size_t i = 0; i < inner->count; ++i) free_key(inner->keys[i]);
    for (std::size_t i = 0; i <= inner->count; ++i) destroy_subtree(inner->children[i]);
  }
  free_node(node);
}

// ---- special members -----------------------------------------------------------

OrderStatisticTree::OrderStatisticTree(const OrderStatisticTree& other) {
  OrderStatisticTree copy;  // destroyed, with whatever it holds, if copying throws
  for (Cursor cursor = other.cursor_at(0); !cursor.done(); cursor.advance()) {
    copy.append_greatest(cursor.key());
  }
  swap(copy);
}

OrderStatisticTree::OrderStatisticTree(OrderStatisticTree&& other) noexcept { swap(other); }

OrderStatisticTree& OrderStatisticTree::operator=(const OrderStatisticTree& other) {
  if (this != &other) {
    OrderStatisticTree copy(other);
    swap(copy);
  }
  return *this;
}

OrderStatisticTree& OrderStatisticTree::operator=(OrderStatisticTree&& other) noexcept {
  if (this != &other) {
    clear();
    swap(other);
  }
  return *this;
}

OrderStatisticTree::~OrderStatisticTree() { clear(); }

void OrderStatisticTree::swap(OrderStatisticTree& other) noexcept {
  std::swap(root_, other.root_);
  std::swap(size_, other.size_);
  std::swap(height_, other.height_);
  std::swap(node_bytes_, other.node_bytes_);
  std::swap(key_bytes_, other.key_bytes_);
}

void OrderStatisticTree::clear() noexcept {
  destroy_subtree(root_);
  root_ = nullptr;
  size_ = 0;
  height_ = 0;
}

// ---- lookups -----------------------------------------------------------------------

OrderStatisticTree::Leaf* OrderStatisticTree::descend(TermKeyView key, Path* path,
                                                      std::size_t& rank) const noexcept {
  rank = 0;
  Node* node = root_;
  for (std::size_t level = 0; level < height_; ++level) {
    auto* inner = static_cast<Inner*>(node);
    bool unused = false;
    // Keys equal to a separator live to its right.
    const std::size_t child = search(*inner, key, true, unused);
    node = inner->children[child];
    prefetch_for_search(node, level + 1 == height_);
    rank += items_before(*inner, child);
    if (path != nullptr) path->steps[path->depth++] = Step{inner, child};
  }
  return static_cast<Leaf*>(node);
}

OrderStatisticTree::Leaf* OrderStatisticTree::descend_to_index(
    std::size_t index, Path* path, std::size_t& position) const noexcept {
  Node* node = root_;
  auto remaining = static_cast<std::uint32_t>(index);  // index < size_ <= kMaxItems
  for (std::size_t level = 0; level < height_; ++level) {
    auto* inner = static_cast<Inner*>(node);
    // The first child whose running total passes the index.
    const std::size_t child = lower_bound(inner->ends, remaining + 1);
    remaining -= items_before(*inner, child);
    if (path != nullptr) path->steps[path->depth++] = Step{inner, child};
    node = inner->children[child];
    prefetch_for_index(node, level + 1 == height_);
  }
  position = remaining;
  return static_cast<Leaf*>(node);
}

std::optional<std::size_t> OrderStatisticTree::find_index(TermKeyView key) const noexcept {
  if (root_ == nullptr) return std::nullopt;
  std::size_t rank = 0;
  const Leaf* leaf = descend(key, nullptr, rank);
  bool found = false;
  const std::size_t position = search(*leaf, key, false, found);
  if (!found) return std::nullopt;
  return rank + position;
}

std::size_t OrderStatisticTree::lower_bound_index(TermKeyView key) const noexcept {
  if (root_ == nullptr) return 0;
  std::size_t rank = 0;
  const Leaf* leaf = descend(key, nullptr, rank);
  bool found = false;
  return rank + search(*leaf, key, false, found);
}

std::size_t OrderStatisticTree::upper_bound_index(TermKeyView key) const noexcept {
  if (root_ == nullptr) return 0;
  std::size_t rank = 0;
  const Leaf* leaf = descend(key, nullptr, rank);
  bool found = false;
  return rank + search(*leaf, key, true, found);
}

TermKeyView OrderStatisticTree::at(std::size_t index) const {
  if (index >= size_) throw std::out_of_range("OrderStatisticTree::at: index out of range");
  std::size_t position = 0;
  const Leaf* leaf = descend_to_index(index, nullptr, position);
  return node_key(*leaf, position);
}

OrderStatisticTree::Cursor OrderStatisticTree::cursor_at(std::size_t index) const noexcept {
  Cursor cursor;
  if (index >= size_) return cursor;
  cursor.leaf_ = descend_to_index(index, nullptr, cursor.position_);
  return cursor;
}

TermKeyView OrderStatisticTree::Cursor::key() const noexcept { return node_key(*leaf_, position_); }

void OrderStatisticTree::Cursor::advance() noexcept {
  if (++position_ < leaf_->count) return;
  leaf_ = leaf_->next;
  position_ = 0;
  if (leaf_ != nullptr) __builtin_prefetch(leaf_->next);
}

// ---- insertion -----------------------------------------------------------------------

OrderStatisticTree::InsertResult OrderStatisticTree::insert(TermKeyView key) {
  if (root_ == nullptr) {
    append_greatest(key);
    return {0, true};
  }
  Path path;
  std::size_t rank = 0;
  Leaf* leaf = descend(key, &path, rank);
  // Where a new key's bytes will go: its cache line loads while the leaf
  // is searched instead of after.
  __builtin_prefetch(leaf->arena + std::min<std::size_t>(leaf->arena_end, kArenaBytes - 1), 1);
  bool found = false;
  const std::size_t position = search(*leaf, key, false, found);
  if (found) return {rank + position, false};
  insert_at(path, leaf, position, key);
  return {rank + position, true};
}

void OrderStatisticTree::append_greatest(TermKeyView key) {
  if (root_ == nullptr) {
    root_ = new_leaf();
    try {
      Path path;
      insert_at(path, static_cast<Leaf*>(root_), 0, key);
    } catch (...) {
      clear();
      throw;
    }
    return;
  }
  Path path;
  Node* node = root_;
  while (!node->is_leaf) {
    auto* inner = static_cast<Inner*>(node);
    path.steps[path.depth++] = Step{inner, inner->count};
    node = inner->children[inner->count];
  }
  auto* leaf = static_cast<Leaf*>(node);
  insert_at(path, leaf, leaf->count, key);
}

namespace {

bool on_left_edge(const Path& path, std::size_t levels) noexcept {
  for (std::size_t i = 0; i < levels; ++i) {
    if (path.steps[i].child != 0) return false;
  }
  return true;
}

bool on_right_edge(const Path& path, std::size_t levels) noexcept {
  for (std::size_t i = 0; i < levels; ++i) {
    if (path.steps[i].child != path.steps[i].node->count) return false;
  }
  return true;
}

}  // namespace

void OrderStatisticTree::insert_at(Path& path, Leaf* leaf, std::size_t position, TermKeyView key) {
  if (size_ == kMaxItems) throw std::length_error("OrderStatisticTree: too many items");
  std::uint8_t entry[kMaxEntryBytes];
  const std::size_t entry_size = make_entry(key, entry);
  const std::size_t count = leaf->count;
  const bool split = count == kLeafCapacity || leaf->arena_live + entry_size > kArenaBytes;
  SplitReserve reserve;
  // How many of the count + 1 keys stay left. Growing at either end of the
  // whole set (ascending or descending inserts, bulk builds) keeps the old
  // leaf full instead of leaving half-empty leaves behind.
  std::size_t keep_left = 0;
  if (split) {
    std::size_t sizes[kLeafCapacity + 1];
    for (std::size_t i = 0, from = 0; i <= count; ++i) {
      sizes[i] = i == position ? entry_size : entry_bytes(leaf->arena + leaf->offsets[from++]);
    }
    if (position == count && leaf->next == nullptr) {
      keep_left = count;
    } else if (position == 0 && on_left_edge(path, path.depth)) {
      keep_left = 1;
    } else {
      keep_left = fitting_split(sizes, count + 1, (count + 1) / 2);
    }
    if (keep_left == 0) {  // cannot happen: an entry is at most a third of an arena
      free_entry(entry);
      throw std::logic_error("OrderStatisticTree: no split point fits");
    }
    try {
      reserve.leaf = new_leaf();
      const TermKeyView right_first =
          keep_left == position ? key
                                : node_key(*leaf, keep_left < position ? keep_left : keep_left - 1);
      reserve.separator = copy_key(right_first);
      std::size_t level = path.depth;
      while (level > 0 && path.steps[level - 1].node->count == kInnerKeys) {
        reserve.inners[reserve.inner_count++] = new_inner();
        --level;
      }
      if (level == 0) reserve.inners[reserve.inner_count++] = new_inner();  // a new root
    } catch (...) {
      free_node(reserve.leaf);
      free_key(reserve.separator);
      for (std::size_t i = 0; i < reserve.inner_count; ++i) free_node(reserve.inners[i]);
      free_entry(entry);
      throw;
    }
  }

  // Nothing below allocates.
  for (std::size_t i = 0; i < path.depth; ++i)
    adjust_ends(*path.steps[i].node, path.steps[i].child, 1);
  ++size_;
  cover_key(*leaf, key);
  const std::uint64_t abbreviation = abbreviate(key, leaf->prefix_length);

  if (!split) {
    const std::uint16_t offset = take_arena(*leaf, entry_size);
    std::memcpy(leaf->arena + offset, entry, entry_size);
    const std::size_t tail = count - position;
    std::memmove(leaf->abbrev + position + 1, leaf->abbrev + position,
                 tail * sizeof(std::uint64_t));
    std::memmove(leaf->offsets + position + 1, leaf->offsets + position,
                 tail * sizeof(std::uint16_t));
    leaf->abbrev[position] = abbreviation;
    leaf->offsets[position] = offset;
    ++leaf->count;
    return;
  }

  EntryRef refs[kLeafCapacity + 1];
  for (std::size_t i = 0, from = 0; i <= count; ++i) {
    if (i == position) {
      refs[i] = EntryRef{abbreviation, entry, entry_size};
    } else {
      const std::uint8_t* bytes = leaf->arena + leaf->offsets[from];
      refs[i] = EntryRef{leaf->abbrev[from], bytes, entry_bytes(bytes)};
      ++from;
    }
  }
  Leaf* right = reserve.leaf;
  right->prefix_length = leaf->prefix_length;
  std::memcpy(right->prefix, leaf->prefix, kPrefixStorage);
  lay_out(*leaf, *right, refs, count + 1, keep_left);
  right->next = leaf->next;
  leaf->next = right;
  refresh_prefix(*leaf);
  refresh_prefix(*right);
  insert_into_parent(path, static_cast<int>(path.depth) - 1, reserve.separator, right, keep_left,
                     count + 1 - keep_left, reserve);
}

void OrderStatisticTree::insert_into_parent(Path& path, int level, std::uint64_t separator,
                                            Node* right, std::uint64_t left_count,
                                            std::uint64_t right_count, SplitReserve& reserve) {
  if (level < 0) {
    Inner* root = reserve.take_inner();
    root->children[0] = root_;
    root->children[1] = right;
    root->ends[0] = static_cast<std::uint32_t>(left_count);
    root->ends[1] = static_cast<std::uint32_t>(left_count + right_count);
    root->keys[0] = separator;
    cover_key(*root, key_view(root->keys[0]));
    root->abbrev[0] = abbreviate(key_view(root->keys[0]), root->prefix_length);
    root->count = 1;
    root_ = root;
    ++height_;
    return;
  }
  const auto level_index = static_cast<std::size_t>(level);
  Inner* parent = path.steps[level_index].node;
  const std::size_t child = path.steps[level_index].child;

  const TermKeyView separator_view = key_view(separator);
  cover_key(*parent, separator_view);
  const std::uint64_t abbreviation = abbreviate(separator_view, parent->prefix_length);

  if (parent->count < kInnerKeys) {
    // The insert already counted the new key under `child`; split that
    // child's share of the running total between it and `right`.
    const std::size_t keys_after = parent->count - child;
    std::memmove(parent->abbrev + child + 1, parent->abbrev + child,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->keys + child + 1, parent->keys + child,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->children + child + 2, parent->children + child + 1,
                 keys_after * sizeof(Node*));
    std::memmove(parent->ends + child + 2, parent->ends + child + 1,
                 keys_after * sizeof(std::uint32_t));
    parent->ends[child + 1] = parent->ends[child];
    parent->ends[child] = items_before(*parent, child) + static_cast<std::uint32_t>(left_count);
    parent->abbrev[child] = abbreviation;
    parent->keys[child] = separator;
    parent->children[child + 1] = right;
    ++parent->count;
    return;
  }

  std::uint32_t old_counts[kInnerChildren];
  counts_of(*parent, old_counts);
  old_counts[child] = static_cast<std::uint32_t>(left_count);

  std::uint64_t abbrev[kInnerKeys + 1];
  std::uint64_t keys[kInnerKeys + 1];
  Node* children[kInnerChildren + 1];
  std::uint32_t counts[kInnerChildren + 1];
  std::copy_n(parent->abbrev, child, abbrev);
  std::copy_n(parent->keys, child, keys);
  abbrev[child] = abbreviation;
  keys[child] = separator;
  std::copy(parent->abbrev + child, parent->abbrev + kInnerKeys, abbrev + child + 1);
  std::copy(parent->keys + child, parent->keys + kInnerKeys, keys + child + 1);
  std::copy_n(parent->children, child + 1, children);
  std::copy_n(old_counts, child + 1, counts);
  children[child + 1] = right;
  counts[child + 1] = static_cast<std::uint32_t>(right_count);
  std::copy(parent->children + child + 1, parent->children + kInnerChildren, children + child + 2);
  std::copy(old_counts + child + 1, old_counts + kInnerChildren, counts + child + 2);

  // Children kept on the left; the key between the halves moves up.
  std::size_t keep_left = (kInnerChildren + 1) / 2;
  if (child == kInnerKeys && on_right_edge(path, level_index)) {
    keep_left = kInnerChildren;
  } else if (child == 0 && on_left_edge(path, level_index)) {
    keep_left = 1;
  }
  Inner* sibling = reserve.take_inner();
  sibling->prefix_length = parent->prefix_length;
  std::memcpy(sibling->prefix, parent->prefix, kPrefixStorage);
  const std::size_t right_children = kInnerChildren + 1 - keep_left;
  std::copy_n(abbrev, keep_left - 1, parent->abbrev);
  std::copy_n(keys, keep_left - 1, parent->keys);
  std::copy_n(children, keep_left, parent->children);
  set_counts(*parent, counts, keep_left);
  parent->count = static_cast<std::uint16_t>(keep_left - 1);
  seal(*parent);
  const std::uint64_t up = keys[keep_left - 1];
  std::copy_n(abbrev + keep_left, right_children - 1, sibling->abbrev);
  std::copy_n(keys + keep_left, right_children - 1, sibling->keys);
  std::copy_n(children + keep_left, right_children, sibling->children);
  set_counts(*sibling, counts + keep_left, right_children);
  sibling->count = static_cast<std::uint16_t>(right_children - 1);
  seal(*sibling);
  refresh_prefix(*parent);
  refresh_prefix(*sibling);
  insert_into_parent(path, level - 1, up, sibling, sum(counts, keep_left),
                     sum(counts + keep_left, right_children), reserve);
}

// ---- removal ---------------------------------------------------------------------------

std::optional<std::size_t> OrderStatisticTree::erase(TermKeyView key) noexcept {
  if (root_ == nullptr) return std::nullopt;
  Path path;
  std::size_t rank = 0;
  Leaf* leaf = descend(key, &path, rank);
  bool found = false;
  const std::size_t position = search(*leaf, key, false, found);
  if (!found) return std::nullopt;
  remove_at(path, leaf, position);
  return rank + position;
}

TermKey OrderStatisticTree::erase_at(std::size_t index) {
  if (index >= size_) throw std::out_of_range("OrderStatisticTree::erase_at: index out of range");
  Path path;
  std::size_t position = 0;
  Leaf* leaf = descend_to_index(index, &path, position);
  TermKey removed(node_key(*leaf, position));
  remove_at(path, leaf, position);
  return removed;
}

void OrderStatisticTree::remove_at(Path& path, Leaf* leaf, std::size_t position) noexcept {
  const std::uint16_t offset = leaf->offsets[position];
  const std::uint8_t* entry = leaf->arena + offset;
  const std::size_t size = entry_bytes(entry);
  free_entry(entry);
  leaf->arena_live = static_cast<std::uint16_t>(leaf->arena_live - size);
  if (leaf->arena_live == 0) {
    leaf->arena_end = 0;
  } else if (offset + size == leaf->arena_end) {
    leaf->arena_end = offset;  // the newest entry: its space is free again at once
  }
  const std::size_t tail = leaf->count - position - 1;
  std::memmove(leaf->abbrev + position, leaf->abbrev + position + 1, tail * sizeof(std::uint64_t));
  std::memmove(leaf->offsets + position, leaf->offsets + position + 1,
               tail * sizeof(std::uint16_t));
  --leaf->count;
  leaf->abbrev[leaf->count] = kPastLastKey;
  --size_;
  for (std::size_t i = 0; i < path.depth; ++i) {
    adjust_ends(*path.steps[i].node, path.steps[i].child, static_cast<std::uint32_t>(-1));
  }
  if (size_ == 0) {
    clear();
    return;
  }
  rebalance(path, leaf);
}

void OrderStatisticTree::rebalance(Path& path, Node* node) noexcept {
  for (std::size_t level = path.depth; level-- > 0;) {
    Inner* parent = path.steps[level].node;
    if (parent->count == 0) break;  // no sibling to take from
    const std::size_t child = path.steps[level].child;
    if (node->is_leaf) {
      if (!rebalance_leaf(parent, child)) break;
    } else {
      if (node->count + 1u >= kInnerMinimumChildren) break;
      rebalance_inners(parent, child > 0 ? child - 1 : 0);
    }
    node = parent;
  }
  while (!root_->is_leaf && root_->count == 0) {
    auto* old_root = static_cast<Inner*>(root_);
    root_ = old_root->children[0];
    free_node(old_root);
    --height_;
  }
}

bool OrderStatisticTree::rebalance_leaf(Inner* parent, std::size_t child) noexcept {
  // A leaf's memory is released only with the whole leaf, so after an erase
  // a leaf merges with a neighbour as soon as both fit in 3/4 of one (the
  // counts come from the parent, without touching the neighbour). The
  // remaining quarter keeps a following insert from splitting it again.
  const std::uint32_t own = total_items_of_child(*parent, child);
  const std::uint32_t left = child > 0 ? total_items_of_child(*parent, child - 1) : kNoNeighbour;
  const std::uint32_t right =
      child < parent->count ? total_items_of_child(*parent, child + 1) : kNoNeighbour;
  const std::size_t left_child = left <= right ? child - 1 : child;
  if (own + std::min(left, right) <= kLeafMergeLimit && merge_leaves(parent, left_child)) {
    return true;
  }
  if (own >= kLeafMinimum) return false;
  return redistribute_leaves(parent, child > 0 ? child - 1 : 0);
}

void OrderStatisticTree::remove_child(Inner* parent, std::size_t left_child) noexcept {
  const std::size_t keys_after = parent->count - left_child - 1;
  std::memmove(parent->abbrev + left_child, parent->abbrev + left_child + 1,
               keys_after * sizeof(std::uint64_t));
  std::memmove(parent->keys + left_child, parent->keys + left_child + 1,
               keys_after * sizeof(std::uint64_t));
  std::memmove(parent->children + left_child + 1, parent->children + left_child + 2,
               keys_after * sizeof(Node*));
  drop_child_end(*parent, left_child + 1);
  --parent->count;
  seal(*parent);
}

bool OrderStatisticTree::merge_leaves(Inner* parent, std::size_t left_child) noexcept {
  auto* left = static_cast<Leaf*>(parent->children[left_child]);
  auto* right = static_cast<Leaf*>(parent->children[left_child + 1]);
  if (left->arena_live + right->arena_live > kArenaBytes * 3 / 4) return false;
  align_prefixes(*left, *right);
  if (left->arena_end + right->arena_live > kArenaBytes) compact(*left);
  for (std::size_t i = 0; i < right->count; ++i) {
    const std::uint8_t* entry = right->arena + right->offsets[i];
    const std::size_t size = entry_bytes(entry);
    std::memcpy(left->arena + left->arena_end, entry, size);
    left->offsets[left->count + i] = left->arena_end;
    left->abbrev[left->count + i] = right->abbrev[i];
    left->arena_end = static_cast<std::uint16_t>(left->arena_end + size);
  }
  left->arena_live = static_cast<std::uint16_t>(left->arena_live + right->arena_live);
  left->count = static_cast<std::uint16_t>(left->count + right->count);
  left->next = right->next;
  free_node(right);  // its entries, out-of-line payloads included, now belong to `left`
  free_key(parent->keys[left_child]);
  remove_child(parent, left_child);
  refresh_prefix(*left);
  return true;
}

bool OrderStatisticTree::redistribute_leaves(Inner* parent, std::size_t left_child) noexcept {
  auto* left = static_cast<Leaf*>(parent->children[left_child]);
  auto* right = static_cast<Leaf*>(parent->children[left_child + 1]);
  const std::size_t total = left->count + right->count;

  // Move keys across so both halves hold about as many keys, as far as both
  // arenas allow.
  const std::size_t old_left_count = left->count;
  std::size_t sizes[2 * kLeafCapacity];
  const std::uint8_t* entries[2 * kLeafCapacity];
  for (std::size_t i = 0; i < total; ++i) {
    entries[i] = i < old_left_count ? left->arena + left->offsets[i]
                                    : right->arena + right->offsets[i - old_left_count];
    sizes[i] = entry_bytes(entries[i]);
  }
  const std::size_t new_left_count = fitting_split(sizes, total, total / 2);
  if (new_left_count == 0 || new_left_count == old_left_count) return false;
  std::uint64_t separator = 0;
  try {
    separator = copy_key(entry_view(entries[new_left_count]));
  } catch (...) {
    return false;  // an underfull leaf is still a correct tree
  }
  align_prefixes(*left, *right);
  EntryRef refs[2 * kLeafCapacity];
  for (std::size_t i = 0; i < total; ++i) {
    const std::uint64_t abbrev =
        i < old_left_count ? left->abbrev[i] : right->abbrev[i - old_left_count];
    refs[i] = EntryRef{abbrev, entries[i], sizes[i]};
  }
  lay_out(*left, *right, refs, total, new_left_count);
  parent->ends[left_child] = items_before(*parent, left_child) + left->count;
  free_key(parent->keys[left_child]);
  parent->keys[left_child] = separator;
  const TermKeyView separator_view = key_view(parent->keys[left_child]);
  cover_key(*parent, separator_view);
  parent->abbrev[left_child] = abbreviate(separator_view, parent->prefix_length);
  refresh_prefix(*left);
  refresh_prefix(*right);
  return true;
}

void OrderStatisticTree::rebalance_inners(Inner* parent, std::size_t left_child) noexcept {
  auto* left = static_cast<Inner*>(parent->children[left_child]);
  auto* right = static_cast<Inner*>(parent->children[left_child + 1]);
  const std::uint64_t down = parent->keys[left_child];
  const TermKeyView down_view = key_view(parent->keys[left_child]);
  align_prefixes(*left, *right, &down_view);
  const std::uint64_t down_abbreviation = abbreviate(down_view, left->prefix_length);

  // Concatenate left, the separator between them, and right.
  const std::size_t key_total = left->count + 1u + right->count;
  const std::size_t child_total = key_total + 1;
  std::uint64_t abbrev[2 * kInnerKeys + 1];
  std::uint64_t keys[2 * kInnerKeys + 1];
  Node* children[2 * kInnerChildren];
  std::uint32_t counts[2 * kInnerChildren];
  std::copy_n(left->abbrev, left->count, abbrev);
  std::copy_n(left->keys, left->count, keys);
  abbrev[left->count] = down_abbreviation;
  keys[left->count] = down;
  std::copy_n(right->abbrev, right->count, abbrev + left->count + 1);
  std::copy_n(right->keys, right->count, keys + left->count + 1);
  std::copy_n(left->children, left->count + 1u, children);
  counts_of(*left, counts);
  std::copy_n(right->children, right->count + 1u, children + left->count + 1);
  counts_of(*right, counts + left->count + 1);

  if (child_total <= kInnerMergeLimit) {
    std::copy_n(abbrev, key_total, left->abbrev);
    std::copy_n(keys, key_total, left->keys);
    std::copy_n(children, child_total, left->children);
    set_counts(*left, counts, child_total);
    left->count = static_cast<std::uint16_t>(key_total);
    free_node(right);
    remove_child(parent, left_child);
    refresh_prefix(*left);
    return;
  }

  const std::size_t left_children = child_total / 2;
  const std::size_t right_children = child_total - left_children;
  std::copy_n(abbrev, left_children - 1, left->abbrev);
  std::copy_n(keys, left_children - 1, left->keys);
  std::copy_n(children, left_children, left->children);
  set_counts(*left, counts, left_children);
  left->count = static_cast<std::uint16_t>(left_children - 1);
  seal(*left);
  std::copy_n(abbrev + left_children, right_children - 1, right->abbrev);
  std::copy_n(keys + left_children, right_children - 1, right->keys);
  std::copy_n(children + left_children, right_children, right->children);
  set_counts(*right, counts + left_children, right_children);
  right->count = static_cast<std::uint16_t>(right_children - 1);
  seal(*right);
  parent->keys[left_child] = keys[left_children - 1];
  const TermKeyView up_view = key_view(parent->keys[left_child]);
  cover_key(*parent, up_view);
  parent->abbrev[left_child] = abbreviate(up_view, parent->prefix_length);
  parent->ends[left_child] = items_before(*parent, left_child) + total_items(*left);
  refresh_prefix(*left);
  refresh_prefix(*right);
}

// ---- bulk building -------------------------------------------------------------------------

template <class KeyAt>
std::optional<std::size_t> OrderStatisticTree::build_from_sorted_keys(std::size_t count,
                                                                      KeyAt key_at) {
  for (std::size_t i = 1; i < count; ++i) {
    if (compare(key_at(i - 1), key_at(i)) >= 0) return i;
  }
  OrderStatisticTree built;
  for (std::size_t i = 0; i < count; ++i) built.append_greatest(key_at(i));
  swap(built);
  return std::nullopt;
}

std::optional<std::size_t> OrderStatisticTree::build_from_sorted(std::span<const TermKey> keys) {
  return build_from_sorted_keys(keys.size(), [&](std::size_t i) { return keys[i].view(); });
}

std::optional<std::size_t> OrderStatisticTree::build_from_sorted(
    std::span<const TermKeyView> keys) {
  return build_from_sorted_keys(keys.size(), [&](std::size_t i) { return keys[i]; });
}

// ---- invariants ------------------------------------------------------------------------------

namespace {

[[noreturn]] void broken(const std::string& what) {
  throw std::logic_error("OrderStatisticTree invariant broken: " + what);
}

template <class NodeType>
void check_keys(const NodeType& node, const TermKeyView* low, const TermKeyView* high) {
  if (node.prefix_length > kMaxPrefix) broken("prefix too long");
  for (std::size_t i = node.count; i < kSearchSlots; ++i) {
    if (node.abbrev[i] != kPastLastKey) broken("a slot past the last key is not sealed");
  }
  for (std::size_t i = node.prefix_length; i < kPrefixStorage; ++i) {
    if (node.prefix[i] != 0) broken("bytes past the prefix are not zero");
  }
  for (std::size_t i = 0; i < node.count; ++i) {
    const TermKeyView key = node_key(node, i);
    if (key.comparable_size() < node.prefix_length ||
        std::memcmp(key.data(), node.prefix, node.prefix_length) != 0) {
      broken("a key does not share its node's prefix");
    }
    if (node.abbrev[i] != abbreviate(key, node.prefix_length)) broken("stale abbreviation");
    if (i > 0 && compare(node_key(node, i - 1), key) >= 0) broken("keys out of order");
    if (low != nullptr && compare(key, *low) < 0) broken("key below its subtree's range");
    if (high != nullptr && compare(key, *high) >= 0) broken("key above its subtree's range");
  }
}

void check_arena(const Leaf& leaf) {
  if (leaf.arena_end > kArenaBytes || leaf.arena_live > leaf.arena_end) {
    broken("arena bounds");
  }
  std::vector<bool> used(kArenaBytes, false);
  std::size_t live = 0;
  for (std::size_t i = 0; i < leaf.count; ++i) {
    const std::size_t offset = leaf.offsets[i];
    if (offset >= leaf.arena_end) broken("an entry past the arena's end");
    const std::uint8_t* entry = leaf.arena + offset;
    const std::uint8_t head = entry[0];
    if (head >= kEntrySized && head != kEntrySized && head != kEntryOutOfLine) {
      broken("an unknown arena entry");
    }
    const std::size_t size = entry_bytes(entry);
    if (offset + size > leaf.arena_end) broken("an entry past the arena's end");
    for (std::size_t b = offset; b < offset + size; ++b) {
      if (used[b]) broken("arena entries overlap");
      used[b] = true;
    }
    const TermKeyView key = entry_view(entry);
    const bool short_form = key.size() == key.comparable_size() && key.size() < kEntrySized;
    if ((head < kEntrySized) != short_form ||
        (head == kEntryOutOfLine) != (key.size() > kMaxArenaKey)) {
      broken("a key in the wrong arena form");
    }
    live += size;
  }
  if (live != leaf.arena_live) broken("arena live bytes");
}

struct InvariantWalk {
  std::size_t height;
  std::vector<const Leaf*> leaves;
  std::size_t node_bytes = 0;
  std::size_t key_bytes = 0;

  std::uint64_t walk(const Node* node, std::size_t depth, const TermKeyView* low,
                     const TermKeyView* high) {
    if (node->is_leaf) {
      if (depth != height) broken("leaves at different depths");
      const auto* leaf = static_cast<const Leaf*>(node);
      if (leaf->count == 0 || leaf->count > kLeafCapacity) broken("leaf size out of range");
      check_arena(*leaf);
      check_keys(*leaf, low, high);
      for (std::size_t i = 0; i < leaf->count; ++i) {
        const std::uint8_t* entry = leaf->arena + leaf->offsets[i];
        if (entry[0] == kEntryOutOfLine) key_bytes += payload_bytes(out_of_line_payload(entry));
      }
      leaves.push_back(leaf);
      node_bytes += sizeof(Leaf);
      return leaf->count;
    }
    const auto* inner = static_cast<const Inner*>(node);
    if (inner->count > kInnerKeys) broken("inner node size out of range");
    check_keys(*inner, low, high);
    for (std::size_t i = inner->count + 1u; i < kSearchSlots; ++i) {
      if (inner->ends[i] != kPastLastChild) broken("a slot past the last child is not sealed");
    }
    node_bytes += sizeof(Inner);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i <= inner->count; ++i) {
      const TermKeyView child_low = i == 0 ? TermKeyView() : key_view(inner->keys[i - 1]);
      const TermKeyView child_high = i == inner->count ? TermKeyView() : key_view(inner->keys[i]);
      const std::uint64_t child_count =
          walk(inner->children[i], depth + 1, i == 0 ? low : &child_low,
               i == inner->count ? high : &child_high);
      total += child_count;
      if (total != inner->ends[i]) broken("a child count is wrong");
    }
    for (std::size_t i = 0; i < inner->count; ++i) {
      if (!is_inline(inner->keys[i])) key_bytes += payload_bytes(payload_of(inner->keys[i]));
    }
    return total;
  }
};

}  // namespace

void OrderStatisticTree::check_invariants() const {
  if (root_ == nullptr) {
    if (size_ != 0 || height_ != 0 || node_bytes_ != 0 || key_bytes_ != 0) {
      broken("an empty tree holds memory or a size");
    }
    return;
  }
  InvariantWalk walk{height_, {}, 0, 0};
  if (walk.walk(root_, 0, nullptr, nullptr) != size_) broken("size does not match the items");
  for (std::size_t i = 0; i < walk.leaves.size(); ++i) {
    const Leaf* expected = i + 1 < walk.leaves.size() ? walk.leaves[i + 1] : nullptr;
    if (walk.leaves[i]->next != expected) broken("leaf chain out of order");
  }
  if (walk.node_bytes != node_bytes_) broken("node memory accounting");
  if (walk.key_bytes != key_bytes_) broken("key memory accounting");
}

}  // namespace switchboard::core
