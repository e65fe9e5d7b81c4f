defmodule Switchboard.Codec.ETF.Pure do
  @moduledoc """
  `Switchboard.Codec.ETF` with the payload encoded by `Switchboard.Erlpack.Pure`.

      iex> prepared = Switchboard.Codec.ETF.Pure.prepare("TYPING_START", %{"user_id" => 1})
      iex> :erlang.binary_to_term(IO.iodata_to_binary(Switchboard.Codec.ETF.Pure.frame(prepared, 7)))
      %{"op" => 0, "t" => "TYPING_START", "s" => 7, "d" => %{"user_id" => 1}}
  """

  @behaviour Switchboard.Codec

  @impl true
  def prepare(type, data), do: Switchboard.Codec.ETF.prepare(type, data, Switchboard.Erlpack.Pure)

  @impl true
  defdelegate frame(prepared, seq), to: Switchboard.Codec.ETF
end
