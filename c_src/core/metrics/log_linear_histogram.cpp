#include "core/metrics/log_linear_histogram.hpp"

#include <algorithm>
#include <cmath>

namespace switchboard::core {

HistogramRecorder::~HistogramRecorder() {
  for (auto& chunk : chunks_) delete chunk.load(std::memory_order_relaxed);
}

void HistogramRecorder::record(std::uint64_t value) {
  const std::size_t index = LogLinearBuckets::index_of(value);
  std::atomic<Counts*>& slot = chunks_[index / kChunk];
  Counts* counts = slot.load(std::memory_order_relaxed);
  if (counts == nullptr) {
    counts = new Counts{};  // value-initialised: every count is zero
    slot.store(counts, std::memory_order_release);
  }
  // One writer: a load and a store, no read-modify-write instruction.
  std::atomic<std::uint64_t>& count = (*counts)[index % kChunk];
  count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  sum_.store(sum_.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  if (value < min_.load(std::memory_order_relaxed)) min_.store(value, std::memory_order_relaxed);
  if (value > max_.load(std::memory_order_relaxed)) max_.store(value, std::memory_order_relaxed);
}

void HistogramSummary::add(std::size_t bucket, std::uint64_t count) {
  const std::size_t index = bucket / kChunk;
  auto& chunk = chunks_[index];
  if (!chunk) chunk = std::make_unique<std::array<std::uint64_t, kChunk>>();  // zeroed
  (*chunk)[bucket % kChunk] += count;
  touched_ |= std::uint64_t{1} << index;
  count_ += count;
}

void HistogramSummary::reset() noexcept {
  for (; touched_ != 0; touched_ &= touched_ - 1) {
    chunks_[static_cast<std::size_t>(__builtin_ctzll(touched_))]->fill(0);
  }
  count_ = 0;
  sum_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
}

void HistogramSummary::add_value(std::uint64_t value) {
  add(LogLinearBuckets::index_of(value), 1);
  sum_ += value;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void HistogramSummary::merge(const HistogramRecorder& recorder) {
  std::uint64_t merged = 0;
  recorder.for_each_bucket([&](std::size_t bucket, std::uint64_t count) {
    add(bucket, count);
    merged += count;
  });
  if (merged == 0) return;
  sum_ += recorder.sum();
  min_ = std::min(min_, recorder.min());
  max_ = std::max(max_, recorder.max());
}

std::uint64_t HistogramSummary::quantile(double q) const noexcept {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  std::uint64_t found = max_;
  bool done = false;
  for_each_bucket([&](std::size_t bucket, std::uint64_t count) {
    if (done) return;
    seen += count;
    if (seen >= rank) {
      // min and max are exact; a bucket's midpoint may lie outside them.
      found = std::clamp(LogLinearBuckets::midpoint(bucket), min(), max_);
      done = true;
    }
  });
  return found;
}

std::uint64_t HistogramSummary::count_at_most(std::uint64_t bound) const noexcept {
  const std::size_t last = LogLinearBuckets::index_of(bound);
  std::uint64_t total = 0;
  for_each_bucket([&](std::size_t bucket, std::uint64_t count) {
    if (bucket <= last) total += count;
  });
  return total;
}

}  // namespace switchboard::core
