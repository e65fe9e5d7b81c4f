defmodule Switchboard.Guard do
  @moduledoc """
  Guild and registry calls that many sessions make at once, each under a
  `Switchboard.Semaphore`, so a stampede (every session of a node
  re-attaching after a guild moved, thousands connecting at once) queues at
  the caller instead of in one process's mailbox.

  `call/3` runs the function holding a slot of the semaphore of its
  `{kind, key}`; when every slot is taken it counts the refusal
  (`switchboard.guard.busy`), sleeps a jittered, growing while and tries
  again, up to `:retries` times, and then gives up with `{:error, :busy}`
  (counted as `switchboard.guard.gave_up`).

  Kinds and their defaults (calls in flight at most, per semaphore):

    * `:guild` - calls to one guild process (`Switchboard.Guild.connect/3`,
      `subscribe_member_list/3`), keyed by the guild: 64;
    * `:registry` - `Switchboard.Cluster` starting a guild or looking one up
      on another node, one semaphore per node: 128.

  Semaphores are named by the kind and a stripe of the key (4,096 stripes),
  so the set of names stays bounded however many guilds come and go.

  ## Configuration

      config :switchboard, :guard,
        guild: 64, registry: 128, retries: 30, backoff_ms: 1, max_backoff_ms: 100

  The n-th retry sleeps a uniformly random time in
  `[0.5, 1.5) * min(backoff_ms * 2^n, max_backoff_ms)` ms: on the defaults
  a call gives up after about 2.4 s of waiting (3.6 s at most).
  """

  import Bitwise

  alias Switchboard.{Implementation, RuntimeMetrics}

  @defaults [
    guild: 64,
    registry: 128,
    retries: 30,
    backoff_ms: 1,
    max_backoff_ms: 100
  ]
  @stripes 4096

  @type kind :: :guild | :registry

  @doc "The configured settings, each defaulted (see the moduledoc)."
  @spec config() :: keyword()
  def config, do: Keyword.merge(@defaults, Application.get_env(:switchboard, :guard, []))

  @doc "The semaphore name `call/3` uses for `kind` and `key`."
  @spec name(kind(), term()) :: term()
  def name(kind, key), do: {__MODULE__, kind, :erlang.phash2(key, @stripes)}

  @doc """
  Runs `fun` under the semaphore of `{kind, key}`, retrying with jittered
  backoff while it is full; `{:error, :busy}` after the last retry.
  """
  @spec call(kind(), term(), (() -> result)) :: result | {:error, :busy} when result: term()
  def call(kind, key, fun) when is_function(fun, 0) do
    config = config()
    max = Keyword.fetch!(config, kind)
    attempt(name(kind, key), max, kind, fun, config, 0)
  end

  defp attempt(name, max, kind, fun, config, tries) do
    case Implementation.semaphore().call(name, max, fun) do
      {:error, :max} ->
        RuntimeMetrics.guard_busy(kind)

        if tries >= config[:retries] do
          RuntimeMetrics.guard_gave_up(kind)
          {:error, :busy}
        else
          Process.sleep(backoff(config, tries))
          attempt(name, max, kind, fun, config, tries + 1)
        end

      result ->
        result
    end
  end

  @doc false
  # The sleep before retry `tries` (0-based), in ms.
  def backoff(config, tries) do
    ceiling = min(config[:backoff_ms] * (1 <<< min(tries, 20)), config[:max_backoff_ms])
    round(ceiling * (0.5 + :rand.uniform()))
  end
end
