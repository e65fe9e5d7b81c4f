// zstd streams for WebSocket compression (Discord's zstd-stream transport):
// one compression context per connection, every message compressed with a
// flush so the receiver can decode it as soon as it arrives, the context's
// history carried from message to message.
//
// Contexts are allocated with the core's allocator (mimalloc), outside any
// host allocator, and the bytes they hold are counted (`zstd_allocated_bytes`):
// Discord found per-connection contexts made by a NIF fragmenting the VM's
// driver allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace switchboard::compress {

// Discord's parameters for zstd-stream ("How Discord Reduced Websocket
// Traffic by 40%"): level 6 with a 256 KiB window and small tables.
struct ZstdParameters {
  int level = 6;
  int window_log = 18;
  int chain_log = 16;
  int hash_log = 16;
};

// A zstd call failed; what() holds zstd's own error name.
class ZstdError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes currently held by every zstd context made here, and how many there are.
std::size_t zstd_allocated_bytes() noexcept;
std::size_t zstd_live_contexts() noexcept;

class ZstdCompressStream {
 public:
  // Throws std::invalid_argument for parameters outside zstd's bounds.
  explicit ZstdCompressStream(const ZstdParameters& parameters = {});
  ~ZstdCompressStream();
  ZstdCompressStream(const ZstdCompressStream&) = delete;
  ZstdCompressStream& operator=(const ZstdCompressStream&) = delete;

  // Compresses `message` and flushes, appending the bytes to `out`. After the
  // call the receiver can decode every byte of every message given so far.
  void compress_message(std::span<const std::uint8_t> message, std::vector<std::uint8_t>& out);

  // Upper bound of what compress_message appends for a message of `size` bytes.
  static std::size_t bound(std::size_t size) noexcept;

  // Starts a new stream on the same context (parameters and memory kept).
  void reset() noexcept;

  // Bytes of the context (zstd's own accounting, tables and window included).
  std::size_t memory_bytes() const noexcept;
  std::uint64_t bytes_in() const noexcept { return bytes_in_; }
  std::uint64_t bytes_out() const noexcept { return bytes_out_; }

 private:
  ZSTD_CCtx_s* context_;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
};

// The receiving side (for tests and clients written against the core):
// decodes a stream fed in arbitrary pieces, refusing to produce more than
// `max_output` bytes per call.
class ZstdDecompressStream {
 public:
  explicit ZstdDecompressStream(int window_log_max = 23);
  ~ZstdDecompressStream();
  ZstdDecompressStream(const ZstdDecompressStream&) = delete;
  ZstdDecompressStream& operator=(const ZstdDecompressStream&) = delete;

  // Decodes `input`, appending what it yields to `out`. Throws ZstdError on a
  // corrupt stream or when more than `max_output` bytes would come out.
  void decompress(std::span<const std::uint8_t> input, std::vector<std::uint8_t>& out,
                  std::size_t max_output);

  // Starts decoding a new stream on the same context.
  void reset() noexcept;

  std::size_t memory_bytes() const noexcept;

 private:
  ZSTD_DCtx_s* context_;
};

}  // namespace switchboard::compress
