// The byte layout of a TermKey, shared by the builder and the reader.
//
// Comparable part: every term starts with one byte that places its type in
// Erlang term order, and every encoding is prefix-free, so the concatenation
// of a container's elements compares element by element under memcmp.
//
//   number    see below; first byte 0x1E..0xE0 (0x10/0x11 in exact mode)
//   atom      0xE8, escaped UTF-8, terminator
//   reference 0xE9, node, creation:u32, word count:ordered, words most significant first
//   fun       0xEA, 0 (local): module, old_index:i32, old_uniq:i32, num_free:u32, free variables
//                   1 (export): module, function, arity:u8
//   port      0xEB, node, creation:u32, id:u64
//   pid       0xEC, serial:u32, id:u32, node, creation:u32
//   tuple     0xED, arity:ordered, elements
//   map       0xEE, size:ordered, keys (exact mode, ascending), values in key order
//   nil       0xEF
//   list      0xF0 before every element, then the tail (0xEF when proper)
//   bitstring 0xF1, escaped whole bytes, then the terminator, or for a partial
//             last byte that byte (zero padded, escaped) and 0x00 0x00 <bits>
// All fixed-width integers are big-endian; i32 has its sign bit flipped. A
// node is its atom's escaped text and terminator. Putting 0xF0 before each
// element and ending with the tail makes an improper tail compare against
// "the rest of the list" by type, exactly as OTP does.
//
// Escaping: 0x00 becomes 0x00 0xFF and the text ends with 0x00 0x01, so a
// shorter text sorts first and any byte sequence is allowed.
//
// Numbers: a nonzero value is sign * 1.f * 2^e with E = e + 1075 >= 1 (the
// smallest subnormal double has e = -1074). Integers, bignums and floats share
// this form, so 1 and 1.0 encode identically and any two compare exactly.
//   zero           0x7F
//   positive       u16 0x8000 + E when E <= 0x5FFF, else 0xE0, n, E in n bytes
//   negative       u16 0x7F00 - E when E <= 0x5FFF, else 0x1E, ~n, ~E in n bytes
//   then f, 7 bits per byte most significant first, shifted left by one with
//   the low bit set when more bytes follow; trailing zero bits are dropped but
//   at least one byte is written. Negative numbers invert these bytes.
// Map keys are compared with `=:=` in OTP, where every integer is less than
// every float; keys therefore put 0x10 (integer) or 0x11 (float) before the
// number.
//
// Side data, in the order the comparable part is laid out (maps: keys, then
// values): one NumberKind byte per number and, per pid/port/reference/fun, a
// LEB128 length and that term's external format bytes (starting with 131).
// When every number is an integer and there is no such term the side data is
// left out entirely. Nothing inside a fun's free variables has side data: the
// fun's own bytes already hold them.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace switchboard::core::term_key_format {

inline constexpr std::uint8_t kExactInteger = 0x10;
inline constexpr std::uint8_t kExactFloat = 0x11;
inline constexpr std::uint8_t kHugeNegative = 0x1E;
inline constexpr std::uint8_t kZero = 0x7F;
inline constexpr std::uint8_t kHugePositive = 0xE0;
inline constexpr std::uint8_t kAtom = 0xE8;
inline constexpr std::uint8_t kReference = 0xE9;
inline constexpr std::uint8_t kFun = 0xEA;
inline constexpr std::uint8_t kPort = 0xEB;
inline constexpr std::uint8_t kPid = 0xEC;
inline constexpr std::uint8_t kTuple = 0xED;
inline constexpr std::uint8_t kMap = 0xEE;
inline constexpr std::uint8_t kNil = 0xEF;
inline constexpr std::uint8_t kCons = 0xF0;
inline constexpr std::uint8_t kBitstring = 0xF1;

inline constexpr std::uint8_t kLocalFun = 0;
inline constexpr std::uint8_t kExportFun = 1;

inline constexpr std::uint64_t kExponentBias = 1075;
inline constexpr std::uint64_t kMaxCompactExponent = 0x5FFF;

inline constexpr std::uint8_t kEscape = 0x00;
inline constexpr std::uint8_t kEscapedZero = 0xFF;
inline constexpr std::uint8_t kTerminator = 0x01;
inline constexpr std::uint8_t kPartialByte = 0x00;

enum class NumberKind : std::uint8_t { integer = 0, float64 = 1, negative_zero = 2 };

inline constexpr bool is_number_start(std::uint8_t byte) noexcept {
  return byte >= kHugeNegative && byte <= kHugePositive;
}

inline constexpr std::uint32_t flip_sign(std::int32_t value) noexcept {
  return static_cast<std::uint32_t>(value) ^ 0x8000'0000u;
}

// Bytes needed for `value` in the order-preserving unsigned form: values
// below 0x80 take one byte, larger ones a 0x80+n byte and n big-endian bytes.
inline constexpr std::size_t ordered_size_length(std::uint64_t value) noexcept {
  if (value < 0x80) return 1;
  return 1 + static_cast<std::size_t>((std::bit_width(value) + 7) / 8);
}

}  // namespace switchboard::core::term_key_format
