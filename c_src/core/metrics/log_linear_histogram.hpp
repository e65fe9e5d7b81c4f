// Histograms over unsigned 64-bit values with a bounded relative error, in
// the manner of HdrHistogram: values below 256 have a bucket each; above,
// every power of two is split into 128 equal buckets, so a bucket is never
// wider than 1/128 of its lower bound and its midpoint is within 1/256
// (0.4%) of any value in it. 7424 buckets cover the whole 64-bit range.
//
// HistogramRecorder is written by one thread and read by any (its counts are
// atomics written with plain stores); HistogramSummary merges recorders and
// answers count, min, max, mean and quantiles.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace switchboard::core {

struct LogLinearBuckets {
  static constexpr unsigned kSubBucketBits = 7;
  static constexpr std::size_t kSubBuckets = std::size_t{1} << kSubBucketBits;  // 128
  static constexpr std::size_t kExact = 2 * kSubBuckets;                        // 0..255
  static constexpr std::size_t kCount = kExact + (64 - kSubBucketBits - 1) * kSubBuckets;

  static std::size_t index_of(std::uint64_t value) noexcept {
    if (value < kExact) return static_cast<std::size_t>(value);
    const unsigned top_bit = 63u - static_cast<unsigned>(__builtin_clzll(value));  // >= 8
    const unsigned shift = top_bit - kSubBucketBits;
    const auto mantissa = static_cast<std::size_t>(value >> shift);  // 128..255
    return kExact + (top_bit - kSubBucketBits - 1) * kSubBuckets + (mantissa - kSubBuckets);
  }
  // Smallest value in bucket `index`.
  static std::uint64_t lower_bound(std::size_t index) noexcept {
    if (index < kExact) return index;
    const std::size_t octave = (index - kExact) / kSubBuckets;  // 0 for 256..511
    const std::size_t mantissa = kSubBuckets + (index - kExact) % kSubBuckets;
    return static_cast<std::uint64_t>(mantissa) << (octave + 1);
  }
  // Largest value in bucket `index`.
  static std::uint64_t upper_bound(std::size_t index) noexcept {
    if (index < kExact) return index;
    const std::size_t octave = (index - kExact) / kSubBuckets;
    return lower_bound(index) + ((std::uint64_t{1} << (octave + 1)) - 1);
  }
  // The value reported for a bucket: its midpoint (rounded down).
  static std::uint64_t midpoint(std::size_t index) noexcept {
    const std::uint64_t low = lower_bound(index);
    return low + (upper_bound(index) - low) / 2;
  }
};

class HistogramRecorder {
 public:
  static constexpr std::size_t kChunk = LogLinearBuckets::kSubBuckets;
  static constexpr std::size_t kChunks = LogLinearBuckets::kCount / kChunk;

  HistogramRecorder() = default;
  HistogramRecorder(const HistogramRecorder&) = delete;
  HistogramRecorder& operator=(const HistogramRecorder&) = delete;
  ~HistogramRecorder();

  // Owner thread only. Chunks of 128 buckets are allocated on first use, so
  // a latency histogram spanning ten octaves costs about 10 KiB.
  void record(std::uint64_t value);

  // Any thread.
  std::uint64_t sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  std::uint64_t min() const noexcept { return min_.load(std::memory_order_relaxed); }
  std::uint64_t max() const noexcept { return max_.load(std::memory_order_relaxed); }
  template <class Visit>  // visit(bucket_index, count) for every non-empty bucket
  void for_each_bucket(Visit&& visit) const {
    for (std::size_t chunk = 0; chunk < kChunks; ++chunk) {
      const Counts* counts = chunks_[chunk].load(std::memory_order_acquire);
      if (counts == nullptr) continue;
      for (std::size_t i = 0; i < kChunk; ++i) {
        const std::uint64_t count = (*counts)[i].load(std::memory_order_relaxed);
        if (count != 0) visit(chunk * kChunk + i, count);
      }
    }
  }

 private:
  using Counts = std::array<std::atomic<std::uint64_t>, kChunk>;
  std::array<std::atomic<Counts*>, kChunks> chunks_{};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<std::uint64_t> min_{UINT64_MAX};
  std::atomic<std::uint64_t> max_{0};
};

// Counts merged from any number of recorders (or single values). Like a
// recorder it holds only the 128-bucket chunks that have values, so a
// snapshot of thousands of histograms stays small and quick.
class HistogramSummary {
 public:
  void add(std::size_t bucket, std::uint64_t count);
  void add_value(std::uint64_t value);  // one value, for tests and twins
  void merge(const HistogramRecorder& recorder);
  // Empties the summary, keeping its chunks for the next use (a snapshot
  // summarises thousands of histograms with one summary).
  void reset() noexcept;

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }
  std::uint64_t sum() const noexcept { return sum_; }
  // The smallest recorded value v (as its bucket's midpoint, kept within
  // [min, max]) such that at least ceil(q * count) values are <= v.
  std::uint64_t quantile(double q) const noexcept;
  // How many values fell in buckets starting at or below `bound` (exact
  // below 256; above, a value may be counted up to 1/128 early).
  std::uint64_t count_at_most(std::uint64_t bound) const noexcept;
  // visit(bucket_index, count) for every non-empty bucket, in value order.
  template <class Visit>
  void for_each_bucket(Visit&& visit) const {
    for (std::uint64_t touched = touched_; touched != 0; touched &= touched - 1) {
      const auto chunk = static_cast<std::size_t>(__builtin_ctzll(touched));
      for (std::size_t i = 0; i < kChunk; ++i) {
        const std::uint64_t count = (*chunks_[chunk])[i];
        if (count != 0) visit(chunk * kChunk + i, count);
      }
    }
  }

 private:
  static constexpr std::size_t kChunk = HistogramRecorder::kChunk;
  static constexpr std::size_t kChunks = HistogramRecorder::kChunks;
  static_assert(kChunks <= 64, "one bit per chunk");
  std::array<std::unique_ptr<std::array<std::uint64_t, kChunk>>, kChunks> chunks_;
  std::uint64_t touched_ = 0;  // chunks with values since the last reset
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace switchboard::core
