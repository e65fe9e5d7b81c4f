#include "core/memory.hpp"

#include <atomic>
#include <cstdlib>

#ifndef SWITCHBOARD_SYSTEM_ALLOCATOR
#include <mimalloc.h>
#endif

namespace switchboard::core {
namespace {

// Relaxed is enough: the counters are gauges read by tests, not synchronisation.
std::atomic<std::size_t> g_bytes{0};
std::atomic<std::size_t> g_allocations{0};

}  // namespace

std::size_t allocated_bytes() noexcept { return g_bytes.load(std::memory_order_relaxed); }

std::size_t live_allocations() noexcept { return g_allocations.load(std::memory_order_relaxed); }

void* allocate(std::size_t bytes) {
#ifdef SWITCHBOARD_SYSTEM_ALLOCATOR
  void* pointer = std::malloc(bytes == 0 ? 1 : bytes);
#else
  void* pointer = mi_malloc(bytes == 0 ? 1 : bytes);
#endif
  if (pointer == nullptr) throw std::bad_alloc();
  g_bytes.fetch_add(bytes, std::memory_order_relaxed);
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return pointer;
}

void deallocate(void* pointer, std::size_t bytes) noexcept {
  if (pointer == nullptr) return;
  g_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  g_allocations.fetch_sub(1, std::memory_order_relaxed);
#ifdef SWITCHBOARD_SYSTEM_ALLOCATOR
  std::free(pointer);
#else
  mi_free(pointer);
#endif
}

}  // namespace switchboard::core
