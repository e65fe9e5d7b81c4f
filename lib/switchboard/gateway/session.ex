defmodule Switchboard.Gateway.Session do
  @moduledoc """
  A gateway session's state as data: who identified, its sequence numbers
  and the replay buffer that RESUME reads.

  This is the gateway's own session layer, kept behind this small API
  (`new/1`, `push/3`, `replay/2`) so that it can be swapped for
  `Switchboard.Session` when that lands. The process that hosts it is the
  connection (`Switchboard.Gateway.Connection`), which outlives a dropped
  socket for the resume window and adopts the socket of a RESUME.

  The buffer keeps the last `:replay_limit` dispatches; each entry holds
  the event's encoded data, shared with every other session that got it,
  so an entry costs a session little more than its tuple.
  """

  @enforce_keys [:id, :user, :token, :encoding]
  defstruct [
    :id,
    :user,
    :token,
    :encoding,
    :shard,
    intents: 0,
    guild_ids: [],
    seq: 0,
    replay: :queue.new(),
    replay_size: 0,
    replay_limit: 1024
  ]

  @type entry :: {pos_integer(), String.t(), term()}
  @type t :: %__MODULE__{
          id: String.t(),
          user: map(),
          token: String.t(),
          encoding: :json | :etf,
          shard: [non_neg_integer()] | nil,
          intents: non_neg_integer(),
          guild_ids: [String.t()],
          seq: non_neg_integer(),
          replay: :queue.queue(entry()),
          replay_size: non_neg_integer(),
          replay_limit: pos_integer()
        }

  @doc "A new session (a random 32-hex-digit id unless `:id` is given)."
  @spec new(keyword()) :: t()
  def new(opts) do
    opts =
      Keyword.put_new_lazy(opts, :id, fn ->
        Base.encode16(:crypto.strong_rand_bytes(16), case: :lower)
      end)

    struct!(__MODULE__, opts)
  end

  @doc """
  Numbers the next dispatch and keeps it for resuming; returns its sequence
  number and the session.

      iex> session = Switchboard.Gateway.Session.new(id: "s", user: %{}, token: "t", encoding: :json)
      iex> {1, session} = Switchboard.Gateway.Session.push(session, "READY", "{}")
      iex> {seq, _} = Switchboard.Gateway.Session.push(session, "GUILD_CREATE", "{}")
      iex> seq
      2
  """
  @spec push(t(), String.t(), term()) :: {pos_integer(), t()}
  def push(%__MODULE__{seq: seq, replay: replay, replay_size: size} = session, type, fragment) do
    seq = seq + 1
    replay = :queue.in({seq, type, fragment}, replay)

    {replay, size} =
      if size >= session.replay_limit, do: {:queue.drop(replay), size}, else: {replay, size + 1}

    {seq, %{session | seq: seq, replay: replay, replay_size: size}}
  end

  @doc """
  The dispatches after `last_seq`, oldest first. `{:error, :invalid_seq}`
  when `last_seq` is ahead of the session (close 4007), `{:error, :gone}`
  when some of them have left the buffer (INVALID_SESSION).

      iex> alias Switchboard.Gateway.Session
      iex> session = Session.new(id: "s", user: %{}, token: "t", encoding: :json, replay_limit: 2)
      iex> session = Enum.reduce(1..3, session, fn n, s -> elem(Session.push(s, "T", n), 1) end)
      iex> Session.replay(session, 1)
      {:ok, [{2, "T", 2}, {3, "T", 3}]}
      iex> Session.replay(session, 0)
      {:error, :gone}
      iex> Session.replay(session, 4)
      {:error, :invalid_seq}
  """
  @spec replay(t(), non_neg_integer()) :: {:ok, [entry()]} | {:error, :invalid_seq | :gone}
  def replay(%__MODULE__{seq: seq}, last_seq) when last_seq > seq, do: {:error, :invalid_seq}

  def replay(%__MODULE__{seq: seq, replay_size: size} = session, last_seq) do
    oldest = seq - size + 1

    if last_seq + 1 < oldest do
      {:error, :gone}
    else
      {_, kept} = :queue.split(last_seq + 1 - oldest, session.replay)
      {:ok, :queue.to_list(kept)}
    end
  end
end
