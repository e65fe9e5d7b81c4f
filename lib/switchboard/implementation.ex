defmodule Switchboard.Implementation do
  @moduledoc """
  Which twin of each module the runtime uses: native (the default) or pure.

  The runtime (`Switchboard.Guild`, its relays and sessions) never names a
  native module directly; it asks here, so `--mode pure` in the simulator
  (or `config :switchboard, mode: :pure`) swaps every native module for its
  pure-Elixir twin at once and changes nothing else.

      iex> Switchboard.Implementation.modules(:pure).fanout
      Switchboard.Fanout.Pure
  """

  @type mode :: :native | :pure

  @type modules :: %{
          mode: mode(),
          member_list: module(),
          fanout: module(),
          group: module(),
          codec: module(),
          metrics: module(),
          semaphore: module()
        }

  @doc "The configured mode (`:switchboard, :mode`), `:native` unless set."
  @spec mode() :: mode()
  def mode, do: Application.get_env(:switchboard, :mode, :native)

  @doc """
  The modules of `mode`: `:member_list`, `:fanout` (with its `:group`),
  `:codec` (a `Switchboard.Codec`: ETF frames, their payload encoded by
  `Switchboard.Erlpack` or its twin), and the `:metrics` and `:semaphore`
  that `Switchboard.RuntimeMetrics` and `Switchboard.Guard` use once
  `install/1` has made `mode` the runtime's.

  Raises `ArgumentError` for an unknown mode.
  """
  @spec modules(mode()) :: modules()
  def modules(mode \\ mode())

  def modules(:native) do
    %{
      mode: :native,
      member_list: Switchboard.MemberList,
      fanout: Switchboard.Fanout,
      group: Switchboard.Fanout.Group,
      codec: Switchboard.Codec.ETF,
      metrics: Switchboard.Metrics,
      semaphore: Switchboard.Semaphore
    }
  end

  def modules(:pure) do
    %{
      mode: :pure,
      member_list: Switchboard.MemberList.Pure,
      fanout: Switchboard.Fanout.Pure,
      group: Switchboard.Fanout.Pure.Group,
      codec: Switchboard.Codec.ETF.Pure,
      metrics: Switchboard.Metrics.Pure,
      semaphore: Switchboard.Semaphore.Pure
    }
  end

  def modules(other),
    do: raise(ArgumentError, "expected mode :native or :pure, got: #{inspect(other)}")

  @metrics_key {__MODULE__, :metrics}
  @semaphore_key {__MODULE__, :semaphore}

  @doc """
  Makes `mode` the runtime's: sets `:switchboard, :mode` (read by guilds
  and sessions started from now on) and switches the process-wide
  `metrics/0` and `semaphore/0` that `Switchboard.RuntimeMetrics` and
  `Switchboard.Guard` use. The application installs the configured mode at
  start; the simulator installs the mode of each run. Install a mode only
  while no guild or session runs: a gauge's slots are held in the
  semaphore of the mode its process started under.

  Raises `ArgumentError` for an unknown mode.
  """
  @spec install(mode()) :: :ok
  def install(mode) do
    modules = modules(mode)
    Application.put_env(:switchboard, :mode, mode)
    put_new(@metrics_key, modules.metrics)
    put_new(@semaphore_key, modules.semaphore)
  end

  # A persistent_term update costs a scan of every process: only on change.
  defp put_new(key, value) do
    if :persistent_term.get(key, nil) != value, do: :persistent_term.put(key, value)
    :ok
  end

  @doc "The metrics module of the installed mode (`Switchboard.Metrics` until one is)."
  @spec metrics() :: module()
  def metrics, do: :persistent_term.get(@metrics_key, Switchboard.Metrics)

  @doc "The semaphore module of the installed mode (`Switchboard.Semaphore` until one is)."
  @spec semaphore() :: module()
  def semaphore, do: :persistent_term.get(@semaphore_key, Switchboard.Semaphore)
end
