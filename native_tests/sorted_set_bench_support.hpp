// Helpers shared by the sorted set's native benchmarks.
#pragma once

#include <sys/resource.h>
#include <cstdint>

#include "core/sorted_set/term_key_builder.hpp"

namespace switchboard::bench {

// CPU time (user and system) from getrusage: RUSAGE_THREAD for the calling
// thread, RUSAGE_SELF for the whole process.
inline double cpu_seconds(int who) {
  rusage usage{};
  getrusage(who, &usage);
  const auto seconds = [](timeval time) {
    return static_cast<double>(time.tv_sec) + static_cast<double>(time.tv_usec) * 1e-6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The key of a small integer.
inline core::TermKey integer_key(std::int64_t value) {
  core::TermKeyBuilder builder;
  builder.small_int(value);
  return builder.finish();
}

}  // namespace switchboard::bench
