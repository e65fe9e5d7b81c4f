// What the ETF decoder refuses, where, and the limits it enforces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace switchboard::core::etf {

// Every reason has a stable snake_case name (decode_error_name) that the glue
// layers hand to Elixir as `{:error, {reason, offset}}`; never renumber or rename.
enum class DecodeErrc : std::uint8_t {
  ok,
  truncated,               // a length or field runs past the end of the input
  bad_version,             // the first byte is not 131
  unknown_tag,             // a tag OTP 25's binary_to_term does not accept here
  depth_exceeded,          // more nested containers than DecodeLimits::max_depth
  too_large,               // the input is longer than DecodeLimits::max_input_bytes
  decompressed_too_large,  // the inflated payload exceeds max_decompressed_bytes
  bad_compression,         // not a zlib stream, or its size differs from the declared size
  nested_compression,      // COMPRESSED anywhere but right after the version byte
  invalid_float,           // NaN, infinity, or a malformed FLOAT_EXT string
  duplicate_key,           // two map keys that are =:= equal
  atom_too_long,           // more than 255 characters
  invalid_utf8,            // a UTF-8 atom that is not valid UTF-8
  bad_node,                // the node of a pid, port or reference is not an atom
  bad_creation,            // a one-byte creation above 3 (PID_EXT, PORT_EXT, REFERENCE_EXT)
  bad_reference,           // reference id count or first id out of range
  bad_bitstring,           // BIT_BINARY_EXT bit count out of range
  bignum_too_large,        // LARGE_BIG_EXT longer than OTP's bignum limit
  bad_export,              // EXPORT_EXT with a non-atom name or an arity that is not a small >= 0
  bad_fun,                 // NEW_FUN_EXT whose fields do not have the types OTP requires
  trailing_data,           // bytes after the term while DecodeLimits::allow_trailing_data is off
  rejected_by_visitor,     // the visitor returned false
  not_plain,               // a pid, port, reference, fun or export while DecodeLimits::plain_only
  work_exceeded,           // the decode needed more than DecodeLimits::max_work units of work
};

std::string_view decode_error_name(DecodeErrc reason) noexcept;

struct DecodeLimits {
  // Containers (lists, tuples, maps, funs) open at once. OTP has no limit; 512
  // is far beyond any real payload and keeps hostile nesting cheap.
  std::size_t max_depth = 512;
  // The whole input, trailing bytes included.
  std::size_t max_input_bytes = std::size_t{64} << 20;
  // The inflated size of a COMPRESSED term, checked against what zlib actually
  // produces and never allocated beyond.
  std::size_t max_decompressed_bytes = std::size_t{64} << 20;
  // binary_to_term/1 ignores bytes after the term, so this defaults to on.
  bool allow_trailing_data = true;
  // Refuse maps with two =:= equal keys (duplicate_key), as OTP does. A caller
  // that builds the maps in something that refuses equal keys itself (the
  // Erlang VM) may turn this off and skip hashing every key; the keys of a
  // fun's free variables, which the caller never sees, are checked regardless.
  bool check_duplicate_keys = true;
  // Refuse pids, ports, references, funs and exports (not_plain, at their
  // tag): untrusted payloads are plain data, and those terms name things of
  // the running VM that a stranger has no business naming.
  bool plain_only = false;
  // Work beyond one pass over the bytes (duplicate-key probes and sorts, a
  // fun's free variables), in units of about one byte read or one probe. A
  // caller on a time budget sets it and moves the decode elsewhere on
  // work_exceeded; the worst case is O(n log n) in the input size regardless.
  std::size_t max_work = static_cast<std::size_t>(-1);
};

struct DecodeStatus {
  DecodeErrc error = DecodeErrc::ok;
  // Where the problem was detected: the first byte of the offending term (its
  // tag), or of the trailing data. Counts bytes of the inflated payload when
  // in_decompressed is set, of the input otherwise.
  std::size_t offset = 0;
  bool in_decompressed = false;
  // Input bytes the term occupies (binary_to_term(Bin, [used])); set on success.
  std::size_t bytes_used = 0;

  bool ok() const noexcept { return error == DecodeErrc::ok; }
  explicit operator bool() const noexcept { return ok(); }
};

}  // namespace switchboard::core::etf
