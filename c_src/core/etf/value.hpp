// etf::Value: a small tree of Erlang terms for C++ code that has no VM. It
// compares like OTP 25 (=:= and the term order maps sort their keys by) and
// encodes canonically, the way term_to_binary/1 does.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <variant>

#include "core/etf/byte_buffer.hpp"
#include "core/etf/containers.hpp"
#include "core/etf/decode_error.hpp"

namespace switchboard::core::etf {

class EtfDecoder;
class EtfEncoder;
class Value;
using ValueVector = Vector<Value>;

namespace detail {
class ValueBuilder;
}

class Value {
 public:
  enum class Kind : std::uint8_t {
    integer,
    big_integer,
    float_number,
    atom,
    binary,
    bitstring,
    list,
    tuple,
    map,
    pid,
    port,
    reference,
    export_fun,
    local_fun,
  };

  // A bignum outside int64: little-endian magnitude, no trailing zero bytes.
  struct BigInteger {
    bool negative = false;
    Bytes magnitude;
  };
  struct Atom {
    Text text;  // UTF-8
  };
  struct Binary {
    Bytes bytes;
  };
  // 1 to 7 significant high bits in the last byte; the unused bits are zero.
  struct Bitstring {
    Bytes bytes;
    std::uint8_t bits_in_last_byte = 1;
  };
  // Elements in order. When `improper`, the last item is the tail, which is
  // never a list: [1 | [2]] is stored as [1, 2]. [] has no items.
  struct List {
    ValueVector items;
    bool improper = false;
  };
  struct Tuple {
    ValueVector elements;
  };
  // key, value, key, value... sorted by key in term order, keys distinct.
  struct Map {
    ValueVector entries;
  };
  struct Pid {
    Text node;
    std::uint32_t id = 0;
    std::uint32_t serial = 0;
    std::uint32_t creation = 0;
  };
  struct Port {
    Text node;
    std::uint64_t id = 0;
    std::uint32_t creation = 0;
  };
  struct Reference {
    Text node;
    std::uint32_t creation = 0;
    std::array<std::uint32_t, 5> ids{};
    std::uint8_t id_count = 0;
  };
  struct ExportFun {
    Text module;
    Text function;
    std::uint32_t arity = 0;
  };
  // Kept as received: only the VM that compiled it can run it, and OTP
  // re-encodes it with its own creator pid anyway.
  struct LocalFun {
    Bytes encoded;
    Text module;
    std::uint32_t index = 0;
    std::int64_t old_index = 0;
    std::int64_t old_uniq = 0;
    ValueVector free_variables;
  };

  // [] (nil).
  Value() noexcept;

  static Value integer(std::int64_t value);
  // Any magnitude; values that fit int64 become plain integers.
  static Value big_integer(bool negative, std::span<const std::uint8_t> magnitude);
  // Throws std::invalid_argument for NaN and infinities, which OTP refuses.
  static Value float_number(double value);
  // Throws std::invalid_argument unless `utf8` is valid UTF-8 of at most 255 characters.
  static Value atom(std::string_view utf8);
  static Value boolean(bool value);
  static Value binary(std::span<const std::uint8_t> bytes);
  static Value binary(std::string_view bytes);
  // Whole bytes (bits_in_last_byte 8, or no bytes) make a binary.
  static Value bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits_in_last_byte);
  static Value nil() { return Value(); }
  // [elements... | tail]; a list tail is spliced in, and no elements give `tail` itself.
  static Value list(ValueVector elements, Value tail = Value());
  static Value tuple(ValueVector elements);
  // key, value, key, value...; throws std::invalid_argument on an odd count or duplicate keys.
  static Value map(ValueVector keys_and_values);
  static Value pid(std::string_view node, std::uint32_t id, std::uint32_t serial,
                   std::uint32_t creation);
  static Value port(std::string_view node, std::uint64_t id, std::uint32_t creation);
  // 1 to 5 id words.
  static Value reference(std::string_view node, std::uint32_t creation,
                         std::span<const std::uint32_t> ids);
  static Value export_fun(std::string_view module, std::string_view function, std::uint32_t arity);
  // From a complete NEW_FUN_EXT term; throws std::invalid_argument if it does not decode.
  static Value local_fun(std::span<const std::uint8_t> encoded);

  Kind kind() const noexcept { return static_cast<Kind>(data_.index()); }
  bool is_nil() const noexcept;
  bool is_atom(std::string_view text) const noexcept;

  // Accessors throw std::invalid_argument when the value is of another kind.
  // They are defined here because encoders call them for every term.
  std::int64_t as_integer() const { return expect<std::int64_t>("an integer"); }
  const BigInteger& as_big_integer() const { return expect<BigInteger>("a bignum"); }
  double as_float() const { return expect<double>("a float"); }
  std::string_view as_atom() const { return expect<Atom>("an atom").text; }
  std::span<const std::uint8_t> as_binary() const { return expect<Binary>("a binary").bytes; }
  const Bitstring& as_bitstring() const { return expect<Bitstring>("a bitstring"); }
  const List& as_list() const { return expect<List>("a list"); }
  std::span<const Value> as_tuple() const { return expect<Tuple>("a tuple").elements; }
  const Map& as_map() const { return expect<Map>("a map"); }
  const Pid& as_pid() const { return expect<Pid>("a pid"); }
  const Port& as_port() const { return expect<Port>("a port"); }
  const Reference& as_reference() const { return expect<Reference>("a reference"); }
  const ExportFun& as_export_fun() const { return expect<ExportFun>("an export fun"); }
  const LocalFun& as_local_fun() const { return expect<LocalFun>("a local fun"); }

  std::size_t map_size() const { return as_map().entries.size() / 2; }
  const Value& map_key(std::size_t index) const { return as_map().entries[2 * index]; }
  const Value& map_value(std::size_t index) const { return as_map().entries[2 * index + 1]; }
  // The value under an =:= equal key, or nullptr.
  const Value* find(const Value& key) const;

 private:
  friend class detail::ValueBuilder;
  using Data = std::variant<std::int64_t, BigInteger, double, Atom, Binary, Bitstring, List, Tuple,
                            Map, Pid, Port, Reference, ExportFun, LocalFun>;
  explicit Value(Data data) : data_(std::move(data)) {}
  // `parts` holds the elements followed by the tail.
  static Value list_from_parts(ValueVector parts);
  template <class T>
  const T& expect(const char* kind_name) const {
    if (const T* value = std::get_if<T>(&data_)) return *value;
    throw_wrong_kind(kind_name);
  }
  [[noreturn]] static void throw_wrong_kind(const char* kind_name);

  Data data_;
};

// OTP's exact term order (what map keys sort by): numbers < atoms < references
// < funs < ports < pids < tuples < maps < [] < lists < bitstrings, with
// integers before floats. Negative, zero or positive like strcmp.
int compare(const Value& a, const Value& b) noexcept;
// =:= (in OTP 25, 0.0 =:= -0.0).
bool operator==(const Value& a, const Value& b) noexcept;

struct DecodedValue {
  Value value;
  DecodeStatus status;
};

// A decoder kept between calls saves its buffers' allocations.
DecodedValue decode(EtfDecoder& decoder, std::span<const std::uint8_t> input);
DecodedValue decode(std::span<const std::uint8_t> input, const DecodeLimits& limits = {});
// One term without the version byte.
DecodedValue decode_body(std::span<const std::uint8_t> input, const DecodeLimits& limits = {});

// Appends the canonical encoding of `value` (no version byte). Maps of more
// than 32 pairs are written in key order; OTP writes those in its hash-trie
// order, which depends on the VM's atom table and cannot be reproduced here.
void encode_body(const Value& value, EtfEncoder& encoder);
// Version byte and canonical encoding, compressed at `compression_level` 1-9
// when that makes it smaller (0: never).
ByteBuffer encode(const Value& value, int compression_level = 0);

}  // namespace switchboard::core::etf
