// Native JSON read throughput on gateway payloads (MESSAGE_CREATE ~1 KB,
// PRESENCE_UPDATE ~200 B, GUILD_CREATE with 1,000 members ~300 KB): our Reader
// against simdjson 3.0 (Debian's libsimdjson-dev), to decide whether simdjson
// should read for the NIF.
//
// The NIF's job is building Erlang terms, so what counts is parsing *and*
// visiting every value with its decoded text: our Reader does both in one
// pass (rows "Reader, validate only" and "Reader, visiting"), simdjson's DOM
// parser first writes a tape and the walk then reads it back (rows "simdjson
// DOM parse" and "simdjson DOM parse + walk"). The "visit" does what a term
// builder needs from each value: a string's bytes (summed, so nothing is
// optimised away), a number, a container's size.
//
// Figures: MB/s of JSON per second of this thread's CPU time (the machine is
// shared), the median of several repeats, beside a memcpy of the same bytes.
// Build in Release with -DSWITCHBOARD_NATIVE_BENCH=ON.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/json/parse_error.hpp"
#include "core/json/reader.hpp"

#if SWITCHBOARD_HAVE_SIMDJSON
#include <simdjson.h>
#endif

namespace json = switchboard::core::json;

namespace {

std::string id(int n) { return std::to_string(1200000000000000000LL + n * 4194304LL); }

std::string author(int n) {
  return R"({"id":")" + id(n) + R"(","username":"someone)" + std::to_string(n) +
         R"(","global_name":"Some One )" + std::to_string(n) +
         R"( \u2728","avatar":"9f8e7d6c5b4a39281706f5e4d3c2b1a0","discriminator":"0",)"
         R"("public_flags":256,"bot":false})";
}

std::string message_create(int n) {
  return R"({"type":0,"tts":false,"timestamp":"2024-05-06T07:08:09.101000+00:00","pinned":false,)"
         R"("nonce":")" +
         id(n + 50) + R"(","mentions":[)" + author(n + 3) + R"(],"mention_roles":[")" + id(7) +
         R"(",")" + id(8) + R"("],"mention_everyone":false,"member":{"roles":[")" + id(7) +
         R"(",")" + id(9) + R"("],"premium_since":null,"nick":"nick \")" + std::to_string(n) +
         R"(\"","mute":false,"joined_at":"2022-01-02T03:04:05.600000+00:00","flags":0,)"
         R"("deaf":false},"id":")" +
         id(n) + R"(","flags":0,"embeds":[],"edited_timestamp":null,"content":"hey <@)" +
         id(n + 3) +
         R"(>, the build on main is green again \u2014 ship it?","components":[],"channel_id":")" +
         id(2) + R"(","author":)" + author(n) + R"(,"attachments":[],"guild_id":")" + id(1) +
         R"("})";
}

std::string presence_update(int n) {
  return R"({"user":{"id":")" + id(n) + R"("},"status":"idle","guild_id":")" + id(1) +
         R"(","client_status":{"mobile":"idle"},"activities":[{"type":4,"state":"coding",)"
         R"("name":"Custom Status"}]})";
}

std::string guild_create(int members) {
  std::string text = R"({"id":")" + id(1) + R"(","name":"Big Guild","member_count":)" +
                     std::to_string(members) + R"(,"large":true,"members":[)";
  for (int n = 1; n <= members; ++n) {
    if (n > 1) text += ',';
    text += R"({"user":)" + author(n) + R"(,"roles":[")" + id(7 + n % 4) +
            R"("],"premium_since":null,"pending":false,"nick":)" +
            (n % 3 == 0 ? "\"member " + std::to_string(n) + "\"" : std::string("null")) +
            R"(,"mute":false,"joined_at":"2023-06-07T08:09:10.111000+00:00","flags":0,)"
            R"("deaf":false,"communication_disabled_until":null})";
  }
  return text + "]}";
}

double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// MB/s of `bytes` processed per call, the median of 7 repeats.
template <class Fn>
double throughput(std::size_t bytes, std::size_t iterations, Fn&& fn) {
  std::vector<double> rates;
  for (int repeat = 0; repeat < 7; ++repeat) {
    const double start = cpu_seconds();
    for (std::size_t i = 0; i < iterations; ++i) fn();
    const double elapsed = cpu_seconds() - start;
    rates.push_back(static_cast<double>(bytes * iterations) / elapsed / 1e6);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// What a term builder takes from each value.
struct Visitor {
  std::uint64_t sum = 0;
  void null_value() { ++sum; }
  void boolean(bool value) { sum += value ? 2u : 3u; }
  void integer(std::int64_t value) { sum += static_cast<std::uint64_t>(value); }
  void floating(double value) { sum += static_cast<std::uint64_t>(value); }
  bool big_integer(std::string_view text) {
    sum += text.size();
    return true;
  }
  void string(std::string_view text, bool, std::size_t) {
    sum += text.size() + static_cast<unsigned char>(text.empty() ? 0 : text.back());
  }
  bool key(std::string_view text, bool in_input, std::size_t at) {
    string(text, in_input, at);
    return true;
  }
  void end_array(std::size_t count) { sum += count; }
  void end_object(std::size_t pairs) { sum += pairs; }
};

#if SWITCHBOARD_HAVE_SIMDJSON
void walk(simdjson::dom::element element, std::uint64_t& sum) {
  switch (element.type()) {
    case simdjson::dom::element_type::ARRAY: {
      std::size_t count = 0;
      const simdjson::dom::array array = element.get_array().value_unsafe();
      for (simdjson::dom::element item : array) {
        walk(item, sum);
        ++count;
      }
      sum += count;
      break;
    }
    case simdjson::dom::element_type::OBJECT: {
      std::size_t pairs = 0;
      const simdjson::dom::object object = element.get_object().value_unsafe();
      for (simdjson::dom::key_value_pair field : object) {
        sum += field.key.size() + static_cast<unsigned char>(field.key.back());
        walk(field.value, sum);
        ++pairs;
      }
      sum += pairs;
      break;
    }
    case simdjson::dom::element_type::STRING: {
      const std::string_view text = element.get_string().value_unsafe();
      sum += text.size() + static_cast<unsigned char>(text.empty() ? 0 : text.back());
      break;
    }
    case simdjson::dom::element_type::INT64:
      sum += static_cast<std::uint64_t>(element.get_int64().value_unsafe());
      break;
    case simdjson::dom::element_type::UINT64:
      sum += element.get_uint64().value_unsafe();
      break;
    case simdjson::dom::element_type::DOUBLE:
      sum += static_cast<std::uint64_t>(element.get_double().value_unsafe());
      break;
    case simdjson::dom::element_type::BOOL:
      sum += element.get_bool().value_unsafe() ? 2u : 3u;
      break;
    case simdjson::dom::element_type::NULL_VALUE:
      ++sum;
      break;
  }
}
#endif

void bench(const char* name, const std::string& text, std::size_t iterations) {
  std::printf("\n%s (%zu bytes of JSON)\n", name, text.size());
  std::vector<char> copy(text.size());
  const double memcpy_rate = throughput(text.size(), iterations, [&] {
    std::memcpy(copy.data(), text.data(), text.size());
    asm volatile("" : : "r"(copy.data()) : "memory");
  });
  std::printf("  %-36s %9.0f MB/s\n", "memcpy (reference)", memcpy_rate);

  json::Reader reader;
  json::NullHandler validator;
  const double validate_rate = throughput(text.size(), iterations, [&] {
    if (reader.parse(validator, text, {})) std::abort();
  });
  std::printf("  %-36s %9.0f MB/s\n", "Reader, validate only", validate_rate);

  Visitor visitor;
  const double visit_rate = throughput(text.size(), iterations, [&] {
    if (reader.parse(visitor, text, {})) std::abort();
  });
  std::printf("  %-36s %9.0f MB/s\n", "Reader, visiting (what the NIF does)", visit_rate);

#if SWITCHBOARD_HAVE_SIMDJSON
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(text);
  const double dom_rate = throughput(text.size(), iterations, [&] {
    simdjson::dom::element root;
    if (parser.parse(padded).get(root)) std::abort();
  });
  std::printf("  %-36s %9.0f MB/s (%.2fx Reader validate)\n", "simdjson DOM parse", dom_rate,
              dom_rate / validate_rate);

  std::uint64_t sum = 0;
  const double walk_rate = throughput(text.size(), iterations, [&] {
    simdjson::dom::element root;
    if (parser.parse(padded).get(root)) std::abort();
    walk(root, sum);
  });
  std::printf("  %-36s %9.0f MB/s (%.2fx Reader visiting)\n", "simdjson DOM parse + walk",
              walk_rate, walk_rate / visit_rate);
  // The input is in the caller's binary; simdjson needs it copied into a
  // padded buffer first (SIMDJSON_PADDING bytes readable past the end).
  const double padded_rate = throughput(text.size(), iterations, [&] {
    const simdjson::padded_string fresh(text);
    simdjson::dom::element root;
    if (parser.parse(fresh).get(root)) std::abort();
    walk(root, sum);
  });
  std::printf("  %-36s %9.0f MB/s (%.2fx Reader visiting)\n", "simdjson pad + parse + walk",
              padded_rate, padded_rate / visit_rate);
  std::printf("  (checksums %llu %llu)\n", static_cast<unsigned long long>(visitor.sum),
              static_cast<unsigned long long>(sum));
#else
  std::printf("  simdjson not found: its rows are skipped\n");
#endif
}

}  // namespace

int main() {
  bench("PRESENCE_UPDATE", presence_update(1), 200000);
  bench("MESSAGE_CREATE", message_create(1), 40000);
  bench("GUILD_CREATE, 1,000 members", guild_create(1000), 150);
  return 0;
}
