defmodule Switchboard.NIF do
  @moduledoc false
  # The one module that owns the native library. Public modules wrap these
  # functions; nothing else calls :erlang.load_nif.

  # NIFs are declared with `defnif` (see Switchboard.NIF.Library): the
  # library knows each as `nif_<name>`; `<name>` here raises the boundary's
  # ArgumentErrors in Elixir format. Every library also has library_info/0,
  # library_functions/0 and set_work_budget/1.
  use Switchboard.NIF.Library,
    library: "switchboard_nif",
    sources: ["c_src/nif/*.cpp"]

  # Switchboard.SortedSet
  defnif sorted_set_new(capacity)
  defnif sorted_set_from_list(items, strictly_ascending)
  defnif sorted_set_add(set, item)
  defnif sorted_set_remove(set, item)
  defnif sorted_set_remove_at(set, index)
  defnif sorted_set_find_index(set, item)
  defnif sorted_set_lower_bound(set, item)
  defnif sorted_set_at(set, index)
  defnif sorted_set_slice(set, start, amount)
  defnif sorted_set_range(set, min, max)
  defnif sorted_set_size(set)
  defnif sorted_set_to_list(set)
  defnif sorted_set_clear(set)
  defnif sorted_set_copy(set)
  defnif sorted_set_memory(set)

  # Fan-out (see Switchboard.Fanout)
  defnif fanout_send(pids, message)
  defnif fanout_offload(pids, message, packed, sender, notify)
  defnif fanout_ticket_done(ticket)
  defnif fanout_reject(kind, term)
  defnif fanout_info()
  defnif fanout_group_new(pids)
  defnif fanout_group_add(group, pid)
  defnif fanout_group_remove(group, pid)
  defnif fanout_group_member(group, pid)
  defnif fanout_group_size(group)
  defnif fanout_group_to_list(group)
  defnif fanout_group_send(group, message)
  defnif fanout_group_offload(group, message, notify)
  defnif fanout_partition(pids, count)
  defnif fanout_share_send(share, message)

  # Switchboard.Erlpack
  defnif erlpack_encode(term, level, string_keys, seal)
  defnif erlpack_encode_iodata(term, string_keys, seal)
  defnif erlpack_fragment(term, string_keys, seal)

  defnif erlpack_decode(
           binary,
           atoms,
           max_depth,
           max_size,
           max_decompressed,
           trailing,
           plain,
           new_atom_allowance,
           fragment_seal
         )
end
