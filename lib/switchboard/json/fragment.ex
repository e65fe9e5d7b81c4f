defmodule Switchboard.Json.Fragment do
  @moduledoc """
  JSON text spliced as is by later encodes: a payload encoded once and
  wrapped in many per-session envelopes.

      payload = Switchboard.Json.fragment(%{"content" => "hi"})

      for {pid, seq} <- sessions do
        send(pid, Switchboard.Json.encode_to_iodata!(%{"op" => 0, "s" => seq, "d" => payload}))
      end

  Make fragments with `Switchboard.Json.fragment/2` (or the pure twin's)
  from a term, or with `new/1` from JSON text encoded elsewhere (checked to
  be one JSON value).

  A fragment cannot be forged from decoded data: it carries a seal, a
  reference made once per VM that no decoder (JSON, or ETF from a client)
  can produce, and encoders refuse fragments without it
  (`{:invalid_fragment, map}`). Fragments are for the VM that made them.
  """

  @enforce_keys [:encoded, :seal]
  defstruct [:encoded, :seal]

  @typedoc "One JSON value's text, and this VM's seal."
  @type t :: %__MODULE__{encoded: binary(), seal: reference()}

  # An atom: every encode reads the seal, and a tuple key costs a hash of
  # the tuple and a compound compare on each read.
  @seal_key :"Elixir.Switchboard.Json.Fragment.seal"

  @doc """
  A fragment of JSON text encoded elsewhere, checked to be exactly one JSON
  value (whitespace around it allowed).

  ## Examples

      iex> fragment = Switchboard.Json.Fragment.new(~s({"a": [1, 2]}))
      iex> Switchboard.Json.encode!(%{"d" => fragment})
      ~s({"d":{"a": [1, 2]}})

      iex> Switchboard.Json.Fragment.new("[1,")
      ** (Switchboard.Json.DecodeError) unexpected end of input at position 3
  """
  @spec new(iodata()) :: t()
  def new(json_iodata) do
    text = IO.iodata_to_binary(json_iodata)

    case Switchboard.NIF.json_validate(text) do
      :ok ->
        seal(text)

      {:error, reason, position, token} ->
        raise Switchboard.Json.DecodeError,
          reason: reason,
          position: position,
          data: text,
          token: token
    end
  end

  @doc "The text of `fragment`."
  @spec encoded(t()) :: binary()
  def encoded(%__MODULE__{encoded: encoded}), do: encoded

  @doc false
  # Wraps text known to be one JSON value (an encoder's output).
  @spec seal(binary()) :: t()
  def seal(text) when is_binary(text), do: %__MODULE__{encoded: text, seal: seal()}

  @doc false
  # This VM's seal, made on first use.
  @spec seal() :: reference()
  def seal do
    case :persistent_term.get(@seal_key, nil) do
      nil -> make_seal()
      seal -> seal
    end
  end

  defp make_seal do
    :global.trans(
      {@seal_key, self()},
      fn ->
        case :persistent_term.get(@seal_key, nil) do
          nil ->
            seal = make_ref()
            :persistent_term.put(@seal_key, seal)
            seal

          seal ->
            seal
        end
      end,
      [node()]
    )
  end
end
