defmodule Switchboard.NIFTest do
  # Reloads Switchboard.NIF, so it must not run beside other tests.
  use ExUnit.Case, async: false
  import Bitwise

  alias Switchboard.NIF

  describe "error mapping" do
    test "a badly typed argument raises ArgumentError naming the term" do
      error = assert_raise ArgumentError, fn -> NIF.diag_add(1, :foo) end
      assert error.message == "expected argument 2 to be an integer (64-bit), got: foo"

      error = assert_raise ArgumentError, fn -> NIF.diag_add(1 <<< 70, 1) end

      assert error.message ==
               "expected argument 1 to be an integer (64-bit), got: 1180591620717411303424"

      error = assert_raise ArgumentError, fn -> NIF.diag_add({1, "two"}, 1) end

      assert error.message ==
               ~s[expected argument 1 to be an integer (64-bit), got: {1,<<"two">>}]
    end

    test "a huge bad term is cut in the message" do
      error = assert_raise ArgumentError, fn -> NIF.diag_add(Enum.to_list(1..10_000), 1) end
      assert String.ends_with?(error.message, "...")
      assert byte_size(error.message) < 300
    end

    test "C++ exceptions map to Elixir exceptions" do
      assert_raise ArgumentError, "invalid argument from C++", fn -> NIF.diag_raise(0) end
      assert_raise RuntimeError, "runtime error from C++", fn -> NIF.diag_raise(1) end
      assert_raise RuntimeError, "out of memory", fn -> NIF.diag_raise(2) end
      assert_raise RuntimeError, "unknown C++ exception in NIF", fn -> NIF.diag_raise(3) end

      assert_raise RuntimeError, "integer overflow in diag_add", fn ->
        NIF.diag_add(0x7FFFFFFFFFFFFFFF, 1)
      end

      assert NIF.diag_add(2, 40) == 42
    end
  end

  describe "resources" do
    test "the destructor runs once the last reference is garbage collected" do
      test_pid = self()

      holder =
        spawn(fn ->
          probe = NIF.diag_probe_new(test_pid, 7)
          send(test_pid, {:created, NIF.diag_probe_id(probe)})

          receive do
            :drop -> :ok
          end
        end)

      assert_receive {:created, 7}
      refute_receive {:switchboard_probe_destroyed, 7}, 50
      send(holder, :drop)
      assert_receive {:switchboard_probe_destroyed, 7}, 2_000
    end

    test "a resource kept in a term stays alive across GCs" do
      probe = NIF.diag_probe_new(self(), 8)
      :erlang.garbage_collect()
      refute_receive {:switchboard_probe_destroyed, 8}, 50
      assert NIF.diag_probe_id(probe) == 8
    end

    test "a non-resource where a resource is expected is an ArgumentError" do
      error = assert_raise ArgumentError, fn -> NIF.diag_probe_id(make_ref()) end
      assert error.message =~ ~r/^expected argument 1 to be a resource, got: #Ref</
    end
  end

  describe "reload" do
    test "reloading Switchboard.NIF runs upgrade and keeps existing resources" do
      probe = NIF.diag_probe_new(self(), 9)
      {instances, upgrades, _bytes} = NIF.diag_library_info()

      {module, binary, file} = :code.get_object_code(NIF)
      {:module, ^module} = :code.load_binary(module, file, binary)

      assert {instances_after, upgrades_after, _} = NIF.diag_library_info()
      assert upgrades_after == upgrades + 1
      assert instances_after == instances + 1
      # The old instance's resource type was taken over by the new one.
      assert NIF.diag_probe_id(probe) == 9

      # Purging the old code unloads the old instance only.
      true = :code.soft_purge(module)
      assert {^instances, _, _} = NIF.diag_library_info()
      assert NIF.diag_add(1, 2) == 3
      ref = NIF.diag_fnv1a_threaded("")
      assert_receive {^ref, {14_695_981_039_346_656_037, :native_thread}}, 2_000
    end
  end

  describe "reload with native state" do
    test "semaphore holders and metrics survive a reload of Switchboard.NIF" do
      name = {:reload, System.unique_integer()}
      parent = self()

      holder =
        spawn(fn ->
          true = Switchboard.Semaphore.acquire(name, 1)
          send(parent, :held)
          Process.sleep(:infinity)
        end)

      assert_receive :held
      Switchboard.Metrics.increment("reload.counter", 3)

      {module, binary, file} = :code.get_object_code(NIF)
      {:module, ^module} = :code.load_binary(module, file, binary)
      true = :code.soft_purge(module)

      assert Switchboard.Semaphore.count(name) == 1
      refute Switchboard.Semaphore.acquire(name, 1)
      Switchboard.Metrics.increment("reload.counter", 4)
      assert Switchboard.Metrics.snapshot().counters[{"reload.counter", []}] == 7

      # The name's resource type was taken over: its down callback still runs.
      ref = Process.monitor(holder)
      Process.exit(holder, :kill)
      assert_receive {:DOWN, ^ref, :process, ^holder, :killed}
      Process.sleep(5)
      assert Switchboard.Semaphore.count(name) == 0
    end
  end

  describe "keeping work off normal schedulers" do
    # FNV-1a in Elixir, the oracle for the native variants.
    defp fnv1a(binary) do
      for <<byte <- binary>>, reduce: 14_695_981_039_346_656_037 do
        hash -> bxor(hash, byte) * 1_099_511_628_211 &&& 0xFFFFFFFFFFFFFFFF
      end
    end

    test "every variant computes the same hash as the Elixir oracle" do
      input = :crypto.strong_rand_bytes(10_000)
      expected = fnv1a(input)
      assert {^expected, 1} = NIF.diag_fnv1a_yielding(input)
      assert NIF.diag_fnv1a_dirty(input) == {expected, :dirty_cpu}
      assert NIF.diag_fnv1a_blocking(input) == {expected, :normal}
      ref = NIF.diag_fnv1a_threaded(input)
      assert_receive {^ref, {^expected, :native_thread}}, 2_000
    end

    test "a yielding NIF processes a large input in many slices" do
      input = :binary.copy(<<1, 2, 3, 4, 5, 6, 7, 8>>, 8 * 1024 * 1024)
      {hash, slices} = NIF.diag_fnv1a_yielding(input)
      assert {^hash, :dirty_cpu} = NIF.diag_fnv1a_dirty(input)
      # 64 MiB at about a byte per cycle is tens of ms: many 0.5 ms slices.
      assert slices > 10
    end

    test "bad input is an ArgumentError on every variant" do
      for fun <- [
            &NIF.diag_fnv1a_yielding/1,
            &NIF.diag_fnv1a_dirty/1,
            &NIF.diag_fnv1a_blocking/1,
            &NIF.diag_fnv1a_threaded/1
          ] do
        assert_raise ArgumentError, "expected a binary, got: [1,2]", fn -> fun.([1, 2]) end
      end
    end
  end

  describe "the enif walk (encode floor in bench/erlpack.exs)" do
    test "visits every node of a term once" do
      # map, 2 keys, 2 values; the list value and its 3 elements; the tuple
      # and its 2 elements
      term = %{"a" => [1, 2.0, :x], :b => {<<1::3>>, self()}}
      assert NIF.diag_enif_walk(term) == 1 + 2 + 1 + 3 + 1 + 2
      assert NIF.diag_enif_walk(:atom) == 1
      assert NIF.diag_enif_walk([]) == 1
    end

    test "stops past its node budget instead of holding the scheduler" do
      assert NIF.diag_enif_walk(Enum.to_list(1..99_998)) == 99_999
      assert NIF.diag_enif_walk(Enum.to_list(1..100_000)) == :too_large
    end
  end
end
