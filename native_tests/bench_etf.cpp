// Native ETF throughput on a Discord MESSAGE_CREATE-shaped payload: a ~1 KB map
// with binary keys, snowflake ids, a nested author, arrays of mentions, embeds
// and attachments, booleans and nil as atoms.
//
// Each figure is the median of several repeats of many iterations, in MB/s
// (10^6 bytes of ETF per second of this thread's CPU time: the build machines
// are shared, and wall time would also count the time other processes held the
// core), beside a memcpy of the same bytes measured in the same run. Build in
// Release (-DSWITCHBOARD_NATIVE_BENCH=ON).
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/etf/decoder.hpp"
#include "core/etf/encoder.hpp"
#include "core/etf/value.hpp"

namespace etf = switchboard::core::etf;
using etf::Value;
using etf::ValueVector;

namespace {

Value text(std::string_view value) { return Value::binary(value); }
Value snowflake(std::int64_t value) { return Value::integer(value); }
Value atom(std::string_view value) { return Value::atom(value); }

Value object(std::initializer_list<std::pair<std::string_view, Value>> fields) {
  ValueVector entries;
  for (const auto& [key, value] : fields) {
    entries.push_back(text(key));
    entries.push_back(value);
  }
  return Value::map(std::move(entries));
}

Value array(std::initializer_list<Value> items) {
  ValueVector elements(items.begin(), items.end());
  return Value::list(std::move(elements));
}

Value user(std::int64_t id, std::string_view name, std::string_view avatar) {
  return object({{"id", snowflake(id)},
                 {"username", text(name)},
                 {"global_name", text(name)},
                 {"avatar", text(avatar)},
                 {"discriminator", text("0")},
                 {"public_flags", Value::integer(64)},
                 {"bot", atom("false")}});
}

Value message_create() {
  const Value author =
      user(175928847299117063, "switchboard", "a_3f2b9c0d8e7f6a5b4c3d2e1f0a9b8c7d");
  const Value attachment =
      object({{"id", snowflake(1187345629471932416)},
              {"filename", text("screenshot.png")},
              {"size", Value::integer(482113)},
              {"url", text("https://cdn.discordapp.com/attachments/1/2/s.png")},
              {"proxy_url", text("https://media.discordapp.net/a/1/2/s.png")},
              {"width", Value::integer(1920)},
              {"height", Value::integer(1080)},
              {"content_type", text("image/png")}});
  const Value embed = object(
      {{"type", text("rich")},
       {"title", text("Release notes")},
       {"description", text("Scheduler latency is down and fan-out batches are larger.")},
       {"url", text("https://example.com/notes")},
       {"color", Value::integer(5814783)},
       {"fields", array({object({{"name", text("p99")}, {"value", text("0.8 ms")}}),
                         object({{"name", text("throughput")}, {"value", text("2.1x")}})})}});
  const Value data = object(
      {{"id", snowflake(1187345629471932417)},
       {"channel_id", snowflake(1021530918429126716)},
       {"guild_id", snowflake(1021530917821038623)},
       {"content", text("Deploy finished: fan-out is live for every guild shard, see the notes.")},
       {"timestamp", text("2023-12-20T10:42:17.331000+00:00")},
       {"edited_timestamp", atom("nil")},
       {"tts", atom("false")},
       {"mention_everyone", atom("false")},
       {"mentions", array({user(80351110224678912, "nelly", "a_8b1f"),
                           user(155149108183695360, "dyno", "19a5")})},
       {"mention_roles", array({snowflake(1021530918429126700), snowflake(1021530918429126701)})},
       {"attachments", array({attachment})},
       {"embeds", array({embed})},
       {"nonce", text("1187345627827519488")},
       {"pinned", atom("false")},
       {"type", Value::integer(0)},
       {"flags", Value::integer(0)},
       {"author", author},
       {"member", object({{"roles", array({snowflake(1021530918429126700)})},
                          {"joined_at", text("2022-09-20T17:02:11.123000+00:00")},
                          {"deaf", atom("false")},
                          {"mute", atom("false")},
                          {"nick", atom("nil")}})},
       {"referenced_message", atom("nil")}});
  return object({{"t", atom("MESSAGE_CREATE")},
                 {"s", Value::integer(42)},
                 {"op", Value::integer(0)},
                 {"d", data}});
}

// Touches every event's data the way a term builder would read it.
struct ChecksumVisitor {
  std::uint64_t sum = 0;
  bool add(std::uint64_t value) {
    sum = sum * 31 + value;
    return true;
  }
  bool on_integer(std::int64_t value) { return add(static_cast<std::uint64_t>(value)); }
  bool on_big_integer(bool, std::span<const std::uint8_t> magnitude) {
    return add(magnitude.size());
  }
  bool on_float(double value) { return add(static_cast<std::uint64_t>(value)); }
  bool on_atom(std::string_view text) {
    return add(text.size() + static_cast<unsigned char>(text[0]));
  }
  bool on_binary(std::span<const std::uint8_t> bytes) {
    return add(bytes.size() + (bytes.empty() ? 0 : bytes[0]));
  }
  bool on_bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits) {
    return add(bytes.size() + bits);
  }
  bool on_string(std::span<const std::uint8_t> bytes) { return add(bytes.size()); }
  bool on_nil() { return add(1); }
  bool begin_list(std::uint32_t n) { return add(n); }
  bool end_list() { return true; }
  bool begin_tuple(std::uint32_t n) { return add(n); }
  bool end_tuple() { return true; }
  bool begin_map(std::uint32_t n) { return add(n); }
  bool end_map() { return true; }
  bool on_pid(const etf::PidData& pid) { return add(pid.id); }
  bool on_port(const etf::PortData& port) { return add(port.id); }
  bool on_reference(const etf::ReferenceData& reference) { return add(reference.ids[0]); }
  bool on_export(const etf::ExportData& exported) { return add(exported.arity); }
  bool on_local_fun(const etf::LocalFunData& fun) { return add(fun.encoded.size()); }
};

volatile std::uint64_t g_sink = 0;

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

template <class Job>
double measure(Job job, std::size_t iterations) {
  const double start = thread_cpu_seconds();
  for (std::size_t i = 0; i < iterations; ++i) job();
  return thread_cpu_seconds() - start;
}

// Median MB/s over `repeats` runs, each long enough (~0.2 s) to drown timer noise.
template <class Job>
double median_mb_per_s(Job job, std::size_t bytes_per_iteration, std::size_t& iterations) {
  constexpr int kRepeats = 9;
  iterations = 1000;
  for (int warm = 0; warm < 3; ++warm) measure(job, iterations);
  while (measure(job, iterations) < 0.2) iterations *= 2;
  std::vector<double> rates;
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    const double seconds = measure(job, iterations);
    rates.push_back(static_cast<double>(bytes_per_iteration * iterations) / seconds / 1e6);
  }
  std::sort(rates.begin(), rates.end());
  return rates[kRepeats / 2];
}

void report(const char* name, double rate, std::size_t iterations, double baseline) {
  std::printf("%s message_create: %.1f MB/s (%zu iterations, %.2fx memcpy)\n", name, rate,
              iterations, rate / baseline);
}

}  // namespace

int main() {
  const Value payload = message_create();
  const etf::ByteBuffer encoded = etf::encode(payload);
  const std::span<const std::uint8_t> bytes = encoded.bytes();
  std::printf("payload: %zu bytes of ETF\n", bytes.size());

  // Correctness first: the payload decodes back to itself.
  if (etf::decode(bytes).value != payload) {
    std::fprintf(stderr, "round trip failed\n");
    return 1;
  }

  std::size_t iterations = 0;
  std::vector<std::uint8_t> copy(bytes.size());
  const double memcpy_rate = median_mb_per_s(
      [&] {
        std::memcpy(copy.data(), bytes.data(), bytes.size());
        g_sink = g_sink + copy[bytes.size() / 2];
      },
      bytes.size(), iterations);
  std::printf("baseline memcpy message_create: %.1f MB/s (%zu iterations)\n", memcpy_rate,
              iterations);

  etf::EtfDecoder decoder;
  const double decode_rate = median_mb_per_s(
      [&] {
        ChecksumVisitor visitor;
        const etf::DecodeStatus status = decoder.decode(bytes, visitor);
        g_sink = g_sink + visitor.sum + status.bytes_used;
      },
      bytes.size(), iterations);
  report("etf.decode", decode_rate, iterations, memcpy_rate);

  etf::EtfEncoder encoder(2048);
  const double encode_rate = median_mb_per_s(
      [&] {
        encoder.clear();
        encoder.version();
        etf::encode_body(payload, encoder);
        g_sink = g_sink + encoder.size();
      },
      bytes.size(), iterations);
  report("etf.encode", encode_rate, iterations, memcpy_rate);

  const double decode_value_rate = median_mb_per_s(
      [&] {
        const etf::DecodedValue result = etf::decode(decoder, bytes);
        g_sink = g_sink + result.status.bytes_used;
      },
      bytes.size(), iterations);
  report("etf.decode_value", decode_value_rate, iterations, memcpy_rate);

  // Correctness after the runs: the reused encoder still writes the same bytes.
  encoder.clear();
  encoder.version();
  etf::encode_body(payload, encoder);
  if (encoder.size() != bytes.size() ||
      std::memcmp(encoder.bytes().data(), bytes.data(), bytes.size()) != 0) {
    std::fprintf(stderr, "encoder output changed\n");
    return 1;
  }
  return 0;
}
