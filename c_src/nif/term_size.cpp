#include "nif/term_size.hpp"

#include <vector>

namespace switchboard::nif {
namespace {

// Every node costs at least this much (a word and its header, roughly), so a
// walk visits at most limit / kNodeBytes nodes before it stops.
constexpr std::size_t kNodeBytes = 16;
// The largest binary kept on a process heap (ERL_ONHEAP_BIN_LIMIT): larger
// ones are reference counted and a send shares them.
constexpr std::size_t kHeapBinaryLimit = 64;

}  // namespace

std::size_t term_bytes_up_to(ErlNifEnv* env, ERL_NIF_TERM root, std::size_t limit,
                             BinaryBytes binaries) {
  const std::size_t over = limit + 1;
  thread_local std::vector<ERL_NIF_TERM> pending;
  pending.clear();
  pending.push_back(root);
  std::size_t total = 0;
  while (!pending.empty()) {
    const ERL_NIF_TERM term = pending.back();
    pending.pop_back();
    total += kNodeBytes;
    switch (enif_term_type(env, term)) {
      case ERL_NIF_TERM_TYPE_INTEGER: {
        ErlNifSInt64 small;
        ErlNifUInt64 unsigned_value;
        if (!enif_get_int64(env, term, &small) && !enif_get_uint64(env, term, &unsigned_value)) {
          if (binaries == BinaryBytes::copied) return over;
          total += kNodeBytes;
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_BITSTRING: {
        ErlNifBinary binary;
        if (!enif_inspect_binary(env, term, &binary)) {
          if (binaries == BinaryBytes::copied) return over;
          total += kHeapBinaryLimit;  // at most a heap bitstring is copied
        } else if (binaries == BinaryBytes::copied || binary.size <= kHeapBinaryLimit) {
          total += binary.size;
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_FUN:
        if (binaries == BinaryBytes::copied) return over;
        total += kHeapBinaryLimit;
        break;
      case ERL_NIF_TERM_TYPE_TUPLE: {
        int arity;
        const ERL_NIF_TERM* items;
        enif_get_tuple(env, term, &arity, &items);
        for (int i = 0; i < arity && total <= limit; ++i) {
          total += sizeof(ERL_NIF_TERM);
          pending.push_back(items[i]);
        }
        break;
      }
      case ERL_NIF_TERM_TYPE_LIST: {
        ERL_NIF_TERM head, rest = term;
        while (total <= limit && enif_get_list_cell(env, rest, &head, &rest)) {
          total += kNodeBytes;
          pending.push_back(head);
        }
        if (total <= limit && !enif_is_empty_list(env, rest)) pending.push_back(rest);
        break;
      }
      case ERL_NIF_TERM_TYPE_MAP: {
        ErlNifMapIterator iterator;
        if (!enif_map_iterator_create(env, term, &iterator, ERL_NIF_MAP_ITERATOR_FIRST)) break;
        ERL_NIF_TERM key, value;
        while (total <= limit && enif_map_iterator_get_pair(env, &iterator, &key, &value)) {
          total += kNodeBytes;
          pending.push_back(key);
          pending.push_back(value);
          enif_map_iterator_next(env, &iterator);
        }
        enif_map_iterator_destroy(env, &iterator);
        break;
      }
      default:  // atoms, floats, pids, ports, references: a few words each
        total += kNodeBytes;
        break;
    }
    if (total > limit) return total;
  }
  return total;
}

}  // namespace switchboard::nif
