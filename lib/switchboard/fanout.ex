defmodule Switchboard.Fanout do
  # kSplitChunk and kDefaultSplitShare in c_src/nif/fanout_glue.*.
  @split_chunk 256
  @split_share 512

  @moduledoc """
  Sends one message to many processes, local and remote, without the caller
  doing one `send/2` per receiver.

  `send/3` takes any list of local and remote pids:

    * **Local receivers** are delivered by the NIF with `enif_send`, called
      once for the whole list. The caller sends in time slices of about
      0.2 ms and yields between them (`enif_schedule_nif`), so even a
      fan-out to a million pids never holds a scheduler for longer, and it
      returns once every local receiver has the message. Each send copies
      the message, so the slices are paced by the message's size: the clock
      is read after every copy once a message is about 1 KB, and a message
      over about 256 KB (one copy could fill a slice by itself) is sent from
      a dirty scheduler. A fan-out to #{2 * @split_share} local receivers
      or more is split over several processes (see "Parallel delivery").
    * **Remote receivers** are grouped by node and get exactly one
      distribution message per node per fan-out, sent to the
      `Switchboard.Fanout.Partitioner` on that node (the `:switchboard`
      application starts one on every node), which delivers locally the same
      way. The grouping and sending is done by a `Switchboard.Fanout.Sender`
      process, not by the caller.
    * `offload: true` returns as soon as the list has been checked and its
      pids collected into a job (one native pass, yielding on long lists)
      for a native sender thread, fed through a lock-free queue, which
      sends with `enif_send` from outside the schedulers at a lower OS
      priority than the schedulers.
    * `pack: :binary` encodes the message once (`:erlang.term_to_binary/1`);
      that one refc binary is what the sender processes hold and what
      crosses the distribution links, and each node decodes it once in its
      partitioner.

  ## What receivers get

  Every receiver gets the message term itself, in every mode, exactly as
  with `send/2`. A process cannot share a term on another process's heap,
  so each local delivery copies the term into its receiver (literals and
  refc binaries inside it are shared, as with `send/2`); packing changes
  how the message travels between nodes, not what arrives.

  With `deliver: :packed` every receiver gets `{:switchboard_packed, etf}`
  instead: the message encoded once, shared by all (see `unpack/1`).

  ## Ordering

  Messages from one sending process to one receiver arrive in the order the
  fan-outs were made, whatever the mix of options:

    * an inline fan-out (the default) returns only once every local receiver
      has the message in its queue, so a later fan-out cannot overtake it;
    * a process's offloaded fan-outs all run on one sender thread (chosen
      by the caller's pid) in the order they were made; while any of them is
      still pending, a later inline fan-out from the same process is queued
      behind them on that thread and waits for its turn;
    * a split fan-out (see "Parallel delivery") ends only once every part
      of it is sent: an inline one returns after that, an offloaded one is
      one job on the caller's thread, and the next starts after it;
    * remote receivers are always reached through the caller's one sender
      process (chosen by the caller's pid), then one partitioner per node,
      each of which handles its mailbox in order.

  Relative to plain `send/2` calls from the same process the usual
  guarantee holds for inline fan-outs to local receivers only; an
  offloaded fan-out or a remote hop may be overtaken by a later `send/2`.
  Call `sync/0` first when that matters.

  ## Parallel delivery

  A fan-out to many local receivers is sent by several cores at once, in
  shares of at least #{@split_share} receivers (`stats/0`'s
  `:split_share`), never more shares than there are schedulers (inline) or
  sender threads (offloaded); below two shares' worth it is not split.

    * **Inline**: the receivers are split natively into shares (one pass,
      yielding; a bad entry raises before anything is sent), the caller
      sends one share and one new process per other share sends the rest
      (at the caller's priority; idle schedulers steal them from the
      caller's run queue), each in
      time slices as above; the caller returns once every share is sent.
      Sending from schedulers, not from the sender threads: a send from
      outside the schedulers costs 1.5-6x the CPU (bench/RESULTS.md,
      issue 15). For lists, the decision looks at the
      first entries only (up to 65,536). The shares' processes send the
      messages, but the caller returns only after the last of them, so the
      ordering above (and against the caller's own later `send/2`) holds.
    * **Offloaded**: the job's sender thread sends #{@split_chunk}
      receivers at a time, and asks up to one other thread per further
      share to take chunks too (behind whatever that thread is doing; one
      that comes late finds nothing left). The job ends when the last chunk
      is sent, so the caller's next job still starts after it.

  The node runs one sender thread per core (at most 64), or as many as the
  `SWITCHBOARD_FANOUT_THREADS` environment variable says (1 to 256;
  anything else is ignored), read once when the library loads; `stats/0`
  reports the count. Summaries are exact whether a fan-out is split or not.

  ## Receiver groups

  For receivers a process fans out to again and again, a
  `Switchboard.Fanout.Group` (a native set of local pids, kept current with
  `add`/`remove`) can stand in for the list: `send(group, message,
  offload: true)` costs the caller O(1) whatever the group's size (a snapshot
  of the members and one copy of the message go to the sender thread), and
  an inline `send(group, message)` walks no list. Ordering is the same as
  for lists.

  ## Summary

  Each call returns `%{local: l, remote: r, skipped: s}`:

    * `local` - local receivers that got the message (offload: that will get
      it; dead pids are then discovered by the sender thread);
    * `remote` - remote pids handed to their nodes' partitioners;
    * `skipped` - `nil` entries and dead local pids (offload: `nil` entries).

  Remote nodes that are not connected are skipped by the sender process, as
  are dead pids on remote nodes by their partitioner; `stats/0` counts them.

  ## Metrics

  Every `send/3` is counted in `Switchboard.Metrics`:
  `switchboard.fanout.sends` (calls), `switchboard.fanout.deliveries`
  (`local + remote`) and `switchboard.fanout.skipped` (`skipped`).
  """

  @behaviour Switchboard.Fanout.Behaviour

  alias Switchboard.Fanout.{Group, Options, Partitioner, Receivers, Sender}
  alias Switchboard.NIF
  alias Switchboard.Metrics

  @ticket_key {__MODULE__, :ticket}

  @typedoc "A receiver: a local or remote pid, or `nil` (skipped)."
  @type receiver :: pid() | nil

  @typedoc "What `send/3` reports."
  @type summary :: %{
          local: non_neg_integer(),
          remote: non_neg_integer(),
          skipped: non_neg_integer()
        }

  @type option :: {:pack, :binary | nil} | {:offload, boolean()} | {:deliver, :term | :packed}

  @doc """
  Sends `message` to every pid in `pids` and returns a summary.

  `nil` entries and dead pids are skipped and counted, never an error.

  ## Options

    * `:offload` - when `true`, return at once and let a native sender
      thread deliver (several, for a large fan-out). Defaults to `false`:
      the caller delivers (yielding every ~0.2 ms; with one process per
      scheduler helping it for a large fan-out) and returns once every
      local receiver has the message.
    * `:pack` - `:binary` encodes the message once with
      `:erlang.term_to_binary/1` for remote nodes, which each decode it
      once. Defaults to `nil` (the term is sent as is).
    * `:deliver` - `:packed` encodes the message once and every receiver,
      local or remote, gets `{:switchboard_packed, etf_binary}`: one shared
      refc binary instead of a copy of the term per receiver (receivers that
      forward bytes, such as gateway sessions, need not decode it;
      `unpack/1` does). Defaults to `:term`.

  ## Examples

      iex> Switchboard.Fanout.send([self(), nil, self()], :hello)
      %{local: 2, remote: 0, skipped: 1}
      iex> receive do: (:hello -> :got_it)
      :got_it
      iex> receive do: (:hello -> :got_it_twice)
      :got_it_twice

      iex> dead = spawn(fn -> :ok end)
      iex> ref = Process.monitor(dead)
      iex> receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
      iex> Switchboard.Fanout.send([dead, self()], {:tick, 1})
      %{local: 1, remote: 0, skipped: 1}

      iex> Switchboard.Fanout.send([self()], :later, offload: true)
      %{local: 1, remote: 0, skipped: 0}
      iex> Switchboard.Fanout.sync()
      :ok
      iex> receive do: (:later -> :delivered)
      :delivered

      iex> Switchboard.Fanout.send([self(), :not_a_pid], :hello)
      ** (ArgumentError) expected a pid or nil in the receiver list, got: :not_a_pid
  """
  @spec send([receiver()] | Group.t(), term(), [option()]) :: summary()
  @impl true
  def send(receivers, message, opts \\ []) do
    summary = dispatch(receivers, message, opts)
    # Reported through Switchboard.Metrics (see its moduledoc for the names).
    Metrics.increment("switchboard.fanout.sends")
    Metrics.increment("switchboard.fanout.deliveries", summary.local + summary.remote)
    if summary.skipped > 0, do: Metrics.increment("switchboard.fanout.skipped", summary.skipped)
    summary
  end

  defp dispatch(%Group{ref: ref}, message, opts) do
    {offload, _pack, message} = Options.prepare!(opts, message)

    if offload or pending_offload?() do
      queue(offload, fn notify ->
        {ticket, members} = NIF.fanout_group_offload(ref, message, notify)
        {ticket, members, 0, 0}
      end)
    else
      {delivered, skipped} =
        case split_count(&NIF.fanout_group_split(ref, &1)) do
          1 -> NIF.fanout_group_send(ref, message)
          shares -> send_shares(NIF.fanout_group_shares(ref, shares), message)
        end

      %{local: delivered, remote: 0, skipped: skipped}
    end
  end

  defp dispatch(pids, message, opts) do
    {offload, pack, message} = Options.prepare!(opts, message)

    cond do
      offload or pending_offload?() ->
        send_queued(pids, message, pack, offload)

      (shares = split_count(&NIF.fanout_split(pids, &1))) > 1 ->
        send_split(pids, message, pack, shares)

      true ->
        send_inline(pids, message, pack)
    end
  end

  @doc """
  Waits until every fan-out this process offloaded has been delivered to
  its local receivers and its remote part handed to the caller's
  `Switchboard.Fanout.Sender` (which sends it on in order, as for inline
  fan-outs).

  Returns at once when nothing is pending.

  ## Examples

      iex> Switchboard.Fanout.send([self()], :first, offload: true)
      iex> Switchboard.Fanout.sync()
      :ok
      iex> receive do
      ...>   :first -> :already_here
      ...> after
      ...>   0 -> :not_yet
      ...> end
      :already_here
  """
  @spec sync() :: :ok
  @impl true
  def sync do
    if pending_offload?() do
      %{} = send_queued([], nil, nil, false)
    end

    :ok
  end

  @doc """
  Counters of this node's fan-out machinery.

    * `:sender_threads` - native sender threads, `:thread_tasks` - tasks
      they have run (a helper's share of a split fan-out is one);
    * `:split_fanouts` - offloaded fan-outs split over the sender threads,
      `:helper_chunks` - chunks of them (#{@split_chunk} receivers) sent by
      a thread other than the fan-out's own, `:split_share` - the fewest
      receivers in a share of a split fan-out (see "Parallel delivery");
    * `:routed` - remote parts handled by the sender processes,
      `:dist_messages` - distribution messages they sent (one per node per
      fan-out), `:nodes_skipped` - destinations that were not connected;
    * `:partitioner` - fan-out messages this node's partitioner received
      from other nodes, and what it delivered and skipped.

  ## Examples

      iex> %{sender_threads: threads} = Switchboard.Fanout.stats()
      iex> threads >= 1
      true
  """
  @spec stats() :: %{
          sender_threads: non_neg_integer(),
          thread_tasks: non_neg_integer(),
          split_fanouts: non_neg_integer(),
          helper_chunks: non_neg_integer(),
          split_share: pos_integer(),
          routed: non_neg_integer(),
          dist_messages: non_neg_integer(),
          nodes_skipped: non_neg_integer(),
          partitioner: Partitioner.stats()
        }
  def stats do
    {threads, tasks, split_fanouts, helper_chunks, split_share} = NIF.fanout_info()

    Map.merge(Sender.stats(), %{
      sender_threads: threads,
      thread_tasks: tasks,
      split_fanouts: split_fanouts,
      helper_chunks: helper_chunks,
      split_share: split_share,
      partitioner: Partitioner.stats()
    })
  end

  # ---------------------------------------------------------------------------
  # Internal entry points for the partitioner

  @doc false
  # The partitioner's split of a fan-out from another node: a tuple of
  # `count` shares (nil where empty; a receiver is always in the same share)
  # and how many entries were skipped (nils, pids of other nodes). One
  # native pass; raises ArgumentError as send/3 does on bad entries.
  @spec partition([receiver()], pos_integer()) :: {tuple(), non_neg_integer()}
  def partition(pids, count), do: NIF.fanout_partition(pids, count)

  @doc false
  # A partitioner worker's share: sends in time slices from the calling
  # process; returns {delivered, skipped}.
  @spec deliver_share(reference(), term()) :: {non_neg_integer(), non_neg_integer()}
  def deliver_share(share, message), do: NIF.fanout_share_send(share, message)

  @doc false
  # Raises the ArgumentError send/3 would raise for `pids`.
  @spec check_receivers!(term()) :: :ok
  def check_receivers!(pids), do: check_list(pids)

  @doc """
  Decodes what a receiver of a `deliver: :packed` fan-out got (also used by
  the partitioners for `pack: :binary`).

      iex> Switchboard.Fanout.send([self()], %{"op" => 0}, deliver: :packed)
      iex> receive do: ({:switchboard_packed, _} = packed -> Switchboard.Fanout.unpack(packed))
      %{"op" => 0}
  """
  @spec unpack({:switchboard_packed, binary()} | binary()) :: term()
  # The one place a packed message is decoded (see pack/1).
  @impl true
  def unpack(packed), do: Options.unpack(packed)

  # ---------------------------------------------------------------------------

  # The caller sends. The list is checked first (one fast pass) so bad
  # input raises before anything is sent.
  defp send_inline(pids, message, pack) do
    check_list(pids)
    {delivered, skipped, remote} = NIF.fanout_send(pids, message)
    %{local: delivered, remote: route_remote(remote, message, pack), skipped: skipped}
  end

  # A large inline fan-out: the local pids split natively into one share per
  # scheduler (one pass, yielding; bad input raises before anything is
  # sent), sent by as many processes at once.
  defp send_split(pids, message, pack, count) do
    {shares, nils, remote} = NIF.fanout_split_list(pids, count)
    {delivered, skipped} = send_shares(shares, message)
    %{local: delivered, remote: route_remote(remote, message, pack), skipped: skipped + nils}
  end

  # The caller sends the first share and one new process each of the others
  # (idle schedulers steal them from the caller's run queue); returns once
  # every share is sent, with the summed {delivered, skipped}. The helpers
  # add to an :atomics and the last one sends one message, received by a
  # reference made here (so a caller with a long mailbox does not scan it
  # once per helper); a helper that raises is re-raised in the caller.
  defp send_shares(shares, message) do
    case for(share <- Tuple.to_list(shares), share != nil, do: share) do
      [] ->
        {0, 0}

      # One pid listed many times: every copy hashed into one share.
      [own] ->
        NIF.fanout_share_send(own, message)

      [own | others] ->
        ref = make_ref()
        caller = self()
        totals = :atomics.new(3, [])
        :atomics.put(totals, 3, length(others))
        # At the caller's priority: a high-priority caller's fan-out stays one.
        {:priority, priority} = Process.info(caller, :priority)
        helper = fn share -> fn -> send_share(share, message, totals, caller, ref) end end
        Enum.each(others, &:erlang.spawn_opt(helper.(&1), [:link, priority: priority]))
        {delivered, skipped} = NIF.fanout_share_send(own, message)

        receive do
          {^ref, :sent} ->
            {delivered + :atomics.get(totals, 1), skipped + :atomics.get(totals, 2)}

          {^ref, {kind, reason, stack}} ->
            :erlang.raise(kind, reason, stack)
        end
    end
  end

  defp send_share(share, message, totals, caller, ref) do
    {delivered, skipped} = NIF.fanout_share_send(share, message)
    :atomics.add(totals, 1, delivered)
    :atomics.add(totals, 2, skipped)
    if :atomics.sub_get(totals, 3, 1) == 0, do: Kernel.send(caller, {ref, :sent})
  catch
    kind, reason -> Kernel.send(caller, {ref, {kind, reason, __STACKTRACE__}})
  end

  # Into how many shares (one per scheduler at most) a fan-out is split;
  # `shares_for.(most)` asks the NIF, which looks at the receivers.
  defp split_count(shares_for) do
    case :erlang.system_info(:schedulers_online) do
      1 -> 1
      schedulers -> shares_for.(min(schedulers, 1024))
    end
  end

  defp route_remote([], _message, _pack), do: 0

  defp route_remote(remote, message, pack) do
    {packed, payload} =
      if pack == :binary, do: {true, Options.pack(message)}, else: {false, message}

    Kernel.send(Sender.for_caller!(), {:"$switchboard_fanout_remote", remote, packed, payload})
    length(remote)
  end

  # Offloaded, or inline behind pending offloaded work: one job on the
  # caller's sender thread (the NIF checks and collects the list in one
  # pass). Inline callers wait for its report.
  defp send_queued(pids, message, pack, offload) do
    packed = if pack == :binary, do: Options.pack(message)

    queue(offload, fn notify ->
      NIF.fanout_offload(pids, message, packed, Sender.for_caller!(), notify)
    end)
  end

  # Queues one job with `submit.(notify)` (which returns {ticket, local,
  # remote, skipped}) and remembers its ticket; inline callers (notify set)
  # wait for the sender thread's report.
  defp queue(offload, submit) do
    ref = make_ref()
    notify = if offload, do: nil, else: {self(), ref}
    {ticket, local, remote, skipped} = submit.(notify)
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
        if NIF.fanout_ticket_done(ticket) do
          Process.delete(@ticket_key)
          false
        else
          true
        end
    end
  end

  # One fast pass that checks the receivers. Bad input is reported by the
  # NIF so the message is the one its own checks give.
  defp check_list(pids), do: Receivers.check!(pids)
end
