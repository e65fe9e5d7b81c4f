// Fuzzes the ETF decoder: any input is either refused with a reason or decodes
// to a value whose canonical encoding decodes back to an equal value and
// re-encodes to the same bytes. scan_plain_term, which vouches for inputs the
// NIF then hands to the VM's binary_to_term, must agree with the decoder on
// every input it accepts, whether it counts depth (max_depth 32) or need not
// (a limit beyond the input's size). Any disagreement aborts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "core/etf/decoder.hpp"
#include "core/etf/plain_term.hpp"
#include "core/etf/value.hpp"

namespace etf = switchboard::core::etf;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

// Decoded maps hold their keys strictly increasing: sorted, and no two equal.
bool keys_strictly_increasing(const etf::Value& value) {
  switch (value.kind()) {
    case etf::Value::Kind::map:
      for (std::size_t i = 0; i < value.map_size(); ++i) {
        if (i > 0 && etf::compare(value.map_key(i - 1), value.map_key(i)) >= 0) return false;
        if (!keys_strictly_increasing(value.map_key(i))) return false;
        if (!keys_strictly_increasing(value.map_value(i))) return false;
      }
      return true;
    case etf::Value::Kind::list:
      for (const etf::Value& item : value.as_list().items) {
        if (!keys_strictly_increasing(item)) return false;
      }
      return true;
    case etf::Value::Kind::tuple:
      for (const etf::Value& element : value.as_tuple()) {
        if (!keys_strictly_increasing(element)) return false;
      }
      return true;
    default:
      return true;
  }
}

bool same_bytes(const etf::ByteBuffer& a, const etf::ByteBuffer& b) {
  return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Small limits keep every run cheap and reach the limit checks often.
  etf::DecodeLimits limits;
  limits.max_depth = 32;
  limits.max_input_bytes = std::size_t{1} << 16;
  limits.max_decompressed_bytes = std::size_t{1} << 20;
  const std::span<const std::uint8_t> input(data, size);

  // Validating with no visitor and building a tree must reach the same verdict.
  etf::EtfDecoder decoder(limits);
  etf::NullVisitor ignore;
  const etf::DecodeStatus validated = decoder.decode(input, ignore);
  const etf::DecodedValue decoded = etf::decode(input, limits);
  require(validated.error == decoded.status.error);
  require(validated.offset == decoded.status.offset);
  require(validated.in_decompressed == decoded.status.in_decompressed);
  require(validated.bytes_used == decoded.status.bytes_used);

  // A plain term is one the decoder reads, ending where the scan says, or
  // (flat maps with equal keys, which OTP refuses too) refuses as duplicate.
  if (size > 0 && size <= limits.max_input_bytes && data[0] == etf::kVersionMagic) {
    if (const auto plain = etf::scan_plain_term(input, 1, limits.max_depth)) {
      require(plain->end <= size);
      require(validated.error == etf::DecodeErrc::duplicate_key ||
              (validated.ok() && validated.bytes_used == plain->end));
    }
    // With a depth limit no input this size can reach, the scan counts no
    // depth at all (the NIF's case): the same agreement with no limit.
    etf::DecodeLimits deep = limits;
    deep.max_depth = std::size_t{1} << 20;
    if (const auto plain = etf::scan_plain_term(input, 1, deep.max_depth)) {
      etf::EtfDecoder deep_decoder(deep);
      const etf::DecodeStatus unlimited = deep_decoder.decode(input, ignore);
      require(plain->end <= size);
      require(unlimited.error == etf::DecodeErrc::duplicate_key ||
              (unlimited.ok() && unlimited.bytes_used == plain->end));
    }
  }

  etf::DecodeLimits strict = limits;
  strict.allow_trailing_data = false;
  etf::EtfDecoder strict_decoder(strict);
  const etf::DecodeStatus strict_status = strict_decoder.decode(input, ignore);
  if (!validated.ok()) {
    require(!strict_status.ok());
    return 0;
  }
  require(validated.bytes_used <= size);
  require(strict_status.ok() || strict_status.error == etf::DecodeErrc::trailing_data);

  require(keys_strictly_increasing(decoded.value));

  // The canonical encoding may be larger than the input (a compressed input),
  // so it is read back without the input size limit.
  etf::DecodeLimits roomy = limits;
  roomy.max_input_bytes = static_cast<std::size_t>(-1);
  const etf::ByteBuffer canonical = etf::encode(decoded.value);
  const etf::DecodedValue again = etf::decode(canonical.bytes(), roomy);
  require(again.status.ok());
  require(again.status.bytes_used == canonical.size());
  require(again.value == decoded.value);
  require(etf::compare(decoded.value, again.value) == 0);
  require(same_bytes(etf::encode(again.value), canonical));

  if (canonical.size() < 4096) {
    const etf::ByteBuffer compressed = etf::encode(decoded.value, 1);
    const etf::DecodedValue inflated = etf::decode(compressed.bytes(), roomy);
    require(inflated.status.ok());
    require(inflated.value == decoded.value);
  }
  return 0;
}
