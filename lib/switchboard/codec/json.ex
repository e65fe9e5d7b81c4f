defmodule Switchboard.Codec.JSON do
  @moduledoc """
  The JSON `Switchboard.Codec` (the gateway's `encoding=json`): the frame of
  an event is `{"op":0,"t":TYPE,"s":SEQ,"d":DATA}`, the payload encoded once
  per event as a `Switchboard.Json.Fragment`.

  `prepare/2` encodes the payload and every byte of the envelope around the
  sequence number: a prefix (`{"op":0,"t":TYPE,"s":`) and a suffix
  (`,"d":` and the payload's text, shared, not copied); `frame/2` puts the
  session's number between them.

      iex> alias Switchboard.Codec.JSON
      iex> prepared = JSON.prepare("MESSAGE_CREATE", %{"content" => "hi"})
      iex> IO.iodata_to_binary(JSON.frame(prepared, 300))
      ~s({"op":0,"t":"MESSAGE_CREATE","s":300,"d":{"content":"hi"}})

  A payload `Switchboard.Json` refuses raises its error in `prepare/2`:

      iex> Switchboard.Codec.JSON.prepare("T", %{"a" => {1}})
      ** (Switchboard.Json.EncodeError) no JSON form for {1}
  """

  @behaviour Switchboard.Codec

  @impl true
  def prepare(type, data), do: prepare(type, data, Switchboard.Json)

  @impl true
  def frame({prefix, suffix}, seq) when is_integer(seq) and seq >= 0,
    do: [prefix, Integer.to_string(seq), suffix]

  @doc false
  # Shared with the pure twin: `json` is the module that encodes.
  def prepare(type, data, json) when is_binary(type) do
    payload = json.fragment(data)
    prefix = IO.iodata_to_binary([~s({"op":0,"t":), json.encode!(type), ~s(,"s":)])
    {prefix, [~s(,"d":), payload.encoded, ?}]}
  end
end
