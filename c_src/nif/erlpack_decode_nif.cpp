// Switchboard.Erlpack decoding NIF: the core EtfDecoder hands a visitor
// (TermBuilder) each term, which builds it directly in the caller's heap.
// Small inputs of plain data (core/etf/plain_term.hpp), once the core has
// checked them against the limits, are built by the VM's binary_to_term in
// one call instead (decode_plain): the same term, at a fraction of the
// per-term cost of the enif API. Errors are the core's refusals
// (core/etf/refusal.hpp), the same `{reason, offset}` as the pure twin.
//
// The core decoder cannot pause mid-term, and a half-built term cannot be
// kept across a reschedule (a garbage collection may move it), so a decode
// that outlasts its slice (or its work budget) starts again dirty.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/byte_order.hpp"
#include "core/etf/atom_text.hpp"
#include "core/etf/decoder.hpp"
#include "core/etf/encoder.hpp"
#include "core/etf/plain_term.hpp"
#include "core/etf/refusal.hpp"
#include "nif/erlpack_shared.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {
namespace {
ERL_NIF_TERM& atom_existing = register_atom("existing");
ERL_NIF_TERM& atom_binary = register_atom("binary");
ERL_NIF_TERM& atom_create = register_atom("create");
}  // namespace

// The :atoms option, read by comparing atom terms (an atom is the same word
// in every env): cheaper than reading its text, on every decode.
template <>
struct Decoder<core::etf::AtomMode> {
  static constexpr std::string_view expected = "one of :existing, :binary, :create";
  static bool decode(ErlNifEnv*, ERL_NIF_TERM term, core::etf::AtomMode& out) {
    if (term == atom_existing) {
      out = core::etf::AtomMode::existing;
    } else if (term == atom_binary) {
      out = core::etf::AtomMode::binary;
    } else if (term == atom_create) {
      out = core::etf::AtomMode::create;
    } else {
      return false;
    }
    return true;
  }
};

namespace {

namespace etf = core::etf;
using etf::AtomMode;
using etf::Refusal;
using namespace erlpack;  // the Erlpack NIFs' scheduling (erlpack_shared.hpp)

// Every reason decode/2 can return, made at load.
struct ReasonAtom {
  std::string_view name;
  ERL_NIF_TERM& atom;
};
const std::array<ReasonAtom, 18> kReasons = {{
    {"truncated", register_atom("truncated")},
    {"bad_version", register_atom("bad_version")},
    {"unknown_tag", register_atom("unknown_tag")},
    {"depth_exceeded", register_atom("depth_exceeded")},
    {"too_large", register_atom("too_large")},
    {"decompressed_too_large", register_atom("decompressed_too_large")},
    {"bad_compression", register_atom("bad_compression")},
    {"nested_compression", register_atom("nested_compression")},
    {"invalid_float", register_atom("invalid_float")},
    {"duplicate_key", register_atom("duplicate_key")},
    {"atom_too_long", register_atom("atom_too_long")},
    {"invalid_utf8", register_atom("invalid_utf8")},
    {"trailing_data", register_atom("trailing_data")},
    {"unknown_atom", register_atom("unknown_atom")},
    {"bad_node", register_atom("bad_node")},
    {"not_plain", register_atom("not_plain")},
    {"too_many_atoms", register_atom("too_many_atoms")},
    {"invalid_term", register_atom("invalid_term")},
}};

ERL_NIF_TERM reason_atom(std::string_view name) {
  for (const ReasonAtom& reason : kReasons) {
    if (reason.name == name) return reason.atom;
  }
  return kReasons.back().atom;  // invalid_term
}

// ---------------------------------------------------------------------------
// Decoding

// Existing atoms by name, per scheduler thread: a hit skips the atom table
// (and its lock). Entries stay valid for the life of the VM.
class AtomNames {
 public:
  std::optional<ERL_NIF_TERM> find(std::string_view utf8) const {
    if (utf8.size() > kMaxText) return std::nullopt;
    const Entry& entry = entries_[slot(utf8)];
    if (entry.length == utf8.size() && entry.atom != 0 &&
        std::memcmp(entry.text, utf8.data(), utf8.size()) == 0) {
      return entry.atom;
    }
    return std::nullopt;
  }
  void remember(std::string_view utf8, ERL_NIF_TERM atom) {
    if (utf8.size() > kMaxText) return;
    Entry& entry = entries_[slot(utf8)];
    entry.atom = atom;
    entry.length = static_cast<std::uint8_t>(utf8.size());
    std::memcpy(entry.text, utf8.data(), utf8.size());
  }

 private:
  static constexpr std::size_t kMaxText = 47;
  static constexpr std::size_t kSlots = 1024;
  struct Entry {
    ERL_NIF_TERM atom = 0;
    std::uint8_t length = 0;
    char text[kMaxText];
  };
  static std::size_t slot(std::string_view text) noexcept {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    return static_cast<std::size_t>(hash >> 32) & (kSlots - 1);
  }
  std::array<Entry, kSlots> entries_{};
};

// Map keys met during one decode, by their bytes: payloads repeat the same
// few keys in every object, and one term per key serves them all (terms are
// immutable; binary_to_term makes a copy each time).
class KeyCache {
 public:
  static constexpr std::size_t kMaxKeyBytes = 24;

  void next_call() noexcept {
    if (++generation_ == 0) {
      entries_.fill({});
      generation_ = 1;
    }
  }
  // The entry for `bytes` (at most kMaxKeyBytes): term != 0 when made earlier
  // in this call, otherwise the caller fills it with remember().
  struct Entry {
    std::uint32_t generation = 0;
    std::uint8_t length = 0;
    std::uint8_t bytes[kMaxKeyBytes] = {};
    ERL_NIF_TERM term = 0;
  };
  Entry& slot(std::span<const std::uint8_t> bytes) noexcept {
    // Inline loads: these keys are a few bytes long, and a call to memcpy or
    // memcmp would cost more than the whole lookup.
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    const std::size_t n = bytes.size();
    if (n >= 8) {
      std::memcpy(&head, bytes.data(), 8);
      std::memcpy(&tail, bytes.data() + n - 8, 8);
    } else {
      for (std::size_t i = 0; i < n; ++i) head |= std::uint64_t{bytes[i]} << (8 * i);
    }
    const std::uint64_t hash = (head * 0x9e3779b97f4a7c15ull) ^ (tail * 0xc2b2ae3d27d4eb4full) ^
                               (n * 0x165667b19e3779f9ull);
    return entries_[(hash ^ (hash >> 29)) & (kEntries - 1)];
  }
  bool holds(const Entry& entry, std::span<const std::uint8_t> bytes) const noexcept {
    if (entry.generation != generation_ || entry.length != bytes.size()) return false;
    std::uint8_t differ = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      differ = static_cast<std::uint8_t>(differ | (entry.bytes[i] ^ bytes[i]));
    }
    return differ == 0;
  }
  void remember(Entry& entry, std::span<const std::uint8_t> bytes, ERL_NIF_TERM term) noexcept {
    entry.generation = generation_;
    entry.length = static_cast<std::uint8_t>(bytes.size());
    etf::copy_bytes(entry.bytes, bytes.data(), bytes.size());
    entry.term = term;
  }

 private:
  static constexpr std::size_t kEntries = 128;
  std::uint32_t generation_ = 1;
  std::array<Entry, kEntries> entries_{};
};

// An open container: where its items start, and whether it is a map (whose
// even items are keys).
struct DecodeFrame {
  std::size_t first;
  bool map;
};

// Per scheduler thread, looked up once per call (see EncodeBuffers).
struct DecodeBuffers {
  std::vector<ERL_NIF_TERM> items;
  std::vector<DecodeFrame> frames;
  KeyCache keys;
  std::vector<ERL_NIF_TERM> keys_and_values;
  std::vector<unsigned char> external;
  etf::EtfEncoder scratch;
  AtomNames names;
  std::optional<etf::EtfDecoder> decoder;
  // A thread never changes kind, and [] is the same term in every env: both
  // are asked for once per thread, not on every call.
  std::optional<bool> normal_scheduler;
  ERL_NIF_TERM nil = 0;

  // The buffers themselves need a guard and a destructor, which cost a
  // second __tls_get_addr per lookup; a plain pointer to them costs one.
  [[gnu::noinline]] static DecodeBuffers& get() {
    DecodeBuffers* buffers = current;
    return buffers != nullptr ? *buffers : first_use();
  }

  bool on_normal_scheduler() {
    if (!normal_scheduler) normal_scheduler = nif::on_normal_scheduler();
    return *normal_scheduler;
  }
  ERL_NIF_TERM empty_list(ErlNifEnv* env) {
    if (nil == 0) nil = enif_make_list(env, 0);
    return nil;
  }

  // A decoder keeps its buffers between calls; it is made anew when the
  // limits change.
  etf::EtfDecoder& decoder_for(const etf::DecodeLimits& limits) {
    const bool same = decoder && decoder->limits().max_depth == limits.max_depth &&
                      decoder->limits().max_input_bytes == limits.max_input_bytes &&
                      decoder->limits().max_decompressed_bytes == limits.max_decompressed_bytes &&
                      decoder->limits().allow_trailing_data == limits.allow_trailing_data &&
                      decoder->limits().check_duplicate_keys == limits.check_duplicate_keys &&
                      decoder->limits().plain_only == limits.plain_only &&
                      decoder->limits().max_work == limits.max_work;
    if (!same) decoder.emplace(limits);
    return *decoder;
  }

  void trim_after_call(std::size_t input_size) {
    trim(items);
    trim(frames);
    trim(keys_and_values);
    // The decoder's buffers grow with the input (and an inflated payload).
    if (input_size > kKeepBufferBytes) decoder.reset();
  }

 private:
  static inline thread_local DecodeBuffers* current = nullptr;

  [[gnu::noinline, gnu::cold]] static DecodeBuffers& first_use() {
    thread_local DecodeBuffers buffers;
    current = &buffers;
    return buffers;
  }
};

// Atoms outside Latin-1 can only be looked up or made through an external term.
std::optional<ERL_NIF_TERM> utf8_atom(ErlNifEnv* env, DecodeBuffers& buffers, std::string_view utf8,
                                      bool create) {
  std::vector<unsigned char>& bytes = buffers.external;
  bytes.assign({etf::kVersionMagic, etf::tag_byte(etf::Tag::atom_utf8),
                static_cast<unsigned char>(utf8.size() >> 8),
                static_cast<unsigned char>(utf8.size() & 0xff)});
  bytes.insert(bytes.end(), utf8.begin(), utf8.end());
  ERL_NIF_TERM atom;
  const auto flags = static_cast<ErlNifBinaryToTerm>(create ? 0 : ERL_NIF_BIN2TERM_SAFE);
  if (enif_binary_to_term(env, bytes.data(), bytes.size(), &atom, flags) == 0) {
    return std::nullopt;
  }
  return atom;
}

// The atom named `utf8` (valid atom text): found, or made when `create`.
std::optional<ERL_NIF_TERM> lookup_atom(ErlNifEnv* env, DecodeBuffers& buffers,
                                        std::string_view utf8, bool create) {
  AtomNames& names = buffers.names;
  if (auto cached = names.find(utf8)) return cached;
  std::array<char, etf::kMaxAtomUtf8Bytes> latin1;
  const std::size_t length =
      etf::utf8_to_latin1(utf8, reinterpret_cast<std::uint8_t*>(latin1.data()));
  std::optional<ERL_NIF_TERM> atom;
  if (length == etf::npos) {
    atom = utf8_atom(env, buffers, utf8, create);
  } else if (create) {
    atom = enif_make_atom_len(env, latin1.data(), length);
  } else {
    ERL_NIF_TERM existing;
    if (enif_make_existing_atom_len(env, latin1.data(), length, &existing, ERL_NIF_LATIN1)) {
      atom = existing;
    }
  }
  if (atom) names.remember(utf8, *atom);
  return atom;
}

class VmAtoms final : public etf::AtomOracle {
 public:
  VmAtoms(ErlNifEnv* env, DecodeBuffers& buffers) : env_(env), buffers_(buffers) {}
  bool exists(std::string_view utf8) override {
    return lookup_atom(env_, buffers_, utf8, false).has_value();
  }

 private:
  ErlNifEnv* env_;
  DecodeBuffers& buffers_;
};

// For atoms: :create, the atoms the VM has, and up to `allowance` new names
// more, admitted in the order asked (document order): the first name past
// the allowance is the atom that decode refuses with too_many_atoms.
class AtomAllowance final : public etf::AtomOracle {
 public:
  AtomAllowance(ErlNifEnv* env, DecodeBuffers& buffers, std::size_t allowance)
      : vm_(env, buffers), allowance_(allowance) {}
  bool exists(std::string_view utf8) override {
    if (vm_.exists(utf8) || admitted_.contains(utf8)) return true;
    if (admitted_.size() >= allowance_) return false;
    admitted_.emplace(utf8);
    return true;
  }

 private:
  VmAtoms vm_;
  std::size_t allowance_;
  std::set<std::string, std::less<>> admitted_;
};

// Why the builder stopped the decoder.
enum class Stop : std::uint8_t {
  none,
  out_of_time,
  unknown_atom,   // at the rejected atom
  opaque_atom,    // a pid, port, reference or export names an unknown atom
  refusal,        // a fun: refusal() says what and where
  invalid_term,   // OTP refused to rebuild the term
  duplicate_key,  // the VM found two equal keys in a map
};

// The EtfVisitor that builds terms in `env` as the decoder reports them.
class TermBuilder {
 public:
  TermBuilder(ErlNifEnv* env, DecodeBuffers& buffers, AtomMode mode, ERL_NIF_TERM input,
              std::span<const std::uint8_t> bytes, bool cache_keys, ERL_NIF_TERM seal,
              CodecSlice& slice)
      : env_(env),
        seal_(seal),
        buffers_(buffers),
        mode_(mode),
        input_(input),
        bytes_(bytes),
        cache_keys_(cache_keys),
        slice_(slice),
        items_(buffers.items),
        frames_(buffers.frames),
        nil_(buffers.empty_list(env)) {
    items_.clear();
    frames_.clear();
    buffers.keys.next_call();
  }
  TermBuilder(const TermBuilder&) = delete;
  TermBuilder& operator=(const TermBuilder&) = delete;

  ERL_NIF_TERM result() const noexcept { return result_; }
  Stop stop() const noexcept { return stop_; }
  const Refusal& refusal() const noexcept { return refusal_; }

  bool on_integer(std::int64_t value) { return put(enif_make_int64(env_, value)); }

  bool on_big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.big_integer(negative, magnitude);
    return put_external(scratch, 0, Stop::invalid_term);
  }

  bool on_float(double value) { return put(enif_make_double(env_, value)); }

  bool on_atom(std::string_view text) {
    // What OTP 25 writes for booleans and nil, ahead of every lookup.
    if (text.size() <= 5) {
      if (text == "true") return put(atoms::true_);
      if (text == "false") return put(atoms::false_);
      if (text == "nil") return put(atoms::nil);
    }
    if (mode_ == AtomMode::binary) {
      if (text.size() > kHeapBinaryBytes && slice_.bytes(text.size())) return out_of_time();
      return put(make_binary(env_, text));
    }
    const auto atom = lookup_atom(env_, buffers_, text, mode_ == AtomMode::create);
    if (!atom) return reject(Stop::unknown_atom);
    return put(*atom);
  }

  bool on_binary(std::span<const std::uint8_t> bytes) {
    if (cache_keys_ && bytes.size() <= KeyCache::kMaxKeyBytes && next_is_key()) {
      KeyCache::Entry& entry = buffers_.keys.slot(bytes);
      if (buffers_.keys.holds(entry, bytes)) return put(entry.term);
      const ERL_NIF_TERM key = copy_binary(bytes);
      buffers_.keys.remember(entry, bytes, key);
      return put(key);
    }
    // Large binaries share the input (no copy), small ones go on the heap.
    if (input_ != 0 && bytes.size() > kHeapBinaryBytes) {
      return put(enif_make_sub_binary(env_, input_, offset_of(bytes.data()), bytes.size()));
    }
    // A small binary counts as the term it is (put), large ones their bytes.
    if (bytes.size() > kHeapBinaryBytes && slice_.bytes(bytes.size())) return out_of_time();
    return put(copy_binary(bytes));
  }

  bool on_bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits) {
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.bitstring(bytes, bits);
    return put_external(scratch, 0, Stop::invalid_term);
  }

  bool on_string(std::span<const std::uint8_t> bytes) {
    return put(enif_make_string_len(env_, reinterpret_cast<const char*>(bytes.data()), bytes.size(),
                                    ERL_NIF_LATIN1));
  }

  bool on_nil() { return put(nil_); }

  bool begin_list(std::uint32_t) { return open(false); }
  bool end_list() {
    const std::size_t first = close();
    const std::size_t tail_at = items_.size() - 1;
    ERL_NIF_TERM list;
    if (items_[tail_at] == nil_) {
      list = enif_make_list_from_array(env_, items_.data() + first,
                                       static_cast<unsigned>(tail_at - first));
    } else {
      list = items_[tail_at];
      for (std::size_t i = tail_at; i > first; --i) {
        list = enif_make_list_cell(env_, items_[i - 1], list);
      }
    }
    items_.resize(first);
    return put(list);
  }

  bool begin_tuple(std::uint32_t) { return open(false); }
  bool end_tuple() {
    const std::size_t first = close();
    const ERL_NIF_TERM tuple = enif_make_tuple_from_array(
        env_, items_.data() + first, static_cast<unsigned>(items_.size() - first));
    items_.resize(first);
    return put(tuple);
  }

  bool begin_map(std::uint32_t) { return open(true); }
  bool end_map() {
    const std::size_t first = close();
    const std::size_t pairs = (items_.size() - first) / 2;
    ERL_NIF_TERM map;
    if (pairs <= 1) {
      // Maps of one pair are frequent in gateway payloads, and a put is about
      // 40 ns cheaper than enif_make_map_from_arrays; from two pairs on, puts
      // (a new map each) cost more.
      map = enif_make_new_map(env_);
      if (pairs == 1 && !enif_make_map_put(env_, map, items_[first], items_[first + 1], &map)) {
        return reject(Stop::invalid_term);
      }
    } else if (!make_map(first, pairs, map)) {
      return reject(Stop::duplicate_key);
    }
    items_.resize(first);
    return put(map);
  }

  bool on_pid(const etf::PidData& pid) {
    if (!node_exists(pid.node)) return reject(Stop::opaque_atom);
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.pid(pid.node, pid.id, pid.serial, pid.creation);
    return put_external(scratch, safe_flag(), Stop::invalid_term);
  }

  bool on_port(const etf::PortData& port) {
    if (!node_exists(port.node)) return reject(Stop::opaque_atom);
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.port(port.node, port.id, port.creation);
    return put_external(scratch, safe_flag(), Stop::invalid_term);
  }

  bool on_reference(const etf::ReferenceData& reference) {
    if (!node_exists(reference.node)) return reject(Stop::opaque_atom);
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.reference(reference.node, reference.creation, reference.ids);
    ERL_NIF_TERM term;
    if (enif_binary_to_term(env_, scratch.bytes().data(), scratch.size(), &term,
                            static_cast<ErlNifBinaryToTerm>(safe_flag())) == 0) {
      return reject(Stop::invalid_term);
    }
    // Decoded data never holds the fragments' seal (Switchboard.Erlpack.Fragment).
    if (enif_compare(term, seal_) == 0) return reject(Stop::invalid_term);
    return put(term);
  }

  bool on_export(const etf::ExportData& exported) {
    if (!node_exists(exported.module) || !node_exists(exported.function)) {
      return reject(Stop::opaque_atom);
    }
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.export_fun(exported.module, exported.function,
                       static_cast<std::uint32_t>(exported.arity));
    return put_external(scratch, safe_flag(), Stop::invalid_term);
  }

  // Only the VM can make a fun: it reads the validated bytes as they are.
  bool on_local_fun(const etf::LocalFunData& fun) {
    etf::EtfEncoder& scratch = scratch_encoder();
    scratch.version();
    scratch.raw(fun.encoded);
    if (put_external(scratch, safe_flag(), Stop::none)) return true;
    if (stop_ == Stop::out_of_time) return false;
    VmAtoms oracle(env_, buffers_);
    const etf::DecodeLimits limits;
    const auto found = etf::check_opaque_atoms(fun.encoded, 0, mode_, oracle, limits);
    refusal_ = found.value_or(Refusal{"invalid_term", 0});
    refusal_.offset += offset_of(fun.encoded.data());
    return reject(Stop::refusal);
  }

 private:
  etf::EtfEncoder& scratch_encoder() {
    buffers_.scratch.clear();
    return buffers_.scratch;
  }

  // Where `at` lies in the input; 0 inside an inflated payload (whose
  // errors are all reported at the compressed tag anyway).
  std::size_t offset_of(const std::uint8_t* at) const noexcept {
    const auto begin = reinterpret_cast<std::uintptr_t>(bytes_.data());
    const auto address = reinterpret_cast<std::uintptr_t>(at);
    return address >= begin && address <= begin + bytes_.size()
               ? static_cast<std::size_t>(address - begin)
               : 0;
  }

  unsigned safe_flag() const noexcept {
    return mode_ == AtomMode::create ? 0u : static_cast<unsigned>(ERL_NIF_BIN2TERM_SAFE);
  }

  // Nodes, modules and function names must exist except with atoms: :create.
  bool node_exists(std::string_view name) {
    return mode_ == AtomMode::create || lookup_atom(env_, buffers_, name, false).has_value();
  }

  bool put_external(const etf::EtfEncoder& encoded, unsigned flags, Stop on_failure) {
    ERL_NIF_TERM term;
    if (enif_binary_to_term(env_, encoded.bytes().data(), encoded.size(), &term,
                            static_cast<ErlNifBinaryToTerm>(flags)) == 0) {
      return on_failure == Stop::none ? false : reject(on_failure);
    }
    return put(term);
  }

  bool open(bool map) {
    frames_.push_back({items_.size(), map});
    return !slice_.term() || out_of_time();
  }
  std::size_t close() {
    const std::size_t first = frames_.back().first;
    frames_.pop_back();
    return first;
  }
  bool next_is_key() const noexcept {
    return !frames_.empty() && frames_.back().map &&
           ((items_.size() - frames_.back().first) & 1) == 0;
  }
  ERL_NIF_TERM copy_binary(std::span<const std::uint8_t> bytes) {
    ERL_NIF_TERM binary;
    unsigned char* data = enif_make_new_binary(env_, bytes.size(), &binary);
    if (data == nullptr) throw std::bad_alloc();
    etf::copy_bytes(data, bytes.data(), bytes.size());
    return binary;
  }

  bool put(ERL_NIF_TERM term) {
    if (frames_.empty()) {
      result_ = term;
    } else {
      items_.push_back(term);
    }
    return !slice_.term() || out_of_time();
  }

  // The map of the `pairs` keys and values from items_[first]; false when two
  // keys are equal. The decoder does not look for equal keys (erlpack_decode
  // turns its check off): the VM does. Flat maps (<= 32 keys) refuse them;
  // OTP 25 builds a large (hash) map anyway, keeping one of the pair, which
  // only its size gives away. duplicate_key_refusal finds the offset afterwards.
  bool make_map(std::size_t first, std::size_t pairs, ERL_NIF_TERM& map) {
    auto& keys = buffers_.keys_and_values;
    if (keys.size() < 2 * pairs) keys.resize(2 * pairs);
    for (std::size_t i = 0; i < pairs; ++i) {
      keys[i] = items_[first + 2 * i];
      keys[pairs + i] = items_[first + 2 * i + 1];
    }
    std::size_t made = 0;
    return enif_make_map_from_arrays(env_, keys.data(), keys.data() + pairs, pairs, &map) &&
           (pairs < 32 || (enif_get_map_size(env_, map, &made) && made == pairs));
  }

  bool out_of_time() { return reject(Stop::out_of_time); }
  bool reject(Stop why) {
    stop_ = why;
    return false;
  }

  ErlNifEnv* env_;
  ERL_NIF_TERM seal_;
  DecodeBuffers& buffers_;
  AtomMode mode_;
  ERL_NIF_TERM input_;  // the input binary when spans point into it, else 0
  std::span<const std::uint8_t> bytes_;
  bool cache_keys_;  // binary map keys go through buffers_.keys
  CodecSlice& slice_;
  std::vector<ERL_NIF_TERM>& items_;
  std::vector<DecodeFrame>& frames_;
  ERL_NIF_TERM nil_;
  ERL_NIF_TERM result_ = 0;
  Stop stop_ = Stop::none;
  Refusal refusal_{"invalid_term", 0};
};

// The size a compressed input declares it inflates to (0 when not compressed).
std::size_t declared_inflated_size(std::span<const std::uint8_t> input) {
  if (input.size() < 6 || input[1] != etf::tag_byte(etf::Tag::compressed)) return 0;
  return core::load_big_endian<std::uint32_t>(input.data() + 2);
}

// The VM refused the map whose tag is at status.offset for equal keys. The
// checking decoder reports what Switchboard.Erlpack.Pure does (the second
// occurrence of the smallest key given twice); failing that, with atoms:
// :binary, keys equal only as binaries are; otherwise the VM and the decoder
// disagree on equality and the term is refused as invalid. Errors inside a
// compressed payload are all reported at the compressed tag.
Refusal duplicate_key_refusal(std::span<const std::uint8_t> input, const etf::DecodeStatus& status,
                              AtomMode mode, const etf::DecodeLimits& limits) {
  etf::DecodeLimits checked = limits;
  checked.check_duplicate_keys = true;
  etf::NullVisitor ignore;
  if (status.in_decompressed) {
    etf::EtfDecoder checker(checked);
    const etf::DecodeErrc error = checker.decode(input, ignore).error;
    if (error == etf::DecodeErrc::work_exceeded) return {"work_exceeded", 0};
    const bool found = error == etf::DecodeErrc::duplicate_key;
    return {found || mode == AtomMode::binary ? "duplicate_key" : "invalid_term", 1};
  }
  const std::size_t at = status.offset;
  checked.allow_trailing_data = true;
  etf::EtfDecoder checker(checked);
  const etf::DecodeStatus rescan = checker.decode_body(input.subspan(at), ignore);
  if (rescan.error == etf::DecodeErrc::work_exceeded) return {"work_exceeded", 0};
  if (rescan.error == etf::DecodeErrc::duplicate_key) return {"duplicate_key", at + rescan.offset};
  if (mode != AtomMode::binary) return {"invalid_term", at};
  const std::size_t duplicate = etf::find_binary_mode_duplicate(input, at, limits);
  return {"duplicate_key", duplicate == etf::npos ? at : duplicate};
}

Refusal refusal_for(const etf::DecodeStatus& status, const TermBuilder& builder,
                    std::span<const std::uint8_t> input, AtomMode mode, ErlNifEnv* env,
                    DecodeBuffers& buffers, const etf::DecodeLimits& limits) {
  const bool compressed = status.in_decompressed;
  const std::size_t offset = compressed ? 1 : status.offset;
  if (status.error != etf::DecodeErrc::rejected_by_visitor) {
    return etf::structural_refusal(input, status);
  }
  // Only the duplicate-key rescan may move the call elsewhere; the atom checks
  // read little and must not stop short.
  etf::DecodeLimits unbudgeted = limits;
  unbudgeted.max_work = static_cast<std::size_t>(-1);
  switch (builder.stop()) {
    case Stop::unknown_atom:
      return {"unknown_atom", offset};
    case Stop::opaque_atom: {
      if (compressed) return {"unknown_atom", 1};
      VmAtoms oracle(env, buffers);
      return etf::check_opaque_atoms(input, offset, mode, oracle, unbudgeted)
          .value_or(Refusal{"invalid_term", offset});
    }
    case Stop::refusal:
      return {builder.refusal().reason, compressed ? 1 : builder.refusal().offset};
    case Stop::duplicate_key:
      return duplicate_key_refusal(input, status, mode, limits);
    default:
      return {"invalid_term", offset};
  }
}

// The result of decoding a small input of plain data with the VM's
// enif_binary_to_term, after the core has found it plain (no duplicate-key
// hash maps, no tags where OTP and the core differ) and within max_depth and
// max_size: the same term the TermBuilder makes (small binaries on the heap,
// atoms only when they exist, never created), and nullopt whenever the two
// could differ or the VM refuses the input, for the builder to decode it and
// report the precise error.
std::optional<ERL_NIF_TERM> decode_plain(ErlNifEnv* env, ERL_NIF_TERM binary,
                                         std::span<const std::uint8_t> input, AtomMode mode,
                                         const etf::DecodeLimits& limits) {
  if (input.size() > kPlainDecodeBytes || input.size() > limits.max_input_bytes || input.empty() ||
      input[0] != etf::kVersionMagic) {
    return std::nullopt;
  }
  const auto plain = etf::scan_plain_term(input, 1, limits.max_depth);
  if (!plain || plain->longest_binary > kHeapBinaryBytes ||
      (mode == AtomMode::binary && !plain->only_literal_atoms) ||
      (!limits.allow_trailing_data && plain->end != input.size())) {
    return std::nullopt;
  }
  // Safe in every mode: atoms: :create must not make the atoms of an input
  // the builder then refuses; the builder creates them when it reads them.
  ERL_NIF_TERM term;
  if (enif_binary_to_term(env, input.data(), plain->end, &term, ERL_NIF_BIN2TERM_SAFE) !=
      plain->end) {
    return std::nullopt;
  }
  if (!limits.allow_trailing_data) return enif_make_tuple2(env, atoms::ok, term);
  const ERL_NIF_TERM rest =
      enif_make_sub_binary(env, binary, plain->end, input.size() - plain->end);
  return enif_make_tuple3(env, atoms::ok, term, rest);
}

ERL_NIF_TERM decode_error(ErlNifEnv* env, const Refusal& refusal) {
  return enif_make_tuple2(
      env, atoms::error,
      enif_make_tuple2(env, reason_atom(refusal.reason), enif_make_uint64(env, refusal.offset)));
}

// One decode with these limits (see erlpack_decode).
Scheduled<ERL_NIF_TERM> decode_with(Call& call, Binary binary, AtomMode mode,
                                    etf::DecodeLimits limits, std::size_t new_atom_allowance,
                                    Term seal) {
  ErlNifEnv* env = call;
  const std::span<const std::uint8_t> input(
      reinterpret_cast<const std::uint8_t*>(binary.bytes.data()), binary.size());
  if (mode != AtomMode::create) {
    if (const auto decoded = decode_plain(env, binary.term, input, mode, limits)) return *decoded;
  }

  DecodeBuffers& buffers = DecodeBuffers::get();
  const std::size_t term_bytes = std::max(input.size(), declared_inflated_size(input));
  const bool normal = buffers.on_normal_scheduler();
  // atoms: :create reads the input twice (the allowance check, then the decode).
  const std::size_t dirty_bytes =
      mode == AtomMode::create ? kDirtyDecodeBytes / 2 : kDirtyDecodeBytes;
  if (normal && term_bytes > dirty_bytes) return call.dirty();
  if (mode == AtomMode::create) {
    // No atom is made before the allowance is known to hold for the whole
    // input, up to the first structural error.
    AtomAllowance allowance(env, buffers, new_atom_allowance);
    const auto excess = etf::locate_unknown_atom(input, AtomMode::existing, allowance, limits);
    if (excess && excess->reason == std::string_view("unknown_atom")) {
      return decode_error(env, {"too_many_atoms", excess->offset});
    }
  }
  if (normal) limits.max_work = kNormalDecodeWork;
  CodecSlice slice(env, normal);
  const bool compressed = declared_inflated_size(input) != 0;
  TermBuilder builder(env, buffers, mode, compressed ? 0 : binary.term, input,
                      term_bytes >= kKeyCacheMinBytes, seal.value, slice);
  // TermBuilder::end_map has the VM refuse equal keys, so the decoder need
  // not hash every key to find them first.
  etf::DecodeLimits unchecked = limits;
  unchecked.check_duplicate_keys = false;
  const etf::DecodeStatus status = buffers.decoder_for(unchecked).decode(input, builder);
  buffers.trim_after_call(term_bytes);
  slice.report();
  if (builder.stop() == Stop::out_of_time || status.error == etf::DecodeErrc::work_exceeded) {
    return call.dirty();
  }
  if (!status) {
    const Refusal refusal = refusal_for(status, builder, input, mode, env, buffers, limits);
    if (refusal.reason == std::string_view("work_exceeded")) return call.dirty();
    return decode_error(env, refusal);
  }
  if (!limits.allow_trailing_data) return enif_make_tuple2(env, atoms::ok, builder.result());
  const ERL_NIF_TERM rest =
      enif_make_sub_binary(env, binary.term, status.bytes_used, input.size() - status.bytes_used);
  return enif_make_tuple3(env, atoms::ok, builder.result(), rest);
}

// erlpack_decode(Binary, Atoms, MaxDepth, MaxSize, MaxDecompressed, AllowTrailing, Plain,
//                NewAtomAllowance, FragmentSeal)
//   -> {ok, Term} | {ok, Term, Rest} | {error, {Reason, Offset}}
// A decode that spends its slice (or its work units, kNormalDecodeWork) on
// a normal scheduler starts again dirty (call.dirty(): same arguments).
Scheduled<ERL_NIF_TERM> erlpack_decode(Call& call, Binary binary, AtomMode mode,
                                       NonNegative<std::size_t> max_depth,
                                       NonNegative<std::size_t> max_size,
                                       NonNegative<std::size_t> max_decompressed,
                                       bool allow_trailing, bool plain,
                                       NonNegative<std::size_t> new_atom_allowance, Term seal) {
  etf::DecodeLimits limits;
  limits.max_depth = max_depth;
  limits.max_input_bytes = max_size;
  limits.max_decompressed_bytes = max_decompressed;
  limits.allow_trailing_data = allow_trailing;
  limits.plain_only = plain;
  return decode_with(call, binary, mode, limits, new_atom_allowance, seal);
}
SWITCHBOARD_NIF(erlpack_decode, 0);

// decode/1's limits: every option at its default (Switchboard.Erlpack.Options;
// the core's DecodeLimits defaults are the same).
constexpr etf::DecodeLimits default_limits() {
  etf::DecodeLimits limits;
  limits.max_depth = 512;
  limits.max_input_bytes = std::size_t{64} << 20;
  limits.max_decompressed_bytes = std::size_t{64} << 20;
  limits.allow_trailing_data = false;
  limits.plain_only = false;
  return limits;
}

// erlpack_decode_default(Binary, FragmentSeal): decode/1, every option at its
// default: two arguments to read where erlpack_decode has nine.
Scheduled<ERL_NIF_TERM> erlpack_decode_default(Call& call, Binary binary, Term seal) {
  return decode_with(call, binary, AtomMode::existing, default_limits(), 0, seal);
}
SWITCHBOARD_NIF(erlpack_decode_default, 0);

// erlpack_decode_small(Binary) -> {ok, Term} | false: decode/1 of an input of
// at most kPlainDecodeBytes of plain data, built by the VM (decode_plain);
// false for anything else, which erlpack_decode_default then decodes. The
// gateway's small payloads are decoded here at little more than the cost of
// binary_to_term itself: one argument to read, no seal (a plain term holds
// no reference), no buffers, no limits to set up.
ERL_NIF_TERM erlpack_decode_small(ErlNifEnv* env, Binary binary) {
  const std::span<const std::uint8_t> input(
      reinterpret_cast<const std::uint8_t*>(binary.bytes.data()), binary.size());
  constexpr etf::DecodeLimits limits = default_limits();
  return decode_plain(env, binary.term, input, AtomMode::existing, limits).value_or(atoms::false_);
}
SWITCHBOARD_NIF(erlpack_decode_small, 0);

}  // namespace
}  // namespace switchboard::nif
