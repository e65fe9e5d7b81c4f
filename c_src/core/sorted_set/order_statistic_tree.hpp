// A B+tree of unique TermKeys in Erlang term order that also answers "what
// is the rank of this key" and "which key has this rank" in O(log n).
//
// Inner nodes keep a running total of their children's item counts, so a
// rank is one read per level and a descent by index a binary search. Each
// node stores, per key, 8 bytes of the key taken after the prefix all keys of
// that node share (prefix truncation), so a search compares one integer per
// probe and reads the full key only to break a tie or confirm a match.
// Leaves keep their keys' bytes in an arena inside the leaf (keys over 128
// bytes go to core::allocate memory), so a search that reaches a leaf reads
// no other allocation. Separator copies in inner nodes of up to 7 bytes live
// in their slot; longer ones are copied to core::allocate memory.
//
// Not thread-safe; see SortedSet for the locked wrapper. Views and cursors
// returned by a tree are invalidated by any change to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/sorted_set/term_key.hpp"

namespace switchboard::core {

namespace detail::order_statistic_tree {
struct Node;
struct Leaf;
struct Inner;
struct Path;
struct SplitReserve;
}  // namespace detail::order_statistic_tree

class OrderStatisticTree {
  using Node = detail::order_statistic_tree::Node;
  using Leaf = detail::order_statistic_tree::Leaf;
  using Inner = detail::order_statistic_tree::Inner;
  using Path = detail::order_statistic_tree::Path;
  using SplitReserve = detail::order_statistic_tree::SplitReserve;

 public:
  struct InsertResult {
    std::size_t index;  // where the key is now
    bool inserted;      // false: an equal key was already present and was kept
  };

  // Walks keys in order from a starting rank.
  class Cursor {
   public:
    bool done() const noexcept { return leaf_ == nullptr; }
    TermKeyView key() const noexcept;
    void advance() noexcept;

   private:
    friend class OrderStatisticTree;
    const Leaf* leaf_ = nullptr;
    std::size_t position_ = 0;
  };

  OrderStatisticTree() noexcept = default;
  OrderStatisticTree(const OrderStatisticTree& other);
  OrderStatisticTree(OrderStatisticTree&& other) noexcept;
  OrderStatisticTree& operator=(const OrderStatisticTree& other);
  OrderStatisticTree& operator=(OrderStatisticTree&& other) noexcept;
  ~OrderStatisticTree();

  // Adds `key` unless an equal (==) key is present. Strong exception guarantee.
  InsertResult insert(TermKeyView key);
  // Removes the key equal to `key`; returns the index it had.
  std::optional<std::size_t> erase(TermKeyView key) noexcept;
  // Removes and returns the key at `index`; throws std::out_of_range.
  TermKey erase_at(std::size_t index);

  std::optional<std::size_t> find_index(TermKeyView key) const noexcept;
  // Index of the first key not less than `key` (size() when none).
  std::size_t lower_bound_index(TermKeyView key) const noexcept;
  // Index of the first key greater than `key` (size() when none).
  std::size_t upper_bound_index(TermKeyView key) const noexcept;
  // Throws std::out_of_range.
  TermKeyView at(std::size_t index) const;
  // A cursor at `index`; done() at once when index >= size().
  Cursor cursor_at(std::size_t index) const noexcept;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  void clear() noexcept;
  // Bytes this tree holds through core::allocate: nodes and key copies.
  std::size_t memory_bytes() const noexcept { return node_bytes_ + key_bytes_; }

  // Replaces the contents with `keys`, which must be strictly ascending. On
  // success returns nullopt; otherwise returns the first index i with
  // keys[i] <= keys[i - 1] and leaves the tree unchanged. O(n).
  std::optional<std::size_t> build_from_sorted(std::span<const TermKey> keys);
  std::optional<std::size_t> build_from_sorted(std::span<const TermKeyView> keys);

  // Verifies every structural invariant; throws std::logic_error naming the
  // first broken one. O(n), for tests.
  void check_invariants() const;

  void swap(OrderStatisticTree& other) noexcept;

 private:
  template <class KeyAt>
  std::optional<std::size_t> build_from_sorted_keys(std::size_t count, KeyAt key_at);
  void append_greatest(TermKeyView key);

  Leaf* descend(TermKeyView key, Path* path, std::size_t& rank) const noexcept;
  Leaf* descend_to_index(std::size_t index, Path* path, std::size_t& position) const noexcept;
  void insert_at(Path& path, Leaf* leaf, std::size_t position, TermKeyView key);
  void insert_into_parent(Path& path, int level, std::uint64_t separator, Node* right,
                          std::uint64_t left_count, std::uint64_t right_count,
                          SplitReserve& reserve);
  void remove_at(Path& path, Leaf* leaf, std::size_t position) noexcept;
  void rebalance(Path& path, Node* node) noexcept;
  bool rebalance_leaf(Inner* parent, std::size_t child) noexcept;
  bool merge_leaves(Inner* parent, std::size_t left_child) noexcept;
  bool redistribute_leaves(Inner* parent, std::size_t left_child) noexcept;
  void rebalance_inners(Inner* parent, std::size_t left_child) noexcept;
  void remove_child(Inner* parent, std::size_t left_child) noexcept;

  Leaf* new_leaf();
  Inner* new_inner();
  void free_node(Node* node) noexcept;
  void destroy_subtree(Node* node) noexcept;
  std::uint8_t* copy_payload(TermKeyView key);
  void free_payload(const std::uint8_t* payload) noexcept;
  // Separator copies in inner nodes.
  std::uint64_t copy_key(TermKeyView key);
  void free_key(std::uint64_t key) noexcept;
  // A leaf arena entry for `key` written to `entry`; returns its size.
  std::size_t make_entry(TermKeyView key, std::uint8_t* entry);
  void free_entry(const std::uint8_t* entry) noexcept;

  Node* root_ = nullptr;
  std::size_t size_ = 0;
  std::size_t height_ = 0;  // inner levels above the leaves
  std::size_t node_bytes_ = 0;
  std::size_t key_bytes_ = 0;
};

}  // namespace switchboard::core
