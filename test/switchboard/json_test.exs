defmodule Switchboard.JsonTest do
  use ExUnit.Case, async: true
  use Switchboard.Json.Contract, codec: Switchboard.Json

  alias Switchboard.Json
  alias Switchboard.Json.Pure

  doctest Switchboard.Json
  doctest Switchboard.Json.Fragment

  describe "the same results as the pure twin" do
    property_test "encode: the same bytes, or the same error", numtests: 200, max_size: 30 do
      forall {term, mode} <-
               {:proper_types.oneof([Contract.json_term(), Switchboard.Property.any_term()]),
                :proper_types.elements([:json, :javascript_safe, :html_safe, :unicode_safe])} do
        Json.encode(term, escape: mode) == Pure.encode(term, escape: mode)
      end
    end

    property_test "decode: the same values, or the same error at the same position",
      numtests: 300,
      max_size: 20 do
      forall bytes <- :proper_types.oneof([Contract.json_like_bytes(), :proper_types.binary()]) do
        Json.decode(bytes) == Pure.decode(bytes) and
          Json.decode(bytes, keys: :atoms!, max_depth: 3) ==
            Pure.decode(bytes, keys: :atoms!, max_depth: 3)
      end
    end

    test "maps of more than 32 keys: the same key order (the runtime's iteration order)" do
      for size <- [32, 33, 1000] do
        map = Map.new(1..size, &{"key #{&1}", [&1]})
        assert Json.encode!(map) == Pure.encode!(map)
        assert Json.encode!(map, maps: :strict) == Pure.encode!(map, maps: :strict)
        assert Json.decode!(Json.encode!(map)) == map
      end

      bad = Map.new(1..100, &{&1 * 1.5, &1})
      assert Json.encode(bad) == Pure.encode(bad)
    end

    property_test "gateway events: the same bytes and values", numtests: 100 do
      forall event <- Contract.gateway_event() do
        text = Json.encode!(event)
        text == Pure.encode!(event) and Json.decode(text) == Pure.decode(text)
      end
    end
  end

  test "fragments under 256 bytes are copied into the output, not listed" do
    small = Json.fragment(%{"c" => "x"})
    assert Json.encode_to_iodata!([small, 1]) == ~s([{"c":"x"},1])
    assert Json.encode_to_iodata!(%{"d" => small}) == ~s({"d":{"c":"x"}})
  end

  describe "the scheduler" do
    # The VM reports any process that holds a normal scheduler longer than
    # the threshold (time on dirty schedulers is not reported). A yielding
    # slice is well under a millisecond, but this shared machine's load
    # preempts scheduler threads by tens of milliseconds, so the threshold
    # is set above that noise and the inputs are sized to hold a scheduler
    # for well over it if they did not yield or go dirty (a 32 MB string,
    # 100,000 objects: hundreds of milliseconds each).
    @threshold_ms 100

    defp long_schedules(fun) do
      :erlang.system_monitor(self(), [{:long_schedule, @threshold_ms}])
      {pid, ref} = spawn_monitor(fun)
      assert_receive {:DOWN, ^ref, :process, ^pid, :normal}, 60_000
      :erlang.system_monitor(:undefined)
      receive_reports(pid)
    end

    defp receive_reports(pid) do
      receive do
        {:monitor, ^pid, :long_schedule, info} -> [info | receive_reports(pid)]
      after
        0 -> []
      end
    end

    test "multi-MB strings and many small items never hold a normal scheduler" do
      big = :binary.copy("0123456789abcdef", 2_000_000)
      many = for i <- 1..100_000, do: %{"id" => Integer.to_string(i), "n" => i, "ok" => true}
      text = Json.encode!(many)
      big_text = Json.encode!([big])
      fragment = Json.fragment(big)

      assert long_schedules(fn ->
               ^big_text = Json.encode!([big])
               [^big] = Json.decode!(big_text)
               ^text = Json.encode!(many)
               [%{"id" => "1"} | _] = Json.decode!(text)
               [_, _ | _] = Json.encode_to_iodata!([fragment, many])
               %Switchboard.Json.Fragment{} = Switchboard.Json.Fragment.new(big_text)
             end) == []
    end
  end
end
