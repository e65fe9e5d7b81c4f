defmodule Switchboard.Gateway.ProtocolTest do
  use ExUnit.Case, async: true
  use Switchboard.Property

  alias Switchboard.Gateway.Codec.{Etf, Json}
  alias Switchboard.Gateway.Protocol

  doctest Protocol
  doctest Switchboard.Gateway.Frames
  doctest Switchboard.Gateway.Payloads
  doctest Switchboard.Gateway.Demo

  @close_names [:decode_error, :unknown_opcode, :invalid_intents, :invalid_shard]

  defp command_shaped do
    :proper_types.bind(
      {oneof([range(0, 40), integer()]), Switchboard.Property.any_term()},
      fn {op, d} -> %{"op" => op, "d" => d} end,
      false
    )
  end

  property_test "any decoded payload is a command or a close reason, never a crash", numtests: 300 do
    forall payload <- oneof([command_shaped(), Switchboard.Property.any_term()]) do
      case Protocol.parse_command(payload) do
        {:ok, {kind, _}} ->
          kind in [
            :heartbeat,
            :identify,
            :resume,
            :presence_update,
            :request_guild_members,
            :member_list_subscribe
          ]

        {:ok, {:other, op, _}} ->
          op in [4, 14, 31]

        {:error, reason} ->
          reason in @close_names
      end
    end
  end

  property_test "client bytes through either codec: plain data or an error", numtests: 300 do
    forall bytes <-
             oneof([
               binary(),
               :proper_types.bind(
                 Switchboard.Property.any_term(),
                 &:erlang.term_to_binary/1,
                 false
               )
             ]) do
      Enum.all?([Json, Etf], fn codec ->
        case codec.decode(bytes) do
          {:ok, term} -> plain?(term)
          {:error, _} -> true
        end
      end)
    end
  end

  defp plain?(t) when is_binary(t) or is_number(t) or t in [true, false, nil], do: true
  defp plain?(l) when is_list(l), do: Enum.all?(l, &plain?/1)
  defp plain?(m) when is_map(m), do: Enum.all?(m, fn {k, v} -> is_binary(k) and plain?(v) end)
  defp plain?(_), do: false

  test "IDENTIFY is checked field by field" do
    identify = %{"token" => "t", "properties" => %{}, "intents" => 1}

    assert {:ok, {:identify, %{token: "t", intents: 1, shard: nil, large_threshold: 50}}} =
             Protocol.parse_command(%{"op" => 2, "d" => identify})

    assert {:error, :invalid_intents} =
             Protocol.parse_command(%{"op" => 2, "d" => Map.delete(identify, "intents")})

    assert {:error, :invalid_shard} =
             Protocol.parse_command(%{"op" => 2, "d" => Map.put(identify, "shard", [0, 0])})

    assert {:error, :decode_error} =
             Protocol.parse_command(%{"op" => 2, "d" => Map.put(identify, "large_threshold", 10)})

    assert {:error, :decode_error} = Protocol.parse_command(%{"op" => 2, "d" => "token"})
  end

  test "every close code 4000-4014 but 4006 has a name and a text" do
    names = [
      :unknown_error,
      :unknown_opcode,
      :decode_error,
      :not_authenticated,
      :authentication_failed,
      :already_authenticated,
      :invalid_seq,
      :rate_limited,
      :session_timed_out,
      :invalid_shard,
      :sharding_required,
      :invalid_api_version,
      :invalid_intents,
      :disallowed_intents
    ]

    codes = for name <- names, do: elem(Protocol.close(name), 0)
    assert codes == Enum.to_list(4000..4014) -- [4006]
  end

  test "ETF: atom keys and non-plain terms are refused" do
    assert {:error, :not_plain_data} = Etf.decode(:erlang.term_to_binary(%{op: 1}))
    assert {:error, :not_plain_data} = Etf.decode(:erlang.term_to_binary(%{"op" => {1, 2}}))
    assert {:error, {:not_plain, _offset}} = Etf.decode(:erlang.term_to_binary(%{"op" => self()}))

    assert {:ok, %{"op" => 1, "d" => nil}} =
             Etf.decode(:erlang.term_to_binary(%{"op" => 1, "d" => nil}))
  end

  test "a guild prepares only the variants its sessions need, and a missing one is never leaked" do
    alias Switchboard.Gateway.Frames
    needs = Frames.needs()
    message = %{"content" => "secret", "mentions" => [%{"id" => "7"}]}
    plain = Protocol.intent(:guild_messages)
    prepared = Frames.prepare("MESSAGE_CREATE", message, needs)
    assert Map.keys(prepared.full) == [:json]
    # A session lacking MESSAGE_CONTENT that no counter announced: skipped.
    assert Frames.select("MESSAGE_CREATE", prepared, :json, plain, "1") == :skip
    # Mentioned, it may see the content.
    assert {_, _} = Frames.select("MESSAGE_CREATE", prepared, :json, plain, "7")

    :ok = Frames.need([needs], {:etf, plain}, 1)
    prepared = Frames.prepare("MESSAGE_CREATE", message, needs)
    assert Map.keys(prepared.full) == [:etf, :json]
    {codec, redacted} = Frames.select("MESSAGE_CREATE", prepared, :etf, plain, "1")
    frame = :erlang.binary_to_term(IO.iodata_to_binary(codec.frame(redacted, 1)))
    assert frame["d"]["content"] == ""
    :ok = Frames.need([needs], {:etf, plain}, -1)
    assert {:atomics.get(needs, 1), :atomics.get(needs, 2)} == {0, 0}
  end

  test "a guild event is prepared once for both encodings, each session framing its own" do
    alias Switchboard.Gateway.Frames
    prepared = Frames.prepare("MESSAGE_CREATE", %{"id" => "1", "content" => "hi"})
    intents = Protocol.intent(:guild_messages) + Protocol.intent(:message_content)

    {codec, json} = Frames.select("MESSAGE_CREATE", prepared, :json, intents, "9")

    assert Switchboard.Json.decode!(IO.iodata_to_binary(codec.frame(json, 7))) ==
             %{
               "op" => 0,
               "s" => 7,
               "t" => "MESSAGE_CREATE",
               "d" => %{"id" => "1", "content" => "hi"}
             }

    {codec, etf} = Frames.select("MESSAGE_CREATE", prepared, :etf, intents, "9")

    assert :erlang.binary_to_term(IO.iodata_to_binary(codec.frame(etf, 7))) ==
             %{
               "op" => 0,
               "s" => 7,
               "t" => "MESSAGE_CREATE",
               "d" => %{"id" => "1", "content" => "hi"}
             }
  end
end
