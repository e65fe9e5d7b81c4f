#include "core/etf/refusal.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/etf/atom_text.hpp"
#include "core/etf/decoder.hpp"
#include "core/etf/tags.hpp"

namespace switchboard::core::etf {

std::string_view public_reason(DecodeErrc error) noexcept {
  switch (error) {
    case DecodeErrc::bad_creation:
    case DecodeErrc::bad_reference:
    case DecodeErrc::bad_bitstring:
    case DecodeErrc::bignum_too_large:
    case DecodeErrc::bad_export:
    case DecodeErrc::bad_fun:
    case DecodeErrc::rejected_by_visitor:
    case DecodeErrc::ok:
      return "invalid_term";
    default:
      return decode_error_name(error);
  }
}

bool is_literal_atom(std::string_view utf8) noexcept {
  return utf8 == "true" || utf8 == "false" || utf8 == "nil";
}

namespace {

std::uint32_t load_u32(const std::uint8_t* at) noexcept {
  return load_big_endian<std::uint32_t>(at);
}

bool is_atom_tag(std::uint8_t tag) noexcept {
  return tag == tag_byte(Tag::atom_latin1) || tag == tag_byte(Tag::small_atom_latin1) ||
         tag == tag_byte(Tag::atom_utf8) || tag == tag_byte(Tag::small_atom_utf8);
}

// The size of the (validated) integer whose tag is at `at`.
std::size_t integer_size(std::span<const std::uint8_t> bytes, std::size_t at) noexcept {
  switch (static_cast<Tag>(bytes[at])) {
    case Tag::small_integer:
      return 2;
    case Tag::integer:
      return 5;
    case Tag::small_big:
      return 3 + std::size_t{bytes[at + 1]};
    case Tag::large_big:
      return 6 + std::size_t{load_u32(bytes.data() + at + 1)};
    default:
      return 0;
  }
}

// The offset of `inner` in `bytes` when it points into it (it does not for
// the inflated payload of a compressed term, whose offsets do not matter).
std::size_t offset_in(std::span<const std::uint8_t> bytes, const std::uint8_t* inner) noexcept {
  const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data());
  const auto at = reinterpret_cast<std::uintptr_t>(inner);
  return at >= begin && at < begin + bytes.size() ? static_cast<std::size_t>(at - begin) : 0;
}

std::optional<Refusal> locate_in_terms(std::span<const std::uint8_t> bytes, std::size_t at,
                                       std::uint32_t count, AtomMode mode, AtomOracle& oracle,
                                       const DecodeLimits& limits);

// Rejects at the first atom `mode` needs and the oracle does not know. Funs
// are checked whole here; for other opaque terms the caller finds the atom
// from the rejected term's offset.
// Every event the NullVisitor accepts is accepted here too; only those that
// name atoms are checked.
struct LocateVisitor : NullVisitor {
  LocateVisitor(AtomMode mode, AtomOracle& oracle, const DecodeLimits& limits,
                std::span<const std::uint8_t> bytes)
      : mode(mode), oracle(oracle), limits(limits), bytes(bytes) {}

  AtomMode mode;
  AtomOracle& oracle;
  const DecodeLimits& limits;
  std::span<const std::uint8_t> bytes;
  std::optional<Refusal> refusal;

  bool on_atom(std::string_view text) { return mode != AtomMode::existing || oracle.exists(text); }
  bool on_pid(const PidData& pid) { return oracle.exists(pid.node); }
  bool on_port(const PortData& port) { return oracle.exists(port.node); }
  bool on_reference(const ReferenceData& reference) { return oracle.exists(reference.node); }
  bool on_export(const ExportData& exported) {
    return oracle.exists(exported.module) && oracle.exists(exported.function);
  }
  bool on_local_fun(const LocalFunData& fun) {
    refusal = check_opaque_atoms(fun.encoded, 0, mode, oracle, limits);
    if (!refusal) return true;
    refusal->offset += offset_in(bytes, fun.encoded.data());
    return false;
  }
};

// The refusal for a term the LocateVisitor rejected at `at`.
Refusal refusal_at(std::span<const std::uint8_t> bytes, std::size_t at, AtomMode mode,
                   AtomOracle& oracle, const DecodeLimits& limits) {
  if (is_atom_tag(bytes[at])) return {"unknown_atom", at};
  if (auto refusal = check_opaque_atoms(bytes, at, mode, oracle, limits)) return *refusal;
  return {"invalid_term", at};
}

std::optional<Refusal> locate_in_terms(std::span<const std::uint8_t> bytes, std::size_t at,
                                       std::uint32_t count, AtomMode mode, AtomOracle& oracle,
                                       const DecodeLimits& limits) {
  DecodeLimits nested = limits;
  nested.allow_trailing_data = true;
  EtfDecoder decoder(nested);
  for (std::uint32_t i = 0; i < count; ++i) {
    LocateVisitor visitor(mode, oracle, limits, bytes);
    const DecodeStatus status = decoder.decode_body(bytes.subspan(at), visitor);
    if (!status) {
      if (visitor.refusal) return visitor.refusal;
      if (status.error != DecodeErrc::rejected_by_visitor) return std::nullopt;
      return refusal_at(bytes, at + status.offset, mode, oracle, limits);
    }
    at += status.bytes_used;
  }
  return std::nullopt;
}

}  // namespace

Refusal structural_refusal(std::span<const std::uint8_t> input, const DecodeStatus& status) {
  if (status.in_decompressed) return {public_reason(status.error), 1};
  const std::size_t at = status.offset;
  const bool reference = at + 3 <= input.size() && (input[at] == tag_byte(Tag::new_reference) ||
                                                    input[at] == tag_byte(Tag::newer_reference));
  if (status.error == DecodeErrc::atom_too_long && at + 3 <= input.size() &&
      (input[at] == tag_byte(Tag::atom_latin1) || input[at] == tag_byte(Tag::atom_utf8))) {
    // The twin finds a long atom short before it finds it long.
    const std::size_t length = (std::size_t{input[at + 1]} << 8) | input[at + 2];
    if (at + 3 + length > input.size()) return {"truncated", at};
    // ...and a long UTF-8 atom invalid before it finds it long.
    std::size_t characters = 0;
    if (input[at] == tag_byte(Tag::atom_utf8) &&
        !validate_utf8(input.data() + at + 3, length, characters)) {
      return {"invalid_utf8", at};
    }
  }
  if (status.error != DecodeErrc::bad_reference || !reference) {
    return {public_reason(status.error), at};
  }
  const std::size_t node_at = at + 3;
  if (node_at >= input.size()) return {"truncated", at};
  if (!is_atom_tag(input[node_at])) return {"bad_node", at};
  Text node;
  const std::size_t node_size = read_wire_atom(input, node_at, node);
  if (node_size == 0) return {"truncated", at};
  const bool utf8 = input[node_at] == tag_byte(Tag::atom_utf8) ||
                    input[node_at] == tag_byte(Tag::small_atom_utf8);
  std::size_t characters = node.size();
  if (utf8 &&
      !validate_utf8(reinterpret_cast<const std::uint8_t*>(node.data()), node.size(), characters)) {
    return {"invalid_utf8", node_at};
  }
  if (!utf8) characters = node_size - (input[node_at] == tag_byte(Tag::atom_latin1) ? 3 : 2);
  if (characters > kMaxAtomCharacters) return {"atom_too_long", node_at};
  const std::size_t words = (std::size_t{input[at + 1]} << 8) | input[at + 2];
  const std::size_t creation = input[at] == tag_byte(Tag::newer_reference) ? 4 : 1;
  if (node_at + node_size + creation + 4 * words > input.size()) return {"truncated", at};
  return {"invalid_term", at};
}

std::size_t read_wire_atom(std::span<const std::uint8_t> bytes, std::size_t at, Text& utf8) {
  if (at >= bytes.size()) return 0;
  const std::size_t left = bytes.size() - at;
  const std::uint8_t tag = bytes[at];
  const bool small =
      tag == tag_byte(Tag::small_atom_latin1) || tag == tag_byte(Tag::small_atom_utf8);
  const bool latin1 = tag == tag_byte(Tag::atom_latin1) || tag == tag_byte(Tag::small_atom_latin1);
  if (!is_atom_tag(tag)) return 0;
  const std::size_t header = small ? 2 : 3;
  if (left < header) return 0;
  const std::size_t length =
      small ? bytes[at + 1] : (std::size_t{bytes[at + 1]} << 8 | std::size_t{bytes[at + 2]});
  if (left - header < length) return 0;
  const std::uint8_t* text = bytes.data() + at + header;
  if (latin1) {
    latin1_to_utf8(text, length, utf8);
  } else {
    utf8.assign(reinterpret_cast<const char*>(text), length);
  }
  return header + length;
}

std::optional<Refusal> check_opaque_atoms(std::span<const std::uint8_t> bytes, std::size_t at,
                                          AtomMode mode, AtomOracle& oracle,
                                          const DecodeLimits& limits) {
  if (mode == AtomMode::create || at >= bytes.size()) return std::nullopt;
  Text text;
  // The size of the atom at `atom_at`, or 0 after recording that it is unknown.
  std::optional<Refusal> refusal;
  auto check_atom = [&](std::size_t atom_at) -> std::size_t {
    const std::size_t size = read_wire_atom(bytes, atom_at, text);
    if (size != 0 && !oracle.exists(text)) {
      refusal = Refusal{"unknown_atom", atom_at};
      return 0;
    }
    return size;
  };

  switch (static_cast<Tag>(bytes[at])) {
    case Tag::pid:
    case Tag::new_pid:
    case Tag::port:
    case Tag::new_port:
    case Tag::v4_port:
    case Tag::reference:
      check_atom(at + 1);
      return refusal;
    case Tag::new_reference:
    case Tag::newer_reference:
      check_atom(at + 3);
      return refusal;
    case Tag::export_fun: {
      const std::size_t module_size = check_atom(at + 1);
      if (module_size != 0) check_atom(at + 1 + module_size);
      return refusal;
    }
    case Tag::new_fun: {
      // Tag, size, arity, uniq, index, free variable count, then the module.
      constexpr std::size_t kModuleAt = 1 + 4 + 1 + 16 + 4 + 4;
      const std::uint32_t free_count = load_u32(bytes.data() + at + kModuleAt - 4);
      const std::size_t module_size = check_atom(at + kModuleAt);
      if (module_size == 0) return refusal;
      std::size_t q = at + kModuleAt + module_size;
      q += integer_size(bytes, q);  // OldIndex
      q += integer_size(bytes, q);  // OldUniq
      // The creator (any term to OTP 25, though it writes a pid) and the free
      // variables follow one another.
      const std::uint32_t terms = free_count + 1;
      if (mode == AtomMode::existing) {
        return locate_in_terms(bytes, q, terms, mode, oracle, limits);
      }
      // atoms: :binary reads their atoms as binaries, but OTP must then
      // rebuild the fun with the atoms themselves, which must exist.
      if (auto inner = locate_in_terms(bytes, q, terms, AtomMode::binary, oracle, limits)) {
        return inner;
      }
      if (locate_in_terms(bytes, q, terms, AtomMode::existing, oracle, limits)) {
        return Refusal{"invalid_term", at};
      }
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

std::optional<Refusal> locate_unknown_atom(std::span<const std::uint8_t> input, AtomMode mode,
                                           AtomOracle& oracle, const DecodeLimits& limits) {
  if (mode == AtomMode::create) return std::nullopt;
  EtfDecoder decoder(limits);
  LocateVisitor visitor(mode, oracle, limits, input);
  const DecodeStatus status = decoder.decode(input, visitor);
  if (status || status.error != DecodeErrc::rejected_by_visitor) return std::nullopt;
  if (status.in_decompressed) {
    return Refusal{visitor.refusal ? visitor.refusal->reason : "unknown_atom", 1};
  }
  if (visitor.refusal) return visitor.refusal;
  return refusal_at(input, status.offset, mode, oracle, limits);
}

std::size_t find_binary_mode_duplicate(std::span<const std::uint8_t> bytes, std::size_t at,
                                       const DecodeLimits& limits) {
  if (at + 5 > bytes.size() || bytes[at] != tag_byte(Tag::map)) return npos;
  const std::uint32_t pairs = load_u32(bytes.data() + at + 1);
  DecodeLimits nested = limits;
  nested.allow_trailing_data = true;
  EtfDecoder skipper(nested);
  NullVisitor ignore;
  auto term_size = [&](std::size_t term_at) -> std::size_t {
    const DecodeStatus status = skipper.decode_body(bytes.subspan(term_at), ignore);
    return status ? status.bytes_used : 0;
  };

  struct Key {
    Text bytes;
    std::size_t offset;
  };
  Vector<Key> keys;
  std::size_t p = at + 5;
  Text text;
  for (std::uint32_t i = 0; i < pairs; ++i) {
    const std::uint8_t tag = bytes[p];
    if (tag == tag_byte(Tag::binary)) {
      const std::uint32_t size = load_u32(bytes.data() + p + 1);
      keys.push_back({Text(reinterpret_cast<const char*>(bytes.data() + p + 5), size), p});
    } else if (tag == tag_byte(Tag::bit_binary)) {
      const std::uint32_t size = load_u32(bytes.data() + p + 1);
      if (size == 0 || bytes[p + 5] == 8) {
        keys.push_back({Text(reinterpret_cast<const char*>(bytes.data() + p + 6), size), p});
      }
    } else if (read_wire_atom(bytes, p, text) != 0 && !is_literal_atom(text)) {
      keys.push_back({text, p});
    }
    const std::size_t key_size = term_size(p);
    if (key_size == 0) return npos;
    p += key_size;
    const std::size_t value_size = term_size(p);
    if (value_size == 0) return npos;
    p += value_size;
  }
  // Binaries compare byte by byte (unsigned), like std::string's compare.
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    const int order = a.bytes.compare(b.bytes);
    return order != 0 ? order < 0 : a.offset < b.offset;
  });
  for (std::size_t i = 1; i < keys.size(); ++i) {
    if (keys[i - 1].bytes == keys[i].bytes) return keys[i].offset;
  }
  return npos;
}

}  // namespace switchboard::core::etf
