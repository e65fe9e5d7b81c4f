#include "core/json/validate.hpp"

#include <cstddef>
#include <cstdint>

#include "core/json/reader.hpp"

namespace switchboard::core::json {

ParseError validate(std::string_view text, const ParseLimits& limits) {
  thread_local Reader reader;
  NullHandler handler;
  return reader.parse(handler, text, limits);
}

}  // namespace switchboard::core::json
