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
  rule). `prepare_for/3` prepares one encoding only (a frame for one
  session).

  A guild's frames are prepared with `prepare/3` (its `:codec_options`):
  the guild's `needs/0` counters say how many of its sessions speak ETF
  and how many lack MESSAGE_CONTENT, and a variant no session needs is
  not made (a JSON-only guild pays one encode per event). A session
  counts itself in (`need/3`) before it attaches and out when it ends.

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
  def prepare(type, data), do: prepare_variants(type, data, [:json, :etf], true)

  @doc "Prepares a guild's event for the variants its sessions need (see `needs/0`)."
  @spec prepare(String.t(), term(), :atomics.atomics_ref()) :: map()
  def prepare(type, data, needs) do
    encodings = if :atomics.get(needs, 1) > 0, do: [:json, :etf], else: [:json]
    prepare_variants(type, data, encodings, :atomics.get(needs, 2) > 0)
  end

  @doc "Prepares an event for one encoding (a frame for one session)."
  @spec prepare_for(String.t(), term(), :json | :etf) :: map()
  def prepare_for(type, data, encoding), do: prepare_variants(type, data, [encoding], true)

  @doc "A guild's counters of what its sessions need (its `:codec_options`)."
  @spec needs() :: :atomics.atomics_ref()
  def needs, do: :atomics.new(2, signed: true)

  @doc """
  Counts a session of `encoding` and `intents` in (`delta` 1, before it
  attaches) or out (`-1`, once it ended) of each guild's `needs`.
  """
  @spec need([:atomics.atomics_ref()], {:json | :etf, non_neg_integer()}, 1 | -1) :: :ok
  def need(needs, {encoding, intents}, delta) do
    redacted = (intents &&& Protocol.intent(:message_content)) == 0

    for ref <- needs do
      if encoding == :etf, do: :atomics.add(ref, 1, delta)
      if redacted, do: :atomics.add(ref, 2, delta)
    end

    :ok
  end

  defp prepare_variants(type, data, encodings, redact) do
    codecs = codecs()
    full = Map.new(encodings, &{&1, {codecs[&1], codecs[&1].prepare(type, data)}})

    cond do
      not redactable?(type, data) ->
        %{full: full, redacted: nil, mentions: []}

      redact ->
        stripped = Map.merge(data, Map.take(@redacted, Map.keys(data)))
        redacted = Map.new(encodings, &{&1, {codecs[&1], codecs[&1].prepare(type, stripped)}})
        %{full: full, redacted: redacted, mentions: mentions(data)}

      true ->
        # No session needed it: one that does anyway gets nothing, never
        # the content (see select/5).
        %{full: full, redacted: :missing, mentions: mentions(data)}
    end
  end

  defp mentions(data) do
    for %{"id" => id} <- List.wrap(Map.get(data, "mentions")), do: id
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

      prepared.redacted == nil or (intents &&& Protocol.intent(:message_content)) != 0 or
          user_id in prepared.mentions ->
        Map.fetch!(prepared.full, encoding)

      prepared.redacted == :missing ->
        :skip

      true ->
        Map.fetch!(prepared.redacted, encoding)
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
