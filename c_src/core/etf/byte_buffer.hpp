// A growable byte buffer for encoders: append without per-byte bounds checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace switchboard::core::etf {

// memcpy for the short runs terms are made of (atom names, ids, small binaries):
// two overlapping moves instead of a library call.
inline void copy_bytes(std::uint8_t* to, const std::uint8_t* from, std::size_t count) noexcept {
  if (count > 16) {
    std::memcpy(to, from, count);
  } else if (count >= 8) {
    std::uint64_t head;
    std::uint64_t tail;
    std::memcpy(&head, from, 8);
    std::memcpy(&tail, from + count - 8, 8);
    std::memcpy(to, &head, 8);
    std::memcpy(to + count - 8, &tail, 8);
  } else if (count >= 4) {
    std::uint32_t head;
    std::uint32_t tail;
    std::memcpy(&head, from, 4);
    std::memcpy(&tail, from + count - 4, 4);
    std::memcpy(to, &head, 4);
    std::memcpy(to + count - 4, &tail, 4);
  } else if (count > 0) {
    to[0] = from[0];
    to[count >> 1] = from[count >> 1];
    to[count - 1] = from[count - 1];
  }
}

class ByteBuffer {
 public:
  ByteBuffer() noexcept = default;
  explicit ByteBuffer(std::size_t capacity);
  ~ByteBuffer();
  ByteBuffer(const ByteBuffer& other);
  ByteBuffer& operator=(const ByteBuffer& other);
  ByteBuffer(ByteBuffer&& other) noexcept;
  ByteBuffer& operator=(ByteBuffer&& other) noexcept;

  std::uint8_t* data() noexcept { return data_; }
  const std::uint8_t* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const std::uint8_t> bytes() const noexcept { return {data_, size_}; }

  void clear() noexcept { size_ = 0; }
  void reserve(std::size_t capacity) {
    if (capacity > capacity_) reallocate(capacity);
  }
  // Appends `count` bytes the caller must then fill, and returns where they start.
  // Defined here because every encoded term goes through it.
  std::uint8_t* extend(std::size_t count) {
    if (capacity_ - size_ < count) grow(count);
    std::uint8_t* start = data_ + size_;
    size_ += count;
    return start;
  }
  void push_back(std::uint8_t byte) { *extend(1) = byte; }
  void append(const void* bytes, std::size_t count) {
    copy_bytes(extend(count), static_cast<const std::uint8_t*>(bytes), count);
  }
  void append(std::span<const std::uint8_t> bytes) { append(bytes.data(), bytes.size()); }
  // Sets the size without initialising new bytes (the caller overwrites them).
  void resize_uninitialized(std::size_t size) {
    reserve(size);
    size_ = size;
  }
  void truncate(std::size_t size) noexcept {
    if (size < size_) size_ = size;
  }

 private:
  void grow(std::size_t extra);
  void reallocate(std::size_t capacity);

  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace switchboard::core::etf
