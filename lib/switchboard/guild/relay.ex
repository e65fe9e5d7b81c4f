defmodule Switchboard.Guild.Relay do
  @moduledoc false
  # Between a big guild and its sessions: holds up to the guild's threshold
  # of local sessions (a fan-out group of all of them and one of the active
  # ones) and does the final fan-out of what the guild sends it, so the
  # guild sends one message per relay instead of one per session. Only the
  # session sets live here, never member data. Linked to its guild (a crash
  # takes both down) and watching it (a guild that stops normally takes its
  # relays with it).
  #
  # A relay runs at its guild's priority (high by default, see the guild's
  # moduledoc). Above its guild (r1's high relays under a normal guild,
  # bench/RESULTS.md, sixth session) a backlog of list updates starves the
  # guild; below it, the relay waits behind the sessions for each event,
  # so the sessions still wake for one frame at a time (measured, seventh
  # session). One path per session (its relay) keeps events and
  # member-list updates in the guild's order.

  use GenServer

  def start_link(modules, priority \\ :normal),
    do: GenServer.start_link(__MODULE__, {modules, self(), priority})

  @impl true
  def init({modules, guild, priority}) do
    Process.flag(:priority, priority)
    Process.monitor(guild)
    # A backlog of messages must not make every garbage collection copy it.
    Process.flag(:message_queue_data, :off_heap)

    {:ok,
     %{
       fanout: modules.fanout,
       group: modules.group,
       all: modules.group.new([]),
       active: modules.group.new([]),
       # The same sessions as `all`, for is_map_key/2 (a guard BIF: half
       # the cost of a member?/2 call per pid named by a list update).
       mine: %{}
     }}
  end

  @impl true
  def handle_info({:"$sb_relay", :all, message}, state) do
    state.fanout.send(state.all, message)
    {:noreply, state}
  end

  def handle_info({:"$sb_relay", :active, message}, state) do
    state.fanout.send(state.active, message)
    {:noreply, state}
  end

  # A member-list update for some sessions of the guild: this relay's own.
  def handle_info({:"$sb_relay_to", pids, message}, %{mine: mine} = state) do
    state.fanout.send(for(pid <- pids, is_map_key(mine, pid), do: pid), message)
    {:noreply, state}
  end

  def handle_info({:"$sb_add", pid, passive}, state) do
    state.group.add(state.all, pid)
    state = %{state | mine: Map.put(state.mine, pid, true)}

    if passive,
      do: state.group.remove(state.active, pid),
      else: state.group.add(state.active, pid)

    {:noreply, state}
  end

  def handle_info({:DOWN, _ref, :process, _guild, _reason}, state), do: {:stop, :normal, state}

  def handle_info({:"$sb_remove", pid}, state) do
    state.group.remove(state.all, pid)
    state.group.remove(state.active, pid)
    {:noreply, %{state | mine: Map.delete(state.mine, pid)}}
  end
end
