#include "core/etf/byte_buffer.hpp"

#include <new>
#include <utility>

#include "core/memory.hpp"

namespace switchboard::core::etf {

ByteBuffer::ByteBuffer(std::size_t capacity) { reserve(capacity); }

ByteBuffer::~ByteBuffer() { core::deallocate(data_, capacity_); }

ByteBuffer::ByteBuffer(const ByteBuffer& other) {
  reserve(other.size_);
  append(other.data_, other.size_);
}

ByteBuffer& ByteBuffer::operator=(const ByteBuffer& other) {
  if (this != &other) {
    clear();
    reserve(other.size_);
    append(other.data_, other.size_);
  }
  return *this;
}

ByteBuffer::ByteBuffer(ByteBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

ByteBuffer& ByteBuffer::operator=(ByteBuffer&& other) noexcept {
  if (this != &other) {
    core::deallocate(data_, capacity_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

void ByteBuffer::grow(std::size_t extra) {
  if (extra > SIZE_MAX - size_) throw std::bad_alloc();
  const std::size_t needed = size_ + extra;
  // Doubling keeps appends amortised O(1); 64 bytes avoids a string of tiny
  // reallocations for the first few terms.
  std::size_t capacity = capacity_ < 64 ? 64 : capacity_;
  while (capacity < needed) {
    capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
  }
  reallocate(capacity);
}

void ByteBuffer::reallocate(std::size_t capacity) {
  auto* fresh = static_cast<std::uint8_t*>(core::allocate(capacity));
  if (size_ != 0) std::memcpy(fresh, data_, size_);
  core::deallocate(data_, capacity_);
  data_ = fresh;
  capacity_ = capacity;
}

}  // namespace switchboard::core::etf
