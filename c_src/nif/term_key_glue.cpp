#include "nif/term_key_glue.hpp"

#include <array>
#include <cstring>
#include <span>
#include <vector>

#include "core/sorted_set/term_key_reader.hpp"
#include "nif/nif.hpp"

namespace switchboard::nif {
namespace {

// ETF tags used to hand rare values to enif_binary_to_term.
constexpr unsigned char kVersion = 131;
constexpr unsigned char kSmallBig = 110;
constexpr unsigned char kLargeBig = 111;
constexpr unsigned char kAtomUtf8 = 118;
constexpr unsigned char kBitBinary = 77;

// Feeds rare values (bignums, non-Latin-1 atoms, bitstrings) through
// enif_term_to_binary and the builder's external-term parser.
void add_external(ErlNifEnv* env, ERL_NIF_TERM term, core::TermKeyBuilder& builder, bool opaque) {
  ErlNifBinary bytes;
  if (!enif_term_to_binary(env, term, &bytes)) throw std::bad_alloc();
  struct Release {
    ErlNifBinary* binary;
    ~Release() { enif_release_binary(binary); }
  } release{&bytes};
  const std::span<const std::uint8_t> span(bytes.data, bytes.size);
  if (opaque) {
    builder.opaque(span);
  } else {
    builder.external_term(span);
  }
}

// What is left to do while walking a term without recursion.
struct Pending {
  enum Kind : std::uint8_t { term, end_tuple, end_list, improper_tail, end_map } kind;
  ERL_NIF_TERM value;
  std::size_t depth;
};

void add_atom(ErlNifEnv* env, ERL_NIF_TERM term, core::TermKeyBuilder& builder) {
  // Latin-1 text is the common case; it is re-encoded as UTF-8, the order
  // OTP compares atoms in.
  std::array<char, 256> latin1;
  const int length = enif_get_atom(env, term, latin1.data(), latin1.size(), ERL_NIF_LATIN1);
  if (length <= 0) {
    add_external(env, term, builder, false);
    return;
  }
  std::array<char, 512> utf8;
  std::size_t size = 0;
  for (int i = 0; i < length - 1; ++i) {
    const auto byte = static_cast<unsigned char>(latin1[static_cast<std::size_t>(i)]);
    if (byte < 0x80) {
      utf8[size++] = static_cast<char>(byte);
    } else {
      utf8[size++] = static_cast<char>(0xC0 | (byte >> 6));
      utf8[size++] = static_cast<char>(0x80 | (byte & 0x3F));
    }
  }
  builder.atom(std::string_view(utf8.data(), size));
}

// Adds a term that needs no walking (small integer, float, Latin-1 atom,
// binary); returns false for anything else.
bool add_scalar(ErlNifEnv* env, ERL_NIF_TERM term, core::TermKeyBuilder& builder) {
  switch (enif_term_type(env, term)) {
    case ERL_NIF_TERM_TYPE_INTEGER: {
      ErlNifSInt64 value;
      if (!enif_get_int64(env, term, &value)) return false;
      builder.small_int(value);
      return true;
    }
    case ERL_NIF_TERM_TYPE_FLOAT: {
      double value;
      enif_get_double(env, term, &value);
      builder.float64(value);
      return true;
    }
    case ERL_NIF_TERM_TYPE_ATOM:
      add_atom(env, term, builder);
      return true;
    case ERL_NIF_TERM_TYPE_BITSTRING: {
      ErlNifBinary binary;
      if (!enif_inspect_binary(env, term, &binary)) return false;
      builder.binary({binary.data, binary.size});
      return true;
    }
    default:
      return false;
  }
}

// The member-list shape, a flat tuple of scalars, without the general walk.
// Returns false, with the builder reset, for any other tuple.
bool add_flat_tuple(ErlNifEnv* env, int arity, const ERL_NIF_TERM* items,
                    core::TermKeyBuilder& builder) {
  if (arity > 8) return false;
  builder.begin_tuple(static_cast<std::size_t>(arity));
  for (int i = 0; i < arity; ++i) {
    if (!add_scalar(env, items[i], builder)) {
      builder.reset();
      return false;
    }
  }
  builder.end_tuple();
  return true;
}

}  // namespace

core::TermKeyBuilder& thread_term_key_builder() {
  thread_local core::TermKeyBuilder builder;
  return builder;
}

core::TermKey make_term_key(ErlNifEnv* env, ERL_NIF_TERM root, core::TermKeyBuilder& builder,
                            bool* holds_references) {
  if (holds_references != nullptr) *holds_references = false;
  builder.reset();
  int arity;
  const ERL_NIF_TERM* items;
  const bool tuple = enif_get_tuple(env, root, &arity, &items) != 0;
  if (tuple ? add_flat_tuple(env, arity, items, builder) : add_scalar(env, root, builder)) {
    return builder.finish();
  }
  builder.reset();
  thread_local std::vector<Pending> stack;
  thread_local std::vector<ERL_NIF_TERM> elements;
  stack.clear();
  stack.push_back({Pending::term, root, 0});
  while (!stack.empty()) {
    const Pending pending = stack.back();
    stack.pop_back();
    switch (pending.kind) {
      case Pending::end_tuple:
        builder.end_tuple();
        continue;
      case Pending::end_list:
        builder.end_list();
        continue;
      case Pending::improper_tail:
        builder.improper_tail();
        continue;
      case Pending::end_map:
        builder.end_map();
        continue;
      case Pending::term:
        break;
    }
    const ERL_NIF_TERM term = pending.value;
    if (pending.depth > kMaxTermDepth) {
      throw std::invalid_argument("term nested deeper than " + std::to_string(kMaxTermDepth) +
                                  " levels: " + format_term(env, root));
    }
    switch (enif_term_type(env, term)) {
      case ERL_NIF_TERM_TYPE_INTEGER: {
        ErlNifSInt64 value;
        if (enif_get_int64(env, term, &value)) {
          builder.small_int(value);
        } else {
          add_external(env, term, builder, false);
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_FLOAT: {
        double value;
        enif_get_double(env, term, &value);
        builder.float64(value);
        break;
      }
      case ERL_NIF_TERM_TYPE_ATOM:
        add_atom(env, term, builder);
        break;
      case ERL_NIF_TERM_TYPE_BITSTRING: {
        ErlNifBinary binary;
        if (enif_inspect_binary(env, term, &binary)) {
          builder.binary({binary.data, binary.size});
        } else {
          add_external(env, term, builder, false);
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_TUPLE: {
        int arity;
        const ERL_NIF_TERM* items;
        enif_get_tuple(env, term, &arity, &items);
        builder.begin_tuple(static_cast<std::size_t>(arity));
        stack.push_back({Pending::end_tuple, 0, 0});
        for (int i = arity - 1; i >= 0; --i) {
          stack.push_back({Pending::term, items[i], pending.depth + 1});
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_LIST: {
        if (enif_is_empty_list(env, term)) {
          builder.nil();
          break;
        }
        elements.clear();
        ERL_NIF_TERM rest = term, head;
        while (enif_get_list_cell(env, rest, &head, &rest)) elements.push_back(head);
        builder.begin_list();
        stack.push_back({Pending::end_list, 0, 0});
        if (!enif_is_empty_list(env, rest)) {
          stack.push_back({Pending::term, rest, pending.depth + 1});
          stack.push_back({Pending::improper_tail, 0, 0});
        }
        for (auto it = elements.rbegin(); it != elements.rend(); ++it) {
          stack.push_back({Pending::term, *it, pending.depth + 1});
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_MAP: {
        std::size_t size;
        enif_get_map_size(env, term, &size);
        builder.begin_map(size);
        stack.push_back({Pending::end_map, 0, 0});
        ErlNifMapIterator iterator;
        enif_map_iterator_create(env, term, &iterator, ERL_NIF_MAP_ITERATOR_FIRST);
        ERL_NIF_TERM key, value;
        while (enif_map_iterator_get_pair(env, &iterator, &key, &value)) {
          // Popped key first, then its value: the builder takes pairs in order.
          stack.push_back({Pending::term, value, pending.depth + 1});
          stack.push_back({Pending::term, key, pending.depth + 1});
          enif_map_iterator_next(env, &iterator);
        }
        enif_map_iterator_destroy(env, &iterator);
        break;
      }
      case ERL_NIF_TERM_TYPE_REFERENCE:
      case ERL_NIF_TERM_TYPE_FUN:
        if (holds_references != nullptr) *holds_references = true;
        add_external(env, term, builder, true);
        break;
      case ERL_NIF_TERM_TYPE_PID:
      case ERL_NIF_TERM_TYPE_PORT:
        add_external(env, term, builder, true);
        break;
      default:
        throw bad_argument(env, "a term of a known type", term);
    }
  }
  return builder.finish();
}

namespace {

ERL_NIF_TERM binary_to_term(ErlNifEnv* env, std::span<const std::uint8_t> bytes) {
  ERL_NIF_TERM term;
  if (enif_binary_to_term(env, bytes.data(), bytes.size(), &term, 0) == 0) {
    throw std::runtime_error("corrupt term in sorted set key");
  }
  return term;
}

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<std::uint8_t>(value >> shift));
}

// Builds terms bottom-up as the reader walks a key.
class TermMaker final : public core::TermVisitor {
 public:
  // The buffers are per thread and reused, so making a term allocates
  // nothing once they have grown.
  explicit TermMaker(ErlNifEnv* env) : env_(env), items_(items_buffer()), frames_(frames_buffer()) {
    items_.clear();
    frames_.clear();
  }

  // Reads one key; a maker can read many, one after the other.
  ERL_NIF_TERM make(core::TermKeyView key) {
    core::read_term_key(key, *this);
    return result_;
  }

  void integer(std::int64_t value) override { add(enif_make_int64(env_, value)); }

  void big_integer(bool negative, std::span<const std::uint8_t> magnitude) override {
    scratch_.assign({kVersion});
    if (magnitude.size() < 256) {
      scratch_.push_back(kSmallBig);
      scratch_.push_back(static_cast<std::uint8_t>(magnitude.size()));
    } else {
      scratch_.push_back(kLargeBig);
      put_u32(scratch_, static_cast<std::uint32_t>(magnitude.size()));
    }
    scratch_.push_back(negative ? 1 : 0);
    scratch_.insert(scratch_.end(), magnitude.begin(), magnitude.end());
    add(binary_to_term(env_, scratch_));
  }

  void float64(double value) override { add(enif_make_double(env_, value)); }

  void atom(std::string_view utf8) override {
    // Latin-1-representable text goes straight to enif_make_atom_len.
    std::array<char, 256> latin1;
    std::size_t size = 0;
    bool latin1_ok = true;
    for (std::size_t i = 0; i < utf8.size() && latin1_ok; ++i) {
      const auto byte = static_cast<unsigned char>(utf8[i]);
      if (byte < 0x80) {
        latin1[size++] = static_cast<char>(byte);
      } else if ((byte == 0xC2 || byte == 0xC3) && i + 1 < utf8.size()) {
        latin1[size++] = static_cast<char>(((byte & 0x03) << 6) |
                                           (static_cast<unsigned char>(utf8[i + 1]) & 0x3F));
        ++i;
      } else {
        latin1_ok = false;
      }
      if (size == latin1.size()) latin1_ok = false;
    }
    if (latin1_ok) {
      add(enif_make_atom_len(env_, latin1.data(), size));
      return;
    }
    scratch_.assign({kVersion, kAtomUtf8, static_cast<std::uint8_t>(utf8.size() >> 8),
                     static_cast<std::uint8_t>(utf8.size() & 0xFF)});
    scratch_.insert(scratch_.end(), utf8.begin(), utf8.end());
    add(binary_to_term(env_, scratch_));
  }

  void binary(std::span<const std::uint8_t> bytes) override {
    add(make_binary(env_, {reinterpret_cast<const char*>(bytes.data()), bytes.size()}));
  }

  void bitstring(std::span<const std::uint8_t> bytes, unsigned bits) override {
    scratch_.assign({kVersion, kBitBinary});
    put_u32(scratch_, static_cast<std::uint32_t>(bytes.size()));
    scratch_.push_back(static_cast<std::uint8_t>(bits));
    scratch_.insert(scratch_.end(), bytes.begin(), bytes.end());
    add(binary_to_term(env_, scratch_));
  }

  void begin_tuple(std::size_t) override { frames_.push_back({items_.size(), false}); }
  void end_tuple() override {
    const Frame frame = pop_frame();
    const ERL_NIF_TERM tuple = enif_make_tuple_from_array(
        env_, items_.data() + frame.first, static_cast<unsigned>(items_.size() - frame.first));
    items_.resize(frame.first);
    add(tuple);
  }

  void begin_list(std::size_t) override { frames_.push_back({items_.size(), false}); }
  void improper_tail() override { frames_.back().improper = true; }
  void end_list() override {
    const Frame frame = pop_frame();
    std::size_t end = items_.size();
    ERL_NIF_TERM list = enif_make_list(env_, 0);
    if (frame.improper) list = items_[--end];
    while (end > frame.first) list = enif_make_list_cell(env_, items_[--end], list);
    items_.resize(frame.first);
    add(list);
  }
  void nil() override { add(enif_make_list(env_, 0)); }

  void begin_map(std::size_t) override { frames_.push_back({items_.size(), false}); }
  void end_map() override {
    const Frame frame = pop_frame();
    const std::size_t count = (items_.size() - frame.first) / 2;
    ERL_NIF_TERM* keys = items_.data() + frame.first;
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env_, keys, keys + count, count, &map)) {
      throw std::runtime_error("corrupt map in sorted set key");
    }
    items_.resize(frame.first);
    add(map);
  }

  void opaque(core::OpaqueKind, std::span<const std::uint8_t> external_term) override {
    add(binary_to_term(env_, external_term));
  }

 private:
  struct Frame {
    std::size_t first;
    bool improper;
  };

  Frame pop_frame() {
    const Frame frame = frames_.back();
    frames_.pop_back();
    return frame;
  }

  void add(ERL_NIF_TERM term) {
    if (frames_.empty()) {
      result_ = term;
    } else {
      items_.push_back(term);
    }
  }

  static std::vector<ERL_NIF_TERM>& items_buffer() {
    thread_local std::vector<ERL_NIF_TERM> items;
    return items;
  }
  static std::vector<Frame>& frames_buffer() {
    thread_local std::vector<Frame> frames;
    return frames;
  }

  ErlNifEnv* env_;
  ERL_NIF_TERM result_ = 0;
  std::vector<ERL_NIF_TERM>& items_;
  std::vector<Frame>& frames_;
  std::vector<std::uint8_t> scratch_;
};

}  // namespace

ERL_NIF_TERM make_term_from_key(ErlNifEnv* env, core::TermKeyView key) {
  return TermMaker(env).make(key);
}

void make_terms_from_keys(ErlNifEnv* env, std::span<const core::TermKeyView> keys,
                          ERL_NIF_TERM* out) {
  TermMaker maker(env);
  for (const core::TermKeyView key : keys) *out++ = maker.make(key);
}

}  // namespace switchboard::nif
