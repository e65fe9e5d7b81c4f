#include "core/compress/zstd_stream.hpp"

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_customMem and ZSTD_createCCtx_advanced
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <new>
#include <string>

#ifdef SWITCHBOARD_SYSTEM_ALLOCATOR
#include <malloc.h>
#include <cstdlib>
#else
#include <mimalloc.h>
#endif

namespace switchboard::compress {
namespace {

std::atomic<std::size_t> allocated{0};
std::atomic<std::size_t> contexts{0};

// zstd frees without a size, so the counter reads each block's usable size.
void* counted_allocate(void*, std::size_t bytes) {
#ifdef SWITCHBOARD_SYSTEM_ALLOCATOR
  void* pointer = std::malloc(bytes);
  if (pointer != nullptr) allocated += malloc_usable_size(pointer);
#else
  void* pointer = mi_malloc(bytes);
  if (pointer != nullptr) allocated += mi_usable_size(pointer);
#endif
  return pointer;
}

void counted_free(void*, void* pointer) {
  if (pointer == nullptr) return;
#ifdef SWITCHBOARD_SYSTEM_ALLOCATOR
  allocated -= malloc_usable_size(pointer);
  std::free(pointer);
#else
  allocated -= mi_usable_size(pointer);
  mi_free(pointer);
#endif
}

constexpr ZSTD_customMem kCountedMemory{counted_allocate, counted_free, nullptr};

void check(std::size_t code) {
  if (ZSTD_isError(code)) throw ZstdError(std::string("zstd: ") + ZSTD_getErrorName(code));
}

void check_bounds(ZSTD_cParameter parameter, int value, const char* name) {
  const ZSTD_bounds bounds = ZSTD_cParam_getBounds(parameter);
  if (ZSTD_isError(bounds.error) || value < bounds.lowerBound || value > bounds.upperBound) {
    throw std::invalid_argument(std::string("zstd ") + name +
                                " out of range: " + std::to_string(value));
  }
}

}  // namespace

std::size_t zstd_allocated_bytes() noexcept { return allocated.load(); }
std::size_t zstd_live_contexts() noexcept { return contexts.load(); }

ZstdCompressStream::ZstdCompressStream(const ZstdParameters& parameters) {
  check_bounds(ZSTD_c_compressionLevel, parameters.level, "level");
  check_bounds(ZSTD_c_windowLog, parameters.window_log, "window_log");
  check_bounds(ZSTD_c_chainLog, parameters.chain_log, "chain_log");
  check_bounds(ZSTD_c_hashLog, parameters.hash_log, "hash_log");
  context_ = ZSTD_createCCtx_advanced(kCountedMemory);
  if (context_ == nullptr) throw std::bad_alloc();
  ++contexts;
  try {
    check(ZSTD_CCtx_setParameter(context_, ZSTD_c_compressionLevel, parameters.level));
    check(ZSTD_CCtx_setParameter(context_, ZSTD_c_windowLog, parameters.window_log));
    check(ZSTD_CCtx_setParameter(context_, ZSTD_c_chainLog, parameters.chain_log));
    check(ZSTD_CCtx_setParameter(context_, ZSTD_c_hashLog, parameters.hash_log));
    // The stream never ends, so the frame header cannot carry a size anyway;
    // a checksum would only be written at the end.
    check(ZSTD_CCtx_setParameter(context_, ZSTD_c_contentSizeFlag, 0));
  } catch (...) {
    ZSTD_freeCCtx(context_);
    --contexts;
    throw;
  }
}

ZstdCompressStream::~ZstdCompressStream() {
  ZSTD_freeCCtx(context_);
  --contexts;
}

std::size_t ZstdCompressStream::bound(std::size_t size) noexcept {
  // A flushed block adds its 3-byte header; the first message also carries
  // the frame header (at most 18 bytes). compressBound covers the rest.
  return ZSTD_compressBound(size) + 32;
}

void ZstdCompressStream::compress_message(std::span<const std::uint8_t> message,
                                          std::vector<std::uint8_t>& out) {
  const std::size_t start = out.size();
  out.resize(start + bound(message.size()));
  ZSTD_inBuffer input{message.data(), message.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), start};
  for (;;) {
    const std::size_t remaining = ZSTD_compressStream2(context_, &output, &input, ZSTD_e_flush);
    if (ZSTD_isError(remaining)) {
      out.resize(start);
      check(remaining);
    }
    if (remaining == 0) break;
    // Not flushed yet: give it more room (rare, the bound is generous).
    out.resize(out.size() + ZSTD_CStreamOutSize());
    output.dst = out.data();
    output.size = out.size();
  }
  out.resize(output.pos);
  bytes_in_ += message.size();
  bytes_out_ += output.pos - start;
}

void ZstdCompressStream::reset() noexcept {
  ZSTD_CCtx_reset(context_, ZSTD_reset_session_only);
  bytes_in_ = 0;
  bytes_out_ = 0;
}

std::size_t ZstdCompressStream::memory_bytes() const noexcept { return ZSTD_sizeof_CCtx(context_); }

ZstdDecompressStream::ZstdDecompressStream(int window_log_max) {
  context_ = ZSTD_createDCtx_advanced(kCountedMemory);
  if (context_ == nullptr) throw std::bad_alloc();
  ++contexts;
  const std::size_t code = ZSTD_DCtx_setParameter(context_, ZSTD_d_windowLogMax, window_log_max);
  if (ZSTD_isError(code)) {
    ZSTD_freeDCtx(context_);
    --contexts;
    check(code);
  }
}

ZstdDecompressStream::~ZstdDecompressStream() {
  ZSTD_freeDCtx(context_);
  --contexts;
}

void ZstdDecompressStream::decompress(std::span<const std::uint8_t> input,
                                      std::vector<std::uint8_t>& out, std::size_t max_output) {
  const std::size_t start = out.size();
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  for (;;) {
    const std::size_t produced = out.size() - start;
    // One byte past the limit, so output of exactly max_output is not
    // mistaken for more.
    const std::size_t room =
        std::min<std::size_t>(ZSTD_DStreamOutSize(), max_output - produced + 1);
    out.resize(out.size() + room);
    ZSTD_outBuffer output{out.data(), out.size(), out.size() - room};
    const std::size_t code = ZSTD_decompressStream(context_, &output, &in);
    out.resize(output.pos);
    if (ZSTD_isError(code)) {
      out.resize(start);
      check(code);
    }
    if (out.size() - start > max_output) {
      out.resize(start);
      throw ZstdError("zstd: output larger than the limit");
    }
    // Done when every input byte is consumed and the output was not full
    // (a full buffer may hide more output still held in the context).
    if (in.pos == in.size && output.pos < output.size) return;
  }
}

void ZstdDecompressStream::reset() noexcept { ZSTD_DCtx_reset(context_, ZSTD_reset_session_only); }

std::size_t ZstdDecompressStream::memory_bytes() const noexcept {
  return ZSTD_sizeof_DCtx(context_);
}

}  // namespace switchboard::compress
