// Switchboard.Json's glue: terms to JSON text through the core Writer, and
// JSON text to terms through the core Reader with a handler that builds the
// terms directly (no intermediate document).
//
// Scheduling. A decode or validate knows its input's size, and one larger
// than an inline share of the one work budget (WorkSlice, scheduling.hpp)
// reruns on a dirty CPU scheduler before any work. An encode cannot know
// its size without walking the term, and the walk (term_size.hpp) costs as
// much as the term accesses of the encode itself: 1.1 us of a 2.4 us
// MESSAGE_CREATE encode, measured. So an encode moves at once only when
// its root shows it is large (a long binary, map or list); otherwise it
// runs inline up to kFirstTryBytes of counted work (about 8 us), which
// every gateway payload fits, and a term that needs more reruns dirty: at
// most that much is done twice, where a slice on the clock redid 100 us.
// The codec's state holds terms and map iterators of the calling env,
// which a yield would leave stale, so its continuation is always a dirty
// rerun, never a yield.
#include <erl_nif.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "core/json/parse_error.hpp"
#include "core/json/reader.hpp"
#include "core/json/validate.hpp"
#include "core/json/writer.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {
namespace {

namespace json = core::json;

ERL_NIF_TERM& atom_fragment_struct = register_atom("Elixir.Switchboard.Json.Fragment");
ERL_NIF_TERM& atom_encoded = register_atom("encoded");
ERL_NIF_TERM& atom_seal = register_atom("seal");
ERL_NIF_TERM& atom_invalid_byte = register_atom("invalid_byte");
ERL_NIF_TERM& atom_unsupported = register_atom("unsupported");
ERL_NIF_TERM& atom_invalid_key = register_atom("invalid_key");
ERL_NIF_TERM& atom_duplicate_key = register_atom("duplicate_key");
ERL_NIF_TERM& atom_invalid_fragment = register_atom("invalid_fragment");
ERL_NIF_TERM& atom_improper_list = register_atom("improper_list");
ERL_NIF_TERM& atom_unknown_atom = register_atom("unknown_atom");
ERL_NIF_TERM& atom_json = register_atom("json");
ERL_NIF_TERM& atom_javascript_safe = register_atom("javascript_safe");
ERL_NIF_TERM& atom_html_safe = register_atom("html_safe");
ERL_NIF_TERM& atom_unicode_safe = register_atom("unicode_safe");

// The options, as the tuples Switchboard.Json.Options builds once per call
// site (a literal for the defaults): read by position, each element by its
// type, with no atom lookups (a map or keyword list, decoded field by field,
// costs a few hundred ns per call, a third of a small decode).
struct EncodeOptions {
  json::Escape escape = json::Escape::json;
  bool strict = false;  // maps: :strict
  static constexpr auto elements = std::tuple{&EncodeOptions::escape, &EncodeOptions::strict};
};

struct DecodeOptions {
  bool atom_keys = false;  // keys: :atoms!
  NonNegative<std::size_t> max_depth;
  NonNegative<std::size_t> max_size;
  static constexpr auto elements =
      std::tuple{&DecodeOptions::atom_keys, &DecodeOptions::max_depth, &DecodeOptions::max_size};
};

template <class T>
bool decode_element(ErlNifEnv* env, ERL_NIF_TERM term, T& out) {
  return Decoder<T>::decode(env, term, out);
}

// A struct from a tuple of its `elements`, in order.
template <class S>
bool decode_tuple_struct(ErlNifEnv* env, ERL_NIF_TERM term, S& out) {
  constexpr std::size_t size = std::tuple_size_v<decltype(S::elements)>;
  int arity;
  const ERL_NIF_TERM* items;
  if (!enif_get_tuple(env, term, &arity, &items) || arity != static_cast<int>(size)) return false;
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return (decode_element(env, items[I], out.*std::get<I>(S::elements)) && ...);
  }
  (std::make_index_sequence<size>{});
}

}  // namespace

template <>
struct Decoder<json::Escape> {
  static constexpr std::string_view expected =
      "one of :json, :javascript_safe, :html_safe, :unicode_safe";
  static bool decode(ErlNifEnv*, ERL_NIF_TERM term, json::Escape& out) {
    // Atoms are immediate: the same atom is the same word.
    if (term == atom_json) {
      out = json::Escape::json;
    } else if (term == atom_javascript_safe) {
      out = json::Escape::javascript_safe;
    } else if (term == atom_html_safe) {
      out = json::Escape::html_safe;
    } else if (term == atom_unicode_safe) {
      out = json::Escape::unicode_safe;
    } else {
      return false;
    }
    return true;
  }
};

template <>
struct Decoder<EncodeOptions> {
  static constexpr std::string_view expected = "a tuple {escape, strict}";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, EncodeOptions& out) {
    return decode_tuple_struct(env, term, out);
  }
};

template <>
struct Decoder<DecodeOptions> {
  static constexpr std::string_view expected = "a tuple {atom_keys, max_depth, max_size}";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, DecodeOptions& out) {
    return decode_tuple_struct(env, term, out);
  }
};

namespace {

// Counted work (bytes written, copied or scanned; 8 to 24 per number or
// container) an encode does inline before it reruns dirty: about 8 us, some
// 6x a MESSAGE_CREATE. Half the WorkSlice's budget when a test shrinks it.
constexpr std::size_t kFirstTryBytes = 8 * 1024;
// Counted work an encode does before it starts reading the clock.
constexpr std::size_t kClockFreeBytes = 2 * 1024;
// The per-item estimate of a root map or list's size: no JSON item is
// shorter than two bytes, plus the container's bookkeeping.
constexpr std::size_t kMinItemBytes = 8;
// Decode inputs longer than this (or than the WorkSlice's budget) run on a
// dirty scheduler: at the reader's speed building terms (several hundred
// MB/s) they would hold a normal scheduler for over 100 us.
constexpr std::size_t kInlineDecodeBytes = 64 * 1024;
// Validating builds nothing, so four times as much runs inline.
constexpr std::size_t kInlineValidateBytes = 4 * kInlineDecodeBytes;
// Inline work the VM is told about: one percent of a timeslice per this
// many bytes (about 10 us of work), and nothing for less.
constexpr std::size_t kBytesPerTimeslicePercent = 8 * 1024;
// Fragments of at least this size are listed as their own binary by
// encode_to_iodata instead of copied, and copied by encode straight into
// the result, not through the writer's buffer.
constexpr std::size_t kSpliceMinBytes = 256;
// Thread-local buffers that grew past this are given back after the call.
constexpr std::size_t kKeepBufferBytes = std::size_t{1} << 20;

// Calls moved to a dirty scheduler (json_dirty_runs/0, for tests): before
// any work, and after inline work ran out (work done twice, which the
// estimate is there to avoid).
std::atomic<std::uint64_t> g_moved_before_work{0};
std::atomic<std::uint64_t> g_moved_after_work{0};

Rescheduled go_dirty(const Call& call, bool after_work = false) {
  (after_work ? g_moved_after_work : g_moved_before_work).fetch_add(1, std::memory_order_relaxed);
  return call.dirty();
}

// Tells the VM about inline work the WorkSlice did not report.
void report_inline_work(ErlNifEnv* env, std::size_t bytes) {
  if (bytes < kBytesPerTimeslicePercent) return;
  enif_consume_timeslice(
      env, static_cast<int>(std::min<std::size_t>(100, 1 + bytes / kBytesPerTimeslicePercent)));
}

template <class T>
void trim(std::vector<T>& buffer) {
  if (buffer.capacity() * sizeof(T) > kKeepBufferBytes) std::vector<T>().swap(buffer);
}

ERL_NIF_TERM binary_of(ErlNifEnv* env, std::string_view bytes) { return make_binary(env, bytes); }

// ---------------------------------------------------------------------------
// Encoding

// The UTF-8 names of atoms met, per scheduler thread. Atoms are never freed
// and never change meaning, so entries stay valid for the VM's life.
class AtomNames {
 public:
  std::string_view get(ErlNifEnv* env, ERL_NIF_TERM atom) {
    Entry& entry = entries_[(atom * 0x9e3779b97f4a7c15ULL) >> (64 - kSlotBits)];
    if (entry.atom != atom) {
      entry.atom = atom;
      entry.name = read_name(env, atom);
    }
    return entry.name;
  }

 private:
  static constexpr unsigned kSlotBits = 8;
  struct Entry {
    ERL_NIF_TERM atom = 0;
    std::string name;
  };

  static std::string read_name(ErlNifEnv* env, ERL_NIF_TERM atom) {
    char latin1[256];
    const int length = enif_get_atom(env, atom, latin1, sizeof latin1, ERL_NIF_LATIN1);
    if (length > 0) {
      std::string name;
      for (int i = 0; i < length - 1; ++i) {
        const auto c = static_cast<unsigned char>(latin1[i]);
        if (c < 0x80) {
          name.push_back(static_cast<char>(c));
        } else {
          name.push_back(static_cast<char>(0xC0 | (c >> 6)));
          name.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        }
      }
      return name;
    }
    // Characters beyond Latin-1: OTP 25's NIF API only reads those from the
    // atom's external format (ATOM_UTF8_EXT or SMALL_ATOM_UTF8_EXT).
    ErlNifBinary encoded;
    if (!enif_term_to_binary(env, atom, &encoded)) throw std::bad_alloc();
    std::string name;
    if (encoded.size >= 3 && encoded.data[1] == 119) {
      name.assign(reinterpret_cast<const char*>(encoded.data) + 3, encoded.data[2]);
    } else if (encoded.size >= 4 && encoded.data[1] == 118) {
      const std::size_t length = (std::size_t{encoded.data[2]} << 8) | encoded.data[3];
      name.assign(reinterpret_cast<const char*>(encoded.data) + 4, length);
    }
    enif_release_binary(&encoded);
    return name;
  }

  std::array<Entry, std::size_t{1} << kSlotBits> entries_;
};

// The VM's own layout of the terms an encode reads most (OTP 25, 64-bit):
// small integers, atoms, list cells, heap binaries (up to 64 bytes) and flat
// maps (up to 32 keys), read in place. Each enif_* accessor is a call into
// the VM, and they were over half of a small encode (enif_term_type,
// enif_inspect_binary, four map iterator calls per key): MESSAGE_CREATE
// encode CPU time down by a fifth. The layout is not part of the NIF
// API, so it is checked once, against that API, on terms built through it
// (layout::check), and an encode reads terms only through the API when
// any check fails (another OTP release). Every other term (bignums, floats,
// refc and sub binaries, large maps) is read through the API.
namespace layout {

constexpr ERL_NIF_TERM kPrimaryMask = 0x3;
constexpr ERL_NIF_TERM kPrimaryList = 0x1;
constexpr ERL_NIF_TERM kPrimaryBoxed = 0x2;
constexpr ERL_NIF_TERM kImmed1Mask = 0xF;
constexpr ERL_NIF_TERM kImmed1Small = 0xF;
constexpr ERL_NIF_TERM kImmed2Mask = 0x3F;
constexpr ERL_NIF_TERM kImmed2Atom = 0x0B;
constexpr ERL_NIF_TERM kNil = 0x3B;
constexpr ERL_NIF_TERM kHeaderSubtagMask = 0x3F;
constexpr ERL_NIF_TERM kHeapBinarySubtag = 0x9 << 2;
// Map subtag 0 (flat), arity 1 (the size word), map header tag.
constexpr ERL_NIF_TERM kFlatmapHeader = (0x1 << 8) | (0xF << 2);
constexpr std::size_t kFlatmapMaxKeys = 32;

inline bool is_small(ERL_NIF_TERM term) noexcept { return (term & kImmed1Mask) == kImmed1Small; }
inline std::int64_t small_value(ERL_NIF_TERM term) noexcept {
  return static_cast<std::int64_t>(term) >> 4;
}
inline bool is_atom(ERL_NIF_TERM term) noexcept { return (term & kImmed2Mask) == kImmed2Atom; }
inline bool is_list_cell(ERL_NIF_TERM term) noexcept {
  return (term & kPrimaryMask) == kPrimaryList;
}
inline bool is_boxed(ERL_NIF_TERM term) noexcept { return (term & kPrimaryMask) == kPrimaryBoxed; }
// A list cell's head and tail; a boxed term's header and what follows it.
inline const ERL_NIF_TERM* cell(ERL_NIF_TERM term) noexcept {
  return reinterpret_cast<const ERL_NIF_TERM*>(term - kPrimaryList);
}
inline const ERL_NIF_TERM* box(ERL_NIF_TERM term) noexcept {
  return reinterpret_cast<const ERL_NIF_TERM*>(term - kPrimaryBoxed);
}
// Heap binary: header, byte size, bytes in whole words (readable up to the
// next multiple of eight).
inline bool is_heap_binary(const ERL_NIF_TERM* boxed) noexcept {
  return (boxed[0] & kHeaderSubtagMask) == kHeapBinarySubtag;
}
inline std::string_view heap_binary_bytes(const ERL_NIF_TERM* boxed) noexcept {
  return {reinterpret_cast<const char*>(boxed + 2), static_cast<std::size_t>(boxed[1])};
}
// Flat map: header, size, the keys' tuple (header, keys), then the values,
// keys in the order the map iterator visits them.
inline bool is_flatmap(const ERL_NIF_TERM* boxed) noexcept { return boxed[0] == kFlatmapHeader; }
inline std::size_t flatmap_size(const ERL_NIF_TERM* boxed) noexcept {
  return static_cast<std::size_t>(boxed[1]);
}
inline const ERL_NIF_TERM* flatmap_keys(const ERL_NIF_TERM* boxed) noexcept {
  return box(boxed[2]) + 1;
}
inline const ERL_NIF_TERM* flatmap_values(const ERL_NIF_TERM* boxed) noexcept { return boxed + 3; }

// Whether the layout above is this VM's: terms of each kind built through
// the API and read back both ways.
bool check(ErlNifEnv* env) {
  if constexpr (sizeof(ERL_NIF_TERM) != 8) return false;
  for (const std::int64_t n :
       {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::int64_t{1} << 40,
        -(std::int64_t{1} << 59), (std::int64_t{1} << 59) - 1}) {
    const ERL_NIF_TERM term = enif_make_int64(env, n);
    if (!is_small(term) || small_value(term) != n || is_atom(term) || is_boxed(term)) return false;
  }
  // Too large for a small integer: a bignum, read through the API.
  const ERL_NIF_TERM big = enif_make_int64(env, std::int64_t{1} << 62);
  if (is_small(big) || !is_boxed(big) || is_heap_binary(box(big)) || is_flatmap(box(big))) {
    return false;
  }
  const ERL_NIF_TERM atom = enif_make_atom(env, "switchboard_json_layout");
  if (!is_atom(atom) || !is_atom(atoms::nil) || is_small(atom)) return false;
  if (enif_make_list(env, 0) != kNil || is_atom(kNil) || is_list_cell(kNil)) return false;
  const ERL_NIF_TERM one = enif_make_int64(env, 1);
  const ERL_NIF_TERM list = enif_make_list2(env, atom, one);
  if (!is_list_cell(list) || cell(list)[0] != atom || !is_list_cell(cell(list)[1]) ||
      cell(cell(list)[1])[0] != one || cell(cell(list)[1])[1] != kNil) {
    return false;
  }
  ERL_NIF_TERM text;
  std::memcpy(enif_make_new_binary(env, 5, &text), "probe", 5);
  ErlNifBinary inspected;
  if (!is_boxed(text) || !is_heap_binary(box(text)) ||
      !enif_inspect_binary(env, text, &inspected) ||
      heap_binary_bytes(box(text)) != std::string_view("probe") ||
      reinterpret_cast<const char*>(inspected.data) != heap_binary_bytes(box(text)).data()) {
    return false;
  }
  const ERL_NIF_TERM floating = enif_make_double(env, 1.5);
  if (!is_boxed(floating) || is_heap_binary(box(floating)) || is_flatmap(box(floating))) {
    return false;
  }
  for (std::size_t size : {std::size_t{1}, std::size_t{3}, kFlatmapMaxKeys}) {
    std::vector<ERL_NIF_TERM> keys, values;
    for (std::size_t i = 0; i < size; ++i) {
      // Keys of two types: the map sorts them, and the check sees its order.
      keys.push_back(i % 2 == 0 ? enif_make_uint64(env, i)
                                : enif_make_tuple2(env, one, enif_make_uint64(env, i)));
      values.push_back(enif_make_uint64(env, 100 + i));
    }
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env, keys.data(), values.data(), size, &map) || !is_boxed(map) ||
        !is_flatmap(box(map)) || flatmap_size(box(map)) != size) {
      return false;
    }
    ErlNifMapIterator iterator;
    if (!enif_map_iterator_create(env, map, &iterator, ERL_NIF_MAP_ITERATOR_FIRST)) return false;
    bool same = true;
    for (std::size_t i = 0; i < size; ++i) {
      ERL_NIF_TERM key, value;
      same = same && enif_map_iterator_get_pair(env, &iterator, &key, &value) &&
             key == flatmap_keys(box(map))[i] && value == flatmap_values(box(map))[i];
      enif_map_iterator_next(env, &iterator);
    }
    enif_map_iterator_destroy(env, &iterator);
    if (!same) return false;
  }
  // One past a flat map's largest size: a hash map, read through the API.
  std::vector<ERL_NIF_TERM> keys, values;
  for (std::size_t i = 0; i <= kFlatmapMaxKeys; ++i) {
    keys.push_back(enif_make_uint64(env, i));
    values.push_back(one);
  }
  ERL_NIF_TERM large;
  return enif_make_map_from_arrays(env, keys.data(), values.data(), keys.size(), &large) &&
         is_boxed(large) && !is_flatmap(box(large)) && !is_heap_binary(box(large));
}

// Checked once, on the first encode.
// SWITCHBOARD_JSON_API_ONLY=1 in the VM's environment turns the in-place
// reads off (the tests run the API path on a peer node this way and compare).
bool api_only_requested() {
  const char* setting = std::getenv("SWITCHBOARD_JSON_API_ONLY");
  return setting != nullptr && setting[0] != '\0' && std::strcmp(setting, "0") != 0;
}

bool usable(ErlNifEnv* env) {
  static const bool checked = !api_only_requested() && check(env);
  return checked;
}

}  // namespace layout

// An encode's first try on a normal scheduler: counted bytes up to
// kFirstTryBytes (half the library's work budget when a test shrinks it),
// and past kClockFreeBytes the WorkSlice of that budget watching the clock
// as well. Below that a call is too short for a clock read (20-30 ns, 5% of
// a small encode) to tell anything. Off the normal schedulers: unlimited.
class FirstTry {
 public:
  FirstTry(ErlNifEnv* env, bool limited)
      : env_(env),
        limited_(limited),
        limit_(limited ? std::min(kFirstTryBytes, slice_budget().bytes / 2) : SIZE_MAX) {}

  bool limited() const noexcept { return limited_; }
  std::size_t limit() const noexcept { return limit_; }
  std::size_t used() const noexcept { return used_; }

  // Counts `bytes` about to be written; false once the try is over.
  bool spend(std::size_t bytes) {
    if (!limited_) return true;
    used_ += bytes;
    if (used_ > limit_) return false;
    if (used_ <= kClockFreeBytes) return true;
    if (!slice_) slice_.emplace(env_);
    return !slice_->spend(bytes);
  }

 private:
  ErlNifEnv* env_;
  bool limited_;
  std::size_t limit_;
  std::size_t used_ = 0;
  std::optional<WorkSlice> slice_;
};

struct EncodeFrame {
  // Fields are set by who pushes the frame, as its kind needs: emplace_back
  // zeroing all 17 words (rep stos) was an eighth of a small encode.
  EncodeFrame() noexcept {}  // NOLINT: not = default, which would zero them

  bool is_map;
  bool first;
  bool flat;               // map: read in place (layout), else by its iterator
  ERL_NIF_TERM container;  // the map (for error reports and structs)
  ERL_NIF_TERM rest;       // list: the cells not yet written
  ErlNifMapIterator iterator;
  const ERL_NIF_TERM* keys;    // flat map: its keys and values, in place
  const ERL_NIF_TERM* values;  //
  std::size_t next;            // flat map: the pair to write next
  std::size_t count;           // flat map: its size
  std::size_t output_start;    // map: where its '{' is (a struct rolls back to it)
  std::size_t keys_base;       // map: its written keys in `keys` (maps: :strict)
  std::size_t splices_base;    // map: its fragments in `splices`
};

// A fragment's binary in place at `offset` of the output: listed as it is
// (encode_to_iodata), or copied into the result (encode).
struct Splice {
  std::size_t offset;
  ERL_NIF_TERM bytes;
  std::string_view text;  // its bytes
};

struct KeySpan {
  std::size_t offset;
  std::size_t length;
};

enum class EncodeStatus { done, error, out_of_time };

struct EncodeBuffers {
  json::Writer writer;
  std::vector<EncodeFrame> frames;
  std::vector<Splice> splices;
  std::vector<KeySpan> keys;
  AtomNames atoms;
  std::basic_string<std::uint8_t> magnitude;

  [[gnu::noinline]] static EncodeBuffers& get() {
    thread_local EncodeBuffers buffers;
    return buffers;
  }
  void trim_after_call() {
    trim(frames);
    trim(splices);
    trim(keys);
    writer.shrink_to(kKeepBufferBytes);
  }
};

// What the writer needs besides the term: the options, the seal fragments
// must carry, and whether large fragments are listed (encode_to_iodata).
struct WriteSettings {
  json::Escape escape;
  bool strict;
  ERL_NIF_TERM seal;
  bool iodata;
};

// Walks a term without recursion, writing JSON as it goes.
class TermWriter {
 public:
  TermWriter(ErlNifEnv* env, EncodeBuffers& buffers, const WriteSettings& options, FirstTry& budget)
      : env_(env),
        in_place_(layout::usable(env)),
        out_(buffers.writer),
        frames_(buffers.frames),
        splices_(buffers.splices),
        keys_(buffers.keys),
        buffers_(buffers),
        options_(options),
        budget_(budget) {
    out_.clear();
    frames_.clear();
    splices_.clear();
    keys_.clear();
  }
  ~TermWriter() {
    for (EncodeFrame& frame : frames_) {
      if (frame.is_map && !frame.flat) enif_map_iterator_destroy(env_, &frame.iterator);
    }
    frames_.clear();
  }

  EncodeStatus write(ERL_NIF_TERM root) {
    if (!value(root)) return status_;
    while (!frames_.empty()) {
      EncodeFrame& frame = frames_.back();
      if (!frame.is_map) {
        ERL_NIF_TERM head;
        if (next_cell(frame, head)) {
          if (!frame.first) out_.byte(',');
          frame.first = false;
          if (!value(head)) return status_;
          continue;
        }
        const bool at_end =
            (in_place_ && frame.rest == layout::kNil) || enif_is_empty_list(env_, frame.rest);
        if (!at_end) {
          fail(enif_make_tuple2(env_, atom_improper_list, frame.container));
          return status_;
        }
        out_.byte(']');
        frames_.pop_back();
        continue;
      }
      ERL_NIF_TERM key, item;
      if (next_pair(frame, key, item)) {
        if (key == atoms::struct_field) {
          if (!structure(frame)) return status_;
          continue;
        }
        if (!frame.first) out_.byte(',');
        frame.first = false;
        if (!map_key(key)) return status_;
        out_.byte(':');
        if (!value(item)) return status_;
        continue;
      }
      if (!frame.flat) enif_map_iterator_destroy(env_, &frame.iterator);
      const std::size_t keys_base = frame.keys_base;
      const ERL_NIF_TERM map = frame.container;
      frames_.pop_back();
      if (options_.strict && !unique_keys(keys_base, map)) return status_;
      out_.byte('}');
    }
    return EncodeStatus::done;
  }

  ERL_NIF_TERM error() const { return error_; }

 private:
  // A list frame's next element, moving past it; false at the list's end
  // (`rest` is then [] or an improper tail).
  bool next_cell(EncodeFrame& frame, ERL_NIF_TERM& head) {
    if (in_place_) {
      if (!layout::is_list_cell(frame.rest)) return false;
      const ERL_NIF_TERM* cell = layout::cell(frame.rest);
      head = cell[0];
      frame.rest = cell[1];
      return true;
    }
    return enif_get_list_cell(env_, frame.rest, &head, &frame.rest) != 0;
  }

  // A map frame's next pair, moving past it; false after its last.
  bool next_pair(EncodeFrame& frame, ERL_NIF_TERM& key, ERL_NIF_TERM& item) {
    if (frame.flat) {
      if (frame.next == frame.count) return false;
      key = frame.keys[frame.next];
      item = frame.values[frame.next];
      ++frame.next;
      return true;
    }
    if (!enif_map_iterator_get_pair(env_, &frame.iterator, &key, &item)) return false;
    enif_map_iterator_next(env_, &frame.iterator);
    return true;
  }

  // The terms an encode meets most, read in place (see layout); false when
  // `term` is not one of them, for value() to read through the API.
  bool in_place_value(ERL_NIF_TERM term, bool& ok) {
    if (layout::is_small(term)) {
      out_.integer(layout::small_value(term));
      ok = charge(8);
      return true;
    }
    if (layout::is_atom(term)) {
      ok = atom(term);
      return true;
    }
    if (!layout::is_boxed(term)) return false;
    const ERL_NIF_TERM* boxed = layout::box(term);
    if (layout::is_heap_binary(boxed)) {
      ok = string(layout::heap_binary_bytes(boxed), term, true);
      return true;
    }
    if (!layout::is_flatmap(boxed)) return false;
    ok = flat_map(term, boxed);
    return true;
  }

  bool flat_map(ERL_NIF_TERM term, const ERL_NIF_TERM* boxed) {
    if (!charge(16)) return false;
    const std::size_t size = layout::flatmap_size(boxed);
    if (size == 0) {
      out_.raw("{}");
      return true;
    }
    const ERL_NIF_TERM* keys = layout::flatmap_keys(boxed);
    const ERL_NIF_TERM* values = layout::flatmap_values(boxed);
    if (size == 3) {
      for (std::size_t i = 0; i < 3; ++i) {
        if (keys[i] == atoms::struct_field) return structure(term, values[i]);
      }
    }
    EncodeFrame& frame = frames_.emplace_back();
    frame.is_map = true;
    frame.first = true;
    frame.flat = true;
    frame.container = term;
    frame.keys = keys;
    frame.values = values;
    frame.next = 0;
    frame.count = size;
    frame.output_start = out_.size();
    frame.keys_base = keys_.size();
    frame.splices_base = splices_.size();
    out_.byte('{');
    return true;
  }

  bool fail(ERL_NIF_TERM reason) {
    error_ = reason;
    status_ = EncodeStatus::error;
    return false;
  }
  bool out_of_time() {
    status_ = EncodeStatus::out_of_time;
    return false;
  }
  bool charge(std::size_t units) {
    // Charged before the work: one long string stops before it is copied.
    return budget_.spend(units) ? true : out_of_time();
  }

  bool value(ERL_NIF_TERM term) {
    if (in_place_) {
      bool ok;
      if (in_place_value(term, ok)) return ok;
    }
    switch (enif_term_type(env_, term)) {
      case ERL_NIF_TERM_TYPE_BITSTRING: {
        ErlNifBinary binary;
        if (!enif_inspect_binary(env_, term, &binary)) {
          return fail(enif_make_tuple2(env_, atom_unsupported, term));
        }
        return string(binary, term);
      }
      case ERL_NIF_TERM_TYPE_INTEGER: {
        ErlNifSInt64 integer;
        if (enif_get_int64(env_, term, &integer)) {
          out_.integer(integer);
          return charge(8);
        }
        return big_integer(term);
      }
      case ERL_NIF_TERM_TYPE_MAP: {
        if (!charge(16)) return false;
        std::size_t size;
        enif_get_map_size(env_, term, &size);
        if (size == 0) {
          out_.raw("{}");
          return true;
        }
        // A fragment (the struct's three keys) is read at once: no iterator,
        // no frame, nothing written to take back.
        ERL_NIF_TERM name;
        if (size == 3 && enif_get_map_value(env_, term, atoms::struct_field, &name)) {
          return structure(term, name);
        }
        EncodeFrame& frame = frames_.emplace_back();
        frame.is_map = true;
        frame.first = true;
        frame.flat = false;
        frame.container = term;
        frame.output_start = out_.size();
        frame.keys_base = keys_.size();
        frame.splices_base = splices_.size();
        enif_map_iterator_create(env_, term, &frame.iterator, ERL_NIF_MAP_ITERATOR_FIRST);
        out_.byte('{');
        return true;
      }
      case ERL_NIF_TERM_TYPE_LIST: {
        if (!charge(16)) return false;
        if (enif_is_empty_list(env_, term)) {
          out_.raw("[]");
          return true;
        }
        EncodeFrame& frame = frames_.emplace_back();
        frame.is_map = false;
        frame.first = true;
        frame.container = term;
        frame.rest = term;
        out_.byte('[');
        return true;
      }
      case ERL_NIF_TERM_TYPE_ATOM:
        return atom(term);
      case ERL_NIF_TERM_TYPE_FLOAT: {
        double number;
        enif_get_double(env_, term, &number);
        out_.floating(number);
        return charge(24);
      }
      default:
        return fail(enif_make_tuple2(env_, atom_unsupported, term));
    }
  }

  bool atom(ERL_NIF_TERM term) {
    if (term == atoms::nil) {
      out_.null_value();
    } else if (term == atoms::true_) {
      out_.boolean(true);
    } else if (term == atoms::false_) {
      out_.boolean(false);
    } else {
      const std::string_view name = buffers_.atoms.get(env_, term);
      out_.string(name, options_.escape);  // atom names are valid UTF-8
      return charge(name.size());
    }
    return charge(8);
  }

  bool string(const ErlNifBinary& binary, ERL_NIF_TERM term) {
    return string({reinterpret_cast<const char*>(binary.data), binary.size}, term);
  }
  // `padded`: bytes readable up to the next multiple of eight (a heap
  // binary's).
  bool string(std::string_view bytes, ERL_NIF_TERM term, bool padded = false) {
    if (!charge(bytes.size())) return false;
    const std::size_t bad =
        padded ? out_.padded_string(bytes, options_.escape) : out_.string(bytes, options_.escape);
    if (bad == json::Writer::npos) return true;
    return fail(enif_make_tuple3(env_, atom_invalid_byte,
                                 enif_make_uint(env_, static_cast<unsigned char>(bytes[bad])),
                                 term));
  }

  bool big_integer(ERL_NIF_TERM term) {
    // SMALL_BIG_EXT / LARGE_BIG_EXT: tag, length, sign, magnitude (LSB first).
    ErlNifBinary encoded;
    if (!enif_term_to_binary(env_, term, &encoded)) throw std::bad_alloc();
    const std::uint8_t* bytes = encoded.data;
    std::size_t header;
    if (bytes[1] == 110) {
      header = 4;
    } else if (bytes[1] == 111) {
      header = 7;
    } else {
      enif_release_binary(&encoded);
      throw std::logic_error("integer with an unexpected external format");
    }
    const bool negative = bytes[header - 1] != 0;
    const std::size_t limbs = (encoded.size - header) / 8 + 1;
    // Printing costs the square of the size.
    if (!charge(limbs * limbs)) {
      enif_release_binary(&encoded);
      return false;
    }
    out_.big_integer(negative, {bytes + header, encoded.size - header});
    enif_release_binary(&encoded);
    return true;
  }

  bool map_key(ERL_NIF_TERM key) {
    const std::size_t start = out_.size();
    if (in_place_) {
      if (layout::is_atom(key)) {
        out_.string(buffers_.atoms.get(env_, key), options_.escape);
        if (options_.strict) keys_.push_back({start, out_.size() - start});
        return true;
      }
      if (layout::is_boxed(key) && layout::is_heap_binary(layout::box(key))) {
        if (!string(layout::heap_binary_bytes(layout::box(key)), key, true)) return false;
        if (options_.strict) keys_.push_back({start, out_.size() - start});
        return true;
      }
    }
    switch (enif_term_type(env_, key)) {
      case ERL_NIF_TERM_TYPE_BITSTRING: {
        ErlNifBinary binary;
        if (!enif_inspect_binary(env_, key, &binary)) {
          return fail(enif_make_tuple2(env_, atom_invalid_key, key));
        }
        if (!string(binary, key)) return false;
        break;
      }
      case ERL_NIF_TERM_TYPE_ATOM:
        out_.string(buffers_.atoms.get(env_, key), options_.escape);
        break;
      case ERL_NIF_TERM_TYPE_INTEGER: {
        out_.byte('"');
        if (!value(key)) return false;
        out_.byte('"');
        break;
      }
      default:
        return fail(enif_make_tuple2(env_, atom_invalid_key, key));
    }
    if (options_.strict) keys_.push_back({start, out_.size() - start});
    return true;
  }

  // maps: :strict: no two keys of one map may write the same text.
  bool unique_keys(std::size_t base, ERL_NIF_TERM map) {
    const std::string_view text = out_.view();
    auto key_text = [&](const KeySpan& span) { return text.substr(span.offset, span.length); };
    auto first = keys_.begin() + static_cast<std::ptrdiff_t>(base);
    std::sort(first, keys_.end(),
              [&](const KeySpan& a, const KeySpan& b) { return key_text(a) < key_text(b); });
    for (auto it = first; it + 1 < keys_.end(); ++it) {
      if (key_text(*it) == key_text(*(it + 1))) {
        const std::string_view quoted = key_text(*it);
        (void)map;
        return fail(enif_make_tuple2(env_, atom_duplicate_key,
                                     binary_of(env_, quoted.substr(1, quoted.size() - 2))));
      }
    }
    keys_.resize(base);
    return true;
  }

  // The map on top of the stack has a __struct__ key: only a sealed
  // Switchboard.Json.Fragment has a JSON form; what the map wrote so far is
  // taken back and the fragment's text written in its place.
  bool structure(EncodeFrame& frame) {
    const ERL_NIF_TERM map = frame.container;
    out_.truncate(frame.output_start);
    keys_.resize(frame.keys_base);
    splices_.resize(frame.splices_base);
    if (!frame.flat) enif_map_iterator_destroy(env_, &frame.iterator);
    frames_.pop_back();
    ERL_NIF_TERM name;
    enif_get_map_value(env_, map, atoms::struct_field, &name);
    return structure(map, name);
  }

  // A struct named `name`, of which only a sealed fragment has a JSON form.
  bool structure(ERL_NIF_TERM map, ERL_NIF_TERM name) {
    if (name != atom_fragment_struct) return fail(enif_make_tuple2(env_, atom_unsupported, map));
    ERL_NIF_TERM seal = 0, encoded = 0;
    bool found;
    if (in_place_ && layout::is_flatmap(layout::box(map))) {
      // The struct's own keys read in place, and its seal most often the
      // very term given (both read from the same persistent term).
      const ERL_NIF_TERM* boxed = layout::box(map);
      const ERL_NIF_TERM* keys = layout::flatmap_keys(boxed);
      const ERL_NIF_TERM* values = layout::flatmap_values(boxed);
      for (std::size_t i = 0; i < layout::flatmap_size(boxed); ++i) {
        if (keys[i] == atom_seal) seal = values[i];
        if (keys[i] == atom_encoded) encoded = values[i];
      }
      found = seal != 0 && encoded != 0;
    } else {
      found = enif_get_map_value(env_, map, atom_seal, &seal) &&
              enif_get_map_value(env_, map, atom_encoded, &encoded);
    }
    ErlNifBinary binary;
    if (!found || (seal != options_.seal && enif_compare(seal, options_.seal) != 0) ||
        !enif_inspect_binary(env_, encoded, &binary)) {
      return fail(enif_make_tuple2(env_, atom_invalid_fragment, map));
    }
    if (binary.size >= kSpliceMinBytes) {
      splices_.push_back(
          {out_.size(), encoded, {reinterpret_cast<const char*>(binary.data), binary.size}});
      return charge(options_.iodata ? 16 : binary.size);
    }
    if (!charge(binary.size)) return false;
    out_.raw({reinterpret_cast<const char*>(binary.data), binary.size});
    return true;
  }

  ErlNifEnv* env_;
  bool in_place_;  // the layout is this VM's: common terms read in place
  json::Writer& out_;
  std::vector<EncodeFrame>& frames_;
  std::vector<Splice>& splices_;
  std::vector<KeySpan>& keys_;
  EncodeBuffers& buffers_;
  const WriteSettings& options_;
  FirstTry& budget_;
  EncodeStatus status_ = EncodeStatus::done;
  ERL_NIF_TERM error_ = 0;
};

// The output as iodata: its own bytes between the fragments' binaries, which
// are listed as they are (shared, not copied).
ERL_NIF_TERM make_iodata(ErlNifEnv* env, std::string_view written,
                         const std::vector<Splice>& splices) {
  // Built from the end, cell by cell: no array to allocate per call.
  ERL_NIF_TERM list = enif_make_list(env, 0);
  std::size_t to = written.size();
  for (auto splice = splices.rbegin(); splice != splices.rend(); ++splice) {
    if (to > splice->offset) {
      list = enif_make_list_cell(
          env, binary_of(env, written.substr(splice->offset, to - splice->offset)), list);
    }
    list = enif_make_list_cell(env, splice->bytes, list);
    to = splice->offset;
  }
  if (to > 0) list = enif_make_list_cell(env, binary_of(env, written.substr(0, to)), list);
  return list;
}

// The output as one binary: its own bytes and the fragments' copied once,
// into the result (through the writer's buffer they were copied twice: the
// envelope with a 1 KB fragment about 5% faster, CPU time).
ERL_NIF_TERM make_spliced_binary(ErlNifEnv* env, std::string_view written,
                                 const std::vector<Splice>& splices) {
  std::size_t total = written.size();
  for (const Splice& splice : splices) total += splice.text.size();
  ERL_NIF_TERM term;
  unsigned char* out = enif_make_new_binary(env, total, &term);
  if (out == nullptr) throw std::bad_alloc();
  auto put = [&out](std::string_view bytes) {
    if (bytes.empty()) return;  // the writer's buffer may be none yet
    std::memcpy(out, bytes.data(), bytes.size());
    out += bytes.size();
  };
  std::size_t from = 0;
  for (const Splice& splice : splices) {
    put(written.substr(from, splice.offset - from));
    put(splice.text);
    from = splice.offset;
  }
  put(written.substr(from));
  return term;
}

// Whether the root alone shows more than `limit` bytes of work, read in
// constant time (a list: at most limit / kMinItemBytes cells).
bool large_root(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit) {
  if (layout::usable(env)) {
    // The common roots read in place (a small map, a heap binary); a list's
    // cells counted in place, not by a call each.
    if (layout::is_boxed(term)) {
      const ERL_NIF_TERM* boxed = layout::box(term);
      if (layout::is_flatmap(boxed) || layout::is_heap_binary(boxed)) return false;
    } else if (layout::is_list_cell(term)) {
      const std::size_t cells = limit / kMinItemBytes;
      for (std::size_t i = 0; i <= cells; ++i) {
        if (!layout::is_list_cell(term)) return false;
        term = layout::cell(term)[1];
      }
      return true;
    } else {
      return false;  // an immediate
    }
  }
  switch (enif_term_type(env, term)) {
    case ERL_NIF_TERM_TYPE_BITSTRING: {
      ErlNifBinary binary;
      return enif_inspect_binary(env, term, &binary) && binary.size > limit;
    }
    case ERL_NIF_TERM_TYPE_MAP: {
      std::size_t size = 0;
      enif_get_map_size(env, term, &size);
      return size > limit / kMinItemBytes;
    }
    case ERL_NIF_TERM_TYPE_LIST:
      return list_longer_than(env, term, limit / kMinItemBytes);
    default:
      return false;
  }
}

using EncodeResult = std::variant<Ok<ERL_NIF_TERM>, Error<ERL_NIF_TERM>>;

// json_encode(Term, {Escape, Strict}, Seal, Iodata) -> {ok, Binary | Iodata}
// | {error, Reason}. Reason: {invalid_byte, Byte, String}, {unsupported,
// Term}, {invalid_key, Key}, {duplicate_key, Text}, {invalid_fragment,
// Map}, {improper_list, List}.
Scheduled<EncodeResult> json_encode(Call& call, Term term, EncodeOptions options, Term seal,
                                    bool iodata) {
  FirstTry budget(call, call.on_normal_scheduler());
  if (budget.limited() && large_root(call, term.value, budget.limit())) return go_dirty(call);
  const WriteSettings settings{options.escape, options.strict, seal.value, iodata};
  EncodeBuffers& buffers = EncodeBuffers::get();
  std::optional<EncodeResult> result;
  {
    TermWriter writer(call, buffers, settings, budget);
    switch (writer.write(term.value)) {
      case EncodeStatus::error:
        result.emplace(Error{writer.error()});
        break;
      case EncodeStatus::done: {
        const std::string_view written = buffers.writer.view();
        result.emplace(Ok{buffers.splices.empty() ? binary_of(call, written)
                          : iodata                ? make_iodata(call, written, buffers.splices)
                                   : make_spliced_binary(call, written, buffers.splices)});
        break;
      }
      case EncodeStatus::out_of_time:  // more than a first try: at most its limit done twice
        break;
    }
  }
  if (budget.limited() && result) report_inline_work(call, budget.used());
  buffers.trim_after_call();
  if (!result) return go_dirty(call, true);
  return std::move(*result);
}
SWITCHBOARD_NIF(json_encode, 0);

// ---------------------------------------------------------------------------
// Decoding

// Recently built map keys, per call: gateway payloads repeat a handful of
// keys in every nested object. Entries point into the input and hold terms
// of the calling env, so a generation number retires them after each call.
// Used for atom keys (an atom table lookup saved per hit) and for inputs of
// kKeyCacheMinBytes or more (one binary per distinct key, not per object);
// in a small input few keys repeat and the probes cost more than they save
// (PRESENCE_UPDATE decode 3.1x jiffy with the cache, 3.25x without).
constexpr std::size_t kKeyCacheMinBytes = 4 * 1024;

class KeyCache {
 public:
  static constexpr std::size_t kMaxKeyBytes = 32;

  void next_call() noexcept {
    if (++generation_ == 0) {
      entries_.fill({});
      generation_ = 1;
    }
  }
  struct Entry {
    const char* bytes = nullptr;
    std::size_t length = 0;
    std::uint32_t generation = 0;
    ERL_NIF_TERM term = 0;
  };

  // The slot of `text`: `hit` says it holds text's term; else the caller
  // may `put` the term it makes there.
  Entry& slot_of(std::string_view text, bool& hit) noexcept {
    Entry& entry = entries_[slot(text)];
    hit = entry.generation == generation_ && entry.length == text.size() &&
          std::memcmp(entry.bytes, text.data(), text.size()) == 0;
    return entry;
  }
  void put(Entry& entry, std::string_view text, ERL_NIF_TERM term) noexcept {
    entry = {text.data(), text.size(), generation_, term};
  }

 private:
  static constexpr unsigned kSlotBits = 8;

  // Fixed-size loads only: a memcpy of a variable length is a library call,
  // and reading its bytes back as one word stalls on store forwarding (it
  // was a third of a small decode's time).
  static std::uint64_t load64(const char* p) noexcept {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    return word;
  }
  static std::uint32_t load32(const char* p) noexcept {
    std::uint32_t word;
    std::memcpy(&word, p, 4);
    return word;
  }
  static std::size_t slot(std::string_view text) noexcept {
    const char* p = text.data();
    const std::size_t n = text.size();
    std::uint64_t bits;
    if (n >= 8) {
      bits = load64(p) ^ (load64(p + n - 8) * 31);
    } else if (n >= 4) {
      bits = load32(p) | (std::uint64_t{load32(p + n - 4)} << 32);
    } else if (n > 0) {
      bits = static_cast<std::uint8_t>(p[0]) |
             (std::uint64_t{static_cast<std::uint8_t>(p[n / 2])} << 8) |
             (std::uint64_t{static_cast<std::uint8_t>(p[n - 1])} << 16);
    } else {
      bits = 0;
    }
    const std::uint64_t mixed = (bits ^ n) * 0x9e3779b97f4a7c15ULL;
    return static_cast<std::size_t>(mixed >> (64 - kSlotBits));
  }

  std::array<Entry, std::size_t{1} << kSlotBits> entries_{};
  std::uint32_t generation_ = 0;
};

struct DecodeBuffers {
  json::Reader reader;
  std::vector<ERL_NIF_TERM> values;
  std::vector<ERL_NIF_TERM> keys;
  KeyCache key_cache;
  std::basic_string<std::uint8_t> magnitude;
  std::string scratch;

  [[gnu::noinline]] static DecodeBuffers& get() {
    thread_local DecodeBuffers buffers;
    return buffers;
  }
  void trim_after_call() {
    trim(values);
    trim(keys);
  }
};

// Builds terms as the reader goes: values on one stack, object keys on
// another, so an object's keys and values are two contiguous runs that
// enif_make_map_from_arrays takes as they are.
class TermBuilder {
 public:
  TermBuilder(ErlNifEnv* env, ERL_NIF_TERM input, std::string_view text, bool atom_keys,
              DecodeBuffers& buffers)
      : env_(env),
        input_(input),
        base_(text.data()),
        atom_keys_(atom_keys),
        use_cache_(atom_keys || text.size() >= kKeyCacheMinBytes),
        values_(buffers.values),
        keys_(buffers.keys),
        cache_(buffers.key_cache),
        buffers_(buffers) {
    values_.clear();
    keys_.clear();
    if (use_cache_) cache_.next_call();
  }

  void null_value() { values_.push_back(atoms::nil); }
  void boolean(bool value) { values_.push_back(value ? atoms::true_ : atoms::false_); }
  void integer(std::int64_t value) { values_.push_back(enif_make_int64(env_, value)); }
  void floating(double value) { values_.push_back(enif_make_double(env_, value)); }
  bool big_integer(std::string_view text) {
    values_.push_back(make_big_integer(text));
    return true;
  }
  void string(std::string_view text, bool in_input, std::size_t) {
    // Strings without escapes are sub-binaries of the input, short ones too
    // (as jiffy's, and as the twin's binary matches): no copy, and 8% of a
    // PRESENCE_UPDATE decode saved over heap binaries.
    if (in_input) {
      values_.push_back(enif_make_sub_binary(
          env_, input_, static_cast<std::size_t>(text.data() - base_), text.size()));
    } else {
      values_.push_back(binary_of(env_, text));
    }
  }
  bool key(std::string_view text, bool in_input, std::size_t) {
    const bool cacheable = use_cache_ && in_input && text.size() <= KeyCache::kMaxKeyBytes;
    KeyCache::Entry* entry = nullptr;
    if (cacheable) {
      bool hit;
      entry = &cache_.slot_of(text, hit);
      if (hit) {
        keys_.push_back(entry->term);
        return true;
      }
    }
    ERL_NIF_TERM term;
    if (atom_keys_) {
      if (!existing_atom(text, term)) {
        rejected_key_ = binary_of(env_, text);
        return false;
      }
    } else {
      term = binary_of(env_, text);
    }
    if (entry != nullptr) cache_.put(*entry, text, term);
    keys_.push_back(term);
    return true;
  }
  void end_array(std::size_t count) {
    const std::size_t base = values_.size() - count;
    const ERL_NIF_TERM list =
        enif_make_list_from_array(env_, values_.data() + base, static_cast<unsigned>(count));
    values_.resize(base);
    values_.push_back(list);
  }
  void end_object(std::size_t pairs) {
    const std::size_t base = values_.size() - pairs;
    const std::size_t key_base = keys_.size() - pairs;
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env_, keys_.data() + key_base, values_.data() + base, pairs,
                                   &map)) {
      // Duplicate keys: the last one wins, as in Jason.
      map = enif_make_new_map(env_);
      for (std::size_t i = 0; i < pairs; ++i) {
        enif_make_map_put(env_, map, keys_[key_base + i], values_[base + i], &map);
      }
    }
    values_.resize(base);
    keys_.resize(key_base);
    values_.push_back(map);
  }

  ERL_NIF_TERM result() const { return values_.back(); }
  ERL_NIF_TERM rejected_key() const { return rejected_key_; }

 private:
  ERL_NIF_TERM make_big_integer(std::string_view text) {
    std::int64_t small;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), small);
    if (ec == std::errc() && end == text.data() + text.size()) {
      return enif_make_int64(env_, small);
    }
    // The VM builds a bignum from its external format: LARGE_BIG_EXT.
    std::basic_string<std::uint8_t>& magnitude = buffers_.magnitude;
    json::decimal_to_magnitude(text, magnitude);
    std::basic_string<std::uint8_t> etf;
    etf.reserve(magnitude.size() + 7);
    const auto length = static_cast<std::uint32_t>(magnitude.size());
    etf.push_back(131);
    etf.push_back(111);
    for (int shift = 24; shift >= 0; shift -= 8) {
      etf.push_back(static_cast<std::uint8_t>(length >> shift));
    }
    etf.push_back(text.front() == '-' ? 1 : 0);
    etf += magnitude;
    ERL_NIF_TERM term;
    if (enif_binary_to_term(env_, etf.data(), etf.size(), &term, 0) == 0) {
      throw std::runtime_error("big integer not rebuilt");
    }
    return term;
  }

  // Never creates an atom: ASCII names through enif_make_existing_atom_len,
  // others through binary_to_term's safe mode, which refuses unknown atoms.
  bool existing_atom(std::string_view text, ERL_NIF_TERM& term) {
    bool ascii = true;
    for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    if (ascii) {
      return enif_make_existing_atom_len(env_, text.data(), text.size(), &term, ERL_NIF_LATIN1) !=
             0;
    }
    if (text.size() > 4 * 255) return false;
    std::string etf;
    etf.push_back(static_cast<char>(131));
    etf.push_back(static_cast<char>(118));
    etf.push_back(static_cast<char>(text.size() >> 8));
    etf.push_back(static_cast<char>(text.size() & 0xFF));
    etf.append(text);
    return enif_binary_to_term(env_, reinterpret_cast<const unsigned char*>(etf.data()), etf.size(),
                               &term, ERL_NIF_BIN2TERM_SAFE) != 0;
  }

  ErlNifEnv* env_;
  ERL_NIF_TERM input_;
  const char* base_;
  bool atom_keys_;
  bool use_cache_;
  std::vector<ERL_NIF_TERM>& values_;
  std::vector<ERL_NIF_TERM>& keys_;
  KeyCache& cache_;
  DecodeBuffers& buffers_;
  ERL_NIF_TERM rejected_key_ = 0;
};

using DecodeResult =
    std::variant<Ok<ERL_NIF_TERM>, Error<ERL_NIF_TERM, NonNegative<std::size_t>, ERL_NIF_TERM>>;

DecodeResult error_result(ErlNifEnv* env, const json::ParseError& error, std::string_view text,
                          ERL_NIF_TERM rejected_key) {
  ERL_NIF_TERM reason;
  ERL_NIF_TERM token = atoms::nil;
  if (error.reason == json::ParseErrc::rejected) {
    reason = atom_unknown_atom;
    token = rejected_key;
  } else {
    const std::string_view name = json::parse_error_name(error.reason);
    reason = enif_make_atom_len(env, name.data(), name.size());
    if (error.length > 0) token = binary_of(env, text.substr(error.offset, error.length));
  }
  return Error{reason, NonNegative<std::size_t>(error.offset), token};
}

// json_decode(Binary, {AtomKeys, MaxDepth, MaxSize}) -> {ok, Term} |
// {error, Reason, Position, Token}.
Scheduled<DecodeResult> json_decode(Call& call, Binary input, DecodeOptions options) {
  json::ParseLimits limits;
  limits.max_depth = options.max_depth;
  limits.max_size = options.max_size;
  const bool normal = call.on_normal_scheduler();
  if (normal) {
    const std::size_t inline_bytes = std::min(kInlineDecodeBytes, slice_budget().bytes);
    // Too long for the limit is refused at once, wherever it runs.
    if (input.size() > inline_bytes && input.size() <= limits.max_size) return go_dirty(call);
    // Only big integers make the work exceed the input's size (their
    // digits cost their count squared); the reader stops on this budget
    // and the call reruns dirty.
    limits.work_budget = 4 * inline_bytes;
  }
  const std::string_view text = input.view();
  DecodeBuffers& buffers = DecodeBuffers::get();
  TermBuilder builder(call, input.term, text, options.atom_keys, buffers);
  const json::ParseError error = buffers.reader.parse(builder, text, limits);
  buffers.trim_after_call();
  if (!error) {
    if (normal) report_inline_work(call, input.size());
    return Ok{builder.result()};
  }
  if (error.reason == json::ParseErrc::out_of_budget) return go_dirty(call, true);
  return error_result(call, error, text, builder.rejected_key());
}
SWITCHBOARD_NIF(json_decode, 0);

using ValidateResult =
    std::variant<Ok<>, Error<ERL_NIF_TERM, NonNegative<std::size_t>, ERL_NIF_TERM>>;

// json_validate(Binary) -> ok | {error, Reason, Position, Token}: whether a
// fragment's text is one JSON value (default limits).
Scheduled<ValidateResult> json_validate(Call& call, BinaryView input) {
  const std::string_view text = input.view();
  if (call.on_normal_scheduler() &&
      text.size() > std::min(kInlineValidateBytes, 4 * slice_budget().bytes)) {
    return go_dirty(call);
  }
  const json::ParseError error = json::validate(text);
  if (!error) return Ok{};
  return std::get<1>(error_result(call, error, text, atoms::nil));
}
SWITCHBOARD_NIF(json_validate, 0);

// json_dirty_runs() -> {Before, After}: calls moved to a dirty scheduler
// since the library was loaded, before any work and after inline work.
std::tuple<NonNegative<std::uint64_t>, NonNegative<std::uint64_t>> json_dirty_runs(ErlNifEnv*) {
  return {g_moved_before_work.load(std::memory_order_relaxed),
          g_moved_after_work.load(std::memory_order_relaxed)};
}
SWITCHBOARD_NIF(json_dirty_runs, 0);

// json_reads_in_place() -> whether encodes read common terms in place (this
// VM's layout passed the check, and SWITCHBOARD_JSON_API_ONLY is not set).
bool json_reads_in_place(ErlNifEnv* env) { return layout::usable(env); }
SWITCHBOARD_NIF(json_reads_in_place, 0);

}  // namespace
}  // namespace switchboard::nif
