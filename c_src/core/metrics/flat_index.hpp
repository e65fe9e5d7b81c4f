// A single-threaded open-addressing index from 64-bit hashes to pointers,
// for the per-thread lookup on a metric's write path: one multiply, one
// probe in the common case, no allocation after warm-up. Equal hashes are
// told apart by the caller's predicate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace switchboard::core {

template <class T>
class FlatIndex {
 public:
  FlatIndex() : slots_(16) {}

  template <class Same>
  T* find(std::uint64_t hash, Same&& same) const noexcept {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = home(hash, mask);; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.value == nullptr) return nullptr;
      if (slot.hash == hash && same(*slot.value)) return slot.value;
    }
  }

  void insert(std::uint64_t hash, T* value) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    place(slots_, hash, value);
    ++size_;
  }

  std::size_t size() const noexcept { return size_; }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    T* value = nullptr;
  };
  static std::size_t home(std::uint64_t hash, std::size_t mask) noexcept {
    return static_cast<std::size_t>((hash * 0x9E3779B97F4A7C15ull) >> 32) & mask;
  }
  static void place(std::vector<Slot>& slots, std::uint64_t hash, T* value) {
    const std::size_t mask = slots.size() - 1;
    std::size_t i = home(hash, mask);
    while (slots[i].value != nullptr) i = (i + 1) & mask;
    slots[i] = Slot{hash, value};
  }
  void grow() {
    std::vector<Slot> bigger(slots_.size() * 2);
    for (const Slot& slot : slots_) {
      if (slot.value != nullptr) place(bigger, slot.hash, slot.value);
    }
    slots_.swap(bigger);
  }

  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

}  // namespace switchboard::core
