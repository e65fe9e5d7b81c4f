// The bookkeeping of one named semaphore: how many slots are in use and who
// holds them. Every slot taken by `acquire` is recorded against its holder in
// the same call, so a holder that goes away (`holder_down`) gives back exactly
// what it held. `Monitor` is whatever handle the caller uses to watch a holder
// (a process monitor in the NIF); the ledger only stores it.
//
// The ledger is not thread-safe: its owner serialises calls (a shard lock).
#pragma once

#include <cstdint>
#include <unordered_map>

namespace switchboard::core {

template <class Monitor>
class SlotLedger {
 public:
  // A holder whose last slot is released stays recorded, and watched, so the
  // next acquire by the same holder does not pay for a new monitor. At most
  // `idle_limit` such idle holders are kept; past that the releasing holder is
  // forgotten and its monitor must be dropped (Released::demonitor).
  explicit SlotLedger(std::size_t idle_limit = 64) : idle_limit_(idle_limit) {}

  struct Acquired {
    bool acquired = false;
    bool monitor_needed = false;  // the holder is new: watch it, then call watching()
  };

  // Takes a slot for `holder` when fewer than `max` are in use. A count above
  // `max` (max was lowered) is left as is: nothing is taken or given back.
  Acquired acquire(std::uint64_t holder, std::int64_t max) {
    if (max <= 0 || count_ >= max) return {};
    auto [it, inserted] = holders_.try_emplace(holder);
    Holder& record = it->second;
    if (record.held == 0 && record.watched) --idle_;
    ++record.held;
    ++count_;
    return {true, !record.watched};
  }

  // Records the monitor of a holder that acquire() reported as new. False
  // when the holder is no longer recorded (then the monitor is not needed).
  bool watching(std::uint64_t holder, const Monitor& monitor) {
    auto it = holders_.find(holder);
    if (it == holders_.end() || it->second.watched) return false;
    it->second.watched = true;
    it->second.monitor = monitor;
    if (it->second.held == 0) ++idle_;
    return true;
  }

  struct Released {
    bool released = false;
    bool demonitor = false;  // the holder was forgotten: drop `monitor`
    Monitor monitor{};
  };

  // Gives back one of `holder`'s slots; a holder with none gives back one of
  // the unowned slots that reset() created, if any; otherwise nothing changes.
  Released release(std::uint64_t holder) {
    Released result;
    auto it = holders_.find(holder);
    if (it != holders_.end() && it->second.held > 0) {
      Holder& record = it->second;
      --record.held;
      --count_;
      result.released = true;
      if (record.held == 0) {
        if (!record.watched) {
          holders_.erase(it);
        } else if (idle_ >= idle_limit_) {
          result.demonitor = true;
          result.monitor = record.monitor;
          holders_.erase(it);
        } else {
          ++idle_;
        }
      }
    } else if (unowned_ > 0) {
      --unowned_;
      --count_;
      result.released = true;
    }
    return result;
  }

  // The holder is gone: its slots are free. Returns how many it held.
  std::int64_t holder_down(std::uint64_t holder) {
    auto it = holders_.find(holder);
    if (it == holders_.end()) return 0;
    const std::int64_t held = it->second.held;
    if (held == 0 && it->second.watched) --idle_;
    count_ -= held;
    holders_.erase(it);
    return held;
  }

  // Sets the count to `value` slots that belong to nobody (discord/semaphore's
  // reset): current holders keep their records, and monitors, but no slots;
  // release() by anyone gives the unowned slots back one by one.
  void reset(std::int64_t value) {
    idle_ = 0;
    for (auto& [holder, record] : holders_) {
      record.held = 0;
      if (record.watched) ++idle_;
    }
    count_ = value < 0 ? 0 : value;
    unowned_ = count_;
  }

  std::int64_t count() const noexcept { return count_; }
  std::int64_t held_by(std::uint64_t holder) const {
    auto it = holders_.find(holder);
    return it == holders_.end() ? 0 : it->second.held;
  }
  std::size_t holders_recorded() const noexcept { return holders_.size(); }
  std::size_t idle_holders() const noexcept { return idle_; }

 private:
  struct Holder {
    std::int64_t held = 0;
    bool watched = false;
    Monitor monitor{};
  };
  std::unordered_map<std::uint64_t, Holder> holders_;
  std::int64_t count_ = 0;
  std::int64_t unowned_ = 0;
  std::size_t idle_ = 0;
  std::size_t idle_limit_;
};

}  // namespace switchboard::core
