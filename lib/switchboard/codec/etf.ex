defmodule Switchboard.Codec.ETF do
  @moduledoc """
  The ETF (erlpack) `Switchboard.Codec`: the frame of an event is exactly
  `Switchboard.Erlpack.encode(%{"op" => 0, "t" => type, "s" => seq, "d" => data})`,
  built from bytes encoded once.

  The envelope is a map of four binary keys, which ETF writes in key order
  (`"d"`, `"op"`, `"s"`, `"t"`), so the sequence number sits between a
  prefix (version, map header, the payload, the op) and a suffix (the
  type). `prepare/2` encodes the envelope once with `s` set to 0, checks
  where that 0 is, and keeps both sides; `frame/2` puts the session's
  number between them.

      iex> alias Switchboard.Codec.ETF
      iex> prepared = ETF.prepare("MESSAGE_CREATE", %{"content" => "hi"})
      iex> IO.iodata_to_binary(ETF.frame(prepared, 300)) ==
      ...>   :erlang.term_to_binary(%{"op" => 0, "t" => "MESSAGE_CREATE", "s" => 300, "d" => %{"content" => "hi"}})
      true
  """

  @behaviour Switchboard.Codec

  # The envelope's bytes before the payload, between it and the sequence
  # number, and the "t" key (binaries as BINARY_EXT, 0 as SMALL_INTEGER_EXT).
  @head <<131, 116, 4::32, 109, 1::32, "d">>
  @middle <<109, 2::32, "op", 97, 0, 109, 1::32, "s">>
  @t_key <<109, 1::32, "t">>

  @impl true
  def prepare(type, data), do: prepare(type, data, Switchboard.Erlpack)

  @impl true
  def frame({prefix, suffix}, seq) when seq in 0..255, do: [prefix, <<97, seq>>, suffix]

  def frame({prefix, suffix}, seq) when seq in 256..2_147_483_647,
    do: [prefix, <<98, seq::32>>, suffix]

  def frame({prefix, suffix}, seq) do
    <<131, integer::binary>> = :erlang.term_to_binary(seq)
    [prefix, integer, suffix]
  end

  @doc false
  # Shared with the pure twin: `erlpack` is the module that encodes. Only
  # the payload needs the encoder; the envelope around it is fixed bytes
  # (ETF writes a small map's keys in order: "d", "op", "s", "t"), so one
  # encode per event, not four.
  def prepare(type, data, erlpack) when is_binary(type) do
    payload = erlpack.fragment(data, [])
    prefix = [@head, payload.bytes | @middle]
    suffix = <<@t_key::binary, 109, byte_size(type)::32, type::binary>>
    {IO.iodata_to_binary(prefix), suffix}
  end
end
