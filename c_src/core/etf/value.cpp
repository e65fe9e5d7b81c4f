#include "core/etf/value.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "core/etf/atom_text.hpp"
#include "core/etf/decoder.hpp"
#include "core/etf/encoder.hpp"

namespace switchboard::core::etf {

namespace {

Text make_text(std::string_view text) { return Text(text.data(), text.size()); }

Bytes make_bytes(std::span<const std::uint8_t> bytes) { return Bytes(bytes.begin(), bytes.end()); }

Text checked_atom_text(std::string_view text, const char* what) {
  if (!is_valid_atom_text(text)) {
    throw std::invalid_argument(std::string("etf::Value: invalid ") + what +
                                " (atoms are valid UTF-8 of at most 255 characters)");
  }
  return make_text(text);
}

// Maps keep their pairs sorted by key; sorting indices keeps keys and values together.
void sort_map_entries(ValueVector& entries) {
  const std::size_t pairs = entries.size() / 2;
  // Maps written by OTP arrive sorted already; checking is cheaper than sorting.
  bool in_order = true;
  for (std::size_t i = 1; i < pairs && in_order; ++i) {
    in_order = compare(entries[2 * i - 2], entries[2 * i]) < 0;
  }
  if (in_order) return;
  Vector<std::size_t> order(pairs);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return compare(entries[2 * a], entries[2 * b]) < 0;
  });
  ValueVector reordered;
  reordered.reserve(entries.size());
  for (std::size_t index : order) {
    reordered.push_back(std::move(entries[2 * index]));
    reordered.push_back(std::move(entries[2 * index + 1]));
  }
  entries = std::move(reordered);
}

}  // namespace

// ---------------------------------------------------------------------------
// Building values from decoder events.

namespace detail {

class ValueBuilder {
 public:
  explicit ValueBuilder(const DecodeLimits& limits) : limits_(limits) {}

  bool on_integer(std::int64_t value) { return put(Value::integer(value)); }
  bool on_big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
    return put(Value(Value::BigInteger{negative, make_bytes(magnitude)}));
  }
  bool on_float(double value) { return put(Value(value)); }
  bool on_atom(std::string_view text) { return put(Value(Value::Atom{make_text(text)})); }
  bool on_binary(std::span<const std::uint8_t> bytes) {
    return put(Value(Value::Binary{make_bytes(bytes)}));
  }
  bool on_bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits) {
    return put(Value::bitstring(bytes, bits));
  }
  bool on_string(std::span<const std::uint8_t> bytes) {
    Value::List list;
    list.items.reserve(bytes.size());
    for (std::uint8_t byte : bytes) list.items.push_back(Value::integer(byte));
    return put(Value(std::move(list)));
  }
  bool on_nil() { return put(Value()); }
  bool begin_list(std::uint32_t length) { return open(std::size_t{length} + 1); }
  bool end_list() { return put(Value::list_from_parts(close())); }
  bool begin_tuple(std::uint32_t arity) { return open(arity); }
  bool end_tuple() { return put(Value(Value::Tuple{close()})); }
  bool begin_map(std::uint32_t pairs) { return open(std::size_t{pairs} * 2); }
  bool end_map() {
    // The decoder has already refused duplicate keys.
    ValueVector entries = close();
    sort_map_entries(entries);
    return put(Value(Value::Map{std::move(entries)}));
  }
  bool on_pid(const PidData& pid) {
    return put(Value(Value::Pid{make_text(pid.node), pid.id, pid.serial, pid.creation}));
  }
  bool on_port(const PortData& port) {
    return put(Value(Value::Port{make_text(port.node), port.id, port.creation}));
  }
  bool on_reference(const ReferenceData& reference) {
    Value::Reference value;
    value.node = make_text(reference.node);
    value.creation = reference.creation;
    value.id_count = static_cast<std::uint8_t>(reference.ids.size());
    std::copy(reference.ids.begin(), reference.ids.end(), value.ids.begin());
    return put(Value(std::move(value)));
  }
  bool on_export(const ExportData& exported) {
    // OTP keeps arities in 32 bits, so fun m:f/4294967297 is fun m:f/1.
    return put(Value(Value::ExportFun{make_text(exported.module), make_text(exported.function),
                                      static_cast<std::uint32_t>(exported.arity)}));
  }
  bool on_local_fun(const LocalFunData& fun) {
    Value::LocalFun value;
    value.encoded = make_bytes(fun.encoded);
    value.module = make_text(fun.module);
    value.index = fun.index;
    value.old_index = fun.old_index;
    value.old_uniq = fun.old_uniq;
    value.free_variables.reserve(fun.free_variable_count);
    DecodeLimits limits = limits_;
    limits.allow_trailing_data = true;
    std::span<const std::uint8_t> rest = fun.free_variables;
    for (std::uint32_t i = 0; i < fun.free_variable_count; ++i) {
      DecodedValue variable = decode_body(rest, limits);
      if (!variable.status) return false;
      value.free_variables.push_back(std::move(variable.value));
      rest = rest.subspan(variable.status.bytes_used);
    }
    return put(Value(std::move(value)));
  }

  Value take() { return std::move(result_); }

 private:
  bool open(std::size_t expected) {
    stack_.emplace_back();
    stack_.back().reserve(expected);
    return true;
  }
  ValueVector close() {
    ValueVector items = std::move(stack_.back());
    stack_.pop_back();
    return items;
  }
  bool put(Value&& value) {
    if (stack_.empty()) {
      result_ = std::move(value);
    } else {
      stack_.back().push_back(std::move(value));
    }
    return true;
  }

  const DecodeLimits& limits_;
  Vector<ValueVector> stack_;
  Value result_;
};

std::size_t find_duplicate_key(const std::uint8_t* buffer, std::span<const KeySpan> keys,
                               const DecodeLimits& limits) {
  DecodeLimits key_limits = limits;
  key_limits.allow_trailing_data = true;
  ValueVector decoded;
  decoded.reserve(keys.size());
  for (const KeySpan& key : keys) {
    DecodedValue value = decode_body({buffer + key.begin, key.end - key.begin}, key_limits);
    decoded.push_back(std::move(value.value));
  }
  Vector<std::size_t> order(keys.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  // Sorting the decoded keys keeps even a map full of colliding hashes
  // O(n log n); equal neighbours are duplicates.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return compare(decoded[a], decoded[b]) < 0;
  });
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (compare(decoded[order[i - 1]], decoded[order[i]]) == 0) {
      return std::max(order[i - 1], order[i]);
    }
  }
  return npos;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Construction and access.

Value::Value() noexcept : data_(List{}) {}

Value Value::integer(std::int64_t value) { return Value(Data{value}); }

Value Value::big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
  std::size_t size = magnitude.size();
  while (size > 0 && magnitude[size - 1] == 0) --size;
  if (size <= 8) {
    std::uint64_t unsigned_value = 0;
    for (std::size_t i = size; i > 0; --i)
      unsigned_value = (unsigned_value << 8) | magnitude[i - 1];
    if (!negative && unsigned_value <= static_cast<std::uint64_t>(INT64_MAX)) {
      return integer(static_cast<std::int64_t>(unsigned_value));
    }
    if (negative && unsigned_value <= static_cast<std::uint64_t>(INT64_MAX) + 1) {
      return integer(static_cast<std::int64_t>(~unsigned_value + 1));
    }
  }
  return Value(BigInteger{negative, make_bytes(magnitude.first(size))});
}

Value Value::float_number(double value) {
  if (!std::isfinite(value)) {
    throw std::invalid_argument("etf::Value: floats must be finite (OTP has no NaN or infinity)");
  }
  return Value(Data{value});
}

Value Value::atom(std::string_view utf8) { return Value(Atom{checked_atom_text(utf8, "atom")}); }

Value Value::boolean(bool value) { return Value(Atom{make_text(value ? "true" : "false")}); }

Value Value::binary(std::span<const std::uint8_t> bytes) {
  return Value(Binary{make_bytes(bytes)});
}

Value Value::binary(std::string_view bytes) {
  return binary({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
}

Value Value::bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits_in_last_byte) {
  if (bytes.empty() || bits_in_last_byte == 8) return binary(bytes);
  if (bits_in_last_byte == 0 || bits_in_last_byte > 8) {
    throw std::invalid_argument("etf::Value: bits in the last byte must be 1..8");
  }
  Bitstring bits{make_bytes(bytes), bits_in_last_byte};
  bits.bytes.back() &= static_cast<std::uint8_t>(0xff00u >> bits_in_last_byte);
  return Value(std::move(bits));
}

Value Value::list_from_parts(ValueVector parts) {
  Value tail = std::move(parts.back());
  parts.pop_back();
  if (parts.empty()) return tail;
  List list{std::move(parts), false};
  if (tail.kind() == Kind::list) {
    List& rest = std::get<List>(tail.data_);
    list.items.reserve(list.items.size() + rest.items.size());
    for (Value& item : rest.items) list.items.push_back(std::move(item));
    list.improper = rest.improper;
  } else {
    list.items.push_back(std::move(tail));
    list.improper = true;
  }
  return Value(std::move(list));
}

Value Value::list(ValueVector elements, Value tail) {
  elements.push_back(std::move(tail));
  return list_from_parts(std::move(elements));
}

Value Value::tuple(ValueVector elements) { return Value(Tuple{std::move(elements)}); }

Value Value::map(ValueVector keys_and_values) {
  if (keys_and_values.size() % 2 != 0) {
    throw std::invalid_argument("etf::Value::map: keys and values must alternate");
  }
  sort_map_entries(keys_and_values);
  for (std::size_t i = 2; i < keys_and_values.size(); i += 2) {
    if (compare(keys_and_values[i - 2], keys_and_values[i]) == 0) {
      throw std::invalid_argument("etf::Value::map: duplicate key");
    }
  }
  return Value(Map{std::move(keys_and_values)});
}

Value Value::pid(std::string_view node, std::uint32_t id, std::uint32_t serial,
                 std::uint32_t creation) {
  return Value(Pid{checked_atom_text(node, "node name"), id, serial, creation});
}

Value Value::port(std::string_view node, std::uint64_t id, std::uint32_t creation) {
  return Value(Port{checked_atom_text(node, "node name"), id, creation});
}

Value Value::reference(std::string_view node, std::uint32_t creation,
                       std::span<const std::uint32_t> ids) {
  if (ids.empty() || ids.size() > kMaxReferenceWords) {
    throw std::invalid_argument("etf::Value::reference: 1 to 5 id words");
  }
  Reference reference;
  reference.node = checked_atom_text(node, "node name");
  reference.creation = creation;
  reference.id_count = static_cast<std::uint8_t>(ids.size());
  std::copy(ids.begin(), ids.end(), reference.ids.begin());
  return Value(std::move(reference));
}

Value Value::export_fun(std::string_view module, std::string_view function, std::uint32_t arity) {
  return Value(ExportFun{checked_atom_text(module, "module name"),
                         checked_atom_text(function, "function name"), arity});
}

Value Value::local_fun(std::span<const std::uint8_t> encoded) {
  DecodedValue decoded = decode_body(encoded);
  if (!decoded.status || decoded.status.bytes_used != encoded.size() ||
      decoded.value.kind() != Kind::local_fun) {
    throw std::invalid_argument("etf::Value::local_fun: not a complete NEW_FUN_EXT term");
  }
  return std::move(decoded.value);
}

bool Value::is_nil() const noexcept {
  const List* list = std::get_if<List>(&data_);
  return list != nullptr && list->items.empty();
}

bool Value::is_atom(std::string_view text) const noexcept {
  const Atom* atom = std::get_if<Atom>(&data_);
  return atom != nullptr && std::string_view(atom->text) == text;
}

void Value::throw_wrong_kind(const char* kind_name) {
  throw std::invalid_argument(std::string("etf::Value is not ") + kind_name);
}

const Value* Value::find(const Value& key) const {
  const ValueVector& entries = as_map().entries;
  std::size_t low = 0;
  std::size_t high = entries.size() / 2;
  while (low < high) {
    const std::size_t middle = low + (high - low) / 2;
    const int order = compare(entries[2 * middle], key);
    if (order == 0) return &entries[2 * middle + 1];
    if (order < 0) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Term order.

namespace {

int sign_of(long long difference) { return difference < 0 ? -1 : difference > 0 ? 1 : 0; }

template <class T>
int three_way(const T& a, const T& b) {
  return a < b ? -1 : b < a ? 1 : 0;
}

int compare_text(std::string_view a, std::string_view b) { return sign_of(a.compare(b)); }

int type_rank(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::integer:
    case Value::Kind::big_integer:
    case Value::Kind::float_number:
      return 0;
    case Value::Kind::atom:
      return 1;
    case Value::Kind::reference:
      return 2;
    case Value::Kind::local_fun:
    case Value::Kind::export_fun:
      return 3;
    case Value::Kind::port:
      return 4;
    case Value::Kind::pid:
      return 5;
    case Value::Kind::tuple:
      return 6;
    case Value::Kind::map:
      return 7;
    case Value::Kind::list:
      return value.is_nil() ? 8 : 9;
    case Value::Kind::binary:
    case Value::Kind::bitstring:
      return 10;
  }
  return 11;
}

int compare_magnitudes(const Bytes& a, const Bytes& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (std::size_t i = a.size(); i > 0; --i) {
    if (a[i - 1] != b[i - 1]) return a[i - 1] < b[i - 1] ? -1 : 1;
  }
  return 0;
}

// Exact order: every integer sorts before every float (1 < 1.0 as map keys).
int compare_numbers(const Value& a, const Value& b) {
  const auto ka = a.kind();
  const auto kb = b.kind();
  const bool a_float = ka == Value::Kind::float_number;
  const bool b_float = kb == Value::Kind::float_number;
  if (a_float != b_float) return a_float ? 1 : -1;
  if (a_float) return three_way(a.as_float(), b.as_float());
  if (ka == Value::Kind::integer && kb == Value::Kind::integer) {
    return three_way(a.as_integer(), b.as_integer());
  }
  // Bignums lie outside int64, so their sign alone places them against an integer.
  if (ka == Value::Kind::integer) return b.as_big_integer().negative ? 1 : -1;
  if (kb == Value::Kind::integer) return a.as_big_integer().negative ? -1 : 1;
  const auto& ba = a.as_big_integer();
  const auto& bb = b.as_big_integer();
  if (ba.negative != bb.negative) return ba.negative ? -1 : 1;
  const int order = compare_magnitudes(ba.magnitude, bb.magnitude);
  return ba.negative ? -order : order;
}

int compare_nodes(const Text& node_a, std::uint32_t creation_a, const Text& node_b,
                  std::uint32_t creation_b) {
  if (const int order = compare_text(node_a, node_b)) return order;
  return three_way(creation_a, creation_b);
}

struct BitView {
  const std::uint8_t* bytes;
  std::size_t bits;
};

BitView bit_view(const Value& value) {
  if (value.kind() == Value::Kind::binary) {
    const auto bytes = value.as_binary();
    return {bytes.data(), bytes.size() * 8};
  }
  const auto& bitstring = value.as_bitstring();
  return {bitstring.bytes.data(), (bitstring.bytes.size() - 1) * 8 + bitstring.bits_in_last_byte};
}

int compare_bits(const Value& a, const Value& b) {
  const BitView va = bit_view(a);
  const BitView vb = bit_view(b);
  const std::size_t common = std::min(va.bits, vb.bits);
  const std::size_t whole = common / 8;
  if (whole != 0) {
    if (const int order = std::memcmp(va.bytes, vb.bytes, whole)) return order < 0 ? -1 : 1;
  }
  if (const std::size_t rest = common % 8) {
    const auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
    const auto ba = static_cast<std::uint8_t>(va.bytes[whole] & mask);
    const auto bb = static_cast<std::uint8_t>(vb.bytes[whole] & mask);
    if (ba != bb) return ba < bb ? -1 : 1;
  }
  return three_way(va.bits, vb.bits);
}

int compare_lists(const Value::List& a, const Value::List& b) {
  const std::size_t elements_a = a.items.size() - (a.improper ? 1 : 0);
  const std::size_t elements_b = b.items.size() - (b.improper ? 1 : 0);
  const std::size_t common = std::min(elements_a, elements_b);
  for (std::size_t i = 0; i < common; ++i) {
    if (const int order = compare(a.items[i], b.items[i])) return order;
  }
  static const Value kNil;
  const Value& tail_a = a.improper ? a.items.back() : kNil;
  const Value& tail_b = b.improper ? b.items.back() : kNil;
  if (elements_a == elements_b) return compare(tail_a, tail_b);
  // One list ran out: its tail (never a list) meets the other's next cons cell.
  if (elements_a < elements_b) return type_rank(tail_a) < 9 ? -1 : 1;
  return type_rank(tail_b) < 9 ? 1 : -1;
}

int compare_sequences(std::span<const Value> a, std::span<const Value> b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (const int order = compare(a[i], b[i])) return order;
  }
  return three_way(a.size(), b.size());
}

int compare_maps(const Value::Map& a, const Value::Map& b) {
  if (a.entries.size() != b.entries.size()) return a.entries.size() < b.entries.size() ? -1 : 1;
  // All keys first, then the values in key order.
  for (std::size_t i = 0; i < a.entries.size(); i += 2) {
    if (const int order = compare(a.entries[i], b.entries[i])) return order;
  }
  for (std::size_t i = 1; i < a.entries.size(); i += 2) {
    if (const int order = compare(a.entries[i], b.entries[i])) return order;
  }
  return 0;
}

int compare_references(const Value::Reference& a, const Value::Reference& b) {
  if (const int order = compare_nodes(a.node, a.creation, b.node, b.creation)) return order;
  // Ids compare zero-extended from the most significant word down.
  for (std::size_t i = std::max(a.id_count, b.id_count); i > 0; --i) {
    const std::uint32_t word_a = i <= a.id_count ? a.ids[i - 1] : 0;
    const std::uint32_t word_b = i <= b.id_count ? b.ids[i - 1] : 0;
    if (word_a != word_b) return word_a < word_b ? -1 : 1;
  }
  return 0;
}

int compare_funs(const Value& a, const Value& b) {
  const bool a_local = a.kind() == Value::Kind::local_fun;
  const bool b_local = b.kind() == Value::Kind::local_fun;
  if (a_local != b_local) return a_local ? -1 : 1;
  if (!a_local) {
    const auto& ea = a.as_export_fun();
    const auto& eb = b.as_export_fun();
    if (const int order = compare_text(ea.module, eb.module)) return order;
    if (const int order = compare_text(ea.function, eb.function)) return order;
    return three_way(ea.arity, eb.arity);
  }
  // What identifies a fun to OTP 25 (checked against binary_to_term's duplicate
  // key check): module, index, old uniq and environment; not the arity, the
  // uniq bytes, the old index, the creator pid or the size field.
  const auto& fa = a.as_local_fun();
  const auto& fb = b.as_local_fun();
  if (const int order = compare_text(fa.module, fb.module)) return order;
  if (const int order = three_way(fa.index, fb.index)) return order;
  if (const int order = three_way(fa.old_uniq, fb.old_uniq)) return order;
  if (fa.free_variables.size() != fb.free_variables.size()) {
    return fa.free_variables.size() < fb.free_variables.size() ? -1 : 1;
  }
  return compare_sequences(fa.free_variables, fb.free_variables);
}

}  // namespace

int compare(const Value& a, const Value& b) noexcept {
  // Binary map keys are the common case; compare them without the general dispatch.
  if (a.kind() == Value::Kind::binary && b.kind() == Value::Kind::binary) {
    const auto bytes_a = a.as_binary();
    const auto bytes_b = b.as_binary();
    const std::size_t common = std::min(bytes_a.size(), bytes_b.size());
    if (common != 0) {
      if (const int order = std::memcmp(bytes_a.data(), bytes_b.data(), common)) {
        return order < 0 ? -1 : 1;
      }
    }
    return three_way(bytes_a.size(), bytes_b.size());
  }
  const int rank_a = type_rank(a);
  const int rank_b = type_rank(b);
  if (rank_a != rank_b) return rank_a < rank_b ? -1 : 1;
  switch (rank_a) {
    case 0:
      return compare_numbers(a, b);
    case 1:
      return compare_text(a.as_atom(), b.as_atom());
    case 2:
      return compare_references(a.as_reference(), b.as_reference());
    case 3:
      return compare_funs(a, b);
    case 4: {
      const auto& pa = a.as_port();
      const auto& pb = b.as_port();
      if (const int order = compare_nodes(pa.node, pa.creation, pb.node, pb.creation)) {
        return order;
      }
      return three_way(pa.id, pb.id);
    }
    case 5: {
      // Pids order by serial and number first, and by node only after.
      const auto& pa = a.as_pid();
      const auto& pb = b.as_pid();
      if (const int order = three_way(pa.serial, pb.serial)) return order;
      if (const int order = three_way(pa.id, pb.id)) return order;
      return compare_nodes(pa.node, pa.creation, pb.node, pb.creation);
    }
    case 6: {
      const auto ta = a.as_tuple();
      const auto tb = b.as_tuple();
      if (ta.size() != tb.size()) return ta.size() < tb.size() ? -1 : 1;
      return compare_sequences(ta, tb);
    }
    case 7:
      return compare_maps(a.as_map(), b.as_map());
    case 8:
      return 0;
    case 9:
      return compare_lists(a.as_list(), b.as_list());
    default:
      return compare_bits(a, b);
  }
}

bool operator==(const Value& a, const Value& b) noexcept { return compare(a, b) == 0; }

// ---------------------------------------------------------------------------
// Decoding and encoding.

DecodedValue decode(EtfDecoder& decoder, std::span<const std::uint8_t> input) {
  detail::ValueBuilder builder(decoder.limits());
  DecodedValue result;
  result.status = decoder.decode(input, builder);
  if (result.status) result.value = builder.take();
  return result;
}

DecodedValue decode(std::span<const std::uint8_t> input, const DecodeLimits& limits) {
  EtfDecoder decoder(limits);
  return decode(decoder, input);
}

DecodedValue decode_body(std::span<const std::uint8_t> input, const DecodeLimits& limits) {
  EtfDecoder decoder(limits);
  detail::ValueBuilder builder(limits);
  DecodedValue result;
  result.status = decoder.decode_body(input, builder);
  if (result.status) result.value = builder.take();
  return result;
}

namespace {

// OTP writes a proper list of at most 65535 integers in 0..255 as STRING_EXT.
bool is_byte_string(const Value::List& list) {
  if (list.improper || list.items.size() > kMaxStringExtLength) return false;
  for (const Value& item : list.items) {
    if (item.kind() != Value::Kind::integer) return false;
    const std::int64_t number = item.as_integer();
    if (number < 0 || number > 255) return false;
  }
  return true;
}

// Binaries (map keys and strings in JSON-shaped data) get a branch of their
// own ahead of the jump table, which mispredicts far more often, and skip the
// recursive call. (Adding integers and atoms here measured slower.)
inline void encode_element(const Value& value, EtfEncoder& encoder) {
  if (value.kind() == Value::Kind::binary) {
    encoder.binary(value.as_binary());
  } else {
    encode_body(value, encoder);
  }
}

}  // namespace

void encode_body(const Value& value, EtfEncoder& encoder) {
  switch (value.kind()) {
    case Value::Kind::integer:
      encoder.int64(value.as_integer());
      return;
    case Value::Kind::big_integer: {
      const auto& big = value.as_big_integer();
      encoder.big_integer(big.negative, big.magnitude);
      return;
    }
    case Value::Kind::float_number:
      encoder.float64(value.as_float());
      return;
    case Value::Kind::atom:
      encoder.atom(value.as_atom());
      return;
    case Value::Kind::binary:
      encoder.binary(value.as_binary());
      return;
    case Value::Kind::bitstring: {
      const auto& bits = value.as_bitstring();
      encoder.bitstring(bits.bytes, bits.bits_in_last_byte);
      return;
    }
    case Value::Kind::list: {
      const auto& list = value.as_list();
      if (list.items.empty()) {
        encoder.nil();
      } else if (is_byte_string(list)) {
        std::uint8_t* at = encoder.buffer().extend(3 + list.items.size());
        at[0] = tag_byte(Tag::string);
        store_u16(at + 1, static_cast<std::uint16_t>(list.items.size()));
        for (std::size_t i = 0; i < list.items.size(); ++i) {
          at[3 + i] = static_cast<std::uint8_t>(list.items[i].as_integer());
        }
      } else {
        const std::size_t elements = list.items.size() - (list.improper ? 1 : 0);
        encoder.list_header(static_cast<std::uint32_t>(elements));
        for (const Value& item : list.items) encode_element(item, encoder);
        if (!list.improper) encoder.nil();
      }
      return;
    }
    case Value::Kind::tuple: {
      const auto elements = value.as_tuple();
      encoder.tuple_header(static_cast<std::uint32_t>(elements.size()));
      for (const Value& element : elements) encode_element(element, encoder);
      return;
    }
    case Value::Kind::map: {
      const auto& entries = value.as_map().entries;
      encoder.map_header(static_cast<std::uint32_t>(entries.size() / 2));
      for (const Value& entry : entries) encode_element(entry, encoder);
      return;
    }
    case Value::Kind::pid: {
      const auto& pid = value.as_pid();
      encoder.pid(pid.node, pid.id, pid.serial, pid.creation);
      return;
    }
    case Value::Kind::port: {
      const auto& port = value.as_port();
      encoder.port(port.node, port.id, port.creation);
      return;
    }
    case Value::Kind::reference: {
      const auto& reference = value.as_reference();
      encoder.reference(reference.node, reference.creation,
                        {reference.ids.data(), reference.id_count});
      return;
    }
    case Value::Kind::export_fun: {
      const auto& exported = value.as_export_fun();
      encoder.export_fun(exported.module, exported.function, exported.arity);
      return;
    }
    case Value::Kind::local_fun:
      encoder.raw(value.as_local_fun().encoded);
      return;
  }
}

ByteBuffer encode(const Value& value, int compression_level) {
  EtfEncoder encoder(256);
  encoder.version();
  encode_body(value, encoder);
  if (compression_level != 0) encoder.compress(compression_level);
  return encoder.take();
}

}  // namespace switchboard::core::etf
