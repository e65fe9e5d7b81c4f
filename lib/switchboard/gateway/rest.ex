defmodule Switchboard.Gateway.Rest do
  @moduledoc """
  The REST routes a Discord client library needs to find the gateway and to
  make events, answered on the gateway's own port:

    * `GET /api/v10/gateway` - `{"url": ...}`;
    * `GET /api/v10/gateway/bot` - `url`, `shards` and
      `session_start_limit` (needs `Authorization: Bot TOKEN`; see
      `Switchboard.Gateway.IdentifyLimit`);
    * `POST /api/v10/channels/:channel_id/messages` - a JSON body with
      `content` (1 to 2000 characters); publishes MESSAGE_CREATE to the
      channel's guild and answers with the message object.

  Errors use Discord's JSON error shape (`{"message", "code"}`): 401 for a
  missing or unknown token, 404 for an unknown route or channel (10003),
  400 for a bad body (50006 for an empty message, 50035 otherwise).
  """

  alias Switchboard.Gateway.{Codec, Demo, IdentifyLimit}

  @discord_epoch 1_420_070_400_000

  @doc """
  Answers one request: `{status, json_body}`.
  """
  @spec handle(map(), atom() | String.t(), String.t(), map(), binary()) :: {pos_integer(), term()}
  def handle(config, method, path, headers, body) do
    case {method, String.split(path, "/", trim: true)} do
      {:GET, ["api", "v10", "gateway"]} ->
        {200, %{"url" => Switchboard.Gateway.url(config.name)}}

      {:GET, ["api", "v10", "gateway", "bot"]} ->
        with {:ok, token, _bot} <- authorize(config, headers) do
          {200,
           %{
             "url" => Switchboard.Gateway.url(config.name),
             "shards" => max(1, ceil_div(length(config.guild_ids), config.max_guilds_per_shard)),
             "session_start_limit" => IdentifyLimit.session_start_limit(config, token)
           }}
        end

      {:POST, ["api", "v10", "channels", channel_id, "messages"]} ->
        with {:ok, _token, bot} <- authorize(config, headers),
             {:ok, guild_id} <- channel_guild(config, channel_id),
             {:ok, content} <- content(body) do
          message = message(bot.user, guild_id, channel_id, content)
          :ok = Switchboard.Gateway.publish(config.name, guild_id, "MESSAGE_CREATE", message)
          {200, Map.delete(message, "member")}
        end

      _ ->
        error(404, "404: Not Found", 0)
    end
  end

  @doc "Writes a JSON answer and closes nothing (the caller does)."
  @spec respond(:gen_tcp.socket(), pos_integer(), term()) :: :ok | {:error, term()}
  def respond(socket, status, body) do
    json = IO.iodata_to_binary(Codec.Json.encode(body))

    :gen_tcp.send(socket, [
      "HTTP/1.1 ",
      Integer.to_string(status),
      " ",
      reason(status),
      "\r\ncontent-type: application/json\r\ncontent-length: ",
      Integer.to_string(byte_size(json)),
      "\r\nconnection: close\r\n\r\n",
      json
    ])
  end

  defp authorize(config, headers) do
    with "Bot " <> token <- Map.get(headers, "authorization", ""),
         {:ok, bot} <- Map.fetch(config.tokens, token) do
      {:ok, token, bot}
    else
      _ -> error(401, "401: Unauthorized", 0)
    end
  end

  defp channel_guild(config, channel_id) do
    case Map.fetch(config.channels, channel_id) do
      {:ok, guild_id} -> {:ok, guild_id}
      :error -> error(404, "Unknown Channel", 10_003)
    end
  end

  defp content(body) do
    case Codec.Json.decode(body) do
      {:ok, %{"content" => content}} when is_binary(content) and content != "" ->
        if String.length(content) <= 2000,
          do: {:ok, content},
          else: error(400, "Invalid Form Body", 50_035)

      {:ok, %{}} ->
        error(400, "Cannot send an empty message", 50_006)

      _ ->
        error(400, "Invalid Form Body", 50_035)
    end
  end

  @doc "A message object as Discord returns it (with `guild_id` and `member` for MESSAGE_CREATE)."
  @spec message(map(), String.t(), String.t(), String.t()) :: map()
  def message(author, guild_id, channel_id, content) do
    %{
      "id" => snowflake(),
      "type" => 0,
      "channel_id" => channel_id,
      "guild_id" => guild_id,
      "author" =>
        Map.take(author, ["id", "username", "global_name", "discriminator", "avatar", "bot"]),
      "member" => Map.delete(Demo.member(author), "user"),
      "content" => content,
      "timestamp" => DateTime.utc_now() |> DateTime.to_iso8601(),
      "edited_timestamp" => nil,
      "tts" => false,
      "mention_everyone" => false,
      "mentions" => [],
      "mention_roles" => [],
      "attachments" => [],
      "embeds" => [],
      "components" => [],
      "pinned" => false,
      "flags" => 0,
      "nonce" => nil
    }
  end

  # Time-ordered, unique within this VM: ms since Discord's epoch, then a
  # 22-bit counter.
  defp snowflake do
    counter = :erlang.unique_integer([:positive, :monotonic]) |> Bitwise.band(0x3FFFFF)
    ms = System.os_time(:millisecond) - @discord_epoch
    Integer.to_string(Bitwise.bor(Bitwise.bsl(ms, 22), counter))
  end

  defp ceil_div(a, b), do: div(a + b - 1, b)

  defp error(status, message, code), do: {status, %{"message" => message, "code" => code}}

  defp reason(200), do: "OK"
  defp reason(400), do: "Bad Request"
  defp reason(401), do: "Unauthorized"
  defp reason(404), do: "Not Found"
  defp reason(_), do: "Error"
end
