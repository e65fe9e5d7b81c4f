// The metrics core: log-linear buckets, recorders, summaries and the flat index.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "core/metrics/flat_index.hpp"
#include "core/metrics/log_linear_histogram.hpp"

using switchboard::core::FlatIndex;
using switchboard::core::HistogramRecorder;
using switchboard::core::HistogramSummary;
using switchboard::core::LogLinearBuckets;

TEST_CASE("buckets tile the 64-bit range without gaps") {
  CHECK(LogLinearBuckets::index_of(0) == 0);
  CHECK(LogLinearBuckets::index_of(255) == 255);
  CHECK(LogLinearBuckets::index_of(UINT64_MAX) == LogLinearBuckets::kCount - 1);
  for (std::size_t i = 0; i + 1 < LogLinearBuckets::kCount; ++i) {
    REQUIRE(LogLinearBuckets::upper_bound(i) + 1 == LogLinearBuckets::lower_bound(i + 1));
    REQUIRE(LogLinearBuckets::index_of(LogLinearBuckets::lower_bound(i)) == i);
    REQUIRE(LogLinearBuckets::index_of(LogLinearBuckets::upper_bound(i)) == i);
  }
  CHECK(LogLinearBuckets::upper_bound(LogLinearBuckets::kCount - 1) == UINT64_MAX);
}

TEST_CASE("a bucket's midpoint is within 1/256 of every value in it") {
  for (std::size_t i = LogLinearBuckets::kExact; i < LogLinearBuckets::kCount; ++i) {
    const double low = static_cast<double>(LogLinearBuckets::lower_bound(i));
    const double mid = static_cast<double>(LogLinearBuckets::midpoint(i));
    const double high = static_cast<double>(LogLinearBuckets::upper_bound(i));
    REQUIRE((mid - low) / low <= 1.0 / 256);
    REQUIRE((high - mid) / high <= 1.0 / 256);
  }
}

TEST_CASE("quantiles are within 1% of the exact ones") {
  std::mt19937_64 random(42);
  std::lognormal_distribution<double> latency(7.0, 2.0);
  std::vector<std::uint64_t> values;
  HistogramRecorder recorder;
  for (int i = 0; i < 100000; ++i) {
    const auto value = static_cast<std::uint64_t>(latency(random));
    values.push_back(value);
    recorder.record(value);
  }
  std::sort(values.begin(), values.end());
  HistogramSummary summary;
  summary.merge(recorder);
  CHECK(summary.count() == values.size());
  CHECK(summary.min() == values.front());
  CHECK(summary.max() == values.back());
  double sum = 0;
  for (auto value : values) sum += static_cast<double>(value);
  CHECK(summary.mean() == Approx(sum / static_cast<double>(values.size())));
  for (double q : {0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    const auto rank = std::max<std::size_t>(
        1, static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size()))));
    const double exact = static_cast<double>(values[rank - 1]);
    const double estimate = static_cast<double>(summary.quantile(q));
    INFO("q = " << q << " exact = " << exact << " estimate = " << estimate);
    CHECK(std::abs(estimate - exact) <= 0.01 * exact);
  }
}

TEST_CASE("small values are exact and count_at_most is cumulative") {
  HistogramSummary summary;
  for (std::uint64_t v = 1; v <= 100; ++v) summary.add_value(v);
  CHECK(summary.quantile(0.5) == 50);
  CHECK(summary.quantile(0.99) == 99);
  CHECK(summary.quantile(1.0) == 100);
  CHECK(summary.count_at_most(0) == 0);
  CHECK(summary.count_at_most(50) == 50);
  CHECK(summary.count_at_most(1000) == 100);
  CHECK(summary.sum() == 5050);
  std::uint64_t visited = 0, last = 0;
  summary.for_each_bucket([&](std::size_t bucket, std::uint64_t count) {
    CHECK(count == 1);
    CHECK(bucket > last);
    last = bucket;
    ++visited;
  });
  CHECK(visited == 100);
  HistogramSummary empty;
  CHECK(empty.quantile(0.5) == 0);
  CHECK(empty.min() == 0);
  CHECK(empty.mean() == 0.0);
}

TEST_CASE("recorders merge, and a reader never sees more than was written") {
  HistogramRecorder a, b;
  a.record(10);
  a.record(1000000);
  b.record(3);
  HistogramSummary summary;
  summary.merge(a);
  summary.merge(b);
  CHECK(summary.count() == 3);
  CHECK(summary.min() == 3);
  CHECK(summary.max() == 1000000);

  HistogramRecorder live;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (std::uint64_t i = 0; i < 200000; ++i) live.record(i % 5000);
    done = true;
  });
  std::uint64_t last = 0;
  while (!done) {
    HistogramSummary seen;
    seen.merge(live);
    REQUIRE(seen.count() >= last);
    REQUIRE(seen.count() <= 200000);
    last = seen.count();
  }
  writer.join();
  HistogramSummary final_summary;
  final_summary.merge(live);
  CHECK(final_summary.count() == 200000);
  final_summary.reset();
  CHECK(final_summary.count() == 0);
  CHECK(final_summary.quantile(0.5) == 0);
  final_summary.add_value(7);
  CHECK(final_summary.count() == 1);
  CHECK(final_summary.quantile(0.99) == 7);
  CHECK(final_summary.count_at_most(6) == 0);
}

TEST_CASE("the flat index finds by hash and predicate, and grows") {
  FlatIndex<int> index;
  std::vector<int> values(1000);
  for (int i = 0; i < 1000; ++i) {
    values[static_cast<std::size_t>(i)] = i;
    // Every tenth value shares a hash with its neighbour.
    index.insert(static_cast<std::uint64_t>(i / 2), &values[static_cast<std::size_t>(i)]);
  }
  CHECK(index.size() == 1000);
  for (int i = 0; i < 1000; ++i) {
    int* found = index.find(static_cast<std::uint64_t>(i / 2), [i](int v) { return v == i; });
    REQUIRE(found == &values[static_cast<std::size_t>(i)]);
  }
  CHECK(index.find(5000, [](int) { return true; }) == nullptr);
}
