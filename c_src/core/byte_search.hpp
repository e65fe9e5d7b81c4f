// contains_bytes: whether a byte string occurs in a larger one, fast on the
// usual haystack (a few hundred bytes to a few hundred KB of encoded terms)
// and linear in its size whatever the bytes are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace switchboard::core {

// True when `needle` (not empty) occurs in `haystack`. Looks for the needle's
// least common-looking byte with memchr (vectorised by the C library) and
// compares the needle wherever that byte is; a haystack holding that byte so
// often that the compares add up is searched with Boyer-Moore from there on
// (which may allocate its tables: std::bad_alloc).
bool contains_bytes(std::span<const std::uint8_t> haystack, std::span<const std::uint8_t> needle);

}  // namespace switchboard::core
