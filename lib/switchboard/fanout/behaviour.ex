defmodule Switchboard.Fanout.Behaviour do
  @moduledoc """
  The contract of a fan-out: one message to many processes, implemented by
  `Switchboard.Fanout` (native sends, sender threads and groups) and
  `Switchboard.Fanout.Pure` (`send/2` loops, sender processes).

  Both deliver the message term itself to every local receiver, reach
  remote ones through one message per node, keep one sending process's
  fan-outs in order, accept the same options (parsed once, by
  `Switchboard.Fanout.Options`) and raise the same `ArgumentError` for the
  same bad receivers (worded once, by `Switchboard.Fanout.Receivers`). A
  receiver group of the same implementation (`Switchboard.Fanout.GroupBehaviour`)
  stands in for a list.
  """

  @typedoc "A receiver: a local or remote pid, or `nil` (skipped)."
  @type receiver :: pid() | nil

  @typedoc "What `send/3` reports: receivers reached locally, remote pids handed on, skipped."
  @type summary :: %{
          local: non_neg_integer(),
          remote: non_neg_integer(),
          skipped: non_neg_integer()
        }

  @typedoc "See `Switchboard.Fanout.send/3`."
  @type option :: {:pack, :binary | nil} | {:offload, boolean()} | {:deliver, :term | :packed}

  @doc """
  Sends `message` to every receiver of a list, or every member of a group,
  and returns a summary. `nil` entries are skipped and counted.

  ## Options

    * `:offload` - `true` returns at once and delivers from elsewhere
      (default `false`: the caller delivers, and returns once every local
      receiver has the message).
    * `:pack` - `:binary` encodes the message once for remote nodes
      (default `nil`).
    * `:deliver` - `:packed` sends every receiver `{:switchboard_packed,
      etf}`, one shared binary (default `:term`).
  """
  @callback send(receivers :: [receiver()] | struct(), message :: term(), [option()]) ::
              summary()

  @doc "Waits until every fan-out this process offloaded has been delivered."
  @callback sync() :: :ok

  @doc "Decodes what a `deliver: :packed` receiver got."
  @callback unpack({:switchboard_packed, binary()} | binary()) :: term()
end

defmodule Switchboard.Fanout.GroupBehaviour do
  @moduledoc """
  The contract of a receiver group: a mutable set of local pids that a
  fan-out of the same implementation can send to instead of a list,
  implemented by `Switchboard.Fanout.Group` and
  `Switchboard.Fanout.Pure.Group`. A fan-out to a group sends to the
  members it had when it started.
  """

  @typedoc "A group of this implementation."
  @type group :: struct()

  @doc "A group of the given local pids (duplicates kept once)."
  @callback new([pid()]) :: group()

  @doc "Adds a local pid; returns the group."
  @callback add(group(), pid()) :: group()

  @doc "Removes a pid if present; returns the group."
  @callback remove(group(), pid()) :: group()

  @doc "Whether `pid` is a member."
  @callback member?(group(), pid()) :: boolean()

  @doc "The number of members."
  @callback size(group()) :: non_neg_integer()

  @doc "The members, in no particular order."
  @callback to_list(group()) :: [pid()]
end
