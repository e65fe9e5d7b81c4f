#include "core/json/parse_error.hpp"

namespace switchboard::core::json {

std::string_view parse_error_name(ParseErrc reason) noexcept {
  switch (reason) {
    case ParseErrc::ok:
      return "ok";
    case ParseErrc::unexpected_byte:
      return "unexpected_byte";
    case ParseErrc::unexpected_end:
      return "unexpected_end";
    case ParseErrc::invalid_escape:
      return "invalid_escape";
    case ParseErrc::lone_surrogate:
      return "lone_surrogate";
    case ParseErrc::invalid_utf8:
      return "invalid_utf8";
    case ParseErrc::max_depth:
      return "max_depth";
    case ParseErrc::max_size:
      return "max_size";
    case ParseErrc::number_too_large:
      return "number_too_large";
    case ParseErrc::out_of_budget:
      return "out_of_budget";
    case ParseErrc::rejected:
      return "rejected";
  }
  return "unknown";
}

}  // namespace switchboard::core::json
