// The core's allocator: mimalloc, with process-wide counters so tests and
// `memory/1`-style queries can see exactly what the core holds natively.
#pragma once

#include <cstddef>
#include <limits>
#include <new>

namespace switchboard::core {

// Bytes currently allocated through `allocate` and not yet released.
std::size_t allocated_bytes() noexcept;
// Number of live allocations made through `allocate`.
std::size_t live_allocations() noexcept;

// Allocates `bytes` (throws std::bad_alloc on failure). Under the sanitizer
// build this is the system malloc so ASan sees every core allocation.
void* allocate(std::size_t bytes);
// Releases memory from `allocate`; `bytes` must be the size that was asked for.
void deallocate(void* pointer, std::size_t bytes) noexcept;

// A standard allocator over `allocate`/`deallocate`, for core containers.
template <class T>
struct Allocator {
  using value_type = T;

  Allocator() noexcept = default;
  template <class U>
  Allocator(const Allocator<U>&) noexcept {}  // NOLINT: implicit by design

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(core::allocate(n * sizeof(T)));
  }
  void deallocate(T* pointer, std::size_t n) noexcept { core::deallocate(pointer, n * sizeof(T)); }

  template <class U>
  bool operator==(const Allocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace switchboard::core
