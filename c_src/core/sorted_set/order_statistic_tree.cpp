#include "core/sorted_set/order_statistic_tree.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/memory.hpp"

namespace switchboard::core {

namespace detail::order_statistic_tree {

static_assert(std::endian::native == std::endian::little,
              "key slots tag inline keys in the low byte of a word");

// 64 slots of 16 bytes (abbreviation + key word) keep a leaf near 1 KiB: the
// abbreviations a search touches span 8 cache lines, fetched together.
constexpr std::size_t kLeafCapacity = 64;
constexpr std::size_t kInnerChildren = 64;
constexpr std::size_t kInnerKeys = kInnerChildren - 1;
constexpr std::size_t kMaxPrefix = 28;
constexpr std::size_t kMaxDepth = 40;
// Low minimums (a quarter) and merging only into a 3/4 full node keep
// alternating inserts and erases from splitting and merging the same node.
constexpr std::size_t kLeafMinimum = kLeafCapacity / 4;
constexpr std::size_t kInnerMinimumChildren = kInnerChildren / 4;
constexpr std::size_t kLeafMergeLimit = kLeafCapacity * 3 / 4;
constexpr std::size_t kInnerMergeLimit = kInnerChildren * 3 / 4;
constexpr std::size_t kInlineKeyBytes = 7;
// Subtree counts are 32-bit to keep inner nodes small.
constexpr std::size_t kMaxItems = std::numeric_limits<std::uint32_t>::max();

struct Node {
  std::uint16_t count = 0;  // leaf: keys; inner: separators (children = count + 1)
  bool is_leaf = false;
  std::uint8_t prefix_length = 0;  // every key in the node starts with these bytes
  std::uint8_t prefix[kMaxPrefix] = {};
};

// Key words: an odd word holds up to 7 comparable bytes inline (low byte =
// size * 2 + 1, no side data); an even word points to
// [LEB128 comparable size][LEB128 side size][bytes] from core::allocate.
struct Leaf : Node {
  Leaf* next = nullptr;
  std::uint64_t abbrev[kLeafCapacity];
  std::uint64_t keys[kLeafCapacity];
};

// Ordered by use: a descent reads counts, abbreviations and one child, all
// prefetched together; the separator keys are read only to break ties.
struct Inner : Node {
  std::uint32_t counts[kInnerChildren];  // items under each child
  std::uint64_t abbrev[kInnerKeys];
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

// `word` must be the stored slot itself: inline keys are read in place.
TermKeyView key_view(const std::uint64_t& word) noexcept {
  if (is_inline(word)) {
    const std::size_t size = (word & 0xFF) >> 1;
    return {reinterpret_cast<const std::uint8_t*>(&word) + 1, size, size};
  }
  const std::uint8_t* cursor = payload_of(word);
  const std::size_t comparable = get_leb128(cursor);
  const std::size_t side = get_leb128(cursor);
  return {cursor, comparable, comparable + side};
}

std::size_t payload_bytes(std::uint64_t word) noexcept {
  const std::uint8_t* begin = payload_of(word);
  const std::uint8_t* cursor = begin;
  const std::size_t comparable = get_leb128(cursor);
  const std::size_t side = get_leb128(cursor);
  return static_cast<std::size_t>(cursor - begin) + comparable + side;
}

// Eight bytes starting at `offset`, big-endian, zero padded: comparing two
// abbreviations as integers orders them like their bytes.
std::uint64_t abbreviate(const std::uint8_t* bytes, std::size_t size, std::size_t offset) noexcept {
  if (offset >= size) return 0;
  std::uint64_t word = 0;
  std::memcpy(&word, bytes + offset, std::min<std::size_t>(8, size - offset));
  return __builtin_bswap64(word);
}

std::uint64_t abbreviate(TermKeyView key, std::size_t offset) noexcept {
  return abbreviate(key.data(), key.comparable_size(), offset);
}

std::size_t common_prefix(const std::uint8_t* a, const std::uint8_t* b,
                          std::size_t limit) noexcept {
  std::size_t length = 0;
  while (length < limit && a[length] == b[length]) ++length;
  return length;
}

// Requests every cache line a descent through `node` will read at once, so
// their misses overlap instead of following one another.
void prefetch_node(const Node* node, bool is_leaf) noexcept {
  const auto* bytes = reinterpret_cast<const char*>(node);
  const std::size_t length =
      is_leaf ? sizeof(Leaf)
              : static_cast<std::size_t>(
                    reinterpret_cast<const char*>(static_cast<const Inner*>(node)->keys) - bytes);
  for (std::size_t offset = 0; offset < length; offset += 64) __builtin_prefetch(bytes + offset);
}

// Key arrays are accessed the same way in leaves and inner nodes.
template <class NodeType>
std::size_t search(const NodeType& node, TermKeyView probe, bool upper, bool& found) noexcept {
  found = false;
  const std::size_t count = node.count;
  const std::size_t prefix_length = node.prefix_length;
  const std::size_t probe_size = probe.comparable_size();
  const std::size_t checked = std::min(prefix_length, probe_size);
  const int prefix_order = checked == 0 ? 0 : std::memcmp(probe.data(), node.prefix, checked);
  if (prefix_order < 0 || (prefix_order == 0 && probe_size < prefix_length)) return 0;
  if (prefix_order > 0) return count;

  const std::uint64_t target = abbreviate(probe, prefix_length);
  const std::uint64_t* abbrev = node.abbrev;
  // A lower bound without branches: each step's outcome is unpredictable and
  // a misprediction costs more than the arithmetic.
  const std::uint64_t* base = abbrev;
  std::size_t length = count;
  while (length > 1) {
    const std::size_t half = length / 2;
    base += half * static_cast<std::size_t>(base[half] < target);
    length -= half;
  }
  std::size_t low = static_cast<std::size_t>(base - abbrev) +
                    (length == 1 ? static_cast<std::size_t>(*base < target) : 0);
  std::size_t high = low;
  while (high < count && abbrev[high] == target) ++high;
  // Equal abbreviations: the full keys decide.
  while (low < high) {
    const std::size_t middle = low + (high - low) / 2;
    const int order = compare(key_view(node.keys[middle]), probe);
    if (order == 0) found = true;
    if (order < 0 || (upper && order == 0)) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  if (upper) found = false;
  return low;
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
  node.prefix_length = static_cast<std::uint8_t>(new_length);
}

// Makes the node's prefix one that `key` shares too (before `key` joins it).
template <class NodeType>
void cover_key(NodeType& node, TermKeyView key) noexcept {
  if (node.count == 0) {
    const std::size_t length = std::min(key.comparable_size(), kMaxPrefix);
    if (length != 0) std::memcpy(node.prefix, key.data(), length);
    node.prefix_length = static_cast<std::uint8_t>(length);
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
    node.prefix_length = 0;
    return;
  }
  const TermKeyView first = key_view(node.keys[0]);
  const TermKeyView last = key_view(node.keys[count - 1]);
  const std::size_t limit = std::min({first.comparable_size(), last.comparable_size(), kMaxPrefix});
  const std::size_t length = common_prefix(first.data(), last.data(), limit);
  if (length <= node.prefix_length) return;
  std::memcpy(node.prefix, first.data(), length);
  node.prefix_length = static_cast<std::uint8_t>(length);
  for (std::size_t i = 0; i < count; ++i) {
    if (!is_inline(node.keys[i])) __builtin_prefetch(payload_of(node.keys[i]));
  }
  for (std::size_t i = 0; i < count; ++i)
    node.abbrev[i] = abbreviate(key_view(node.keys[i]), length);
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

std::uint64_t sum(const std::uint32_t* counts, std::size_t count) noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < count; ++i) total += counts[i];
  return total;
}

}  // namespace
}  // namespace detail::order_statistic_tree

using namespace detail::order_statistic_tree;

// ---- allocation --------------------------------------------------------------

OrderStatisticTree::Leaf* OrderStatisticTree::new_leaf() {
  void* memory = core::allocate(sizeof(Leaf));
  node_bytes_ += sizeof(Leaf);
  auto* leaf = new (memory) Leaf();
  leaf->is_leaf = true;
  return leaf;
}

OrderStatisticTree::Inner* OrderStatisticTree::new_inner() {
  void* memory = core::allocate(sizeof(Inner));
  node_bytes_ += sizeof(Inner);
  return new (memory) Inner();
}

void OrderStatisticTree::free_node(Node* node) noexcept {
  if (node == nullptr) return;
  const std::size_t bytes = node->is_leaf ? sizeof(Leaf) : sizeof(Inner);
  node_bytes_ -= bytes;
  core::deallocate(node, bytes);
}

std::uint64_t OrderStatisticTree::copy_key(TermKeyView key) {
  const std::size_t comparable = key.comparable_size();
  const std::size_t side = key.size() - comparable;
  if (side == 0 && comparable <= kInlineKeyBytes) {
    std::uint8_t bytes[8] = {};
    bytes[0] = static_cast<std::uint8_t>(comparable * 2 + 1);
    if (comparable != 0) std::memcpy(bytes + 1, key.data(), comparable);
    std::uint64_t word = 0;
    std::memcpy(&word, bytes, sizeof(word));
    return word;
  }
  const std::size_t bytes = leb128_size(comparable) + leb128_size(side) + key.size();
  auto* payload = static_cast<std::uint8_t*>(core::allocate(bytes));
  key_bytes_ += bytes;
  std::uint8_t* cursor = put_leb128(payload, comparable);
  cursor = put_leb128(cursor, side);
  std::memcpy(cursor, key.data(), key.size());
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(payload));
}

void OrderStatisticTree::free_key(std::uint64_t key) noexcept {
  if (is_inline(key) || key == 0) return;
  const std::size_t bytes = payload_bytes(key);
  key_bytes_ -= bytes;
  core::deallocate(const_cast<std::uint8_t*>(payload_of(key)), bytes);
}

void OrderStatisticTree::destroy_subtree(Node* node) noexcept {
  if (node == nullptr) return;
  if (node->is_leaf) {
    auto* leaf = static_cast<Leaf*>(node);
    for (std::size_t i = 0; i < leaf->count; ++i) free_key(leaf->keys[i]);
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
    prefetch_node(node, level + 1 == height_);
    rank += sum(inner->counts, child);
    if (path != nullptr) path->steps[path->depth++] = Step{inner, child};
  }
  return static_cast<Leaf*>(node);
}

OrderStatisticTree::Leaf* OrderStatisticTree::descend_to_index(
    std::size_t index, Path* path, std::size_t& position) const noexcept {
  Node* node = root_;
  for (std::size_t level = 0; level < height_; ++level) {
    auto* inner = static_cast<Inner*>(node);
    std::size_t child = 0;
    while (index >= inner->counts[child]) {
      index -= inner->counts[child];
      ++child;
    }
    if (path != nullptr) path->steps[path->depth++] = Step{inner, child};
    node = inner->children[child];
    prefetch_node(node, level + 1 == height_);
  }
  position = index;
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
  return key_view(leaf->keys[position]);
}

OrderStatisticTree::Cursor OrderStatisticTree::cursor_at(std::size_t index) const noexcept {
  Cursor cursor;
  if (index >= size_) return cursor;
  cursor.leaf_ = descend_to_index(index, nullptr, cursor.position_);
  return cursor;
}

TermKeyView OrderStatisticTree::Cursor::key() const noexcept {
  return key_view(leaf_->keys[position_]);
}

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
  const std::uint64_t slot = copy_key(key);
  SplitReserve reserve;
  const bool split = leaf->count == kLeafCapacity;
  // How many of the kLeafCapacity + 1 keys stay left. Growing at either end
  // of the whole set (ascending or descending inserts, bulk builds) keeps the
  // old leaf full instead of leaving half-empty leaves behind.
  std::size_t keep_left = (kLeafCapacity + 1) / 2;
  if (split) {
    if (position == kLeafCapacity && leaf->next == nullptr) {
      keep_left = kLeafCapacity;
    } else if (position == 0 && on_left_edge(path, path.depth)) {
      keep_left = 1;
    }
    try {
      reserve.leaf = new_leaf();
      const TermKeyView right_first =
          keep_left == position
              ? key
              : key_view(leaf->keys[keep_left < position ? keep_left : keep_left - 1]);
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
      free_key(slot);
      throw;
    }
  }

  // Nothing below allocates.
  for (std::size_t i = 0; i < path.depth; ++i) ++path.steps[i].node->counts[path.steps[i].child];
  ++size_;
  const TermKeyView stored_key = key;  // `slot` may be inline: read bytes from `key` until placed
  cover_key(*leaf, stored_key);
  const std::uint64_t abbreviation = abbreviate(stored_key, leaf->prefix_length);

  if (!split) {
    const std::size_t tail = leaf->count - position;
    std::memmove(leaf->abbrev + position + 1, leaf->abbrev + position,
                 tail * sizeof(std::uint64_t));
    std::memmove(leaf->keys + position + 1, leaf->keys + position, tail * sizeof(std::uint64_t));
    leaf->abbrev[position] = abbreviation;
    leaf->keys[position] = slot;
    ++leaf->count;
    return;
  }

  std::uint64_t abbrev[kLeafCapacity + 1];
  std::uint64_t keys[kLeafCapacity + 1];
  std::copy_n(leaf->abbrev, position, abbrev);
  std::copy_n(leaf->keys, position, keys);
  abbrev[position] = abbreviation;
  keys[position] = slot;
  std::copy(leaf->abbrev + position, leaf->abbrev + kLeafCapacity, abbrev + position + 1);
  std::copy(leaf->keys + position, leaf->keys + kLeafCapacity, keys + position + 1);

  Leaf* right = reserve.leaf;
  right->prefix_length = leaf->prefix_length;
  std::memcpy(right->prefix, leaf->prefix, kMaxPrefix);
  const std::size_t right_count = kLeafCapacity + 1 - keep_left;
  std::copy_n(abbrev, keep_left, leaf->abbrev);
  std::copy_n(keys, keep_left, leaf->keys);
  std::copy_n(abbrev + keep_left, right_count, right->abbrev);
  std::copy_n(keys + keep_left, right_count, right->keys);
  leaf->count = static_cast<std::uint16_t>(keep_left);
  right->count = static_cast<std::uint16_t>(right_count);
  right->next = leaf->next;
  leaf->next = right;
  refresh_prefix(*leaf);
  refresh_prefix(*right);
  insert_into_parent(path, static_cast<int>(path.depth) - 1, reserve.separator, right, keep_left,
                     right_count, reserve);
}

void OrderStatisticTree::insert_into_parent(Path& path, int level, std::uint64_t separator,
                                            Node* right, std::uint64_t left_count,
                                            std::uint64_t right_count, SplitReserve& reserve) {
  if (level < 0) {
    Inner* root = reserve.take_inner();
    root->children[0] = root_;
    root->children[1] = right;
    root->counts[0] = static_cast<std::uint32_t>(left_count);
    root->counts[1] = static_cast<std::uint32_t>(right_count);
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
  // The insert already counted the new key in counts[child]; split it.
  parent->counts[child] = static_cast<std::uint32_t>(left_count);

  const TermKeyView separator_view = key_view(separator);
  cover_key(*parent, separator_view);
  const std::uint64_t abbreviation = abbreviate(separator_view, parent->prefix_length);

  if (parent->count < kInnerKeys) {
    const std::size_t keys_after = parent->count - child;
    std::memmove(parent->abbrev + child + 1, parent->abbrev + child,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->keys + child + 1, parent->keys + child,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->children + child + 2, parent->children + child + 1,
                 keys_after * sizeof(Node*));
    std::memmove(parent->counts + child + 2, parent->counts + child + 1,
                 keys_after * sizeof(std::uint32_t));
    parent->abbrev[child] = abbreviation;
    parent->keys[child] = separator;
    parent->children[child + 1] = right;
    parent->counts[child + 1] = static_cast<std::uint32_t>(right_count);
    ++parent->count;
    return;
  }

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
  std::copy_n(parent->counts, child + 1, counts);
  children[child + 1] = right;
  counts[child + 1] = static_cast<std::uint32_t>(right_count);
  std::copy(parent->children + child + 1, parent->children + kInnerChildren, children + child + 2);
  std::copy(parent->counts + child + 1, parent->counts + kInnerChildren, counts + child + 2);

  // Children kept on the left; the key between the halves moves up.
  std::size_t keep_left = (kInnerChildren + 1) / 2;
  if (child == kInnerKeys && on_right_edge(path, level_index)) {
    keep_left = kInnerChildren;
  } else if (child == 0 && on_left_edge(path, level_index)) {
    keep_left = 1;
  }
  Inner* sibling = reserve.take_inner();
  sibling->prefix_length = parent->prefix_length;
  std::memcpy(sibling->prefix, parent->prefix, kMaxPrefix);
  const std::size_t right_children = kInnerChildren + 1 - keep_left;
  std::copy_n(abbrev, keep_left - 1, parent->abbrev);
  std::copy_n(keys, keep_left - 1, parent->keys);
  std::copy_n(children, keep_left, parent->children);
  std::copy_n(counts, keep_left, parent->counts);
  parent->count = static_cast<std::uint16_t>(keep_left - 1);
  const std::uint64_t up = keys[keep_left - 1];
  std::copy_n(abbrev + keep_left, right_children - 1, sibling->abbrev);
  std::copy_n(keys + keep_left, right_children - 1, sibling->keys);
  std::copy_n(children + keep_left, right_children, sibling->children);
  std::copy_n(counts + keep_left, right_children, sibling->counts);
  sibling->count = static_cast<std::uint16_t>(right_children - 1);
  refresh_prefix(*parent);
  refresh_prefix(*sibling);
  insert_into_parent(path, level - 1, up, sibling, sum(parent->counts, keep_left),
                     sum(sibling->counts, right_children), reserve);
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
  TermKey removed(key_view(leaf->keys[position]));
  remove_at(path, leaf, position);
  return removed;
}

void OrderStatisticTree::remove_at(Path& path, Leaf* leaf, std::size_t position) noexcept {
  free_key(leaf->keys[position]);
  const std::size_t tail = leaf->count - position - 1;
  std::memmove(leaf->abbrev + position, leaf->abbrev + position + 1, tail * sizeof(std::uint64_t));
  std::memmove(leaf->keys + position, leaf->keys + position + 1, tail * sizeof(std::uint64_t));
  --leaf->count;
  --size_;
  for (std::size_t i = 0; i < path.depth; ++i) --path.steps[i].node->counts[path.steps[i].child];
  if (size_ == 0) {
    clear();
    return;
  }
  rebalance(path, leaf);
}

void OrderStatisticTree::rebalance(Path& path, Node* node) noexcept {
  for (std::size_t level = path.depth; level-- > 0;) {
    const bool full_enough =
        node->is_leaf ? node->count >= kLeafMinimum : node->count + 1u >= kInnerMinimumChildren;
    if (full_enough) break;
    Inner* parent = path.steps[level].node;
    if (parent->count == 0) break;  // no sibling to take from
    const std::size_t child = path.steps[level].child;
    const std::size_t left = child > 0 ? child - 1 : 0;
    if (node->is_leaf) {
      if (!rebalance_leaves(parent, left)) break;
    } else {
      rebalance_inners(parent, left);
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

bool OrderStatisticTree::rebalance_leaves(Inner* parent, std::size_t left_child) noexcept {
  auto* left = static_cast<Leaf*>(parent->children[left_child]);
  auto* right = static_cast<Leaf*>(parent->children[left_child + 1]);
  const std::size_t total = left->count + right->count;

  if (total <= kLeafMergeLimit) {
    align_prefixes(*left, *right);
    std::copy_n(right->abbrev, right->count, left->abbrev + left->count);
    std::copy_n(right->keys, right->count, left->keys + left->count);
    left->count = static_cast<std::uint16_t>(total);
    left->next = right->next;
    free_node(right);
    free_key(parent->keys[left_child]);
    const std::size_t keys_after = parent->count - left_child - 1;
    std::memmove(parent->abbrev + left_child, parent->abbrev + left_child + 1,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->keys + left_child, parent->keys + left_child + 1,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->children + left_child + 1, parent->children + left_child + 2,
                 keys_after * sizeof(Node*));
    parent->counts[left_child] += parent->counts[left_child + 1];
    std::memmove(parent->counts + left_child + 1, parent->counts + left_child + 2,
                 keys_after * sizeof(std::uint32_t));
    --parent->count;
    refresh_prefix(*left);
    return true;
  }

  const std::size_t new_left_count = total / 2;
  const std::size_t old_left_count = left->count;
  const TermKeyView right_first = new_left_count < old_left_count
                                      ? key_view(left->keys[new_left_count])
                                      : key_view(right->keys[new_left_count - old_left_count]);
  std::uint64_t separator = 0;
  try {
    separator = copy_key(right_first);
  } catch (...) {
    return false;  // an underfull leaf is still a correct tree
  }
  align_prefixes(*left, *right);
  if (new_left_count > old_left_count) {
    const std::size_t moved = new_left_count - old_left_count;
    std::copy_n(right->abbrev, moved, left->abbrev + old_left_count);
    std::copy_n(right->keys, moved, left->keys + old_left_count);
    std::memmove(right->abbrev, right->abbrev + moved,
                 (right->count - moved) * sizeof(std::uint64_t));
    std::memmove(right->keys, right->keys + moved, (right->count - moved) * sizeof(std::uint64_t));
  } else {
    const std::size_t moved = old_left_count - new_left_count;
    std::memmove(right->abbrev + moved, right->abbrev, right->count * sizeof(std::uint64_t));
    std::memmove(right->keys + moved, right->keys, right->count * sizeof(std::uint64_t));
    std::copy_n(left->abbrev + new_left_count, moved, right->abbrev);
    std::copy_n(left->keys + new_left_count, moved, right->keys);
  }
  left->count = static_cast<std::uint16_t>(new_left_count);
  right->count = static_cast<std::uint16_t>(total - new_left_count);
  parent->counts[left_child] = left->count;
  parent->counts[left_child + 1] = right->count;
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
  std::copy_n(left->counts, left->count + 1u, counts);
  std::copy_n(right->children, right->count + 1u, children + left->count + 1);
  std::copy_n(right->counts, right->count + 1u, counts + left->count + 1);

  if (child_total <= kInnerMergeLimit) {
    std::copy_n(abbrev, key_total, left->abbrev);
    std::copy_n(keys, key_total, left->keys);
    std::copy_n(children, child_total, left->children);
    std::copy_n(counts, child_total, left->counts);
    left->count = static_cast<std::uint16_t>(key_total);
    free_node(right);
    const std::size_t keys_after = parent->count - left_child - 1;
    std::memmove(parent->abbrev + left_child, parent->abbrev + left_child + 1,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->keys + left_child, parent->keys + left_child + 1,
                 keys_after * sizeof(std::uint64_t));
    std::memmove(parent->children + left_child + 1, parent->children + left_child + 2,
                 keys_after * sizeof(Node*));
    parent->counts[left_child] += parent->counts[left_child + 1];
    std::memmove(parent->counts + left_child + 1, parent->counts + left_child + 2,
                 keys_after * sizeof(std::uint32_t));
    --parent->count;
    refresh_prefix(*left);
    return;
  }

  const std::size_t left_children = child_total / 2;
  const std::size_t right_children = child_total - left_children;
  std::copy_n(abbrev, left_children - 1, left->abbrev);
  std::copy_n(keys, left_children - 1, left->keys);
  std::copy_n(children, left_children, left->children);
  std::copy_n(counts, left_children, left->counts);
  left->count = static_cast<std::uint16_t>(left_children - 1);
  std::copy_n(abbrev + left_children, right_children - 1, right->abbrev);
  std::copy_n(keys + left_children, right_children - 1, right->keys);
  std::copy_n(children + left_children, right_children, right->children);
  std::copy_n(counts + left_children, right_children, right->counts);
  right->count = static_cast<std::uint16_t>(right_children - 1);
  parent->keys[left_child] = keys[left_children - 1];
  const TermKeyView up_view = key_view(parent->keys[left_child]);
  cover_key(*parent, up_view);
  parent->abbrev[left_child] = abbreviate(up_view, parent->prefix_length);
  parent->counts[left_child] = static_cast<std::uint32_t>(sum(left->counts, left_children));
  parent->counts[left_child + 1] = static_cast<std::uint32_t>(sum(right->counts, right_children));
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
  for (std::size_t i = 0; i < node.count; ++i) {
    const TermKeyView key = key_view(node.keys[i]);
    if (key.comparable_size() < node.prefix_length ||
        std::memcmp(key.data(), node.prefix, node.prefix_length) != 0) {
      broken("a key does not share its node's prefix");
    }
    if (node.abbrev[i] != abbreviate(key, node.prefix_length)) broken("stale abbreviation");
    if (i > 0 && compare(key_view(node.keys[i - 1]), key) >= 0) broken("keys out of order");
    if (low != nullptr && compare(key, *low) < 0) broken("key below its subtree's range");
    if (high != nullptr && compare(key, *high) >= 0) broken("key above its subtree's range");
  }
}

struct InvariantWalk {
  std::size_t height;
  std::vector<const Leaf*> leaves;
  std::size_t node_bytes = 0;
  std::size_t key_bytes = 0;

  void count_key(std::uint64_t word) {
    if (!is_inline(word)) key_bytes += payload_bytes(word);
  }

  std::uint64_t walk(const Node* node, std::size_t depth, const TermKeyView* low,
                     const TermKeyView* high) {
    if (node->is_leaf) {
      if (depth != height) broken("leaves at different depths");
      const auto* leaf = static_cast<const Leaf*>(node);
      if (leaf->count == 0 || leaf->count > kLeafCapacity) broken("leaf size out of range");
      check_keys(*leaf, low, high);
      for (std::size_t i = 0; i < leaf->count; ++i) count_key(leaf->keys[i]);
      leaves.push_back(leaf);
      node_bytes += sizeof(Leaf);
      return leaf->count;
    }
    const auto* inner = static_cast<const Inner*>(node);
    if (inner->count > kInnerKeys) broken("inner node size out of range");
    check_keys(*inner, low, high);
    node_bytes += sizeof(Inner);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i <= inner->count; ++i) {
      const TermKeyView child_low = i == 0 ? TermKeyView() : key_view(inner->keys[i - 1]);
      const TermKeyView child_high = i == inner->count ? TermKeyView() : key_view(inner->keys[i]);
      const std::uint64_t child_count =
          walk(inner->children[i], depth + 1, i == 0 ? low : &child_low,
               i == inner->count ? high : &child_high);
      if (child_count != inner->counts[i]) broken("a child count is wrong");
      total += child_count;
    }
    for (std::size_t i = 0; i < inner->count; ++i) count_key(inner->keys[i]);
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
