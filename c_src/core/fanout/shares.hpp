// Splits a stream of items into a fixed number of shares by a key, so that
// every item with the same key lands in the same share and each share keeps
// the items' arrival order. Shares are handed out as immutable arrays that
// several owners can hold at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

namespace switchboard::core::fanout {

template <class T, class Vector = std::vector<T>>
class ShareSplitter {
 public:
  using Share = std::shared_ptr<const Vector>;

  // Throws std::invalid_argument unless 0 < count.
  explicit ShareSplitter(std::size_t count) {
    if (count == 0) throw std::invalid_argument("a share splitter needs at least one share");
    shares_.resize(count);
  }

  std::size_t count() const noexcept { return shares_.size(); }

  // Appends `item` to share `key % count()`.
  void add(std::uint64_t key, const T& item) { shares_[key % shares_.size()].push_back(item); }

  // The shares, one per index; an empty share is null. Leaves the splitter empty.
  std::vector<Share> take() {
    std::vector<Share> out;
    out.reserve(shares_.size());
    for (Vector& share : shares_) {
      out.push_back(share.empty() ? nullptr : std::make_shared<const Vector>(std::move(share)));
      share = Vector();
    }
    return out;
  }

 private:
  std::vector<Vector> shares_;
};

}  // namespace switchboard::core::fanout
