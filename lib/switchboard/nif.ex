defmodule Switchboard.NIF do
  @moduledoc false
  # The one module that owns the native library. Public modules wrap these
  # functions; nothing else calls :erlang.load_nif.

  @on_load :load_nif

  for source <- Path.wildcard(Path.join([__DIR__, "..", "..", "c_src", "**", "*.{cpp,hpp}"])) do
    @external_resource source
  end

  def load_nif do
    path = :filename.join(:code.priv_dir(:switchboard), ~c"switchboard_nif")

    case :erlang.load_nif(path, 0) do
      :ok -> :ok
      {:error, {:reload, _}} -> :ok
      {:error, reason} -> {:error, reason}
    end
  end

  # Diagnostics: the NIF layer's own behaviour (see test/switchboard/nif_test.exs).
  def diag_add(_a, _b), do: :erlang.nif_error(:not_loaded)
  def diag_raise(_kind), do: :erlang.nif_error(:not_loaded)
  def diag_probe_new(_owner, _id), do: :erlang.nif_error(:not_loaded)
  def diag_probe_id(_probe), do: :erlang.nif_error(:not_loaded)
  def diag_library_info, do: :erlang.nif_error(:not_loaded)
  def diag_reply_thread_completed, do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_yielding(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_dirty(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_blocking(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_threaded(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_enif_walk(_term), do: :erlang.nif_error(:not_loaded)

  # Switchboard.SortedSet
  def sorted_set_new(_capacity), do: :erlang.nif_error(:not_loaded)
  def sorted_set_from_list(_items, _strictly_ascending), do: :erlang.nif_error(:not_loaded)
  def sorted_set_add(_set, _item), do: :erlang.nif_error(:not_loaded)
  def sorted_set_remove(_set, _item), do: :erlang.nif_error(:not_loaded)
  def sorted_set_remove_at(_set, _index), do: :erlang.nif_error(:not_loaded)
  def sorted_set_find_index(_set, _item), do: :erlang.nif_error(:not_loaded)
  def sorted_set_lower_bound(_set, _item), do: :erlang.nif_error(:not_loaded)
  def sorted_set_at(_set, _index), do: :erlang.nif_error(:not_loaded)
  def sorted_set_slice(_set, _start, _amount), do: :erlang.nif_error(:not_loaded)
  def sorted_set_range(_set, _min, _max), do: :erlang.nif_error(:not_loaded)
  def sorted_set_size(_set), do: :erlang.nif_error(:not_loaded)
  def sorted_set_to_list(_set), do: :erlang.nif_error(:not_loaded)
  def sorted_set_clear(_set), do: :erlang.nif_error(:not_loaded)
  def sorted_set_copy(_set), do: :erlang.nif_error(:not_loaded)
  def sorted_set_memory(_set), do: :erlang.nif_error(:not_loaded)

  # Fan-out (see Switchboard.Fanout)
  def fanout_send(_pids, _message), do: :erlang.nif_error(:not_loaded)

  def fanout_offload(_pids, _message, _packed, _sender, _notify),
    do: :erlang.nif_error(:not_loaded)

  def fanout_ticket_done(_ticket), do: :erlang.nif_error(:not_loaded)
  def fanout_reject(_kind, _term), do: :erlang.nif_error(:not_loaded)
  def fanout_info, do: :erlang.nif_error(:not_loaded)
  def fanout_group_new(_pids), do: :erlang.nif_error(:not_loaded)
  def fanout_group_add(_group, _pid), do: :erlang.nif_error(:not_loaded)
  def fanout_group_remove(_group, _pid), do: :erlang.nif_error(:not_loaded)
  def fanout_group_member(_group, _pid), do: :erlang.nif_error(:not_loaded)
  def fanout_group_size(_group), do: :erlang.nif_error(:not_loaded)
  def fanout_group_to_list(_group), do: :erlang.nif_error(:not_loaded)
  def fanout_group_send(_group, _message), do: :erlang.nif_error(:not_loaded)
  def fanout_group_offload(_group, _message, _notify), do: :erlang.nif_error(:not_loaded)
  def fanout_partition(_pids, _count), do: :erlang.nif_error(:not_loaded)
  def fanout_share_send(_share, _message), do: :erlang.nif_error(:not_loaded)

  # Switchboard.Erlpack
  def erlpack_encode(_term, _level, _string_keys), do: :erlang.nif_error(:not_loaded)
  def erlpack_encode_iodata(_term, _string_keys), do: :erlang.nif_error(:not_loaded)
  def erlpack_fragment(_term, _string_keys), do: :erlang.nif_error(:not_loaded)

  def erlpack_decode(_binary, _atoms, _max_depth, _max_size, _max_decompressed, _trailing),
    do: :erlang.nif_error(:not_loaded)

  # Switchboard.Gateway zstd (Switchboard.Zstd)
  def zstd_compress_new(_level, _window_log, _chain_log, _hash_log),
    do: :erlang.nif_error(:not_loaded)

  def zstd_compress(_stream, _binary), do: :erlang.nif_error(:not_loaded)
  def zstd_compress_info(_stream), do: :erlang.nif_error(:not_loaded)
  def zstd_decompress_new(_window_log_max), do: :erlang.nif_error(:not_loaded)
  def zstd_decompress(_stream, _binary, _max_output), do: :erlang.nif_error(:not_loaded)
  def zstd_native_memory, do: :erlang.nif_error(:not_loaded)

  # Switchboard.Json
  def json_encode(_term, _escape, _strict, _seal, _iodata), do: :erlang.nif_error(:not_loaded)
  def json_decode(_binary, _atom_keys, _max_depth, _max_size), do: :erlang.nif_error(:not_loaded)
  def json_validate(_binary), do: :erlang.nif_error(:not_loaded)
end
