defmodule Switchboard.Fanout.Pure do
  @moduledoc """
  The pure-Elixir twin of `Switchboard.Fanout`: the same API and ordering
  guarantees, built the way discord/manifold builds them.

  Local receivers get a `send/2` each from the caller; remote receivers are
  grouped by node (by a `Switchboard.Fanout.Pure.Sender`) and get one
  message per node, sent to the `Switchboard.Fanout.Pure.Partitioner`
  there, which splits the pids over worker processes by
  `:erlang.phash2/2` of the receiver (so one receiver is always served by
  the same worker, in order). `offload: true` hands the whole fan-out to the
  caller's sender process and returns at once. It is the oracle for the
  differential tests and the baseline of `bench/fanout.exs`.

  One difference in the summary: `send/2` cannot tell a dead local pid
  from a live one without a round-trip, so dead local pids count as
  delivered here, where `Switchboard.Fanout` counts them as skipped.
  """

  @behaviour Switchboard.Fanout.Behaviour

  alias Switchboard.Fanout.Pure.{Group, Sender}
  alias Switchboard.Fanout.{Options, Receivers}

  @ticket_key {__MODULE__, :ticket}

  @doc """
  Sends `message` to every pid in `pids`; see `Switchboard.Fanout.send/3`.

  ## Options

    * `:offload` - when `true`, return at once and let the caller's sender
      process deliver. Defaults to `false`.
    * `:pack` - `:binary` encodes the message once for remote nodes.
      Defaults to `nil`.

  ## Examples

      iex> Switchboard.Fanout.Pure.send([self(), nil], :hello)
      %{local: 1, remote: 0, skipped: 1}
      iex> receive do: (:hello -> :ok)
      :ok

      iex> Switchboard.Fanout.Pure.send([:not_a_pid], :hello)
      ** (ArgumentError) expected a pid or nil in the receiver list, got: :not_a_pid
  """
  @spec send([Switchboard.Fanout.receiver()] | Group.t(), term(), [Switchboard.Fanout.option()]) ::
          Switchboard.Fanout.summary()
  @impl true
  def send(receivers, message, opts \\ [])

  # A group's members are read by the caller (a snapshot, as the native
  # group takes), then sent like a list of local pids.
  def send(%Group{} = group, message, opts) do
    send(Group.to_list(group), message, opts)
  end

  def send(pids, message, opts) do
    {offload, pack, message} = Options.prepare!(opts, message)

    if offload or pending_offload?() do
      send_queued(pids, message, pack, offload)
    else
      send_inline(pids, message, pack)
    end
  end

  @doc """
  Waits until this process's offloaded fan-outs have been delivered; see
  `Switchboard.Fanout.sync/0`.

  ## Examples

      iex> Switchboard.Fanout.Pure.sync()
      :ok
  """
  @spec sync() :: :ok
  @impl true
  def sync do
    if pending_offload?(), do: send_queued([], nil, nil, false)
    :ok
  end

  @doc "Decodes a `deliver: :packed` message; see `Switchboard.Fanout.unpack/1`."
  @spec unpack({:switchboard_packed, binary()} | binary()) :: term()
  @impl true
  def unpack(packed), do: Options.unpack(packed)

  @doc false
  # Delivers the local pids of `pids` with send/2; returns
  # {delivered, skipped, remote_pids}. Raises on bad input.
  def deliver(pids, message) when is_list(pids), do: deliver(pids, message, node(), 0, 0, [])

  def deliver(other, _message), do: Receivers.not_a_list!(other)

  defp deliver([pid | rest], message, here, delivered, skipped, remote)
       when is_pid(pid) and node(pid) == here do
    Kernel.send(pid, message)
    deliver(rest, message, here, delivered + 1, skipped, remote)
  end

  defp deliver([pid | rest], message, here, delivered, skipped, remote) when is_pid(pid),
    do: deliver(rest, message, here, delivered, skipped, [pid | remote])

  defp deliver([nil | rest], message, here, delivered, skipped, remote),
    do: deliver(rest, message, here, delivered, skipped + 1, remote)

  defp deliver([], _message, _here, delivered, skipped, remote), do: {delivered, skipped, remote}

  defp deliver([other | _], _message, _here, _delivered, _skipped, _remote),
    do: Receivers.bad_receiver!(other)

  defp deliver(tail, _message, _here, _delivered, _skipped, _remote),
    do: Receivers.improper!(tail)

  # The list is checked first, as the native fan-out does, so bad input
  # raises before anything is sent.
  defp send_inline(pids, message, pack) do
    Receivers.check!(pids)
    {delivered, skipped, remote} = deliver(pids, message)
    %{local: delivered, remote: route_remote(remote, message, pack), skipped: skipped}
  end

  defp route_remote([], _message, _pack), do: 0

  defp route_remote(remote, message, pack) do
    {packed, payload} =
      if pack == :binary, do: {true, Options.pack(message)}, else: {false, message}

    Kernel.send(Sender.for_caller!(), {:"$switchboard_fanout_remote", remote, packed, payload})
    length(remote)
  end

  # The sender process validates nothing, so validate (and count) here.
  defp send_queued(pids, message, pack, offload) do
    {local, remote, skipped} = count(pids)
    ticket = :atomics.new(1, [])
    ref = make_ref()
    notify = if offload, do: nil, else: {self(), ref}

    Kernel.send(
      Sender.for_caller!(),
      {:"$switchboard_fanout_offload", pids, message, pack, ticket, notify}
    )

    Process.put(@ticket_key, ticket)

    if offload do
      %{local: local, remote: remote, skipped: skipped}
    else
      receive do
        {^ref, delivered, skipped} -> %{local: delivered, remote: remote, skipped: skipped}
      end
    end
  end

  defp pending_offload? do
    case Process.get(@ticket_key) do
      nil ->
        false

      ticket ->
        if :atomics.get(ticket, 1) == 1 do
          Process.delete(@ticket_key)
          false
        else
          true
        end
    end
  end

  defp count(pids) when is_list(pids), do: count(pids, node(), 0, 0, 0)
  defp count(other), do: deliver(other, nil)

  defp count([pid | rest], here, local, remote, skipped) when is_pid(pid) and node(pid) == here,
    do: count(rest, here, local + 1, remote, skipped)

  defp count([pid | rest], here, local, remote, skipped) when is_pid(pid),
    do: count(rest, here, local, remote + 1, skipped)

  defp count([nil | rest], here, local, remote, skipped),
    do: count(rest, here, local, remote, skipped + 1)

  defp count([], _here, local, remote, skipped), do: {local, remote, skipped}
  # Bad input: let deliver/6 raise the same error without sending anything.
  defp count([other | _], here, _, _, _), do: deliver([other], nil, here, 0, 0, [])
  defp count(tail, here, _, _, _), do: deliver(tail, nil, here, 0, 0, [])
end
