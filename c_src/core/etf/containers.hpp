// Standard containers on the core allocator, so the codec's memory shows up in
// core::allocated_bytes() like every other core structure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/memory.hpp"

namespace switchboard::core::etf {

template <class T>
using Vector = std::vector<T, core::Allocator<T>>;
using Bytes = Vector<std::uint8_t>;
using Text = std::basic_string<char, std::char_traits<char>, core::Allocator<char>>;

}  // namespace switchboard::core::etf
