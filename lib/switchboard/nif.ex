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
  def diag_fnv1a_yielding(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_dirty(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_blocking(_binary), do: :erlang.nif_error(:not_loaded)
  def diag_fnv1a_threaded(_binary), do: :erlang.nif_error(:not_loaded)
end
