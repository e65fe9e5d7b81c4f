#include "core/sorted_set/term_key.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

#include "core/memory.hpp"

namespace switchboard::core {

TermKey::TermKey(std::span<const std::uint8_t> bytes, std::size_t comparable_size) {
  if (bytes.size() > std::numeric_limits<std::uint32_t>::max() || comparable_size > bytes.size()) {
    throw std::length_error("TermKey: key too large or comparable part out of range");
  }
  std::uint8_t* destination = storage_.bytes;
  if (bytes.size() > kInlineCapacity) {
    storage_.heap = static_cast<std::uint8_t*>(core::allocate(bytes.size()));
    destination = storage_.heap;
  }
  if (!bytes.empty()) std::memcpy(destination, bytes.data(), bytes.size());
  size_ = static_cast<std::uint32_t>(bytes.size());
  comparable_size_ = static_cast<std::uint32_t>(comparable_size);
}

TermKey::TermKey(TermKey&& other) noexcept
    : storage_(other.storage_), size_(other.size_), comparable_size_(other.comparable_size_) {
  other.size_ = 0;
  other.comparable_size_ = 0;
}

TermKey& TermKey::operator=(const TermKey& other) {
  if (this != &other) *this = TermKey(other);
  return *this;
}

TermKey& TermKey::operator=(TermKey&& other) noexcept {
  if (this != &other) {
    release();
    storage_ = other.storage_;
    size_ = std::exchange(other.size_, 0);
    comparable_size_ = std::exchange(other.comparable_size_, 0);
  }
  return *this;
}

TermKey::~TermKey() { release(); }

void TermKey::release() noexcept {
  if (!is_inline()) core::deallocate(storage_.heap, size_);
  size_ = 0;
  comparable_size_ = 0;
}

int compare(TermKeyView a, TermKeyView b) noexcept {
  const std::size_t common = std::min(a.comparable_size(), b.comparable_size());
  if (common != 0) {
    const int result = std::memcmp(a.data(), b.data(), common);
    if (result != 0) return result < 0 ? -1 : 1;
  }
  // Encodings are prefix-free, so equal common bytes with different lengths
  // only happens for malformed input; ordering by length keeps it total.
  if (a.comparable_size() == b.comparable_size()) return 0;
  return a.comparable_size() < b.comparable_size() ? -1 : 1;
}

}  // namespace switchboard::core
