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
SWITCHBOARD_RESOURCE(ZstdCompressResource, "ZstdCompressStream");

struct ZstdDecompressResource {
  explicit ZstdDecompressResource(int window_log_max) : stream(window_log_max) {}
  std::mutex lock;
  compress::ZstdDecompressStream stream;
  std::vector<std::uint8_t> scratch;
};
SWITCHBOARD_RESOURCE(ZstdDecompressResource, "ZstdDecompressStream");

ERL_NIF_TERM& atom_zstd_error = register_atom("zstd_error");

template <class Resource>
Resource* stream_argument(ErlNifEnv* env, ERL_NIF_TERM term, const char* expected) {
  Resource* stream = borrow_resource<Resource>(env, term);
  if (stream == nullptr) throw bad_argument(env, expected, term);
  return stream;
}

ErlNifBinary binary_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ErlNifBinary binary;
  if (!enif_inspect_binary(env, term, &binary)) throw bad_argument(env, "a binary", term);
  return binary;
}

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

std::span<const std::uint8_t> span_of(const ErlNifBinary& binary) {
  return {binary.data, binary.size};
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

ERL_NIF_TERM zstd_compress_run(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  auto* resource =
      stream_argument<ZstdCompressResource>(env, argv[0], "a Switchboard.Zstd compress stream");
  const ErlNifBinary message = binary_argument(env, argv[1]);
  auto held = take(resource->lock);
  try {
    resource->stream.compress_message(span_of(message), resource->scratch);
  } catch (const compress::ZstdError& error) {
    resource->scratch.clear();
    throw std::runtime_error(error.what());
  }
  return scratch_to_binary(env, resource->scratch);
}

ERL_NIF_TERM zstd_compress(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  stream_argument<ZstdCompressResource>(env, argv[0], "a Switchboard.Zstd compress stream");
  if (binary_argument(env, argv[1]).size > kInlineBytes) {
    return run_dirty_cpu(env, "zstd_compress", raw_entry<zstd_compress_run>, argc, argv);
  }
  ERL_NIF_TERM result = zstd_compress_run(env, argc, argv);
  report_work(env, binary_argument(env, argv[1]).size);
  return result;
}
SWITCHBOARD_RAW_NIF(zstd_compress, 2, 0);

// {context_bytes, bytes_in, bytes_out}
std::tuple<int64_t, int64_t, int64_t> zstd_compress_info(ErlNifEnv* env, Term stream) {
  auto* resource = stream_argument<ZstdCompressResource>(env, stream.value,
                                                         "a Switchboard.Zstd compress stream");
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

ERL_NIF_TERM zstd_decompress_run(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  auto* resource =
      stream_argument<ZstdDecompressResource>(env, argv[0], "a Switchboard.Zstd decompress stream");
  const ErlNifBinary input = binary_argument(env, argv[1]);
  ErlNifUInt64 max_output;
  if (!enif_get_uint64(env, argv[2], &max_output)) {
    throw bad_argument(env, "a non-negative integer output limit", argv[2]);
  }
  auto held = take(resource->lock);
  try {
    resource->stream.decompress(span_of(input), resource->scratch, max_output);
  } catch (const compress::ZstdError& error) {
    resource->scratch.clear();
    return enif_make_tuple2(env, atoms::error,
                            enif_make_tuple2(env, atom_zstd_error, make_binary(env, error.what())));
  }
  return enif_make_tuple2(env, atoms::ok, scratch_to_binary(env, resource->scratch));
}

ERL_NIF_TERM zstd_decompress(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  stream_argument<ZstdDecompressResource>(env, argv[0], "a Switchboard.Zstd decompress stream");
  // Output grows with the input (and is bounded by the limit): both count.
  ErlNifUInt64 max_output = 0;
  enif_get_uint64(env, argv[2], &max_output);
  if (binary_argument(env, argv[1]).size > kInlineBytes / 4 || max_output > 4 * kInlineBytes) {
    return run_dirty_cpu(env, "zstd_decompress", raw_entry<zstd_decompress_run>, argc, argv);
  }
  ERL_NIF_TERM result = zstd_decompress_run(env, argc, argv);
  report_work(env, max_output);
  return result;
}
SWITCHBOARD_RAW_NIF(zstd_decompress, 3, 0);

// {bytes held by every zstd context, live contexts}: native memory outside
// the VM's allocators.
std::tuple<int64_t, int64_t> zstd_native_memory(ErlNifEnv*) {
  return {static_cast<int64_t>(compress::zstd_allocated_bytes()),
          static_cast<int64_t>(compress::zstd_live_contexts())};
}
SWITCHBOARD_NIF(zstd_native_memory, 0);

}  // namespace
}  // namespace switchboard::nif
