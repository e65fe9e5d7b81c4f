# Items back out of a 1M-item Switchboard.SortedSet against its pure twin:
# at, slice(…, 100), range (100 items), to_list and Enum.to_list, in VM CPU
# time (`:erlang.statistics(:runtime)`), implementations interleaved round by
# round so machine noise falls on both alike. The figure is the median of
# the rounds; the ratio is twin time / native time (> 1: native faster).
#
#   MIX_ENV=prod elixir --erl "+sbwt none +sbwtdcpu none +sbwtdio none" \
#     -S mix run bench/sorted_set_items.exs
#   SORTED_SET_ITEMS_SIZE=100000 ... (default 1000000; 100000 with
#   SWITCHBOARD_BENCH_QUICK set), SORTED_SET_ITEMS_ROUNDS=7,
#   SORTED_SET_ITEMS_ONLY=at (the jobs whose name starts so)
#
# Busy-waiting schedulers bill CPU time too; `+sbwt none` keeps them out.
defmodule SortedSetItemsBench do
  alias Switchboard.SortedSet
  alias Switchboard.SortedSet.Pure

  # The member-list keys of bench/sorted_set.exs, from the scaling bench's module.
  defdelegate keys(size), to: Switchboard.Bench.Scaling

  # {name, calls per round, fn set_module, set, i -> _}
  def jobs(size, sample) do
    sample = List.to_tuple(sample)
    n = tuple_size(sample)

    [
      {"at", 200_000, fn mod, set, i -> mod.at(set, rem(i * 7919, size)) end},
      {"slice(…, 100)", 20_000,
       fn mod, set, i -> mod.slice(set, rem(i * 7919, size - 100), 100) end},
      {"range (100 items)", 20_000,
       fn mod, set, i ->
         first = mod.at(set, rem(i * 7919, size - 100))
         mod.range(set, first, mod.at(set, rem(i * 7919, size - 100) + 99))
       end},
      {"to_list", 3, fn mod, set, _ -> mod.to_list(set) end},
      {"Enum.to_list", 3, fn _mod, set, _ -> Enum.to_list(set) end},
      {"find_index (reference)", 200_000,
       fn mod, set, i -> mod.find_index(set, elem(sample, rem(i, n))) end}
    ]
  end

  def cpu_ns_per_call(fun, mod, set, calls) do
    :erlang.garbage_collect()
    {_, _} = :erlang.statistics(:runtime)
    loop(fun, mod, set, calls)
    {_, ms} = :erlang.statistics(:runtime)
    ms * 1.0e6 / calls
  end

  defp loop(_fun, _mod, _set, 0), do: :ok

  defp loop(fun, mod, set, i) do
    fun.(mod, set, i)
    loop(fun, mod, set, i - 1)
  end

  def median(list), do: Enum.at(Enum.sort(list), div(length(list), 2))

  def run do
    quick? = System.get_env("SWITCHBOARD_BENCH_QUICK", "") not in ["", "0"]
    default_size = if quick?, do: "100000", else: "1000000"
    size = String.to_integer(System.get_env("SORTED_SET_ITEMS_SIZE", default_size))
    rounds = String.to_integer(System.get_env("SORTED_SET_ITEMS_ROUNDS", "7"))
    keys = keys(size)
    native = SortedSet.from_enumerable(keys)
    pure = Pure.from_enumerable(keys)
    sample = Enum.take_random(keys, 1000)
    true = SortedSet.to_list(native) == Pure.to_list(pure)

    IO.puts("#### SortedSet items back, #{size} items (#{machine()}, #{Date.utc_today()})\n")
    IO.puts("| op | Pure (CPU ns/call) | NIF (CPU ns/call) | NIF speed vs Pure |")
    IO.puts("|---|---:|---:|---:|")

    only = System.get_env("SORTED_SET_ITEMS_ONLY")

    for {name, calls, fun} <- jobs(size, sample),
        only == nil or String.starts_with?(name, only) do
      impls = [{Pure, pure}, {SortedSet, native}]

      times =
        for round <- 1..rounds, {mod, set} <- rotate(impls, round) do
          {mod, cpu_ns_per_call(fun, mod, set, calls)}
        end

      pure_ns = median(for {Pure, t} <- times, do: t)
      native_ns = median(for {SortedSet, t} <- times, do: t)
      ratio = :erlang.float_to_binary(pure_ns / native_ns, decimals: 2)
      IO.puts("| #{name} | #{fmt(pure_ns)} | #{fmt(native_ns)} | #{ratio}x |")
    end
  end

  defp rotate(list, round), do: if(rem(round, 2) == 0, do: list, else: Enum.reverse(list))
  defp fmt(ns), do: :erlang.float_to_binary(ns, decimals: 0)

  defp machine do
    cpu =
      case File.read("/proc/cpuinfo") do
        {:ok, text} ->
          case Regex.run(~r/model name\s*:\s*(.+)/, text) do
            [_, model] -> model
            _ -> "unknown CPU"
          end

        _ ->
          "unknown CPU"
      end

    "#{cpu}, #{System.schedulers_online()} schedulers, OTP #{System.otp_release()}"
  end
end

SortedSetItemsBench.run()
