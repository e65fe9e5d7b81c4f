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
  defnif sorted_set_slice_after(set, item, amount)
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
  defnif fanout_info()
  defnif fanout_split(pids, most)
  defnif fanout_set_split_share(receivers)
  defnif fanout_group_new(pids)
  defnif fanout_group_add(group, pid)
  defnif fanout_group_remove(group, pid)
  defnif fanout_group_member(group, pid)
  defnif fanout_group_size(group)
  defnif fanout_group_to_list(group)
  defnif fanout_group_send(group, message)
  defnif fanout_group_offload(group, message, notify)
  defnif fanout_group_split(group, most)
  defnif fanout_group_shares(group, count)
  defnif fanout_partition(pids, count)
  defnif fanout_share_send(share, message)
  defnif fanout_split_list(pids, count)

  # Switchboard.MemberList
  defnif member_list_new(hidden)

  defnif member_list_put(list, id, name, status, class, group_key, group_id)
  defnif member_list_delete(list, id)
  defnif member_list_subscribe(list, session, ranges)
  defnif member_list_unsubscribe(list, session)
  defnif member_list_items(list)
  defnif member_list_size(list)
  defnif member_list_counts(list)
  defnif member_list_member_index(list, id)
  defnif member_list_memory(list)

  # Switchboard.Erlpack
  defnif erlpack_encode(term, level, string_keys, seal)
  defnif erlpack_encode_iodata(term, string_keys, seal)
  defnif erlpack_fragment(term, string_keys, seal)
  defnif erlpack_may_hold_seal(encoded, seal_words)

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

  defnif erlpack_decode_default(binary, fragment_seal)
  defnif erlpack_decode_small(binary)

  # Switchboard.Gateway zstd (Switchboard.Zstd)
  defnif zstd_compress_new(level, window_log, chain_log, hash_log)

  defnif zstd_compress(stream, binary)
  defnif zstd_compress_info(stream)
  defnif zstd_decompress_new(window_log_max)
  defnif zstd_decompress(stream, binary, max_output)
  defnif zstd_native_memory()

  # Switchboard.Json
  defnif json_encode(term, escape_and_strict, seal, iodata)
  defnif json_decode(binary, atom_keys_max_depth_max_size)
  defnif json_validate(binary)
  defnif json_dirty_runs()
  defnif json_reads_in_place()

  # Switchboard.Semaphore
  defnif semaphore_acquire(name, max)
  defnif semaphore_release(name)
  defnif semaphore_count(name)
  defnif semaphore_reset(name, value)
  defnif semaphore_info(name)

  # Switchboard.Metrics
  defnif metrics_increment(name, value, tags)
  defnif metrics_gauge(name, value, tags)
  defnif metrics_histogram(name, value, tags)
  defnif metrics_snapshot(bounds, values)
end
