// Refusals: where and why an External Term Format input is refused, as one
// public `{reason, offset}`, on top of the EtfDecoder. The decoder validates
// structure; whether an atom exists is a property of whoever reads the
// result (an AtomOracle answers). Shared by the Erlpack NIF and the port
// program (c_src/port/), which report what Switchboard.Erlpack.Pure does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/etf/atom_text.hpp"
#include "core/etf/containers.hpp"
#include "core/etf/decode_error.hpp"

namespace switchboard::core::etf {

// decode/2's `:atoms` option.
enum class AtomMode : std::uint8_t { existing, binary, create };

// Whether `utf8` names an atom that exists in the VM that reads the result.
class AtomOracle {
 public:
  virtual bool exists(std::string_view utf8) = 0;

 protected:
  ~AtomOracle() = default;
};

// An error as Elixir sees it: `{reason, offset}`.
struct Refusal {
  std::string_view reason;
  std::size_t offset;
};

// The public reason for a core error (Switchboard.Erlpack.Pure's names): the
// structural reasons keep their names, the finer ones OTP does not tell apart
// (bad_creation, bad_fun, ...) become invalid_term.
std::string_view public_reason(DecodeErrc error) noexcept;

// The refusal for a decoder error other than rejected_by_visitor, at the
// offset Switchboard.Erlpack.Pure reports: errors inside a compressed payload
// at the compressed tag (1); where a term has two faults, the one the twin
// meets first (a long atom that is also cut short is truncated; a reference
// with a bad id count is refused for its node first).
Refusal structural_refusal(std::span<const std::uint8_t> input, const DecodeStatus& status);

// true, false and nil stay atoms with `atoms: :binary`.
bool is_literal_atom(std::string_view utf8) noexcept;

// Reads the atom whose tag is at `at` (any of the four atom tags) into `utf8`
// and returns its size on the wire, or 0 when there is no complete atom there.
std::size_t read_wire_atom(std::span<const std::uint8_t> bytes, std::size_t at, Text& utf8);

// For the pid, port, reference, export or fun whose tag is at `at` in
// `bytes` (already validated by the decoder), the first refusal that `mode`
// implies given which atoms exist, in document order, at offsets into
// `bytes`: an unknown node, module or function name, an unknown atom among a
// fun's free variables (or, with `atoms: :binary`, an invalid_term at the fun
// when one of them would have to be created). nullopt when every atom exists.
std::optional<Refusal> check_opaque_atoms(std::span<const std::uint8_t> bytes, std::size_t at,
                                          AtomMode mode, AtomOracle& oracle,
                                          const DecodeLimits& limits);

// The first refusal an unknown atom causes anywhere in `input` (a whole
// encoding, version byte included), or nullopt when every atom exists.
// Offsets inside a compressed payload are reported as 1, like every error there.
std::optional<Refusal> locate_unknown_atom(std::span<const std::uint8_t> input, AtomMode mode,
                                           AtomOracle& oracle, const DecodeLimits& limits);

// With `atoms: :binary`, `:a` and "a" become equal keys. For the map whose tag
// is at `at` in `bytes`, the offset of the second occurrence of the smallest
// key that then occurs twice, or npos when none does.
std::size_t find_binary_mode_duplicate(std::span<const std::uint8_t> bytes, std::size_t at,
                                       const DecodeLimits& limits);

}  // namespace switchboard::core::etf
