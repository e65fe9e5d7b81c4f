// Switchboard.Zstd: NIFs over core::compress's zstd streams. Thin by design:
// the core compresses, this file picks the scheduler and maps errors.
//
// Scheduling: work is measured in input bytes. A call with more than
// kInlineBytes of input goes to a dirty CPU scheduler (zstd at level 6 runs
// at roughly 100 MB/s here, so the inline limit is well under a millisecond).
// A stream is owned by one process; a call that finds it busy (another
// process using the same stream at the same time) raises instead of waiting.
#include <algorithm>
#include <mutex>
#include <vector>

#include "core/compress/zstd_stream.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {
namespace {

constexpr std::size_t kInlineBytes = 32 * 1024;
// Reported to the VM after each inline call: about 1% of a 1 ms timeslice per
// KiB compressed, so a process compressing in a loop is preempted on time,
// not only after thousands of calls that each count as one reduction.
constexpr std::size_t kBytesPerPercent = 1024;

void report_work(ErlNifEnv* env, std::size_t bytes) {
  const std::size_t percent = std::clamp<std::size_t>(bytes / kBytesPerPercent, 1, 100);
  enif_consume_timeslice(env, static_cast<int>(percent));
}
// A scratch buffer larger than this is released after the call, so an idle
// connection does not keep the memory of its largest frame.
constexpr std::size_t kScratchKeep = 64 * 1024;

struct ZstdCompressResource {
  explicit ZstdCompressResource(const compress::ZstdParameters& parameters) : stream(parameters) {}
  std::mutex lock;
  compress::ZstdCompressStream stream;
  std::vector<std::uint8_t> scratch;
};
SWITCHBOARD_RESOURCE(ZstdCompressResource, "ZstdCompressStream",
                     "a Switchboard.Zstd compress stream");

struct ZstdDecompressResource {
  explicit ZstdDecompressResource(int window_log_max) : stream(window_log_max) {}
  std::mutex lock;
  compress::ZstdDecompressStream stream;
  std::vector<std::uint8_t> scratch;
};
SWITCHBOARD_RESOURCE(ZstdDecompressResource, "ZstdDecompressStream",
                     "a Switchboard.Zstd decompress stream");

ERL_NIF_TERM& atom_zstd_error = register_atom("zstd_error");

std::unique_lock<std::mutex> take(std::mutex& lock) {
  std::unique_lock<std::mutex> held(lock, std::try_to_lock);
  if (!held.owns_lock()) {
    throw std::runtime_error("zstd stream used by two calls at once (a stream has one owner)");
  }
  return held;
}

ERL_NIF_TERM scratch_to_binary(ErlNifEnv* env, std::vector<std::uint8_t>& scratch) {
  ERL_NIF_TERM result =
      make_binary(env, {reinterpret_cast<const char*>(scratch.data()), scratch.size()});
  scratch.clear();
  if (scratch.capacity() > kScratchKeep) std::vector<std::uint8_t>().swap(scratch);
  return result;
}

std::span<const std::uint8_t> span_of(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()};
}

ResourcePtr<ZstdCompressResource> zstd_compress_new(ErlNifEnv*, int64_t level, int64_t window_log,
                                                    int64_t chain_log, int64_t hash_log) {
  auto narrow = [](int64_t value) {
    if (value < -1000000 || value > 1000000) {
      throw std::invalid_argument("zstd parameter out of range: " + std::to_string(value));
    }
    return static_cast<int>(value);
  };
  return make_resource<ZstdCompressResource>(compress::ZstdParameters{
      narrow(level), narrow(window_log), narrow(chain_log), narrow(hash_log)});
}
SWITCHBOARD_NIF(zstd_compress_new, 0);

// zstd_compress(Stream, Message) -> the compressed message; reruns itself
// dirty above kInlineBytes of input.
Scheduled<ERL_NIF_TERM> zstd_compress(Call& call, Borrowed<ZstdCompressResource> resource,
                                      std::span<const std::byte> message) {
  const bool normal = call.on_normal_scheduler();
  if (normal && message.size() > kInlineBytes) return call.dirty();
  auto held = take(resource->lock);
  try {
    resource->stream.compress_message(span_of(message), resource->scratch);
  } catch (const compress::ZstdError& error) {
    resource->scratch.clear();
    throw std::runtime_error(error.what());
  }
  const ERL_NIF_TERM result = scratch_to_binary(call, resource->scratch);
  if (normal) report_work(call, message.size());
  return result;
}
SWITCHBOARD_NIF(zstd_compress, 0);

// {context_bytes, bytes_in, bytes_out}
std::tuple<int64_t, int64_t, int64_t> zstd_compress_info(ErlNifEnv*,
                                                         Borrowed<ZstdCompressResource> resource) {
  auto held = take(resource->lock);
  return {static_cast<int64_t>(resource->stream.memory_bytes()),
          static_cast<int64_t>(resource->stream.bytes_in()),
          static_cast<int64_t>(resource->stream.bytes_out())};
}
SWITCHBOARD_NIF(zstd_compress_info, 0);

ResourcePtr<ZstdDecompressResource> zstd_decompress_new(ErlNifEnv*, int64_t window_log_max) {
  if (window_log_max < 10 || window_log_max > 31) {
    throw std::invalid_argument("zstd window_log_max out of range: " +
                                std::to_string(window_log_max));
  }
  return make_resource<ZstdDecompressResource>(static_cast<int>(window_log_max));
}
SWITCHBOARD_NIF(zstd_decompress_new, 0);

// zstd_decompress(Stream, Input, MaxOutput) -> {ok, Binary} | {error, {zstd_error, Message}};
// reruns itself dirty when the input or the output it may grow to is large.
Scheduled<std::variant<Ok<ERL_NIF_TERM>, Error<std::tuple<ERL_NIF_TERM, std::string>>>>
zstd_decompress(Call& call, Borrowed<ZstdDecompressResource> resource,
                std::span<const std::byte> input, NonNegative<uint64_t> max_output) {
  const bool normal = call.on_normal_scheduler();
  // Output grows with the input (and is bounded by the limit): both count.
  if (normal && (input.size() > kInlineBytes / 4 || max_output > 4 * kInlineBytes)) {
    return call.dirty();
  }
  auto held = take(resource->lock);
  try {
    resource->stream.decompress(span_of(input), resource->scratch, max_output);
  } catch (const compress::ZstdError& error) {
    resource->scratch.clear();
    return Error{std::tuple<ERL_NIF_TERM, std::string>{atom_zstd_error, error.what()}};
  }
  const ERL_NIF_TERM result = scratch_to_binary(call, resource->scratch);
  if (normal) report_work(call, max_output);
  return Ok{result};
}
SWITCHBOARD_NIF(zstd_decompress, 0);

// {bytes held by every zstd context, live contexts}: native memory outside
// the VM's allocators.
std::tuple<int64_t, int64_t> zstd_native_memory(ErlNifEnv*) {
  return {static_cast<int64_t>(compress::zstd_allocated_bytes()),
          static_cast<int64_t>(compress::zstd_live_contexts())};
}
SWITCHBOARD_NIF(zstd_native_memory, 0);

}  // namespace
}  // namespace switchboard::nif
