defmodule Switchboard.NIFTest do
  # Reloads Switchboard.Test.NIF and changes its library's work budget, so
  # it must not run beside other tests.
  use ExUnit.Case, async: false
  import Bitwise
  import ExUnit.CaptureLog

  alias Switchboard.Test.NIF

  doctest Switchboard.Errors

  describe "error mapping" do
    test "a badly typed argument raises ArgumentError naming the term in Elixir syntax" do
      error = assert_raise ArgumentError, fn -> NIF.diag_add(1, :foo) end
      assert error.message == "expected argument 2 to be an integer (64-bit), got: :foo"

      error = assert_raise ArgumentError, fn -> NIF.diag_add(1 <<< 70, 1) end

      assert error.message ==
               "expected argument 1 to be an integer (64-bit), got: 1180591620717411303424"

      error = assert_raise ArgumentError, fn -> NIF.diag_add({1, "two"}, 1) end
      assert error.message == ~s[expected argument 1 to be an integer (64-bit), got: {1, "two"}]

      error = assert_raise ArgumentError, fn -> NIF.diag_add(%{a: 1}, 1) end
      assert error.message == "expected argument 1 to be an integer (64-bit), got: %{a: 1}"
    end

    test "the message is the pure twins' wording (Switchboard.Errors)" do
      for bad <- [:foo, "bin", <<1::3>>, [1, 2], %{"k" => [a: 1]}, self(), 1.5] do
        error = assert_raise ArgumentError, fn -> NIF.diag_add(bad, 1) end

        assert error.message ==
                 Switchboard.Errors.bad_argument_message(
                   "argument 1",
                   "an integer (64-bit)",
                   bad
                 )
      end
    end

    test "a huge bad term is cut in the message" do
      error = assert_raise ArgumentError, fn -> NIF.diag_add(Enum.to_list(1..10_000), 1) end
      assert error.message =~ ~r/, \.\.\.\]$/
      assert byte_size(error.message) < 200
    end

    test "C++ exceptions map to Elixir exceptions" do
      assert_raise ArgumentError, "invalid argument from C++", fn -> NIF.diag_raise(0) end
      assert_raise RuntimeError, "runtime error from C++", fn -> NIF.diag_raise(1) end
      assert_raise RuntimeError, "out of memory", fn -> NIF.diag_raise(2) end
      assert_raise RuntimeError, "unknown C++ exception in NIF", fn -> NIF.diag_raise(3) end

      assert_raise ArgumentError, "expected a term made in the NIF, got: {:odd, :odd}", fn ->
        NIF.diag_raise(4)
      end

      assert_raise RuntimeError, "integer overflow in diag_add", fn ->
        NIF.diag_add(0x7FFFFFFFFFFFFFFF, 1)
      end

      assert NIF.diag_add(2, 40) == 42
    end
  end

  describe "decoders" do
    test "non-negative integers that fit the type" do
      assert NIF.diag_non_negative(0) == 0
      assert NIF.diag_non_negative(0xFFFFFFFF) == 0xFFFFFFFF

      for bad <- [-1, 0x100000000, 1.0, :one] do
        error = assert_raise ArgumentError, fn -> NIF.diag_non_negative(bad) end

        assert error.message ==
                 "expected argument 1 to be a non-negative integer (32-bit), got: #{inspect(bad)}"
      end
    end

    test "atoms to a C++ enum and back" do
      assert NIF.diag_next_level(:fast) == :balanced
      assert NIF.diag_next_level(:balanced) == :best
      assert NIF.diag_next_level(:best) == :best

      for bad <- [:slow, "fast", nil] do
        error = assert_raise ArgumentError, fn -> NIF.diag_next_level(bad) end

        assert error.message ==
                 "expected argument 1 to be one of :fast, :balanced, :best, got: #{inspect(bad)}"
      end
    end

    test "byte spans borrow a binary's bytes" do
      assert NIF.diag_bytes("") == {0, nil}
      assert NIF.diag_bytes(<<200, 1, 2>>) == {3, 200}
      big = :binary.copy(<<7>>, 100_000)
      assert NIF.diag_bytes(binary_part(big, 10, 5000)) == {5000, 7}

      for bad <- [<<1::3>>, ["io", "list"], :atom] do
        error = assert_raise ArgumentError, fn -> NIF.diag_bytes(bad) end
        assert error.message == "expected argument 1 to be a binary, got: #{inspect(bad)}"
      end
    end

    test "structs from a map or a keyword list, field by field" do
      assert NIF.diag_limits(%{max_depth: 3, level: :fast}) == {3, :fast, nil}
      assert NIF.diag_limits(%{max_depth: 3, level: :fast, other: 1}) == {3, :fast, nil}
      assert NIF.diag_limits(max_depth: 1, level: :best, strict: true) == {1, :best, true}

      assert NIF.diag_limits(
               %URI{}
               |> Map.from_struct()
               |> Map.merge(%{max_depth: 0, level: :best})
             ) ==
               {0, :best, nil}

      error =
        assert_raise ArgumentError, fn -> NIF.diag_limits(%{max_depth: -1, level: :fast}) end

      assert error.message ==
               "expected :max_depth in argument 1 to be a non-negative integer (64-bit), got: -1"

      error = assert_raise ArgumentError, fn -> NIF.diag_limits(max_depth: 2, level: :slow) end

      assert error.message ==
               "expected :level in argument 1 to be one of :fast, :balanced, :best, got: :slow"

      error = assert_raise ArgumentError, fn -> NIF.diag_limits(%{max_depth: 2, strict: 1}) end

      assert error.message ==
               "expected argument 1 to be a map or a keyword list with the key :level, " <>
                 "got: %{max_depth: 2, strict: 1}"

      error =
        assert_raise ArgumentError, fn ->
          NIF.diag_limits(max_depth: 2, level: :fast, strict: 1)
        end

      assert error.message == "expected :strict in argument 1 to be a boolean, got: 1"

      for bad <- [5, [1, 2], [{:max_depth, 1} | :tail], [{"max_depth", 1}]] do
        error = assert_raise ArgumentError, fn -> NIF.diag_limits(bad) end

        assert error.message ==
                 "expected argument 1 to be a map or a keyword list, got: #{inspect(bad)}"
      end
    end
  end

  describe "encoders" do
    test "Ok and Error build the usual tuples" do
      assert NIF.diag_result(0) == :ok
      assert NIF.diag_result(1) == {:ok, 1}
      assert NIF.diag_result(2) == {:ok, 2, "two"}
      assert NIF.diag_result(3) == {:error, :odd}
      assert NIF.diag_result(4) == {:error, :odd, 4}
    end
  end

  describe "resources" do
    test "the destructor runs once the last reference is garbage collected" do
      test_pid = self()

      holder =
        spawn(fn ->
          probe = NIF.diag_probe_new(test_pid, 7)
          send(test_pid, {:created, NIF.diag_probe_id(probe), NIF.diag_probe_id_borrowed(probe)})

          receive do
            :drop -> :ok
          end
        end)

      assert_receive {:created, 7, 7}
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

    test "a term that is not the resource type is an ArgumentError naming the type" do
      error = assert_raise ArgumentError, fn -> NIF.diag_probe_id(make_ref()) end
      assert error.message =~ ~r/^expected argument 1 to be a destructor probe, got: #Reference</

      {:ok, watch} = NIF.diag_watch(self(), self(), 1)
      error = assert_raise ArgumentError, fn -> NIF.diag_probe_id_borrowed(watch) end
      assert error.message =~ ~r/^expected argument 1 to be a destructor probe, got: #Reference</
      assert NIF.diag_unwatch(watch)
    end

    test "on_down runs when a monitored process exits" do
      watched = spawn(fn -> receive(do: (:stop -> :ok)) end)
      assert {:ok, watch} = NIF.diag_watch(watched, self(), 11)
      refute_receive {:switchboard_watch_down, _, _}, 50
      send(watched, :stop)
      assert_receive {:switchboard_watch_down, ^watched, 11}, 2_000
      # The monitor fired: there is nothing left to demonitor.
      refute NIF.diag_unwatch(watch)
    end

    test "a demonitored process's exit is not reported, and a dead one cannot be watched" do
      watched = spawn(fn -> receive(do: (:stop -> :ok)) end)
      {:ok, watch} = NIF.diag_watch(watched, self(), 12)
      assert NIF.diag_unwatch(watch)
      send(watched, :stop)
      refute_receive {:switchboard_watch_down, _, 12}, 100

      assert NIF.diag_watch(watched, self(), 13) == {:error, :noproc}
    end
  end

  describe "reload and load errors" do
    test "reloading the module runs upgrade and keeps existing resources" do
      probe = NIF.diag_probe_new(self(), 9)
      %{instances: instances, upgrades: upgrades} = NIF.library_info()

      {module, binary, file} = :code.get_object_code(NIF)
      {:module, ^module} = :code.load_binary(module, file, binary)

      assert %{instances: instances_after, upgrades: upgrades_after} = NIF.library_info()
      assert upgrades_after == upgrades + 1
      assert instances_after == instances + 1
      # The old instance's resource type was taken over by the new one.
      assert NIF.diag_probe_id(probe) == 9

      # Purging the old code unloads the old instance only.
      true = :code.soft_purge(module)
      assert %{instances: ^instances} = NIF.library_info()
      assert NIF.diag_add(1, 2) == 3
      ref = NIF.diag_fnv1a_threaded("")
      assert_receive {^ref, {14_695_981_039_346_656_037, :native_thread}}, 2_000
    end

    # Compiles a stand-in for Switchboard.Test.NIF with the given stubs and
    # returns its load error; the real module is loaded again afterwards.
    defp load_error_with(stubs) do
      {module, binary, file} = :code.get_object_code(NIF)

      source =
        ~s[defmodule Switchboard.Test.NIF do\n] <>
          ~s[  use Switchboard.NIF.Library, library: "switchboard_test_nif", dir: "test_priv",\n] <>
          ~s|    sources: ["c_src/test_nif/*.cpp", "c_src/nif/nif.cpp", "c_src/nif/scheduling.cpp"]\n| <>
          Enum.map_join(stubs, fn {name, arity} ->
            args = Enum.map_join(1..arity//1, ", ", &"a#{&1}")
            "  defnif #{name}(#{args})\n"
          end) <> "end\n"

      conflicts = Code.get_compiler_option(:ignore_module_conflict)
      Code.put_compiler_option(:ignore_module_conflict, true)

      log =
        try do
          # The failed on_load is logged; the compile itself returns.
          capture_log(fn -> Code.compile_string(source) end)
        after
          Code.put_compiler_option(:ignore_module_conflict, conflicts)
        end

      :code.purge(module)
      {:module, ^module} = :code.load_binary(module, file, binary)
      true = :code.soft_purge(module)
      assert NIF.diag_add(1, 2) == 3
      log
    end

    defp declared_stubs do
      for {stub, arity} <- NIF.__nifs__(),
          name = String.replace_prefix(Atom.to_string(stub), "nif_", ""),
          name not in ~w(library_functions library_info set_work_budget),
          do: {name, arity}
    end

    test "a NIF without a stub is named in the load error" do
      log = load_error_with(declared_stubs() -- [{"diag_bytes", 1}])

      assert log =~
               "the library defines the NIF diag_bytes/1 but Switchboard.Test.NIF has no stub " <>
                 "for it: add `defnif diag_bytes(arg1)` ("
    end

    test "every NIF without a stub is named, not only the VM's first" do
      log = load_error_with(declared_stubs() -- [{"diag_bytes", 1}, {"diag_limits", 1}])
      assert log =~ "has no stub for it: add `defnif diag_bytes(arg1)`; nor for diag_limits ("
    end

    test "the NIF names registered in the sources are the library's" do
      registered =
        Switchboard.NIF.Library.registered_names([
          "c_src/test_nif/diagnostics_nif.cpp",
          "c_src/nif/nif.cpp",
          "c_src/nif/scheduling.cpp"
        ])

      library =
        for {stub, _arity} <- NIF.library_functions(),
            do: String.replace_prefix(Atom.to_string(stub), "nif_", "")

      assert registered == Enum.sort(library)

      product =
        for {stub, _arity} <- Switchboard.NIF.library_functions(),
            do: String.replace_prefix(Atom.to_string(stub), "nif_", "")

      assert Switchboard.NIF.Library.registered_names(Path.wildcard("c_src/nif/*.cpp")) ==
               Enum.sort(product)
    end

    test "a stub without a NIF is named in the load error" do
      log = load_error_with(declared_stubs() ++ [{"diag_missing", 2}])
      assert log =~ "no NIF in the library for nif_diag_missing/2"
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
    setup do
      on_exit(fn -> NIF.set_work_budget(:default) end)
    end

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

    test "a typed NIF reruns itself dirty and answers with Ok or Error" do
      assert NIF.diag_checked_dirty(1) == {:ok, :dirty_cpu}
      assert NIF.diag_checked_dirty(-1) == {:error, :odd}

      assert_raise ArgumentError, "expected argument 1 to be an integer (64-bit), got: 1.0", fn ->
        NIF.diag_checked_dirty(1.0)
      end
    end

    test "a shrunk work budget forces a known number of yields" do
      input = :crypto.strong_rand_bytes(10_000)
      expected = fnv1a(input)
      NIF.set_work_budget(1000)
      assert NIF.diag_fnv1a_yielding(input) == {expected, 10}
      NIF.set_work_budget(4096)
      assert NIF.diag_fnv1a_yielding(input) == {expected, 3}
      NIF.set_work_budget(1)

      assert NIF.diag_fnv1a_yielding(binary_part(input, 0, 100)) ==
               {fnv1a(binary_part(input, 0, 100)), 100}

      assert NIF.set_work_budget(:default) == 1
      assert NIF.diag_fnv1a_yielding(input) == {expected, 1}
    end

    test "the work budget refuses nonsense" do
      for bad <- [0, -1, :fast] do
        error = assert_raise ArgumentError, fn -> NIF.set_work_budget(bad) end

        assert error.message ==
                 "expected argument 1 to be a positive integer or :default, got: #{inspect(bad)}"
      end
    end

    test "a yielding NIF processes a large input in many slices" do
      input = :binary.copy(<<1, 2, 3, 4, 5, 6, 7, 8>>, 8 * 1024 * 1024)
      {hash, slices} = NIF.diag_fnv1a_yielding(input)
      assert {^hash, :dirty_cpu} = NIF.diag_fnv1a_dirty(input)
      # 64 MiB: at least one slice per MiB of the default budget.
      assert slices >= 64
    end

    test "bad input is an ArgumentError on every variant" do
      for fun <- [
            &NIF.diag_fnv1a_yielding/1,
            &NIF.diag_fnv1a_dirty/1,
            &NIF.diag_fnv1a_blocking/1,
            &NIF.diag_fnv1a_threaded/1
          ] do
        assert_raise ArgumentError, "expected argument 1 to be a binary, got: [1, 2]", fn ->
          fun.([1, 2])
        end
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
