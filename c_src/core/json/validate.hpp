// Checks that bytes are one JSON text (RFC 8259) within limits, building
// nothing: for text that was encoded elsewhere and is spliced in as is.
#pragma once

#include <string_view>

#include "core/json/parse_error.hpp"

namespace switchboard::core::json {

ParseError validate(std::string_view text, const ParseLimits& limits = {});

}  // namespace switchboard::core::json
