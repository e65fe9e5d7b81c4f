#include "nif/term_size.hpp"

#include <vector>

namespace switchboard::nif {

bool term_larger_than(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t budget) {
  // Every term costs one word; binaries add their bytes.
  std::size_t words = budget / sizeof(ERL_NIF_TERM);
  std::vector<ERL_NIF_TERM> pending{term};
  auto spend = [&](std::size_t amount) {
    if (amount >= words) return false;
    words -= amount;
    return true;
  };
  while (!pending.empty()) {
    ERL_NIF_TERM current = pending.back();
    pending.pop_back();
    if (!spend(1)) return true;
    int arity;
    const ERL_NIF_TERM* elements;
    ERL_NIF_TERM head, tail;
    ErlNifBinary binary;
    std::size_t map_size;
    if (enif_is_atom(env, current) || enif_is_number(env, current) || enif_is_pid(env, current) ||
        enif_is_ref(env, current) || enif_is_port(env, current) ||
        enif_is_empty_list(env, current)) {
      continue;
    } else if (enif_get_tuple(env, current, &arity, &elements)) {
      if (!spend(static_cast<std::size_t>(arity))) return true;
      pending.insert(pending.end(), elements, elements + arity);
    } else if (enif_get_list_cell(env, current, &head, &tail)) {
      pending.push_back(tail);
      pending.push_back(head);
    } else if (enif_inspect_binary(env, current, &binary)) {
      if (!spend(binary.size / sizeof(ERL_NIF_TERM))) return true;
    } else if (enif_get_map_size(env, current, &map_size)) {
      if (!spend(2 * map_size)) return true;
      ErlNifMapIterator iterator;
      if (!enif_map_iterator_create(env, current, &iterator, ERL_NIF_MAP_ITERATOR_FIRST)) {
        return true;
      }
      ERL_NIF_TERM key, value;
      while (enif_map_iterator_get_pair(env, &iterator, &key, &value)) {
        pending.push_back(key);
        pending.push_back(value);
        enif_map_iterator_next(env, &iterator);
      }
      enif_map_iterator_destroy(env, &iterator);
    } else {
      // Funs and bitstrings that are not binaries: size unknown, assume large.
      return true;
    }
  }
  return false;
}

}  // namespace switchboard::nif
