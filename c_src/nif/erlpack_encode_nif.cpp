// Switchboard.Erlpack encoding NIFs: encode, encode_iodata and fragment walk
// the term with the enif API and append to the core EtfEncoder; fragments
// (sealed, see Switchboard.Erlpack.Fragment) are spliced as their bytes, or
// listed as their own binaries for iodata. A walk that outlasts its slice
// continues where it stopped on a dirty CPU scheduler (erlpack_shared.hpp).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/byte_search.hpp"
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

namespace etf = core::etf;
using etf::AtomMode;
using etf::Refusal;
using namespace erlpack;  // the Erlpack NIFs' scheduling (erlpack_shared.hpp)

ERL_NIF_TERM& atom_fragment_struct = register_atom("Elixir.Switchboard.Erlpack.Fragment");
ERL_NIF_TERM& atom_bytes = register_atom("bytes");
ERL_NIF_TERM& atom_seal = register_atom("seal");
ERL_NIF_TERM& atom_string_keys_collision = register_atom("string_keys_collision");
ERL_NIF_TERM& atom_bad_fragment = register_atom("bad_fragment");
ERL_NIF_TERM& atom_tuple = register_atom("tuple");
ERL_NIF_TERM& atom_map = register_atom("map");
ERL_NIF_TERM& atom_list = register_atom("list");

// ---------------------------------------------------------------------------
// Encoding

// OTP's own encoding of each atom met (ATOM_EXT, or the UTF-8 forms beyond
// Latin-1) and of its name as a binary, per scheduler thread. An atom term
// never changes meaning and atoms are never freed, so entries stay valid.
class AtomEncodings {
 public:
  struct Entry {
    ERL_NIF_TERM atom;
    std::string as_atom;    // term bytes without the version byte
    std::string as_binary;  // BINARY_EXT of the UTF-8 name (string_keys)
  };

  const Entry& get(ErlNifEnv* env, ERL_NIF_TERM atom) {
    std::size_t slot = (atom * 0x9e3779b97f4a7c15ull) >> (64 - kSlotBits);
    for (;; slot = (slot + 1) & (kSlots - 1)) {
      const std::uint32_t index = slots_[slot];
      if (index == 0) break;
      if (entries_[index - 1].atom == atom) return entries_[index - 1];
    }
    // Dynamically created atoms could grow the cache without bound.
    if (entries_.size() >= kMaxEntries) {
      entries_.clear();
      slots_.fill(0);
      return get(env, atom);
    }
    entries_.push_back(make_entry(env, atom));
    slots_[slot] = static_cast<std::uint32_t>(entries_.size());
    return entries_.back();
  }

 private:
  static constexpr unsigned kSlotBits = 12;
  static constexpr std::size_t kSlots = std::size_t{1} << kSlotBits;
  static constexpr std::size_t kMaxEntries = kSlots / 2;

  static Entry make_entry(ErlNifEnv* env, ERL_NIF_TERM atom) {
    ErlNifBinary encoded;
    if (!enif_term_to_binary(env, atom, &encoded)) throw std::bad_alloc();
    Entry entry{
        atom, std::string(reinterpret_cast<const char*>(encoded.data) + 1, encoded.size - 1), {}};
    enif_release_binary(&encoded);
    etf::Text name;
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(entry.as_atom.data());
    etf::read_wire_atom({bytes, entry.as_atom.size()}, 0, name);
    etf::EtfEncoder key;
    key.binary(std::string_view(name));
    entry.as_binary.assign(reinterpret_cast<const char*>(key.bytes().data()), key.size());
    return entry;
  }

  std::array<std::uint32_t, kSlots> slots_{};  // entry index + 1, 0 when free
  std::vector<Entry> entries_;
};

// out_of_time: the slice is spent between two nodes; needs_dirty: one node is
// too much work for a slice (a huge binary, fragment, list or map), which the
// continuation writes first. Both continue on a dirty scheduler.
enum class EncodeStatus { done, out_of_time, needs_dirty, string_keys_collision, bad_fragment };

// A term waiting to be written: as itself, or (string_keys) an atom key
// written as a binary.
struct Pending {
  ERL_NIF_TERM term;
  bool as_string_key;
};

// A container being written: the index of its next child and where its
// children are (a tuple's elements in place, a map's pairs copied to the
// pending buffer, a list through its cursor). `container` is the tuple or
// map itself, from which a continuation finds its children again.
struct EncodeFrame {
  enum Kind : std::uint8_t { tuple, map, list } kind;
  std::uint32_t next;
  std::uint32_t end;
  const ERL_NIF_TERM* elements;  // tuple
  ERL_NIF_TERM cursor;           // list: the cells not yet written
  std::size_t pending_base;      // map: where its pairs start in the pending buffer
  ERL_NIF_TERM container;        // tuple, map
};

// The output of an encode that continues in a later call (on a dirty
// scheduler); the walk's position travels in the continuation's arguments as
// terms, which stay valid across calls where pointers do not.
struct EncodeOutput {
  etf::EtfEncoder encoder;
};
SWITCHBOARD_RESOURCE(EncodeOutput, "ErlpackEncodeOutput");

// encode_iodata: a fragment's bytes left in place, to be listed as their own
// binary at `offset` of the output instead of copied into it.
struct Splice {
  std::size_t offset;
  ERL_NIF_TERM bytes;
};

// Fragments smaller than this are copied: a list cell and a binary of their
// own cost more than the copy.
constexpr std::size_t kSpliceMinBytes = 256;

// Per scheduler thread, looked up once per call: each thread_local access
// from a shared library is a call to __tls_get_addr, which GCC repeats at
// every use of an inlined accessor rather than keep the address; a
// non-inlined accessor hands out a plain reference.
struct EncodeBuffers {
  std::vector<EncodeFrame> frames;
  std::vector<Splice> splices;
  std::vector<Pending> pending;
  std::vector<Pending> atom_keys;
  std::string chars;
  AtomEncodings atoms;
  etf::EtfEncoder encoder;

  [[gnu::noinline]] static EncodeBuffers& get() {
    thread_local EncodeBuffers buffers;
    return buffers;
  }
  void trim_after_call() {
    trim(frames);
    trim(splices);
    trim(pending);
    if (encoder.buffer().capacity() > kKeepBufferBytes) encoder = etf::EtfEncoder();
  }
};

// Walks a term without recursion and appends its encoding, choosing the tags
// term_to_binary/1 chooses: maps of up to 32 keys come out of the iterator in
// the runtime's order, which is the order term_to_binary writes them in.
class TermEncoder {
 public:
  // With `splices`, large fragments are recorded there instead of copied
  // (encode_iodata).
  // `seal` is Switchboard.Erlpack.Fragment's seal: only a fragment struct
  // holding it is spliced, any other is an ordinary map.
  TermEncoder(ErlNifEnv* env, EncodeBuffers& buffers, etf::EtfEncoder& out, bool string_keys,
              ERL_NIF_TERM seal, CodecSlice& slice, std::vector<Splice>* splices = nullptr)
      : env_(env),
        seal_(seal),
        out_(out),
        frames_(buffers.frames),
        pending_(buffers.pending),
        buffers_(buffers),
        string_keys_(string_keys),
        slice_(slice),
        splices_(splices) {
    frames_.clear();
    pending_.clear();
  }

  EncodeStatus encode(ERL_NIF_TERM root) {
    if (const EncodeStatus status = encode_child(root); status != EncodeStatus::done) {
      return status;
    }
    return run();
  }

  // Where the walk stopped, as terms for the continuation's arguments:
  // {Frames, Current}, Frames a list of {tuple | map, Container, Next} and
  // {list, Rest} from the outermost in, Current {} or {Node} (a node whose
  // own work did not fit in the slice, to be written first).
  ERL_NIF_TERM position() const {
    std::vector<ERL_NIF_TERM> frames;
    frames.reserve(frames_.size());
    for (const EncodeFrame& frame : frames_) {
      switch (frame.kind) {
        case EncodeFrame::tuple:
          frames.push_back(enif_make_tuple3(env_, atom_tuple, frame.container,
                                            enif_make_uint(env_, frame.next)));
          break;
        case EncodeFrame::map:
          frames.push_back(
              enif_make_tuple3(env_, atom_map, frame.container, enif_make_uint(env_, frame.next)));
          break;
        case EncodeFrame::list:
          frames.push_back(enif_make_tuple2(env_, atom_list, frame.cursor));
          break;
      }
    }
    const ERL_NIF_TERM current =
        current_ ? enif_make_tuple1(env_, *current_) : enif_make_tuple(env_, 0);
    return enif_make_tuple2(
        env_, enif_make_list_from_array(env_, frames.data(), static_cast<unsigned>(frames.size())),
        current);
  }

  // Continues a walk from position(): rebuilds the frames (a map's pairs are
  // read again, in the same order), writes Current, and carries on.
  EncodeStatus resume(ERL_NIF_TERM position) {
    int arity;
    const ERL_NIF_TERM* parts;
    if (!enif_get_tuple(env_, position, &arity, &parts) || arity != 2) corrupt();
    ERL_NIF_TERM rest = parts[0], head;
    while (enif_get_list_cell(env_, rest, &head, &rest)) {
      const ERL_NIF_TERM* fields;
      if (!enif_get_tuple(env_, head, &arity, &fields)) corrupt();
      unsigned next = 0;
      if (arity == 2 && fields[0] == atom_list) {
        frames_.push_back({EncodeFrame::list, 0, 0, nullptr, fields[1], 0, 0});
        continue;
      }
      if (arity != 3 || !enif_get_uint(env_, fields[2], &next)) corrupt();
      if (fields[0] == atom_tuple) {
        int size;
        const ERL_NIF_TERM* elements;
        if (!enif_get_tuple(env_, fields[1], &size, &elements)) corrupt();
        frames_.push_back({EncodeFrame::tuple, next, static_cast<std::uint32_t>(size), elements, 0,
                           0, fields[1]});
      } else if (fields[0] == atom_map) {
        const std::size_t base = pending_.size();
        if (!collect_pairs(fields[1])) corrupt();
        if (string_keys_ && rename_keys(fields[1], base) != EncodeStatus::done) corrupt();
        frames_.push_back({EncodeFrame::map, next,
                           static_cast<std::uint32_t>(pending_.size() - base), nullptr, 0, base,
                           fields[1]});
      } else {
        corrupt();
      }
    }
    const ERL_NIF_TERM* current;
    if (!enif_get_tuple(env_, parts[1], &arity, &current) || arity > 1) corrupt();
    if (arity == 1) {
      if (const EncodeStatus status = encode_child(current[0]); status != EncodeStatus::done) {
        return status;
      }
    }
    return run();
  }

  // Writes the children of the open containers until none is left.
  EncodeStatus run() {
    while (!frames_.empty()) {
      if (slice_.term()) return EncodeStatus::out_of_time;
      // Past a megabyte of output, growing and finally copying the buffer
      // would take milliseconds of a slice: the rest is written dirty.
      if (slice_.limited() && out_.size() > kDirtyCopyBytes) return EncodeStatus::needs_dirty;
      EncodeFrame& frame = frames_.back();
      ERL_NIF_TERM child;
      switch (frame.kind) {
        case EncodeFrame::tuple:
          if (frame.next == frame.end) {
            frames_.pop_back();
            continue;
          }
          child = frame.elements[frame.next++];
          break;
        case EncodeFrame::map: {
          if (frame.next == frame.end) {
            pending_.resize(frame.pending_base);
            frames_.pop_back();
            continue;
          }
          const Pending item = pending_[frame.pending_base + frame.next++];
          if (item.as_string_key) {
            append(buffers_.atoms.get(env_, item.term).as_binary);
            continue;
          }
          child = item.term;
          break;
        }
        case EncodeFrame::list: {
          ERL_NIF_TERM tail;
          if (!enif_get_list_cell(env_, frame.cursor, &child, &tail)) {
            // The tail: [] for a proper list.
            child = frame.cursor;
            frames_.pop_back();
            if (enif_is_empty_list(env_, child)) {
              out_.nil();
              continue;
            }
            break;
          }
          frame.cursor = tail;
          break;
        }
      }
      if (const EncodeStatus status = encode_child(child); status != EncodeStatus::done) {
        return status;
      }
    }
    return EncodeStatus::done;
  }

  // The map or fragment that made encode() fail.
  ERL_NIF_TERM offending() const noexcept { return offending_; }

 private:
  [[noreturn]] static void corrupt() {
    throw std::invalid_argument("corrupt erlpack_encode continuation");
  }

  // encode_term, remembering a node whose own work did not fit in the slice
  // (nothing of it is written then) so that the continuation starts there.
  EncodeStatus encode_child(ERL_NIF_TERM term) {
    const EncodeStatus status = encode_term(term);
    if (status == EncodeStatus::needs_dirty) current_ = term;
    return status;
  }

  // A map's pairs onto the pending buffer, in the iterator's order; false if
  // `map` is not a map.
  bool collect_pairs(ERL_NIF_TERM map) {
    ErlNifMapIterator iterator;
    if (!enif_map_iterator_create(env_, map, &iterator, ERL_NIF_MAP_ITERATOR_FIRST)) return false;
    ERL_NIF_TERM key, value;
    while (enif_map_iterator_get_pair(env_, &iterator, &key, &value)) {
      pending_.push_back({key, false});
      pending_.push_back({value, false});
      enif_map_iterator_next(env_, &iterator);
    }
    enif_map_iterator_destroy(env_, &iterator);
    return true;
  }

  void append(const std::string& bytes) {
    out_.raw({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  }

  // OTP's encoding, minus the version byte: pids, ports, references, funs,
  // bignums and bitstrings, none of them frequent.
  void append_external(ERL_NIF_TERM term) {
    ErlNifBinary encoded;
    if (!enif_term_to_binary(env_, term, &encoded)) throw std::bad_alloc();
    out_.raw({encoded.data + 1, encoded.size - 1});
    enif_release_binary(&encoded);
  }

  // The same for terms of a size the NIF API does not tell (a bitstring of
  // 100 MB, a fun whose environment holds anything, a bignum of megabytes):
  // on a normal scheduler they are not encoded at all, but go dirty first.
  EncodeStatus append_unsized_external(ERL_NIF_TERM term) {
    if (slice_.limited()) return EncodeStatus::needs_dirty;
    append_external(term);
    return EncodeStatus::done;
  }

  EncodeStatus encode_binary(const ErlNifBinary& binary) {
    if (slice_.limited() && binary.size > kDirtyCopyBytes) return EncodeStatus::needs_dirty;
    out_.binary(std::span<const std::uint8_t>(binary.data, binary.size));
    // Written: the next node finds the slice spent. A small binary counts
    // as the term it is (batched), not as a spend of its own.
    if (binary.size > kHeapBinaryBytes) slice_.bytes(binary.size);
    return EncodeStatus::done;
  }

  // Writes a scalar whole, or a container's header and pushes its frame.
  // Binaries, the most common node of gateway payloads, are read first: one
  // call where asking for the type first would take two.
  EncodeStatus encode_term(ERL_NIF_TERM term) {
    if (ErlNifBinary binary; enif_inspect_binary(env_, term, &binary)) {
      return encode_binary(binary);
    }
    if (ErlNifSInt64 value; enif_get_int64(env_, term, &value)) {
      out_.int64(value);
      return EncodeStatus::done;
    }
    switch (enif_term_type(env_, term)) {
      case ERL_NIF_TERM_TYPE_INTEGER: {
        ErlNifSInt64 value;
        ErlNifUInt64 unsigned_value;
        if (enif_get_int64(env_, term, &value)) {
          out_.int64(value);
        } else if (enif_get_uint64(env_, term, &unsigned_value)) {
          out_.uint64(unsigned_value);
        } else {
          return append_unsized_external(term);
        }
        return EncodeStatus::done;
      }
      case ERL_NIF_TERM_TYPE_ATOM:
        append(buffers_.atoms.get(env_, term).as_atom);
        return EncodeStatus::done;
      case ERL_NIF_TERM_TYPE_BITSTRING:  // not a whole number of bytes: binaries are read above
        return append_unsized_external(term);
      case ERL_NIF_TERM_TYPE_MAP:
        return encode_map(term);
      case ERL_NIF_TERM_TYPE_LIST:
        return encode_list(term);
      case ERL_NIF_TERM_TYPE_TUPLE: {
        int arity;
        const ERL_NIF_TERM* elements;
        enif_get_tuple(env_, term, &arity, &elements);
        out_.tuple_header(static_cast<std::uint32_t>(arity));
        if (arity > 0) {
          frames_.push_back(
              {EncodeFrame::tuple, 0, static_cast<std::uint32_t>(arity), elements, 0, 0, term});
        }
        return EncodeStatus::done;
      }
      case ERL_NIF_TERM_TYPE_FLOAT: {
        double value;
        enif_get_double(env_, term, &value);
        out_.float64(value);
        return EncodeStatus::done;
      }
      case ERL_NIF_TERM_TYPE_PID:
      case ERL_NIF_TERM_TYPE_PORT:
      case ERL_NIF_TERM_TYPE_REFERENCE:
        append_external(term);
        return EncodeStatus::done;
      case ERL_NIF_TERM_TYPE_FUN:
        return append_unsized_external(term);
      default:
        throw bad_argument(env_, "a term of a known type", term);
    }
  }

  // STRING_EXT for a proper list of at most 65535 bytes, as OTP does;
  // otherwise LIST_EXT with the elements, then the tail.
  EncodeStatus encode_list(ERL_NIF_TERM list) {
    if (enif_is_empty_list(env_, list)) {
      out_.nil();
      return EncodeStatus::done;
    }
    std::uint32_t length = 0;
    ERL_NIF_TERM rest = list, head;
    bool bytes = true;
    while (enif_get_list_cell(env_, rest, &head, &rest)) {
      ++length;
      // Most lists hold maps or binaries: no need to ask whether they are strings.
      if (length == 1) bytes = enif_term_type(env_, head) == ERL_NIF_TERM_TYPE_INTEGER;
      if ((length & 255) == 0 && slice_.terms(256)) return EncodeStatus::needs_dirty;
    }
    if (bytes && length <= etf::kMaxStringExtLength && enif_is_empty_list(env_, rest)) {
      std::string& chars = buffers_.chars;
      chars.resize(length + 1);
      if (enif_get_string(env_, list, chars.data(), length + 1, ERL_NIF_LATIN1) ==
          static_cast<int>(length + 1)) {
        out_.string({reinterpret_cast<const std::uint8_t*>(chars.data()), length});
        return EncodeStatus::done;
      }
    }
    out_.list_header(length);
    frames_.push_back({EncodeFrame::list, 0, 0, nullptr, list, 0, 0});
    return EncodeStatus::done;
  }

  EncodeStatus encode_map(ERL_NIF_TERM map) {
    std::size_t size;
    enif_get_map_size(env_, map, &size);
    const std::size_t base = pending_.size();
    bool fragment = false;
    ErlNifMapIterator iterator;
    enif_map_iterator_create(env_, map, &iterator, ERL_NIF_MAP_ITERATOR_FIRST);
    ERL_NIF_TERM key, value;
    while (enif_map_iterator_get_pair(env_, &iterator, &key, &value)) {
      pending_.push_back({key, false});
      pending_.push_back({value, false});
      fragment = fragment || (key == atoms::struct_field && value == atom_fragment_struct);
      if ((pending_.size() & 511) == 0 && slice_.terms(256)) {
        enif_map_iterator_destroy(env_, &iterator);
        pending_.resize(base);
        return EncodeStatus::needs_dirty;
      }
      enif_map_iterator_next(env_, &iterator);
    }
    enif_map_iterator_destroy(env_, &iterator);
    if (fragment && sealed(map)) {
      pending_.resize(base);
      return splice_fragment(map);
    }
    out_.map_header(static_cast<std::uint32_t>(size));
    if (size == 0) return EncodeStatus::done;
    if (string_keys_) {
      if (const EncodeStatus status = rename_keys(map, base); status != EncodeStatus::done) {
        return status;
      }
    }
    frames_.push_back(
        {EncodeFrame::map, 0, static_cast<std::uint32_t>(2 * size), nullptr, 0, base, map});
    return EncodeStatus::done;
  }

  // Decoded data can name the Fragment struct, but not hold the seal: a
  // reference made in this VM, which a stranger's bytes could match only by
  // guessing its id words (and `plain: true` decoding refuses references).
  bool sealed(ERL_NIF_TERM map) const {
    ERL_NIF_TERM seal;
    return enif_get_map_value(env_, map, atom_seal, &seal) && enif_is_ref(env_, seal) &&
           enif_compare(seal, seal_) == 0;
  }

  EncodeStatus splice_fragment(ERL_NIF_TERM map) {
    ERL_NIF_TERM bytes;
    ErlNifBinary binary;
    if (!enif_get_map_value(env_, map, atom_bytes, &bytes) ||
        !enif_inspect_binary(env_, bytes, &binary)) {
      offending_ = map;
      return EncodeStatus::bad_fragment;
    }
    if (splices_ != nullptr && binary.size >= kSpliceMinBytes) {
      splices_->push_back({out_.size(), bytes});
      return EncodeStatus::done;
    }
    if (slice_.limited() && binary.size > kDirtyCopyBytes) return EncodeStatus::needs_dirty;
    out_.raw({binary.data, binary.size});
    if (binary.size > kHeapBinaryBytes) slice_.bytes(binary.size);  // as encode_binary
    return EncodeStatus::done;
  }

  // Marks atom keys (pairs from `base` in the pending buffer) to be written
  // as binaries, in the order term_to_binary would write the renamed map.
  // Renamed keys sort after every key that is not a bitstring and keep their
  // order (atoms and binaries both sort by name), so they simply go last;
  // only a map that already has bitstring keys needs its bitstring keys
  // sorted together, and only there can two keys become equal.
  EncodeStatus rename_keys(ERL_NIF_TERM map, std::size_t base) {
    bool has_bitstring_keys = false;
    bool has_atom_keys = false;
    for (std::size_t i = base; i < pending_.size(); i += 2) {
      const ErlNifTermType type = enif_term_type(env_, pending_[i].term);
      has_atom_keys = has_atom_keys || type == ERL_NIF_TERM_TYPE_ATOM;
      has_bitstring_keys = has_bitstring_keys || type == ERL_NIF_TERM_TYPE_BITSTRING;
    }
    if (!has_atom_keys) return EncodeStatus::done;
    auto& atom_pairs = buffers_.atom_keys;
    atom_pairs.clear();
    if (!has_bitstring_keys) {
      std::size_t kept = base;
      for (std::size_t i = base; i < pending_.size(); i += 2) {
        if (enif_is_atom(env_, pending_[i].term)) {
          atom_pairs.push_back({pending_[i].term, true});
          atom_pairs.push_back(pending_[i + 1]);
        } else {
          pending_[kept++] = pending_[i];
          pending_[kept++] = pending_[i + 1];
        }
      }
      std::copy(atom_pairs.begin(), atom_pairs.end(),
                pending_.begin() + static_cast<std::ptrdiff_t>(kept));
      return EncodeStatus::done;
    }

    // Bitstring keys, original or renamed, sorted by the runtime's compare.
    struct Keyed {
      ERL_NIF_TERM sort_key;
      Pending key;
      Pending value;
    };
    std::vector<Keyed> bitstrings;
    std::size_t kept = base;
    for (std::size_t i = base; i < pending_.size(); i += 2) {
      const ERL_NIF_TERM key = pending_[i].term;
      const ErlNifTermType type = enif_term_type(env_, key);
      if (type == ERL_NIF_TERM_TYPE_ATOM) {
        const std::string& encoded = buffers_.atoms.get(env_, key).as_binary;
        const ERL_NIF_TERM name = make_binary(env_, std::string_view(encoded).substr(5));
        ERL_NIF_TERM ignored;
        if (enif_get_map_value(env_, map, name, &ignored)) {
          offending_ = map;
          return EncodeStatus::string_keys_collision;
        }
        bitstrings.push_back({name, {key, true}, pending_[i + 1]});
      } else if (type == ERL_NIF_TERM_TYPE_BITSTRING) {
        bitstrings.push_back({key, pending_[i], pending_[i + 1]});
      } else {
        pending_[kept++] = pending_[i];
        pending_[kept++] = pending_[i + 1];
      }
    }
    std::stable_sort(bitstrings.begin(), bitstrings.end(), [](const Keyed& a, const Keyed& b) {
      return enif_compare(a.sort_key, b.sort_key) < 0;
    });
    for (const Keyed& keyed : bitstrings) {
      pending_[kept++] = keyed.key;
      pending_[kept++] = keyed.value;
    }
    return EncodeStatus::done;
  }

  ErlNifEnv* env_;
  ERL_NIF_TERM seal_;
  etf::EtfEncoder& out_;
  std::vector<EncodeFrame>& frames_;
  std::vector<Pending>& pending_;
  EncodeBuffers& buffers_;
  bool string_keys_;
  CodecSlice& slice_;
  ERL_NIF_TERM offending_ = 0;
  std::optional<ERL_NIF_TERM> current_;
  std::vector<Splice>* splices_;
};

// A new binary holding `bytes`.
ERL_NIF_TERM binary_of(ErlNifEnv* env, std::span<const std::uint8_t> bytes) {
  ERL_NIF_TERM result;
  unsigned char* data = enif_make_new_binary(env, bytes.size(), &result);
  if (data == nullptr) throw std::bad_alloc();
  if (!bytes.empty()) std::memcpy(data, bytes.data(), bytes.size());
  return result;
}

ERL_NIF_TERM take_binary(ErlNifEnv* env, etf::EtfEncoder& encoder) {
  return binary_of(env, encoder.bytes());
}

// erlpack_compress(Plain, Level), a continuation on a dirty scheduler:
// compresses a finished encoding.
ERL_NIF_TERM erlpack_compress(ErlNifEnv* env, std::span<const std::byte> plain,
                              CompressionLevel level) {
  EncodeBuffers& buffers = EncodeBuffers::get();
  etf::EtfEncoder& encoder = buffers.encoder;
  encoder.clear();
  encoder.buffer().append(reinterpret_cast<const std::uint8_t*>(plain.data()), plain.size());
  encoder.compress(level.value);
  const ERL_NIF_TERM result = take_binary(env, encoder);
  buffers.trim_after_call();
  return result;
}

Scheduled<ERL_NIF_TERM> erlpack_encode_resume(Call& call, CompressionLevel level, bool string_keys,
                                              Term output, Term position, Term seal);

// The output with the spliced fragments' bytes copied in at their offsets:
// what a walk that continues in a later call (where the fragments' terms are
// no longer valid) carries on from.
void copy_splices(ErlNifEnv* env, etf::EtfEncoder& out, std::vector<Splice>& splices) {
  if (splices.empty()) return;
  etf::EtfEncoder whole;
  std::size_t from = 0;
  const std::span<const std::uint8_t> written = out.bytes();
  for (const Splice& splice : splices) {
    whole.raw(written.subspan(from, splice.offset - from));
    ErlNifBinary binary;
    if (!enif_inspect_binary(env, splice.bytes, &binary)) throw std::logic_error("splice lost");
    whole.raw({binary.data, binary.size});
    from = splice.offset;
  }
  whole.raw(written.subspan(from));
  std::swap(whole, out);
  splices.clear();
}

// The output as iodata: its own bytes between the fragments' binaries, which
// are listed as they are (shared, not copied).
ERL_NIF_TERM make_iodata(ErlNifEnv* env, const etf::EtfEncoder& out,
                         const std::vector<Splice>& splices) {
  const std::span<const std::uint8_t> written = out.bytes();
  std::vector<ERL_NIF_TERM> parts;
  parts.reserve(2 * splices.size() + 1);
  std::size_t from = 0;
  for (const Splice& splice : splices) {
    if (splice.offset > from) {
      parts.push_back(binary_of(env, written.subspan(from, splice.offset - from)));
    }
    parts.push_back(splice.bytes);
    from = splice.offset;
  }
  if (written.size() > from || parts.empty())
    parts.push_back(binary_of(env, written.subspan(from)));
  return enif_make_list_from_array(env, parts.data(), static_cast<unsigned>(parts.size()));
}

// What an encode walk that returned leads to: the binary (compressed, on a
// dirty scheduler if large), {error, Reason, Term}, or the walk's
// continuation on a dirty scheduler, from where it stopped. `output` is the
// resource holding `out` when the walk already continued from an earlier call.
Scheduled<ERL_NIF_TERM> after_walk(Call& call, EncodeStatus status, TermEncoder& walker,
                                   etf::EtfEncoder& out, std::optional<ERL_NIF_TERM> output,
                                   CompressionLevel level, bool string_keys, ERL_NIF_TERM seal,
                                   CodecSlice& slice, EncodeBuffers& buffers) {
  ErlNifEnv* env = call;
  switch (status) {
    case EncodeStatus::done:
      break;
    case EncodeStatus::out_of_time:
    case EncodeStatus::needs_dirty: {
      if (!output) {
        auto saved = make_resource<EncodeOutput>();
        std::swap(saved->encoder, out);
        output = saved.make_term(env);
      }
      const Term position{walker.position()};
      slice.report();
      buffers.trim_after_call();
      // Dirty in both cases: yielding in 400 us slices on this scheduler was
      // measured too (the scheduler probe's p99 doubled, 1.1 -> 2.4 ms, while
      // 13 MB encodes ran), and the walk needs no restart either way.
      return call.continue_dirty<&erlpack_encode_resume>(level, string_keys, Term{*output},
                                                         position, Term{seal});
    }
    case EncodeStatus::string_keys_collision:
      return enif_make_tuple3(env, atoms::error, atom_string_keys_collision, walker.offending());
    case EncodeStatus::bad_fragment:
      return enif_make_tuple3(env, atoms::error, atom_bad_fragment, walker.offending());
  }
  if (level.value > 0 && slice.limited() && out.size() > kDirtyCompressBytes) {
    const Term plain{take_binary(env, out)};
    buffers.trim_after_call();
    slice.report();
    return call.continue_dirty<&erlpack_compress>(plain, level);
  }
  if (level.value > 0) out.compress(level.value);
  const ERL_NIF_TERM result = take_binary(env, out);
  buffers.trim_after_call();
  slice.report();
  return result;
}

// One encode: writes `term` (after the version byte with `with_version`) and
// returns what after_walk makes of it. With `iodata`, fragments of
// kSpliceMinBytes or more are listed as their own binaries instead of copied
// (a walk that continues in a later call copies them in and returns one
// binary). Returns the binary, or {error, string_keys_collision |
// bad_fragment, Term} for the Elixir side to raise with the term inspected.
// A walk that outlasts its slice continues where it stopped
// (erlpack_encode_resume) on a dirty scheduler: nothing is encoded twice.
Scheduled<ERL_NIF_TERM> start_encode(Call& call, ERL_NIF_TERM term, bool with_version,
                                     CompressionLevel level, bool string_keys, ERL_NIF_TERM seal,
                                     bool iodata) {
  ErlNifEnv* env = call;
  CodecSlice slice(env, call.on_normal_scheduler());
  EncodeBuffers& buffers = EncodeBuffers::get();
  etf::EtfEncoder& encoder = buffers.encoder;
  encoder.clear();
  if (with_version) encoder.version();
  std::vector<Splice>& splices = buffers.splices;
  splices.clear();
  TermEncoder walker(env, buffers, encoder, string_keys, seal, slice, iodata ? &splices : nullptr);
  const EncodeStatus status = walker.encode(term);
  if (status == EncodeStatus::done && !splices.empty()) {
    const ERL_NIF_TERM result = make_iodata(env, encoder, splices);
    buffers.trim_after_call();
    slice.report();
    return result;
  }
  if (status == EncodeStatus::out_of_time || status == EncodeStatus::needs_dirty) {
    copy_splices(env, encoder, splices);
  }
  return after_walk(call, status, walker, encoder, std::nullopt, level, string_keys, seal, slice,
                    buffers);
}

// erlpack_encode_iodata(Term, StringKeys, Seal) -> iodata: encode/2's bytes,
// with large fragments shared (see start_encode).
Scheduled<ERL_NIF_TERM> erlpack_encode_iodata(Call& call, Term term, bool string_keys, Term seal) {
  return start_encode(call, term.value, true, CompressionLevel{0}, string_keys, seal.value, true);
}
SWITCHBOARD_NIF(erlpack_encode_iodata, 0);

// erlpack_encode_resume(Level, StringKeys, Output, Position, Seal), a
// continuation: the rest of a walk (see TermEncoder::position), appended to
// the Output resource.
Scheduled<ERL_NIF_TERM> erlpack_encode_resume(Call& call, CompressionLevel level, bool string_keys,
                                              Term output, Term position, Term seal) {
  EncodeOutput* saved = borrow_resource<EncodeOutput>(call, output.value);
  if (saved == nullptr) throw std::invalid_argument("corrupt erlpack_encode continuation");
  CodecSlice slice(call, call.on_normal_scheduler());
  EncodeBuffers& buffers = EncodeBuffers::get();
  TermEncoder walker(call, buffers, saved->encoder, string_keys, seal.value, slice);
  const EncodeStatus status = walker.resume(position.value);
  return after_walk(call, status, walker, saved->encoder, output.value, level, string_keys,
                    seal.value, slice, buffers);
}

// erlpack_encode(Term, Level, StringKeys, Seal) -> binary with the version byte.
Scheduled<ERL_NIF_TERM> erlpack_encode(Call& call, Term term, CompressionLevel level,
                                       bool string_keys, Term seal) {
  return start_encode(call, term.value, true, level, string_keys, seal.value, false);
}
SWITCHBOARD_NIF(erlpack_encode, 0);

// erlpack_fragment(Term, StringKeys, Seal) -> the encoding without the version byte.
Scheduled<ERL_NIF_TERM> erlpack_fragment(Call& call, Term term, bool string_keys, Term seal) {
  return start_encode(call, term.value, false, CompressionLevel{0}, string_keys, seal.value, false);
}
SWITCHBOARD_NIF(erlpack_fragment, 0);

// erlpack_may_hold_seal(Encoded, SealWords) -> boolean: whether term_to_binary's
// output holds the fragments' seal, by its id words (Fragment.may_hold_seal?/1).
// A term that holds no sealed fragment holds no seal, so false proves that
// term_to_binary's bytes are the encode's; true (a fragment, or a binary
// holding those bytes by chance) sends the term to the walk above. The search
// costs at most about 0.6 us per KB of adversarial output (one byte repeated),
// a few ns per KB of typical output: past kDirtySearchBytes it runs dirty.
Scheduled<bool> erlpack_may_hold_seal(Call& call, Binary encoded, Binary seal_words) {
  if (encoded.size() > kDirtySearchBytes && call.on_normal_scheduler()) return call.dirty();
  const auto bytes = [](const Binary& binary) {
    return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(binary.bytes.data()),
                                         binary.size());
  };
  return core::contains_bytes(bytes(encoded), bytes(seal_words));
}
SWITCHBOARD_NIF(erlpack_may_hold_seal, 0);

}  // namespace
}  // namespace switchboard::nif
