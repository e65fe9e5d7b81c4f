defmodule Switchboard.Gateway.Codec.Json.Jiffy do
  @moduledoc """
  DEVELOPMENT AND TEST FALLBACK: a JSON backend over Debian's `erlang-jiffy`
  (`/usr/lib/erlang/lib/jiffy-*`), used until `Switchboard.Json` lands. Not
  meant to stay the product's default.

  Decoding returns maps with string keys and `nil` for `null`; input that
  is not valid JSON or not valid UTF-8 is `{:error, reason}`.
  """

  @behaviour Switchboard.Gateway.Codec.Json.Backend

  @impl true
  def encode(term), do: :jiffy.encode(term, [:use_nil])

  @impl true
  def decode(binary) do
    {:ok, :jiffy.decode(binary, [:return_maps, :use_nil, :dedupe_keys])}
  catch
    :error, {:error, reason} -> {:error, reason}
    :error, reason -> {:error, reason}
    :throw, {:error, reason} -> {:error, reason}
  end
end
