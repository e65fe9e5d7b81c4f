// A compact, self-contained encoding of one Erlang term whose byte order is
// Erlang term order (`==` semantics), so two keys compare with one memcmp.
//
// A key is two byte strings laid end to end:
//   comparable  - what ordering looks at; equal for terms that are `==`
//                 (1 and 1.0 encode identically here);
//   side data   - what ordering ignores but decoding needs: whether each
//                 number was an integer or a float, and the original external
//                 term format bytes of pids, ports, references and funs.
// The layout is described in term_key_format.hpp; build keys with
// TermKeyBuilder and walk them back with read_term_key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace switchboard::core {

// A non-owning view of an encoded key; cheap to copy.
class TermKeyView {
 public:
  constexpr TermKeyView() noexcept = default;
  constexpr TermKeyView(const std::uint8_t* data, std::size_t comparable_size,
                        std::size_t size) noexcept
      : data_(data), comparable_size_(comparable_size), size_(size) {}

  const std::uint8_t* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t comparable_size() const noexcept { return comparable_size_; }
  std::span<const std::uint8_t> bytes() const noexcept { return {data_, size_}; }
  std::span<const std::uint8_t> comparable() const noexcept { return {data_, comparable_size_}; }
  std::span<const std::uint8_t> side_data() const noexcept {
    return {data_ + comparable_size_, size_ - comparable_size_};
  }

 private:
  const std::uint8_t* data_ = nullptr;
  std::size_t comparable_size_ = 0;
  std::size_t size_ = 0;
};

// An owning key. Keys up to kInlineCapacity bytes (the common member-list
// tuple among them) live inside the object; longer ones in core::allocate.
class TermKey {
 public:
  static constexpr std::size_t kInlineCapacity = 48;

  TermKey() noexcept = default;
  // Copies `bytes`; the first `comparable_size` of them are the comparable part.
  TermKey(std::span<const std::uint8_t> bytes, std::size_t comparable_size);
  explicit TermKey(TermKeyView view) : TermKey(view.bytes(), view.comparable_size()) {}
  TermKey(const TermKey& other) : TermKey(other.view()) {}
  TermKey(TermKey&& other) noexcept;
  TermKey& operator=(const TermKey& other);
  TermKey& operator=(TermKey&& other) noexcept;
  ~TermKey();

  TermKeyView view() const noexcept { return {data(), comparable_size_, size_}; }
  operator TermKeyView() const noexcept { return view(); }  // NOLINT: a key is usable as a view
  const std::uint8_t* data() const noexcept { return is_inline() ? storage_.bytes : storage_.heap; }
  std::size_t size() const noexcept { return size_; }
  std::size_t comparable_size() const noexcept { return comparable_size_; }
  bool empty() const noexcept { return size_ == 0; }

 private:
  bool is_inline() const noexcept { return size_ <= kInlineCapacity; }
  void release() noexcept;

  union Storage {
    std::uint8_t bytes[kInlineCapacity];
    std::uint8_t* heap;
  } storage_{};
  std::uint32_t size_ = 0;
  std::uint32_t comparable_size_ = 0;
};

// Erlang term order with `==` semantics: negative, zero or positive.
int compare(TermKeyView a, TermKeyView b) noexcept;

inline bool operator==(const TermKey& a, const TermKey& b) noexcept { return compare(a, b) == 0; }

// The term types that travel as their external term format bytes.
enum class OpaqueKind : std::uint8_t { reference, fun, port, pid };

}  // namespace switchboard::core
