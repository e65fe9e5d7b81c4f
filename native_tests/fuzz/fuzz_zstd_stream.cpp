// Fuzzes the zstd stream pair: the input, cut into messages at bytes chosen by
// the input itself, must come back message by message from the decoder; and
// the decoder, fed the raw input as a stream, must either decode it within its
// output limit or refuse it, never crash or run away. Any mismatch aborts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "core/compress/zstd_stream.hpp"

namespace compress = switchboard::compress;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);

  // Small windows and tables keep each run short; the contexts are made
  // once and reset at the start of every run, so runs stay independent.
  static compress::ZstdCompressStream compressor(
      compress::ZstdParameters{.level = 3, .window_log = 10, .chain_log = 8, .hash_log = 8});
  static compress::ZstdDecompressStream decompressor(10);
  static compress::ZstdDecompressStream hostile(12);
  compressor.reset();
  decompressor.reset();
  hostile.reset();
  std::size_t start = 0;
  while (start < input.size()) {
    // The byte at `start` says how long the next message is.
    const std::size_t length = std::min<std::size_t>(input[start] + 1u, input.size() - start);
    const auto message = input.subspan(start, length);
    std::vector<std::uint8_t> wire;
    compressor.compress_message(message, wire);
    std::vector<std::uint8_t> decoded;
    decompressor.decompress(wire, decoded, length);
    require(decoded.size() == length);
    require(std::equal(decoded.begin(), decoded.end(), message.begin()));
    start += length;
  }

  std::vector<std::uint8_t> out;
  try {
    hostile.decompress(input, out, 4096);
    require(out.size() <= 4096);
  } catch (const compress::ZstdError&) {
    require(out.empty());
  }
  return 0;
}
