defmodule Switchboard.Fanout.Batcher do
  @moduledoc """
  Batches events in front of a set of receivers: one `{:batch, events}`
  message per receiver per flush instead of one message per event.

  Events pushed into a batcher accumulate in a window that is flushed, with
  one `Switchboard.Fanout.send/3`, when it holds `:max_events` entries or
  `:max_delay_ms` after its first event, whichever comes first. `events`
  keeps the order in which the events were pushed.

  With `:coalesce`, events that map to the same key replace each other
  within a window: only the latest per key is delivered, at the position
  where the key first appeared in the window. That is what presence
  updates want (only the latest status per user), and it lets a storm of
  updates shrink to one entry per user per window.

  Nothing accepted is lost: a stop (including a supervisor shutdown, the
  batcher traps exits) flushes the window together with the pushes still in
  the mailbox. An event is accepted once `push/2` has put it in the
  batcher's mailbox; only a brutal `:kill` loses events.
  """
  use GenServer

  @typedoc "A batcher: a pid or a registered name."
  @type batcher :: GenServer.server()

  @type option ::
          {:receivers, [Switchboard.Fanout.receiver()]}
          | {:max_events, pos_integer()}
          | {:max_delay_ms, non_neg_integer()}
          | {:coalesce, (term() -> term()) | nil}
          | {:fanout, module()}
          | {:fanout_opts, [Switchboard.Fanout.option()]}
          | {:name, GenServer.name()}

  @typedoc "What a batcher has done since it started."
  @type stats :: %{
          accepted: non_neg_integer(),
          coalesced: non_neg_integer(),
          flushes: non_neg_integer(),
          events_flushed: non_neg_integer()
        }

  @doc """
  Starts a batcher linked to the caller.

  Every option is checked here (`:fanout` and `:fanout_opts` included), so
  a bad one raises `ArgumentError` at start instead of losing the first
  window's events.

  ## Options

    * `:receivers` - the pids that get the batches (default `[]`); see
      `put_receivers/2`.
    * `:max_events` - flush when the window holds this many entries (after
      coalescing). Defaults to `100`.
    * `:max_delay_ms` - flush this long after the window's first event.
      Defaults to `50`.
    * `:coalesce` - `nil` (default) keeps every event; a function from an
      event to its key keeps only the latest event per key in a window
      (events whose key is `nil` are always kept).
    * `:fanout` - the module that delivers, `Switchboard.Fanout` (default)
      or `Switchboard.Fanout.Pure`.
    * `:fanout_opts` - options for its `send/3` (default `[]`).
    * `:name` - registers the batcher.

  ## Examples

      iex> {:ok, batcher} =
      ...>   Switchboard.Fanout.Batcher.start_link(receivers: [self()], max_events: 2)
      iex> Switchboard.Fanout.Batcher.push(batcher, :a)
      :ok
      iex> Switchboard.Fanout.Batcher.push(batcher, :b)
      :ok
      iex> receive do: ({:batch, events} -> events)
      [:a, :b]

      iex> {:ok, batcher} =
      ...>   Switchboard.Fanout.Batcher.start_link(
      ...>     receivers: [self()],
      ...>     coalesce: fn {user, _status} -> user end
      ...>   )
      iex> for event <- [{1, :online}, {2, :online}, {1, :idle}],
      ...>   do: Switchboard.Fanout.Batcher.push(batcher, event)
      iex> Switchboard.Fanout.Batcher.flush(batcher)
      :ok
      iex> receive do: ({:batch, events} -> events)
      [{1, :idle}, {2, :online}]

      iex> Switchboard.Fanout.Batcher.start_link(max_events: 0)
      ** (ArgumentError) expected :max_events to be a positive integer, got: 0
  """
  @spec start_link([option()]) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name)
    config = config!(opts)
    GenServer.start_link(__MODULE__, config, if(name, do: [name: name], else: []))
  end

  @doc """
  Adds `event` to the current window. Asynchronous; always returns `:ok`.

  ## Examples

      iex> {:ok, batcher} = Switchboard.Fanout.Batcher.start_link(receivers: [self()])
      iex> Switchboard.Fanout.Batcher.push(batcher, {:typing, 42})
      :ok
  """
  @spec push(batcher(), term()) :: :ok
  def push(batcher, event), do: GenServer.cast(batcher, {:push, event})

  @doc """
  Flushes the current window now (if it holds anything) and returns once it
  has been sent. Waits at most `timeout` ms (default 5,000) for the
  batcher, which may be busy flushing large batches to many receivers.

  ## Examples

      iex> {:ok, batcher} = Switchboard.Fanout.Batcher.start_link(receivers: [self()])
      iex> Switchboard.Fanout.Batcher.flush(batcher)
      :ok
  """
  @spec flush(batcher(), timeout()) :: :ok
  def flush(batcher, timeout \\ 5_000), do: GenServer.call(batcher, :flush, timeout)

  @doc """
  Replaces the receivers. The current window is flushed to the old
  receivers first, so each batch goes to the receivers that were there
  when its events were pushed.

  ## Examples

      iex> {:ok, batcher} = Switchboard.Fanout.Batcher.start_link()
      iex> Switchboard.Fanout.Batcher.put_receivers(batcher, [self()])
      :ok
      iex> Switchboard.Fanout.Batcher.put_receivers(batcher, :nobody)
      ** (ArgumentError) expected a list of pids, got: :nobody
  """
  @spec put_receivers(batcher(), [Switchboard.Fanout.receiver()]) :: :ok
  def put_receivers(batcher, receivers) do
    receivers!(receivers)
    GenServer.call(batcher, {:put_receivers, receivers})
  end

  @doc """
  Counters: events accepted, events replaced by a later one with the same
  key, flushes, and events delivered (per receiver).

  ## Examples

      iex> {:ok, batcher} = Switchboard.Fanout.Batcher.start_link()
      iex> Switchboard.Fanout.Batcher.stats(batcher)
      %{accepted: 0, coalesced: 0, flushes: 0, events_flushed: 0}
  """
  @spec stats(batcher()) :: stats()
  def stats(batcher), do: GenServer.call(batcher, :stats)

  # ---------------------------------------------------------------------------

  defp config!(opts) do
    opts =
      Keyword.validate!(opts,
        receivers: [],
        max_events: 100,
        max_delay_ms: 50,
        coalesce: nil,
        fanout: Switchboard.Fanout,
        fanout_opts: []
      )

    case opts[:max_events] do
      n when is_integer(n) and n > 0 ->
        :ok

      other ->
        raise ArgumentError,
              "expected :max_events to be a positive integer, got: #{inspect(other)}"
    end

    case opts[:max_delay_ms] do
      n when is_integer(n) and n >= 0 ->
        :ok

      other ->
        raise ArgumentError,
              "expected :max_delay_ms to be a non-negative integer, got: #{inspect(other)}"
    end

    case opts[:coalesce] do
      nil ->
        :ok

      fun when is_function(fun, 1) ->
        :ok

      other ->
        raise ArgumentError,
              "expected :coalesce to be a 1-arity function or nil, got: #{inspect(other)}"
    end

    Switchboard.Fanout.Options.implementation!(opts[:fanout])

    try do
      Switchboard.Fanout.Options.parse!(opts[:fanout_opts])
    rescue
      error in ArgumentError ->
        reraise ArgumentError,
                "invalid :fanout_opts: " <> Exception.message(error),
                __STACKTRACE__
    end

    receivers!(opts[:receivers])
    Map.new(opts)
  end

  defp receivers!(receivers) do
    Switchboard.Fanout.check_receivers!(receivers)
    receivers
  end

  @impl true
  def init(config) do
    Process.flag(:trap_exit, true)

    state =
      Map.merge(config, %{
        window: new_window(),
        timer: nil,
        accepted: 0,
        coalesced: 0,
        flushes: 0,
        events_flushed: 0
      })

    {:ok, state}
  end

  @impl true
  def handle_cast({:push, event}, state), do: {:noreply, accept(state, event)}

  @impl true
  def handle_call(:flush, _from, state), do: {:reply, :ok, flush_window(state)}

  def handle_call({:put_receivers, receivers}, _from, state) do
    {:reply, :ok, %{flush_window(state) | receivers: receivers}}
  end

  def handle_call(:stats, _from, state) do
    {:reply, Map.take(state, [:accepted, :coalesced, :flushes, :events_flushed]), state}
  end

  @impl true
  def handle_info({:timeout, timer, :flush}, %{timer: timer} = state),
    do: {:noreply, flush_window(state)}

  # A timer that fired after a flush by size: stale.
  def handle_info({:timeout, _timer, :flush}, state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state) when reason != :normal, do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    state |> drain_mailbox() |> flush_window()
    :ok
  end

  # Pushes already in the mailbox were accepted: take them before the last flush.
  defp drain_mailbox(state) do
    receive do
      {:"$gen_cast", {:push, event}} -> state |> accept(event) |> drain_mailbox()
    after
      0 -> state
    end
  end

  # ---------------------------------------------------------------------------
  # The window: entries in first-pushed order; with coalescing, a map from
  # key to the entry's position so a later event replaces it in place.

  defp new_window, do: %{entries: %{}, keys: %{}, size: 0}

  defp accept(state, event) do
    state = %{state | accepted: state.accepted + 1}
    key = if state.coalesce, do: state.coalesce.(event)

    case state.window do
      %{keys: %{^key => position}} = window when key != nil ->
        window = %{window | entries: %{window.entries | position => event}}
        %{state | window: window, coalesced: state.coalesced + 1}

      window ->
        position = window.size

        keys = if key == nil, do: window.keys, else: Map.put(window.keys, key, position)

        window = %{
          window
          | entries: Map.put(window.entries, position, event),
            keys: keys,
            size: position + 1
        }

        state = %{state | window: window}
        state = if position == 0, do: start_timer(state), else: state
        if window.size >= state.max_events, do: flush_window(state), else: state
    end
  end

  defp start_timer(state) do
    %{state | timer: :erlang.start_timer(state.max_delay_ms, self(), :flush)}
  end

  defp flush_window(%{window: %{size: 0}} = state), do: state

  defp flush_window(state) do
    if state.timer, do: :erlang.cancel_timer(state.timer)
    %{entries: entries, size: size} = state.window
    events = for position <- 0..(size - 1), do: Map.fetch!(entries, position)
    state.fanout.send(state.receivers, {:batch, events}, state.fanout_opts)

    %{
      state
      | window: new_window(),
        timer: nil,
        flushes: state.flushes + 1,
        events_flushed: state.events_flushed + size
    }
  end
end
