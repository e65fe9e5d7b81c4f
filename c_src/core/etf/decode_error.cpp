#include "core/etf/decode_error.hpp"

namespace switchboard::core::etf {

std::string_view decode_error_name(DecodeErrc reason) noexcept {
  switch (reason) {
    case DecodeErrc::ok:
      return "ok";
    case DecodeErrc::truncated:
      return "truncated";
    case DecodeErrc::bad_version:
      return "bad_version";
    case DecodeErrc::unknown_tag:
      return "unknown_tag";
    case DecodeErrc::depth_exceeded:
      return "depth_exceeded";
    case DecodeErrc::too_large:
      return "too_large";
    case DecodeErrc::decompressed_too_large:
      return "decompressed_too_large";
    case DecodeErrc::bad_compression:
      return "bad_compression";
    case DecodeErrc::nested_compression:
      return "nested_compression";
    case DecodeErrc::invalid_float:
      return "invalid_float";
    case DecodeErrc::duplicate_key:
      return "duplicate_key";
    case DecodeErrc::atom_too_long:
      return "atom_too_long";
    case DecodeErrc::invalid_utf8:
      return "invalid_utf8";
    case DecodeErrc::bad_node:
      return "bad_node";
    case DecodeErrc::bad_creation:
      return "bad_creation";
    case DecodeErrc::bad_reference:
      return "bad_reference";
    case DecodeErrc::bad_bitstring:
      return "bad_bitstring";
    case DecodeErrc::bignum_too_large:
      return "bignum_too_large";
    case DecodeErrc::bad_export:
      return "bad_export";
    case DecodeErrc::bad_fun:
      return "bad_fun";
    case DecodeErrc::trailing_data:
      return "trailing_data";
    case DecodeErrc::rejected_by_visitor:
      return "rejected_by_visitor";
    case DecodeErrc::not_plain:
      return "not_plain";
    case DecodeErrc::work_exceeded:
      return "work_exceeded";
  }
  return "unknown";
}

}  // namespace switchboard::core::etf
