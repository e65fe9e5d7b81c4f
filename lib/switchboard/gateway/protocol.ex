defmodule Switchboard.Gateway.Protocol do
  @moduledoc """
  Discord Gateway v10 wire format in one place: opcodes, close codes,
  intents, the query string, payload shapes and the checks on what clients
  send.

  Everything else in the gateway passes terms; only this module knows what
  the numbers on the wire mean. Payloads are built with string keys (what
  both encodings put on the wire); snowflakes are strings.
  """

  import Bitwise

  @version 10

  @opcodes %{
    dispatch: 0,
    heartbeat: 1,
    identify: 2,
    presence_update: 3,
    voice_state_update: 4,
    resume: 6,
    reconnect: 7,
    request_guild_members: 8,
    invalid_session: 9,
    hello: 10,
    heartbeat_ack: 11,
    request_soundboard_sounds: 31
  }

  # {code, name, text, may the client reconnect?}
  @close_codes [
    {4000, :unknown_error, "Unknown error.", true},
    {4001, :unknown_opcode, "Unknown opcode.", true},
    {4002, :decode_error, "Decode error.", true},
    {4003, :not_authenticated, "Not authenticated.", true},
    {4004, :authentication_failed, "Authentication failed.", false},
    {4005, :already_authenticated, "Already authenticated.", true},
    {4007, :invalid_seq, "Invalid seq.", true},
    {4008, :rate_limited, "Rate limited.", true},
    {4009, :session_timed_out, "Session timed out.", true},
    {4010, :invalid_shard, "Invalid shard.", false},
    {4011, :sharding_required, "Sharding required.", false},
    {4012, :invalid_api_version, "Invalid API version.", false},
    {4013, :invalid_intents, "Invalid intent(s).", false},
    {4014, :disallowed_intents, "Disallowed intent(s).", false}
  ]

  # Intents that need approval: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
  @privileged_intents 1 <<< 1 ||| 1 <<< 8 ||| 1 <<< 15
  # Every intent v10 defines: bits 0-21, 24 and 25.
  @all_intents (1 <<< 22) - 1 ||| 1 <<< 24 ||| 1 <<< 25
  @intents %{
    guilds: 1 <<< 0,
    guild_members: 1 <<< 1,
    guild_presences: 1 <<< 8,
    guild_messages: 1 <<< 9,
    guild_message_reactions: 1 <<< 10,
    guild_message_typing: 1 <<< 11,
    message_content: 1 <<< 15
  }
  @intent_guild_messages @intents.guild_messages
  @intent_guild_presences @intents.guild_presences
  @intent_guild_members @intents.guild_members

  @type opcode_name :: atom()
  @type close_name ::
          :unknown_error
          | :unknown_opcode
          | :decode_error
          | :not_authenticated
          | :authentication_failed
          | :already_authenticated
          | :invalid_seq
          | :rate_limited
          | :session_timed_out
          | :invalid_shard
          | :sharding_required
          | :invalid_api_version
          | :invalid_intents
          | :disallowed_intents

  @type encoding :: :json | :etf
  @type compression :: nil | :zlib_stream | :zstd_stream
  @type query :: %{v: 10, encoding: encoding(), compress: compression()}

  @type command ::
          {:heartbeat, non_neg_integer() | nil}
          | {:identify, map()}
          | {:resume, %{token: String.t(), session_id: String.t(), seq: non_neg_integer()}}
          | {:presence_update, map()}
          | {:request_guild_members, map()}
          | {:member_list_subscribe, %{guild_id: String.t(), ranges: [[non_neg_integer()]]}}
          | {:other, non_neg_integer(), term()}

  @doc "The gateway version served."
  @spec version() :: 10
  def version, do: @version

  @doc """
  The number of an opcode.

      iex> Switchboard.Gateway.Protocol.opcode(:heartbeat_ack)
      11
  """
  @spec opcode(opcode_name()) :: non_neg_integer()
  def opcode(name), do: Map.fetch!(@opcodes, name)

  @doc """
  The close code for a reason, with its text.

      iex> Switchboard.Gateway.Protocol.close(:authentication_failed)
      {4004, "Authentication failed."}
  """
  @spec close(close_name()) :: {4000..4014, String.t()}
  for {code, name, text, _} <- @close_codes do
    def close(unquote(name)), do: {unquote(code), unquote(text)}
  end

  @doc """
  Whether a client may reconnect (resume or identify again) after a close code.

      iex> Switchboard.Gateway.Protocol.reconnectable?(4004)
      false
      iex> Switchboard.Gateway.Protocol.reconnectable?(4009)
      true
  """
  @spec reconnectable?(integer()) :: boolean()
  for {code, _, _, reconnect} <- @close_codes do
    def reconnectable?(unquote(code)), do: unquote(reconnect)
  end

  def reconnectable?(_code), do: true

  @doc "Intents that need approval (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT)."
  @spec privileged_intents() :: non_neg_integer()
  def privileged_intents, do: @privileged_intents

  @doc "Every intent bit v10 defines."
  @spec all_intents() :: non_neg_integer()
  def all_intents, do: @all_intents

  @doc """
  An intent's bit.

      iex> Switchboard.Gateway.Protocol.intent(:message_content)
      32768
  """
  @spec intent(atom()) :: pos_integer()
  def intent(name), do: Map.fetch!(@intents, name)

  @doc """
  The intent a dispatch needs to be sent to a session, or `nil` when it is
  always sent (READY, GUILD_CREATE, the answers to a session's own
  requests...).

      iex> Switchboard.Gateway.Protocol.required_intent("MESSAGE_CREATE")
      512
  """
  @spec required_intent(String.t()) :: non_neg_integer() | nil
  def required_intent("MESSAGE_CREATE"), do: @intent_guild_messages
  def required_intent("MESSAGE_UPDATE"), do: @intent_guild_messages
  def required_intent("MESSAGE_DELETE"), do: @intent_guild_messages
  def required_intent("PRESENCE_UPDATE"), do: @intent_guild_presences
  def required_intent("GUILD_MEMBER_ADD"), do: @intent_guild_members
  def required_intent("GUILD_MEMBER_UPDATE"), do: @intent_guild_members
  def required_intent("GUILD_MEMBER_REMOVE"), do: @intent_guild_members
  def required_intent("TYPING_START"), do: @intents.guild_message_typing
  def required_intent("MESSAGE_REACTION_" <> _), do: @intents.guild_message_reactions

  def required_intent(type)
      when type in ~w(GUILD_UPDATE GUILD_DELETE GUILD_ROLE_CREATE GUILD_ROLE_UPDATE GUILD_ROLE_DELETE
                      CHANNEL_CREATE CHANNEL_UPDATE CHANNEL_DELETE CHANNEL_PINS_UPDATE
                      THREAD_CREATE THREAD_UPDATE THREAD_DELETE),
      do: @intents.guilds

  def required_intent(_type), do: nil

  @doc """
  Parses the connection's query string (`v`, `encoding`, `compress`).

  A missing or wrong `v` is `{:error, :invalid_api_version}` (close 4012);
  an unknown encoding or compression is `{:error, :decode_error}`.

  ## Examples

      iex> Switchboard.Gateway.Protocol.parse_query("v=10&encoding=json&compress=zstd-stream")
      {:ok, %{v: 10, encoding: :json, compress: :zstd_stream}}

      iex> Switchboard.Gateway.Protocol.parse_query("v=9&encoding=json")
      {:error, :invalid_api_version}
  """
  @spec parse_query(String.t()) :: {:ok, query()} | {:error, close_name()}
  def parse_query(query) when is_binary(query) do
    params =
      try do
        URI.decode_query(query)
      rescue
        ArgumentError -> %{}
      end

    with {:ok, version} <- version_param(params),
         {:ok, encoding} <- encoding_param(params),
         {:ok, compress} <- compress_param(params) do
      {:ok, %{v: version, encoding: encoding, compress: compress}}
    end
  end

  defp version_param(%{"v" => "10"}), do: {:ok, 10}
  defp version_param(_), do: {:error, :invalid_api_version}

  defp encoding_param(params) do
    case Map.get(params, "encoding", "json") do
      "json" -> {:ok, :json}
      "etf" -> {:ok, :etf}
      _ -> {:error, :decode_error}
    end
  end

  defp compress_param(params) do
    case Map.get(params, "compress") do
      nil -> {:ok, nil}
      "zlib-stream" -> {:ok, :zlib_stream}
      "zstd-stream" -> {:ok, :zstd_stream}
      _ -> {:error, :decode_error}
    end
  end

  # ---------------------------------------------------------------------------
  # Payloads the server sends (each a term; the codec encodes it).

  @doc "HELLO (op 10)."
  @spec hello(pos_integer()) :: map()
  def hello(interval), do: %{"op" => 10, "d" => %{"heartbeat_interval" => interval}}

  @doc "HEARTBEAT_ACK (op 11)."
  @spec heartbeat_ack() :: map()
  def heartbeat_ack, do: %{"op" => 11}

  @doc "HEARTBEAT (op 1) sent by the server: the client must answer at once."
  @spec heartbeat_request(non_neg_integer() | nil) :: map()
  def heartbeat_request(seq), do: %{"op" => 1, "d" => seq}

  @doc "INVALID_SESSION (op 9); `resumable` tells the client whether to try RESUME."
  @spec invalid_session(boolean()) :: map()
  def invalid_session(resumable) when is_boolean(resumable), do: %{"op" => 9, "d" => resumable}

  @doc "RECONNECT (op 7)."
  @spec reconnect() :: map()
  def reconnect, do: %{"op" => 7, "d" => nil}

  @doc """
  The data of READY: `v`, the user, every guild of the shard as
  unavailable (GUILD_CREATE follows for each), the session id and the URL
  to resume on.
  """
  @spec ready(map(), [String.t()], String.t(), String.t(), [non_neg_integer()] | nil) :: map()
  def ready(user, guild_ids, session_id, resume_url, shard) do
    data = %{
      "v" => @version,
      "user" => user,
      "guilds" => Enum.map(guild_ids, &%{"id" => &1, "unavailable" => true}),
      "session_id" => session_id,
      "resume_gateway_url" => resume_url,
      "application" => %{"id" => user["id"], "flags" => 0},
      "user_settings" => %{},
      "private_channels" => [],
      "presences" => [],
      "relationships" => [],
      "guild_join_requests" => [],
      "geo_ordered_rtc_regions" => [],
      "session_type" => "normal",
      "auth" => %{}
    }

    if shard, do: Map.put(data, "shard", shard), else: data
  end

  @doc "The data of RESUMED (a dispatch with no fields)."
  @spec resumed() :: nil
  def resumed, do: nil

  # ---------------------------------------------------------------------------
  # Commands clients send.

  @doc """
  Checks a decoded client payload and names the command it carries.

  Returns `{:ok, command}` or `{:error, close_name}` with the close the
  gateway must answer with: `:decode_error` for a payload that is not a
  gateway payload or a command with a malformed body, `:unknown_opcode` for
  an opcode clients may not send.

  ## Examples

      iex> Switchboard.Gateway.Protocol.parse_command(%{"op" => 1, "d" => 5})
      {:ok, {:heartbeat, 5}}

      iex> Switchboard.Gateway.Protocol.parse_command(%{"op" => 42})
      {:error, :unknown_opcode}

      iex> Switchboard.Gateway.Protocol.parse_command([1, 2])
      {:error, :decode_error}
  """
  @spec parse_command(term()) :: {:ok, command()} | {:error, close_name()}
  def parse_command(%{"op" => op} = payload) when is_integer(op),
    do: command(op, Map.get(payload, "d"))

  def parse_command(_payload), do: {:error, :decode_error}

  defp command(1, seq) when is_nil(seq) or (is_integer(seq) and seq >= 0),
    do: {:ok, {:heartbeat, seq}}

  defp command(2, %{"token" => token, "properties" => properties} = d)
       when is_binary(token) and is_map(properties) do
    with {:ok, intents} <- intents(Map.get(d, "intents")),
         {:ok, shard} <- shard(Map.get(d, "shard")),
         {:ok, threshold} <- large_threshold(Map.get(d, "large_threshold", 50)) do
      {:ok,
       {:identify,
        %{
          token: token,
          properties: properties,
          intents: intents,
          shard: shard,
          large_threshold: threshold,
          presence: Map.get(d, "presence"),
          compress: Map.get(d, "compress", false) == true
        }}}
    end
  end

  defp command(6, %{"token" => token, "session_id" => session_id, "seq" => seq})
       when is_binary(token) and is_binary(session_id) and
              (is_nil(seq) or (is_integer(seq) and seq >= 0)),
       do: {:ok, {:resume, %{token: token, session_id: session_id, seq: seq || 0}}}

  defp command(3, %{} = d), do: {:ok, {:presence_update, d}}
  defp command(8, %{"guild_id" => _} = d), do: {:ok, {:request_guild_members, d}}

  defp command(14, %{"guild_id" => guild_id, "channels" => channels})
       when is_binary(guild_id) and is_map(channels) do
    ranges = channels |> Map.values() |> Enum.concat() |> Enum.uniq() |> Enum.sort()

    if Enum.all?(ranges, &match?([a, b] when is_integer(a) and is_integer(b) and 0 <= a, &1)),
      do: {:ok, {:member_list_subscribe, %{guild_id: guild_id, ranges: ranges}}},
      else: {:error, :decode_error}
  rescue
    # A channel whose ranges are not a list.
    _ in [ArgumentError, Protocol.UndefinedError] -> {:error, :decode_error}
  end

  defp command(14, %{"guild_id" => _}), do: {:ok, {:other, 14, nil}}
  defp command(op, d) when op in [4, 31], do: {:ok, {:other, op, d}}
  defp command(op, _d) when op in [1, 2, 3, 6, 8, 14], do: {:error, :decode_error}
  defp command(_op, _d), do: {:error, :unknown_opcode}

  @doc """
  The member status of a presence update's `status`: `{:ok, status}`, or
  `:error` for one Discord does not define (`"invisible"` is offline to
  others).

      iex> Switchboard.Gateway.Protocol.presence_status("invisible")
      {:ok, :offline}
  """
  @spec presence_status(term()) :: {:ok, :online | :idle | :dnd | :offline} | :error
  def presence_status("online"), do: {:ok, :online}
  def presence_status("idle"), do: {:ok, :idle}
  def presence_status("dnd"), do: {:ok, :dnd}
  def presence_status(status) when status in ["invisible", "offline"], do: {:ok, :offline}
  def presence_status(_status), do: :error

  # intents is required in v10.
  defp intents(intents) when is_integer(intents) and intents >= 0 do
    if (intents &&& bnot(@all_intents)) == 0,
      do: {:ok, intents},
      else: {:error, :invalid_intents}
  end

  defp intents(_), do: {:error, :invalid_intents}

  defp shard(nil), do: {:ok, nil}

  defp shard([id, count])
       when is_integer(id) and is_integer(count) and count >= 1 and id >= 0 and id < count,
       do: {:ok, [id, count]}

  defp shard(_), do: {:error, :invalid_shard}

  defp large_threshold(n) when is_integer(n) and n >= 50 and n <= 250, do: {:ok, n}
  defp large_threshold(_), do: {:error, :decode_error}

  @doc """
  Whether a guild belongs to a shard: `(guild_id >> 22) % num_shards == shard_id`.

      iex> Switchboard.Gateway.Protocol.in_shard?("4194304", [1, 2])
      true
  """
  @spec in_shard?(String.t(), [non_neg_integer()] | nil) :: boolean()
  def in_shard?(_guild_id, nil), do: true

  def in_shard?(guild_id, [id, count]),
    do: rem(String.to_integer(guild_id) >>> 22, count) == id
end
