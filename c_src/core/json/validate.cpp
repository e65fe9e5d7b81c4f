#include "core/json/validate.hpp"

#include <cstddef>
#include <cstdint>

#include "core/json/reader.hpp"

namespace switchboard::core::json {

namespace {
struct NullHandler {
  void null_value() {}
  void boolean(bool) {}
  void integer(std::int64_t) {}
  void floating(double) {}
  bool big_integer(std::string_view) { return true; }
  void string(std::string_view, bool, std::size_t) {}
  bool key(std::string_view, bool, std::size_t) { return true; }
  void end_array(std::size_t) {}
  void end_object(std::size_t) {}
};
}  // namespace

ParseError validate(std::string_view text, const ParseLimits& limits) {
  thread_local Reader reader;
  NullHandler handler;
  return reader.parse(handler, text, limits);
}

}  // namespace switchboard::core::json
