defmodule Switchboard.Codec.JSON.Pure do
  @moduledoc """
  `Switchboard.Codec.JSON` with the payload encoded by `Switchboard.Json.Pure`.

      iex> prepared = Switchboard.Codec.JSON.Pure.prepare("TYPING_START", %{"user_id" => 1})
      iex> Switchboard.Json.decode!(IO.iodata_to_binary(Switchboard.Codec.JSON.Pure.frame(prepared, 7)))
      %{"op" => 0, "t" => "TYPING_START", "s" => 7, "d" => %{"user_id" => 1}}
  """

  @behaviour Switchboard.Codec

  @impl true
  def prepare(type, data),
    do: Switchboard.Codec.JSON.prepare(type, data, Switchboard.Json.Pure)

  @impl true
  defdelegate frame(prepared, seq), to: Switchboard.Codec.JSON
end
