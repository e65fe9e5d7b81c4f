#include <catch2/catch.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/compress/zstd_stream.hpp"

using switchboard::compress::zstd_allocated_bytes;
using switchboard::compress::zstd_live_contexts;
using switchboard::compress::ZstdCompressStream;
using switchboard::compress::ZstdDecompressStream;
using switchboard::compress::ZstdError;
using switchboard::compress::ZstdParameters;

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::string text_of(const std::vector<std::uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

std::string message_create(int n) {
  return R"({"t":"MESSAGE_CREATE","s":)" + std::to_string(n) +
         R"(,"op":0,"d":{"type":0,"tts":false,"timestamp":"2026-12-05T21:00:00.000000+00:00",)"
         R"("pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,)"
         R"("id":"13)" +
         std::to_string(100000 + n) + R"(","flags":0,"embeds":[],"content":"hello number )" +
         std::to_string(n) +
         R"(","components":[],"channel_id":"1100000000000000001","author":{"username":"bot",)"
         R"("id":"1000000000000000001","discriminator":"0","avatar":null},"attachments":[],)"
         R"("guild_id":"1000000000000000000"}})";
}

}  // namespace

TEST_CASE("each message decodes as soon as it arrives", "[zstd_stream]") {
  ZstdCompressStream compressor;
  ZstdDecompressStream decompressor;
  for (int n = 0; n < 50; ++n) {
    const std::string message = message_create(n);
    std::vector<std::uint8_t> wire;
    compressor.compress_message(bytes_of(message), wire);
    REQUIRE(wire.size() <= ZstdCompressStream::bound(message.size()));
    std::vector<std::uint8_t> decoded;
    decompressor.decompress(wire, decoded, 1 << 20);
    REQUIRE(text_of(decoded) == message);
  }
  REQUIRE(compressor.bytes_in() > compressor.bytes_out());
}

TEST_CASE("the shared history makes repeated shapes small", "[zstd_stream]") {
  ZstdCompressStream compressor;
  std::vector<std::uint8_t> first;
  compressor.compress_message(bytes_of(message_create(1)), first);
  std::vector<std::uint8_t> second;
  compressor.compress_message(bytes_of(message_create(2)), second);
  // The second message repeats all but a few bytes of the first.
  REQUIRE(second.size() * 3 < first.size());
}

TEST_CASE("a stream can be fed to the decoder one byte at a time", "[zstd_stream]") {
  ZstdCompressStream compressor;
  std::vector<std::uint8_t> wire;
  std::string all;
  for (int n = 0; n < 5; ++n) {
    all += message_create(n);
    compressor.compress_message(bytes_of(message_create(n)), wire);
  }
  ZstdDecompressStream decompressor;
  std::vector<std::uint8_t> decoded;
  for (std::uint8_t byte : wire) decompressor.decompress({&byte, 1}, decoded, 1 << 20);
  REQUIRE(text_of(decoded) == all);
}

TEST_CASE("empty and large messages", "[zstd_stream]") {
  ZstdCompressStream compressor;
  ZstdDecompressStream decompressor;
  std::vector<std::uint8_t> wire;
  compressor.compress_message({}, wire);
  std::vector<std::uint8_t> decoded;
  decompressor.decompress(wire, decoded, 16);
  REQUIRE(decoded.empty());

  std::string large;
  std::uint32_t state = 1;
  for (int i = 0; i < 3'000'000; ++i) {
    state = state * 1103515245u + 12345u;
    large.push_back(static_cast<char>('a' + (state >> 16) % 7));
  }
  wire.clear();
  compressor.compress_message(bytes_of(large), wire);
  decompressor.decompress(wire, decoded, large.size());
  REQUIRE(text_of(decoded) == large);
}

TEST_CASE("the decoder refuses output past its limit and corrupt input", "[zstd_stream]") {
  ZstdCompressStream compressor;
  std::vector<std::uint8_t> wire;
  const std::string message(1000, 'x');
  compressor.compress_message(bytes_of(message), wire);
  {
    ZstdDecompressStream decompressor;
    std::vector<std::uint8_t> decoded;
    REQUIRE_THROWS_AS(decompressor.decompress(wire, decoded, 999), ZstdError);
    REQUIRE(decoded.empty());
  }
  {
    ZstdDecompressStream decompressor;
    std::vector<std::uint8_t> decoded;
    decompressor.decompress(wire, decoded, 1000);
    REQUIRE(decoded.size() == 1000);
  }
  ZstdDecompressStream decompressor;
  std::vector<std::uint8_t> decoded;
  const std::string garbage = "this is not a zstd frame";
  REQUIRE_THROWS_AS(decompressor.decompress(bytes_of(garbage), decoded, 1 << 20), ZstdError);
}

TEST_CASE("parameters are checked against zstd's bounds", "[zstd_stream]") {
  REQUIRE_THROWS_AS(ZstdCompressStream(ZstdParameters{.level = 6, .window_log = 40}),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(ZstdCompressStream(ZstdParameters{.level = 1000}), std::invalid_argument);
  REQUIRE_NOTHROW(ZstdCompressStream(ZstdParameters{.level = 1, .window_log = 10}));
}

TEST_CASE("context memory is counted outside the host and released", "[zstd_stream]") {
  const std::size_t bytes_before = zstd_allocated_bytes();
  const std::size_t contexts_before = zstd_live_contexts();
  {
    ZstdCompressStream compressor;
    std::vector<std::uint8_t> wire;
    compressor.compress_message(bytes_of(message_create(1)), wire);
    REQUIRE(zstd_live_contexts() == contexts_before + 1);
    REQUIRE(zstd_allocated_bytes() >= bytes_before + compressor.memory_bytes() / 2);
    // Discord's window (2^18) and tables bound a context well under 2 MiB.
    REQUIRE(compressor.memory_bytes() > (1u << 18));
    REQUIRE(compressor.memory_bytes() < (2u << 20));
  }
  REQUIRE(zstd_live_contexts() == contexts_before);
  REQUIRE(zstd_allocated_bytes() == bytes_before);
}

TEST_CASE("reset starts a new stream on the same context", "[zstd_stream]") {
  ZstdCompressStream compressor;
  std::vector<std::uint8_t> wire;
  compressor.compress_message(bytes_of(message_create(1)), wire);
  const std::size_t memory = compressor.memory_bytes();
  compressor.reset();
  REQUIRE(compressor.bytes_in() == 0);
  std::vector<std::uint8_t> fresh;
  compressor.compress_message(bytes_of(message_create(2)), fresh);
  REQUIRE(compressor.memory_bytes() == memory);
  // A new stream: a decoder that never saw the first one reads it whole.
  ZstdDecompressStream decompressor;
  std::vector<std::uint8_t> decoded;
  decompressor.decompress(fresh, decoded, 1 << 20);
  REQUIRE(text_of(decoded) == message_create(2));
  decompressor.reset();
  decoded.clear();
  decompressor.decompress(wire, decoded, 1 << 20);
  REQUIRE(text_of(decoded) == message_create(1));
}
