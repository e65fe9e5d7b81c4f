// Switchboard.Erlpack: NIFs over the core ETF codec. Encoding walks the term
// with the enif API and appends to an EtfEncoder; decoding hands the core
// EtfDecoder a visitor that builds the terms directly in the caller's heap.
// Small inputs of plain data (core/etf/plain_term.hpp), once the core has
// checked them against the limits, are built by the VM's binary_to_term in one
// call instead (decode_plain): the same term, at a fraction of the per-term
// cost of the enif API.
//
// Scheduling: every call starts on the normal scheduler with a work budget of
// about half a millisecond (checked every few hundred terms). Decodes of
// inputs larger than kDirtyDecodeBytes go to a dirty CPU scheduler at once;
// any other call that spends its budget gives up its partial result and runs
// again on a dirty CPU scheduler. The core decoder cannot pause mid-term, and
// a half-walked term cannot be kept across a reschedule (a garbage collection
// may move it), so the work is not split into slices.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/etf/atom_text.hpp"
#include "core/etf/decoder.hpp"
#include "core/etf/encoder.hpp"
#include "core/etf/plain_term.hpp"
#include "core/etf/refusal.hpp"
#include "nif/nif.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {
namespace {

namespace etf = core::etf;
using etf::AtomMode;
using etf::Refusal;

ERL_NIF_TERM& atom_existing = register_atom("existing");
ERL_NIF_TERM& atom_binary = register_atom("binary");
ERL_NIF_TERM& atom_create = register_atom("create");
ERL_NIF_TERM& atom_fragment_struct = register_atom("Elixir.Switchboard.Erlpack.Fragment");
ERL_NIF_TERM& atom_bytes = register_atom("bytes");
ERL_NIF_TERM& atom_seal = register_atom("seal");
ERL_NIF_TERM& atom_string_keys_collision = register_atom("string_keys_collision");
ERL_NIF_TERM& atom_bad_fragment = register_atom("bad_fragment");
ERL_NIF_TERM& atom_tuple = register_atom("tuple");
ERL_NIF_TERM& atom_map = register_atom("map");
ERL_NIF_TERM& atom_list = register_atom("list");

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
// Scheduling

using Clock = std::chrono::steady_clock;

// What a call may spend on a normal scheduler before it moves to a dirty one.
constexpr auto kNormalBudget = std::chrono::microseconds(400);
// Reading the clock costs tens of nanoseconds on these machines, as much as
// encoding a small term, so small calls never read it: the clock starts after
// this much work (terms, or 256 bytes copied; well under 100 us of it) and is
// read every kUnitsPerClockCheck units after that.
constexpr std::size_t kUnitsBeforeClock = 1024;
constexpr std::size_t kUnitsPerClockCheck = 256;
// Decoding runs at a few hundred MB/s here: inputs above this size would
// outlast the budget anyway, so they start dirty.
constexpr std::size_t kDirtyDecodeBytes = std::size_t{256} << 10;
// A binary this large is not copied on a normal scheduler at all.
constexpr std::size_t kDirtyCopyBytes = std::size_t{1} << 20;
// zlib deflates at tens of MB/s: above this the compression goes dirty.
constexpr std::size_t kDirtyCompressBytes = std::size_t{16} << 10;
// Payloads smaller than this rarely repeat a map key, and looking keys up in
// the KeyCache costs them a few percent: their keys are not cached.
constexpr std::size_t kKeyCacheMinBytes = 512;
// Inputs up to this size that hold only plain data (core/etf/plain_term.hpp)
// are built by the VM's own binary_to_term: below kKeyCacheMinBytes the
// builder has nothing to share between terms, and one call into the VM costs
// less than a call per term.
constexpr std::size_t kPlainDecodeBytes = kKeyCacheMinBytes - 1;
// Work units (core DecodeLimits::max_work: duplicate-key probes and sorts, a
// fun's free variables) a decode may spend on a normal scheduler, about
// 0.3 ms; past them it moves to a dirty CPU scheduler.
constexpr std::size_t kNormalDecodeWork = std::size_t{100} << 10;
// Binaries up to this size live on the process heap (ERL_ONHEAP_BIN_LIMIT);
// larger ones are shared with the input by the builder.
constexpr std::size_t kHeapBinaryBytes = 64;
// Thread-local buffers that grew past this are given back after the call.
constexpr std::size_t kKeepBufferBytes = std::size_t{1} << 20;

bool on_normal_scheduler() { return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER; }

class WorkBudget {
 public:
  explicit WorkBudget(bool limited) : limited_(limited) {}

  // Counts `units` of work; true once the budget is spent (never when unlimited).
  bool charge(std::size_t units = 1) {
    units_ += units;
    return units_ >= next_check_ && check();
  }
  bool limited() const noexcept { return limited_; }

  // Tells the VM how much of its slice a long call used (1% per 10 us).
  void report(ErlNifEnv* env) const {
    if (!started_) return;
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_).count();
    enif_consume_timeslice(env, micros >= 900 ? 100 : static_cast<int>(micros / 10) + 10);
  }

 private:
  bool check() {
    next_check_ = units_ + kUnitsPerClockCheck;
    if (!limited_) return false;
    if (!started_) {
      started_ = true;
      start_ = Clock::now();
      return false;
    }
    return Clock::now() - start_ > kNormalBudget;
  }

  bool limited_;
  bool started_ = false;
  std::size_t units_ = 0;
  std::size_t next_check_ = kUnitsBeforeClock;
  Clock::time_point start_;
};

template <class T>
void trim(std::vector<T>& buffer) {
  if (buffer.capacity() * sizeof(T) > kKeepBufferBytes) std::vector<T>().swap(buffer);
}

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
              ERL_NIF_TERM seal, WorkBudget& budget, std::vector<Splice>* splices = nullptr)
      : env_(env),
        seal_(seal),
        out_(out),
        frames_(buffers.frames),
        pending_(buffers.pending),
        buffers_(buffers),
        string_keys_(string_keys),
        budget_(budget),
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
      if (budget_.charge()) return EncodeStatus::out_of_time;
      // Past a megabyte of output, growing and finally copying the buffer
      // would take milliseconds of a slice: the rest is written dirty.
      if (budget_.limited() && out_.size() > kDirtyCopyBytes) return EncodeStatus::needs_dirty;
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
    if (budget_.limited()) return EncodeStatus::needs_dirty;
    append_external(term);
    return EncodeStatus::done;
  }

  EncodeStatus encode_binary(const ErlNifBinary& binary) {
    if (budget_.limited() && binary.size > kDirtyCopyBytes) return EncodeStatus::needs_dirty;
    out_.binary(std::span<const std::uint8_t>(binary.data, binary.size));
    budget_.charge(binary.size / 256);  // written: the next node finds the slice spent
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
      if ((length & 255) == 0 && budget_.charge(256)) return EncodeStatus::needs_dirty;
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
      if ((pending_.size() & 511) == 0 && budget_.charge(256)) {
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
    if (budget_.limited() && binary.size > kDirtyCopyBytes) return EncodeStatus::needs_dirty;
    out_.raw({binary.data, binary.size});
    budget_.charge(binary.size / 256);  // written: the next node finds the slice spent
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
  WorkBudget& budget_;
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

bool bool_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  bool value;
  if (!Decoder<bool>::decode(env, term, value)) throw bad_argument(env, "a boolean", term);
  return value;
}

std::uint64_t size_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  ErlNifUInt64 value;
  if (!enif_get_uint64(env, term, &value)) {
    throw bad_argument(env, "a non-negative integer", term);
  }
  return value;
}

// erlpack_compress(Plain, Level), dirty: compresses a finished encoding.
ERL_NIF_TERM erlpack_compress(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  ErlNifBinary plain;
  int level;
  if (!enif_inspect_binary(env, argv[0], &plain) || !enif_get_int(env, argv[1], &level)) {
    throw std::invalid_argument("corrupt erlpack_compress continuation");
  }
  EncodeBuffers& buffers = EncodeBuffers::get();
  etf::EtfEncoder& encoder = buffers.encoder;
  encoder.clear();
  encoder.buffer().append(plain.data, plain.size);
  encoder.compress(level);
  const ERL_NIF_TERM result = take_binary(env, encoder);
  buffers.trim_after_call();
  return result;
}

ERL_NIF_TERM erlpack_encode_resume(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]);

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
// continuation on a dirty scheduler, from where it stopped. `output` is the resource holding `out`
// when the walk already continued from an earlier call.
ERL_NIF_TERM after_walk(ErlNifEnv* env, EncodeStatus status, TermEncoder& walker,
                        etf::EtfEncoder& out, std::optional<ERL_NIF_TERM> output, int level,
                        ERL_NIF_TERM level_term, ERL_NIF_TERM string_keys_term, ERL_NIF_TERM seal,
                        WorkBudget& budget, EncodeBuffers& buffers) {
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
      const ERL_NIF_TERM next[] = {level_term, string_keys_term, *output, walker.position(), seal};
      budget.report(env);
      buffers.trim_after_call();
      // Dirty in both cases: yielding in 400 us slices on this scheduler was
      // measured too (the scheduler probe's p99 doubled, 1.1 -> 2.4 ms, while
      // 13 MB encodes ran), and the walk needs no restart either way.
      return run_dirty_cpu(env, "erlpack_encode_resume", raw_entry<erlpack_encode_resume>, 5, next);
    }
    case EncodeStatus::string_keys_collision:
      return enif_make_tuple3(env, atoms::error, atom_string_keys_collision, walker.offending());
    case EncodeStatus::bad_fragment:
      return enif_make_tuple3(env, atoms::error, atom_bad_fragment, walker.offending());
  }
  if (level > 0 && budget.limited() && out.size() > kDirtyCompressBytes) {
    const ERL_NIF_TERM plain = take_binary(env, out);
    buffers.trim_after_call();
    const ERL_NIF_TERM next[] = {plain, level_term};
    budget.report(env);
    return run_dirty_cpu(env, "erlpack_compress", raw_entry<erlpack_compress>, 2, next);
  }
  if (level > 0) out.compress(level);
  const ERL_NIF_TERM result = take_binary(env, out);
  buffers.trim_after_call();
  budget.report(env);
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
ERL_NIF_TERM start_encode(ErlNifEnv* env, ERL_NIF_TERM term, bool with_version, int level,
                          ERL_NIF_TERM level_term, ERL_NIF_TERM string_keys_term, ERL_NIF_TERM seal,
                          bool iodata) {
  const bool string_keys = bool_argument(env, string_keys_term);
  WorkBudget budget(on_normal_scheduler());
  EncodeBuffers& buffers = EncodeBuffers::get();
  etf::EtfEncoder& encoder = buffers.encoder;
  encoder.clear();
  if (with_version) encoder.version();
  std::vector<Splice>& splices = buffers.splices;
  splices.clear();
  TermEncoder walker(env, buffers, encoder, string_keys, seal, budget, iodata ? &splices : nullptr);
  const EncodeStatus status = walker.encode(term);
  if (status == EncodeStatus::done && !splices.empty()) {
    const ERL_NIF_TERM result = make_iodata(env, encoder, splices);
    buffers.trim_after_call();
    budget.report(env);
    return result;
  }
  if (status == EncodeStatus::out_of_time || status == EncodeStatus::needs_dirty) {
    copy_splices(env, encoder, splices);
  }
  return after_walk(env, status, walker, encoder, std::nullopt, level, level_term, string_keys_term,
                    seal, budget, buffers);
}

// erlpack_encode_iodata(Term, StringKeys, Seal) -> iodata: encode/2's bytes,
// with large fragments shared (see start_encode).
ERL_NIF_TERM erlpack_encode_iodata(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  return start_encode(env, argv[0], true, 0, enif_make_int(env, 0), argv[1], argv[2], true);
}
SWITCHBOARD_RAW_NIF(erlpack_encode_iodata, 3, 0);

// erlpack_encode_resume(Level, StringKeys, Output, Position, Seal): the rest of a
// walk (see TermEncoder::position), appended to the Output resource.
ERL_NIF_TERM erlpack_encode_resume(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  int level;
  bool string_keys;
  EncodeOutput* output = borrow_resource<EncodeOutput>(env, argv[2]);
  if (!enif_get_int(env, argv[0], &level) || !Decoder<bool>::decode(env, argv[1], string_keys) ||
      output == nullptr) {
    throw std::invalid_argument("corrupt erlpack_encode continuation");
  }
  WorkBudget budget(on_normal_scheduler());
  EncodeBuffers& buffers = EncodeBuffers::get();
  TermEncoder walker(env, buffers, output->encoder, string_keys, argv[4], budget);
  const EncodeStatus status = walker.resume(argv[3]);
  return after_walk(env, status, walker, output->encoder, argv[2], level, argv[0], argv[1], argv[4],
                    budget, buffers);
}

// erlpack_encode(Term, Level, StringKeys, Seal) -> binary with the version byte.
ERL_NIF_TERM erlpack_encode(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  int level;
  if (!enif_get_int(env, argv[1], &level) || level < 0 || level > 9) {
    throw bad_argument(env, "a compression level 0..9", argv[1]);
  }
  return start_encode(env, argv[0], true, level, argv[1], argv[2], argv[3], false);
}
SWITCHBOARD_RAW_NIF(erlpack_encode, 4, 0);

// erlpack_fragment(Term, StringKeys, Seal) -> the encoding without the version byte.
ERL_NIF_TERM erlpack_fragment(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  return start_encode(env, argv[0], false, 0, enif_make_int(env, 0), argv[1], argv[2], false);
}
SWITCHBOARD_RAW_NIF(erlpack_fragment, 3, 0);

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

// A non-negative integer argument, remembered by its term. Small integers
// are immediate terms, equal exactly when their values are, so a term seen
// before need not be read again; a term is remembered only once it is known
// to be one (the VM makes the same term from its value), never a bignum,
// which lives on a heap that may later hold another.
class SizeArgument {
 public:
  std::uint64_t read(ErlNifEnv* env, ERL_NIF_TERM term) {
    if (term == term_ && term_ != 0) return value_;
    const std::uint64_t value = size_argument(env, term);
    if (enif_make_uint64(env, value) == term) {
      term_ = term;
      value_ = value;
    }
    return value;
  }

 private:
  ERL_NIF_TERM term_ = 0;
  std::uint64_t value_ = 0;
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
  // The size arguments of the last call (the defaults, nearly always).
  std::array<SizeArgument, 4> sizes;

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
              WorkBudget& budget)
      : env_(env),
        seal_(seal),
        buffers_(buffers),
        mode_(mode),
        input_(input),
        bytes_(bytes),
        cache_keys_(cache_keys),
        budget_(budget),
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
      if (budget_.charge(text.size() / 256)) return out_of_time();
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
    if (budget_.charge(bytes.size() / 256)) return out_of_time();
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
    return !budget_.charge() || out_of_time();
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
    return !budget_.charge() || out_of_time();
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
  WorkBudget& budget_;
  std::vector<ERL_NIF_TERM>& items_;
  std::vector<DecodeFrame>& frames_;
  ERL_NIF_TERM nil_;
  ERL_NIF_TERM result_ = 0;
  Stop stop_ = Stop::none;
  Refusal refusal_{"invalid_term", 0};
};

AtomMode mode_argument(ErlNifEnv* env, ERL_NIF_TERM term) {
  if (term == atom_existing) return AtomMode::existing;
  if (term == atom_binary) return AtomMode::binary;
  if (term == atom_create) return AtomMode::create;
  throw bad_argument(env, "one of :existing, :binary, :create", term);
}

// The size a compressed input declares it inflates to (0 when not compressed).
std::size_t declared_inflated_size(std::span<const std::uint8_t> input) {
  if (input.size() < 6 || input[1] != etf::tag_byte(etf::Tag::compressed)) return 0;
  return (std::size_t{input[2]} << 24) | (std::size_t{input[3]} << 16) |
         (std::size_t{input[4]} << 8) | std::size_t{input[5]};
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

// erlpack_decode(Binary, Atoms, MaxDepth, MaxSize, MaxDecompressed, AllowTrailing, Plain,
//                NewAtomAllowance, FragmentSeal)
//   -> {ok, Term} | {ok, Term, Rest} | {error, {Reason, Offset}}
ERL_NIF_TERM erlpack_decode(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  ErlNifBinary binary;
  if (!enif_inspect_binary(env, argv[0], &binary)) throw bad_argument(env, "a binary", argv[0]);
  const AtomMode mode = mode_argument(env, argv[1]);
  etf::DecodeLimits limits;
  DecodeBuffers& buffers = DecodeBuffers::get();
  limits.max_depth = buffers.sizes[0].read(env, argv[2]);
  limits.max_input_bytes = buffers.sizes[1].read(env, argv[3]);
  limits.max_decompressed_bytes = buffers.sizes[2].read(env, argv[4]);
  limits.allow_trailing_data = bool_argument(env, argv[5]);
  limits.plain_only = bool_argument(env, argv[6]);
  const std::span<const std::uint8_t> input(binary.data, binary.size);
  if (mode != AtomMode::create) {
    if (const auto plain = decode_plain(env, argv[0], input, mode, limits)) return *plain;
  }

  const std::size_t term_bytes = std::max(input.size(), declared_inflated_size(input));
  const bool normal = buffers.on_normal_scheduler();
  // atoms: :create reads the input twice (the allowance check, then the decode).
  const std::size_t dirty_bytes =
      mode == AtomMode::create ? kDirtyDecodeBytes / 2 : kDirtyDecodeBytes;
  if (normal && term_bytes > dirty_bytes) {
    return run_dirty_cpu(env, "erlpack_decode", raw_entry<erlpack_decode>, argc, argv);
  }
  if (mode == AtomMode::create) {
    // No atom is made before the allowance is known to hold for the whole
    // input, up to the first structural error.
    AtomAllowance allowance(env, buffers, buffers.sizes[3].read(env, argv[7]));
    const auto excess = etf::locate_unknown_atom(input, AtomMode::existing, allowance, limits);
    if (excess && excess->reason == std::string_view("unknown_atom")) {
      return decode_error(env, {"too_many_atoms", excess->offset});
    }
  }
  if (normal) limits.max_work = kNormalDecodeWork;
  WorkBudget budget(normal);
  const bool compressed = declared_inflated_size(input) != 0;
  TermBuilder builder(env, buffers, mode, compressed ? 0 : argv[0], input,
                      term_bytes >= kKeyCacheMinBytes, argv[8], budget);
  // TermBuilder::end_map has the VM refuse equal keys, so the decoder need
  // not hash every key to find them first.
  etf::DecodeLimits unchecked = limits;
  unchecked.check_duplicate_keys = false;
  const etf::DecodeStatus status = buffers.decoder_for(unchecked).decode(input, builder);
  buffers.trim_after_call(term_bytes);
  if (builder.stop() == Stop::out_of_time || status.error == etf::DecodeErrc::work_exceeded) {
    budget.report(env);
    return run_dirty_cpu(env, "erlpack_decode", raw_entry<erlpack_decode>, argc, argv);
  }
  budget.report(env);
  if (!status) {
    const Refusal refusal = refusal_for(status, builder, input, mode, env, buffers, limits);
    if (refusal.reason == std::string_view("work_exceeded")) {
      return run_dirty_cpu(env, "erlpack_decode", raw_entry<erlpack_decode>, argc, argv);
    }
    return decode_error(env, refusal);
  }
  if (!limits.allow_trailing_data) return enif_make_tuple2(env, atoms::ok, builder.result());
  const ERL_NIF_TERM rest =
      enif_make_sub_binary(env, argv[0], status.bytes_used, input.size() - status.bytes_used);
  return enif_make_tuple3(env, atoms::ok, builder.result(), rest);
}
SWITCHBOARD_RAW_NIF(erlpack_decode, 9, 0);

}  // namespace
}  // namespace switchboard::nif
