defmodule Switchboard.Gateway.Codec.Json do
  @moduledoc """
  The gateway's JSON encoding, over a pluggable JSON backend.

  The backend is chosen by configuration:

      config :switchboard, :gateway_json_backend, MyBackend

  and implements `Switchboard.Gateway.Codec.Json.Backend`. The default is
  `Switchboard.Gateway.Codec.Json.Native`, over the project's own
  `Switchboard.Json`.
  """

  @behaviour Switchboard.Gateway.Codec

  defmodule Backend do
    @moduledoc """
    What the JSON encoding needs from a JSON library: `nil` is `null` both
    ways, decoded maps have string keys, invalid JSON is `{:error, reason}`.
    """
    @callback encode(term()) :: iodata()
    @callback decode(binary()) :: {:ok, term()} | {:error, term()}
  end

  @impl true
  def encode(term), do: backend().encode(term)

  @impl true
  def decode(binary), do: backend().decode(binary)

  @impl true
  def frame_type, do: :text

  @doc "The configured backend."
  @spec backend() :: module()
  def backend,
    do:
      Application.get_env(
        :switchboard,
        :gateway_json_backend,
        Switchboard.Gateway.Codec.Json.Native
      )
end
