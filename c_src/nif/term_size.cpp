#include "nif/term_size.hpp"

#include <array>
#include <vector>

namespace switchboard::nif {
namespace {

// A stack of terms still to visit: a few on the C++ stack, the rest (deep or
// wide terms only) on the heap, so the common small name allocates nothing.
class PendingTerms {
 public:
  void push(ERL_NIF_TERM term) {
    if (size_ < inline_.size()) {
      inline_[size_++] = term;
    } else {
      spill_.push_back(term);
    }
  }
  bool pop(ERL_NIF_TERM& term) {
    if (!spill_.empty()) {
      term = spill_.back();
      spill_.pop_back();
      return true;
    }
    if (size_ == 0) return false;
    term = inline_[--size_];
    return true;
  }

 private:
  std::array<ERL_NIF_TERM, 16> inline_;
  std::size_t size_ = 0;
  std::vector<ERL_NIF_TERM> spill_;
};

}  // namespace

bool term_larger_than(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t budget) {
  // Every term costs one word; binaries add their bytes.
  std::size_t words = budget / sizeof(ERL_NIF_TERM);
  auto spend = [&](std::size_t amount) {
    if (amount >= words) return false;
    words -= amount;
    return true;
  };
  PendingTerms pending;
  pending.push(term);
  ERL_NIF_TERM current;
  while (pending.pop(current)) {
    if (!spend(1)) return true;
    switch (enif_term_type(env, current)) {
      case ERL_NIF_TERM_TYPE_TUPLE: {
        int arity;
        const ERL_NIF_TERM* elements;
        enif_get_tuple(env, current, &arity, &elements);
        if (!spend(static_cast<std::size_t>(arity))) return true;
        for (int i = 0; i < arity; ++i) pending.push(elements[i]);
        break;
      }
      case ERL_NIF_TERM_TYPE_LIST: {
        ERL_NIF_TERM head, tail;
        if (enif_get_list_cell(env, current, &head, &tail)) {
          pending.push(tail);
          pending.push(head);
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_BITSTRING: {
        ErlNifBinary binary;
        // A bitstring that is not a whole number of bytes: size unknown here.
        if (!enif_inspect_binary(env, current, &binary)) return true;
        if (!spend(binary.size / sizeof(ERL_NIF_TERM))) return true;
        break;
      }
      case ERL_NIF_TERM_TYPE_MAP: {
        std::size_t map_size;
        enif_get_map_size(env, current, &map_size);
        if (!spend(2 * map_size)) return true;
        ErlNifMapIterator iterator;
        if (!enif_map_iterator_create(env, current, &iterator, ERL_NIF_MAP_ITERATOR_FIRST)) {
          return true;
        }
        ERL_NIF_TERM key, value;
        while (enif_map_iterator_get_pair(env, &iterator, &key, &value)) {
          pending.push(key);
          pending.push(value);
          enif_map_iterator_next(env, &iterator);
        }
        enif_map_iterator_destroy(env, &iterator);
        break;
      }
      case ERL_NIF_TERM_TYPE_FUN:
        // A fun's environment is not visible: assume it is large.
        return true;
      default:
        // Atoms, numbers (a bignum is a few words), pids, ports, references.
        break;
    }
  }
  return false;
}

}  // namespace switchboard::nif
