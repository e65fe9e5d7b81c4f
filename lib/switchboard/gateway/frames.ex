defmodule Switchboard.Gateway.Frames do
  @moduledoc """
  The `Switchboard.Codec` of the gateway's guilds: an event prepared once
  for every encoding a client may speak, each session taking its own
  variant (`select/5`, a `Switchboard.Session` `:select` function).

  `prepare/2` makes the JSON (`Switchboard.Codec.JSON`) and ETF
  (`Switchboard.Codec.ETF`) frames of the event, or their pure twins in
  pure mode (`Switchboard.Implementation`). A MESSAGE_CREATE or
  MESSAGE_UPDATE is also prepared with its content, embeds, attachments
  and components emptied: what a session without the MESSAGE_CONTENT
  intent receives for a message that does not mention its bot (Discord's
  rule). `prepare/3` prepares one encoding only (a frame for one session).

  `select/5` also leaves out the events a session's intents do not cover
  (`Switchboard.Gateway.Protocol.required_intent/1`).

      iex> alias Switchboard.Gateway.Frames
      iex> prepared = Frames.prepare("MESSAGE_CREATE", %{"content" => "hi", "mentions" => []})
      iex> {codec, json} = Frames.select("MESSAGE_CREATE", prepared, :json, 512, "1")
      iex> IO.iodata_to_binary(codec.frame(json, 3))
      ~s({"op":0,"t":"MESSAGE_CREATE","s":3,"d":{"content":"","mentions":[]}})
      iex> Frames.select("MESSAGE_CREATE", prepared, :json, 1, "1")
      :skip
  """

  @behaviour Switchboard.Codec

  import Bitwise

  alias Switchboard.Gateway.Protocol

  @redacted %{"content" => "", "embeds" => [], "attachments" => [], "components" => []}

  @impl true
  def prepare(type, data), do: prepare(type, data, [:json, :etf])

  @doc "Prepares an event for the given encodings only."
  @spec prepare(String.t(), term(), [:json | :etf] | :json | :etf) :: map()
  def prepare(type, data, encoding) when is_atom(encoding), do: prepare(type, data, [encoding])

  def prepare(type, data, encodings) do
    codecs = codecs()
    full = Map.new(encodings, &{&1, {codecs[&1], codecs[&1].prepare(type, data)}})

    if redactable?(type, data) do
      stripped = Map.merge(data, Map.take(@redacted, Map.keys(data)))
      redacted = Map.new(encodings, &{&1, {codecs[&1], codecs[&1].prepare(type, stripped)}})
      mentions = for %{"id" => id} <- Map.get(data, "mentions", []), do: id
      %{full: full, redacted: redacted, mentions: mentions}
    else
      %{full: full, redacted: nil, mentions: []}
    end
  end

  @impl true
  # For a session with no `:select`: the JSON frame.
  def frame(%{full: %{json: {codec, prepared}}}, seq), do: codec.frame(prepared, seq)

  @doc """
  The variant of a prepared event for a session (its encoding, intents and
  bot user id): `{codec, prepared}`, or `:skip` when its intents do not
  cover the event.
  """
  @spec select(String.t(), map(), :json | :etf, non_neg_integer(), String.t()) ::
          {module(), term()} | :skip
  def select(type, prepared, encoding, intents, user_id) do
    required = Protocol.required_intent(type)

    cond do
      required != nil and (intents &&& required) == 0 ->
        :skip

      prepared.redacted != nil and (intents &&& Protocol.intent(:message_content)) == 0 and
          user_id not in prepared.mentions ->
        Map.fetch!(prepared.redacted, encoding)

      true ->
        Map.fetch!(prepared.full, encoding)
    end
  end

  @doc "The select function of a session (see `Switchboard.Session.start_link/1`)."
  @spec selector(:json | :etf, non_neg_integer(), String.t()) ::
          (String.t(), module(), map() ->
             {module(), term()}
             | :skip)
  def selector(encoding, intents, user_id) do
    fn type, _codec, prepared -> select(type, prepared, encoding, intents, user_id) end
  end

  defp redactable?(type, data),
    do: type in ["MESSAGE_CREATE", "MESSAGE_UPDATE"] and is_map(data)

  defp codecs do
    case Switchboard.Implementation.mode() do
      :pure -> %{json: Switchboard.Codec.JSON.Pure, etf: Switchboard.Codec.ETF.Pure}
      _ -> %{json: Switchboard.Codec.JSON, etf: Switchboard.Codec.ETF}
    end
  end
end
