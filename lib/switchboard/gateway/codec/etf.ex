defmodule Switchboard.Gateway.Codec.Etf do
  @moduledoc """
  The gateway's ETF encoding over `Switchboard.Erlpack`.

  Out: string keys (`string_keys: true`), the event data as an
  `Erlpack.Fragment` encoded once. In: client payloads are decoded with no
  atom creation and then checked to be plain data: maps whose keys are
  strings, lists, binaries, numbers, `true`, `false` and `nil`. An atom key
  (or any other term) is refused, which the gateway answers with 4002.
  """

  @behaviour Switchboard.Gateway.Codec

  alias Switchboard.Erlpack

  @max_depth 64

  @impl true
  def encode(term), do: Erlpack.encode_iodata(term, string_keys: true)

  @impl true
  def decode(binary) do
    # plain: true refuses pids, ports, references and funs at their tag,
    # before any is built; the walk below refuses atom keys and tuples.
    with {:ok, term} <-
           Erlpack.decode(binary, plain: true, max_depth: @max_depth, max_decompressed: 4096),
         :ok <- plain(term) do
      {:ok, term}
    end
  end

  @impl true
  def frame_type, do: :binary

  defp plain(term) do
    if plain?(term), do: :ok, else: {:error, :not_plain_data}
  end

  defp plain?(term) when is_binary(term) or is_number(term), do: true
  defp plain?(term) when term in [true, false, nil], do: true
  defp plain?(list) when is_list(list), do: plain_list?(list)

  defp plain?(map) when is_map(map),
    do: Enum.all?(map, fn {key, value} -> is_binary(key) and plain?(value) end)

  defp plain?(_other), do: false

  defp plain_list?([]), do: true
  defp plain_list?([head | tail]), do: plain?(head) and plain_list?(tail)
  defp plain_list?(_improper), do: false
end
