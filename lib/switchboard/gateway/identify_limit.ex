defmodule Switchboard.Gateway.IdentifyLimit do
  @moduledoc """
  Discord's limits on starting sessions, per bot token, as
  `GET /api/v10/gateway/bot` reports them in `session_start_limit`:

    * `total` starts per 24 hours (`:session_start_limit`, default 1000),
      `remaining` of them decremented by every IDENTIFY, `reset_after` ms
      until the count starts over;
    * `max_concurrency` (`:max_concurrency`, default 1): IDENTIFYs go
      into buckets by `rate_limit_key = shard_id % max_concurrency`, and
      each bucket takes one IDENTIFY per `:identify_interval` ms (Discord's
      5 s, the default).

  Enforced only with `identify_limits: true`; otherwise (the default, for
  load tests and simulators that start many sessions per token) every
  IDENTIFY goes through and the counts are only reported. Enforced, an
  IDENTIFY past either limit gets what Discord answers: INVALID_SESSION
  with `d: false` (the client waits and identifies again), and is counted
  in `switchboard.gateway.rate_limited`. Discord's libraries queue their
  IDENTIFYs per bucket for this reason; the server does not queue.
  """

  @day 86_400_000

  @doc "Counts an IDENTIFY of `token` on `shard`: `:ok`, or `{:error, :rate_limited}` when enforced and over a limit."
  @spec identify(map(), String.t(), [non_neg_integer()] | nil) :: :ok | {:error, :rate_limited}
  def identify(config, token, shard) do
    bucket = rem(if(shard, do: hd(shard), else: 0), config.max_concurrency)

    cond do
      not config.identify_limits ->
        count_start(config, token)
        :ok

      remaining(config, token) <= 0 or not bucket_free?(config, token, bucket) ->
        Switchboard.Metrics.increment("switchboard.gateway.rate_limited")
        {:error, :rate_limited}

      true ->
        count_start(config, token)
        :ok
    end
  end

  @doc "`session_start_limit` for `token` (`GET /api/v10/gateway/bot`)."
  @spec session_start_limit(map(), String.t()) :: map()
  def session_start_limit(config, token) do
    {_count, started} = starts(config, token)

    %{
      "total" => config.session_start_limit,
      "remaining" => max(remaining(config, token), 0),
      "reset_after" => if(started, do: max(@day - (now() - started), 0), else: @day),
      "max_concurrency" => config.max_concurrency
    }
  end

  # One IDENTIFY per bucket per interval: the first in the interval's
  # window takes it (an atomic counter, so concurrent IDENTIFYs race fairly).
  defp bucket_free?(config, token, bucket) do
    window = div(System.monotonic_time(:millisecond), config.identify_interval)
    key = {:identify, token, bucket, window}

    case :ets.update_counter(config.limits, key, 1, {key, 0}) do
      1 ->
        :ets.delete(config.limits, {:identify, token, bucket, window - 1})
        true

      _ ->
        false
    end
  end

  defp count_start(config, token) do
    key = {:starts, token}

    case starts(config, token) do
      {_, nil} -> :ets.insert(config.limits, {key, 1, now()})
      _ -> :ets.update_counter(config.limits, key, 1)
    end
  end

  defp remaining(config, token) do
    {count, _} = starts(config, token)
    config.session_start_limit - count
  end

  # {count, first start} in the current 24 hours.
  defp starts(config, token) do
    case :ets.lookup(config.limits, {:starts, token}) do
      [{_, count, started}] ->
        if now() - started < @day, do: {count, started}, else: {0, nil}

      [] ->
        {0, nil}
    end
  end

  defp now, do: System.monotonic_time(:millisecond)
end
