defmodule Switchboard.Gateway.WebSocket do
  @moduledoc """
  RFC 6455 for the server side: the opening handshake's checks and answer,
  a parser for client frames, and server frames.

  Client frames are parsed with `:cow_ws` from Debian's `erlang-cowlib`
  (masking, RSV bits, control frame rules, UTF-8 of text messages across
  fragments, close codes); this module adds what a server exposed to
  hostile clients needs on top: every client frame must be masked, frame and
  message sizes are bounded (checked from the frame header, before the
  payload is read), and every protocol violation comes back as the close
  code to send. Server frames are built here as iodata, so a payload is
  never copied to be framed.

  The parser holds at most one frame's bytes (bounded by `:max_frame_size`)
  plus the fragments of one message (bounded by `:max_message_size`).
  """

  import Bitwise

  @guid "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

  defstruct buffer: <<>>,
            header: nil,
            frag: :undefined,
            utf8: 0,
            fragments: [],
            message_size: 0,
            max_frame_size: 4096,
            max_message_size: 4096

  @type t :: %__MODULE__{}
  @type event ::
          {:text, binary()}
          | {:binary, binary()}
          | {:ping, binary()}
          | {:pong, binary()}
          | {:close, non_neg_integer() | nil, binary()}
  @type failure :: {:protocol_error | :invalid_utf8 | :too_big, 1002 | 1007 | 1009}

  @doc """
  A parser. Options: `:max_frame_size` and `:max_message_size` in bytes
  (default 4096 each).
  """
  @spec new(keyword()) :: t()
  def new(opts \\ []) do
    %__MODULE__{
      max_frame_size: Keyword.get(opts, :max_frame_size, 4096),
      max_message_size: Keyword.get(opts, :max_message_size, 4096)
    }
  end

  @doc """
  Checks an upgrade request's headers (lower-case names) and returns the
  `101 Switching Protocols` answer.

  ## Examples

      iex> headers = %{"upgrade" => "websocket", "connection" => "Upgrade",
      ...>   "sec-websocket-version" => "13", "sec-websocket-key" => "dGhlIHNhbXBsZSBub25jZQ=="}
      iex> {:ok, answer} = Switchboard.Gateway.WebSocket.handshake(headers)
      iex> IO.iodata_to_binary(answer) =~ "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
      true

      iex> Switchboard.Gateway.WebSocket.handshake(%{"upgrade" => "websocket"})
      {:error, :bad_handshake}
  """
  @spec handshake(%{String.t() => String.t()}) :: {:ok, iodata()} | {:error, :bad_handshake}
  def handshake(headers) do
    with "websocket" <- headers |> Map.get("upgrade", "") |> String.downcase(),
         true <- token_listed?(Map.get(headers, "connection", ""), "upgrade"),
         "13" <- Map.get(headers, "sec-websocket-version"),
         key when is_binary(key) <- Map.get(headers, "sec-websocket-key"),
         {:ok, <<_::binary-size(16)>>} <- Base.decode64(key) do
      accept = Base.encode64(:crypto.hash(:sha, key <> @guid))

      {:ok,
       [
         "HTTP/1.1 101 Switching Protocols\r\n",
         "Upgrade: websocket\r\nConnection: Upgrade\r\n",
         "Sec-WebSocket-Accept: ",
         accept,
         "\r\n\r\n"
       ]}
    else
      _ -> {:error, :bad_handshake}
    end
  end

  defp token_listed?(value, token) do
    value
    |> String.downcase()
    |> String.split(",")
    |> Enum.any?(&(String.trim(&1) == token))
  end

  @doc """
  Feeds bytes from the client. Returns the complete events they finish, in
  order, or the events before a violation and the violation with its close
  code.
  """
  @spec parse(t(), binary()) ::
          {:ok, [event()], t()} | {:error, failure(), [event()], t()}
  def parse(%__MODULE__{buffer: buffer} = ws, data) do
    loop(%{ws | buffer: buffer <> data}, [])
  end

  defp loop(%{header: nil, buffer: buffer} = ws, events) do
    case :cow_ws.parse_header(buffer, %{}, ws.frag) do
      :more ->
        {:ok, Enum.reverse(events), ws}

      :error ->
        fail(:protocol_error, events, ws)

      {_type, _frag, _rsv, _len, :undefined, _rest} ->
        # RFC 6455 5.1: a server must close on an unmasked client frame.
        fail(:protocol_error, events, ws)

      {type, frag, rsv, len, mask, rest} ->
        cond do
          len > ws.max_frame_size ->
            fail(:too_big, events, ws)

          type == :fragment and ws.message_size + len > ws.max_message_size ->
            fail(:too_big, events, ws)

          true ->
            loop(%{ws | header: {type, frag, rsv, len, mask}, buffer: rest}, events)
        end
    end
  end

  defp loop(%{header: {_type, _frag, _rsv, len, _mask}, buffer: buffer} = ws, events)
       when byte_size(buffer) < len,
       do: {:ok, Enum.reverse(events), ws}

  defp loop(%{header: {type, frag, rsv, len, mask}, buffer: buffer} = ws, events) do
    <<payload::binary-size(len), rest::binary>> = buffer
    control? = type in [:ping, :pong, :close]
    utf8 = if control?, do: 0, else: ws.utf8
    ws = %{ws | header: nil, buffer: rest}

    case :cow_ws.parse_payload(payload, mask, utf8, 0, type, len, frag, %{}, rsv) do
      {:ok, code, unmasked, _utf8, _} ->
        loop(ws, [{:close, code, unmasked} | events])

      {:ok, unmasked, _utf8, _} when type == :close ->
        loop(ws, [{:close, nil, unmasked} | events])

      {:ok, unmasked, _utf8, _} when control? ->
        loop(ws, [{type, unmasked} | events])

      {:ok, unmasked, utf8, _} ->
        data_frame(%{ws | utf8: utf8}, type, frag, unmasked, events)

      {:error, :badencoding} ->
        fail(:invalid_utf8, events, ws)

      {:error, _} ->
        fail(:protocol_error, events, ws)
    end
  end

  defp data_frame(ws, :fragment, {:nofin, _type, _rsv} = frag, payload, events) do
    loop(
      %{
        ws
        | frag: frag,
          fragments: [ws.fragments | payload],
          message_size: ws.message_size + byte_size(payload)
      },
      events
    )
  end

  defp data_frame(ws, :fragment, {:fin, type, _rsv}, payload, events) do
    message = IO.iodata_to_binary([ws.fragments | payload])
    ws = %{ws | frag: :undefined, fragments: [], message_size: 0, utf8: 0}
    loop(ws, [{type, message} | events])
  end

  defp data_frame(ws, type, _frag, payload, events) when type in [:text, :binary],
    do: loop(%{ws | utf8: 0}, [{type, payload} | events])

  defp fail(reason, events, ws) do
    code =
      case reason do
        :protocol_error -> 1002
        :invalid_utf8 -> 1007
        :too_big -> 1009
      end

    {:error, {reason, code}, Enum.reverse(events), %{ws | buffer: <<>>}}
  end

  @doc """
  A server frame (never masked) around `payload` (iodata).

  ## Examples

      iex> Switchboard.Gateway.WebSocket.frame(:text, "hi") |> IO.iodata_to_binary()
      <<129, 2, ?h, ?i>>
  """
  @spec frame(:text | :binary | :ping | :pong, iodata()) :: iodata()
  def frame(type, payload) do
    size = IO.iodata_length(payload)
    [header(opcode(type), size) | payload]
  end

  @doc """
  A close frame with a code and a reason (the reason cut to fit the 125
  bytes of a control frame).
  """
  @spec close_frame(non_neg_integer(), String.t()) :: binary()
  def close_frame(code, reason) do
    reason = binary_part(reason, 0, min(byte_size(reason), 123))
    IO.iodata_to_binary([header(8, byte_size(reason) + 2), <<code::16>>, reason])
  end

  defp opcode(:text), do: 1
  defp opcode(:binary), do: 2
  defp opcode(:ping), do: 9
  defp opcode(:pong), do: 10

  defp header(opcode, size) when size < 126, do: <<1::1, 0::3, opcode::4, 0::1, size::7>>

  defp header(opcode, size) when size < 65_536,
    do: <<1::1, 0::3, opcode::4, 0::1, 126::7, size::16>>

  defp header(opcode, size), do: <<1::1, 0::3, opcode::4, 0::1, 127::7, size::64>>

  @doc "Masks (or unmasks) `payload` with a 4-byte key, as a client does."
  @spec mask(binary(), <<_::32>>) :: binary()
  def mask(payload, <<key::32>>), do: mask(payload, key, [])

  defp mask(<<word::32, rest::binary>>, key, acc),
    do: mask(rest, key, [acc, <<bxor(word, key)::32>>])

  defp mask(<<byte, rest::binary>>, key, acc) do
    <<k, _::24>> = <<key::32>>
    mask(rest, rotate(key), [acc, bxor(byte, k)])
  end

  defp mask(<<>>, _key, acc), do: IO.iodata_to_binary(acc)

  defp rotate(key), do: (key <<< 8 &&& 0xFFFFFFFF) ||| key >>> 24
end
