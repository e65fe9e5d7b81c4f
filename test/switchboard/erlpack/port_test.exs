defmodule Switchboard.Erlpack.PortTest do
  use ExUnit.Case, async: true
  use Switchboard.Property
  import Bitwise, only: [<<<: 2]

  alias Switchboard.Erlpack
  alias Switchboard.Erlpack.Options
  alias Switchboard.Erlpack.Port, as: PortPool

  @vectors_path Path.expand("../../fixtures/erlpack_vectors.json", __DIR__)

  defp port_decode(bytes, opts \\ []), do: Erlpack.decode(bytes, [isolation: :port] ++ opts)

  describe "decode(bytes, isolation: :port)" do
    test "decodes what the NIF decodes, to the same terms" do
      pid = self()

      terms = [
        %{"op" => 0, "d" => %{"id" => 1 <<< 62, "content" => "hi", "embeds" => []}, "s" => nil},
        [1, 2.5, -(1 <<< 80), :ok, :日本, "bin", <<1::3>>, ~c"abc", [1 | 2], {}],
        Map.new(1..100, &{"key#{&1}", &1}),
        [pid, make_ref(), :erlang.list_to_port(~c"#Port<0.1>"), &Enum.map/2, fn -> pid end]
      ]

      for term <- terms, level <- [0, 6] do
        bytes = :erlang.term_to_binary(term, compressed: level)
        assert {:ok, decoded} = port_decode(bytes)
        assert decoded === term
      end
    end

    test "reports the NIF's errors, with the same reasons and offsets" do
      cases = [
        {<<>>, []},
        {<<131, 104, 2, 97, 1>>, []},
        {<<130, 97, 1>>, []},
        {<<131, 104, 1, 1>>, []},
        {<<131, 73, 0, 1>>, [atoms: :create]},
        {<<131, 104, 1, 104, 1, 104, 1, 97, 1>>, [max_depth: 2]},
        {<<131, 97, 1>>, [max_size: 2]},
        {<<131, 80, 0, 0, 0, 4, "not zlib at all">>, []},
        {<<131, 104, 1, 70, 0x7FF0000000000000::64>>, []},
        {<<131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2>>, []},
        {<<131, 97, 1, 0>>, []},
        {<<131, 100, 0, 9, "zq_nx_prt">>, []},
        {<<131, 104, 2, 100, 0, 9, "zq_nx_prt", 104, 1>>, []},
        {<<131, 104, 2, 97, 1, 100, 0, 9, "zq_nx_prt">>, [atoms: :binary]},
        # a local pid that cannot exist, refused by the VM itself
        {<<131, 88, 100, 0, 13, "nonode@nohost", 1::32, 0, 0, 96, 0, 0::64>>, []},
        {<<131, 88, 100, 0, 10, "zq_nx@node", 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1>>, []},
        {<<131, 88, 100, 0, 10, "zq_nx@node", 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1>>,
         [atoms: :binary]},
        {<<131, 113, 100, 0, 11, "Elixir.Enum", 100, 0, 5, "zq_f2", 97, 2>>, []},
        {:erlang.term_to_binary(%{:a => 1, "a" => 2}), [atoms: :binary]},
        {:erlang.term_to_binary(List.duplicate(:zq_nx_never, 40), compressed: 9)
         |> :binary.replace("zq_nx_never", "zq_nx_nevxr"), []}
      ]

      for {bytes, opts} <- cases do
        expected = Erlpack.decode(bytes, opts)
        assert port_decode(bytes, opts) == expected, "for #{inspect(bytes)} #{inspect(opts)}"
      end
    end

    test "unknown atoms inside a fun's environment, in every mode" do
      env_atom = :"zq_penv_#{System.unique_integer([:positive])}"
      closure = :erlang.term_to_binary(fn -> {env_atom, self()} end)
      name = Atom.to_string(env_atom)
      bytes = :binary.replace(closure, name, String.replace(name, "zq_penv", "zq_pnxe"))

      for atoms <- [:existing, :binary] do
        assert port_decode(bytes, atoms: atoms) == Erlpack.decode(bytes, atoms: atoms)
      end
    end

    test "atoms: :binary and :create, trailing: :allow" do
      bytes =
        :erlang.term_to_binary([:ok, :zq_pb, %{key: nil}]) |> :binary.replace("zq_pb", "zq_pq")

      assert port_decode(bytes, atoms: :binary) == {:ok, ["ok", "zq_pq", %{"key" => nil}]}
      assert {:ok, [:ok, created, %{key: nil}]} = port_decode(bytes, atoms: :create)
      assert Atom.to_string(created) == "zq_pq"
      assert port_decode(<<131, 97, 1, 2, 3>>, trailing: :allow) == {:ok, 1, <<2, 3>>}
    end

    test "a 10 MB input" do
      term = for i <- 1..200_000, do: %{"id" => i, "name" => "member #{i}"}
      assert port_decode(:erlang.term_to_binary(term)) == {:ok, term}
    end

    test "every vector decodes, or is refused, as through the NIF" do
      vectors = @vectors_path |> File.read!() |> Switchboard.Test.JSON.decode!()
      assert length(vectors) == 115

      for vector <- vectors do
        bytes = Base.decode16!(vector["etf_hex"], case: :lower)
        opts = [atoms: :create, trailing: :allow]
        result = port_decode(bytes, opts)
        assert result === Erlpack.decode(bytes, opts), vector["source"]

        case vector["otp25_binary_to_term"] do
          "ok" ->
            assert {:ok, term, _rest} = result
            assert term === :erlang.binary_to_term(bytes)

          "error" ->
            assert {:error, {_reason, _offset}} = result
        end
      end
    end
  end

  describe "the pool" do
    test "a port killed mid-request: {:error, :port_exited}, then a new port" do
      pool = :"#{__MODULE__}.KillPool"
      start_supervised!({PortPool, name: pool, pool_size: 2})
      assert :ok = PortPool.sleep(0, pool)
      assert :ok = PortPool.sleep(0, pool)
      before = PortPool.info(pool)
      assert Enum.all?(before, &is_integer(&1.os_pid))

      sleeper = Task.async(fn -> PortPool.sleep(10_000, pool) end)
      busy = wait_for_busy(pool)
      {_, 0} = System.cmd("kill", ["-9", Integer.to_string(busy.os_pid)])

      assert Task.await(sleeper, 5_000) == {:error, :port_exited}
      after_kill = PortPool.info(pool)
      replaced = Enum.find(after_kill, &(&1.worker == busy.worker))
      assert is_integer(replaced.os_pid) and replaced.os_pid != busy.os_pid
      assert Enum.map(after_kill, & &1.worker) == Enum.map(before, & &1.worker)

      bytes = :erlang.term_to_binary(%{"still" => "works"})

      for _ <- 1..4 do
        assert pool_decode(bytes, pool) ==
                 {:ok, %{"still" => "works"}}
      end
    end

    test "a request that outlives the timeout has its port killed" do
      pool = :"#{__MODULE__}.TimeoutPool"
      start_supervised!({PortPool, name: pool, pool_size: 1, request_timeout: 200})
      {time, result} = :timer.tc(fn -> PortPool.sleep(5_000, pool) end)
      assert result == {:error, :port_exited}
      assert time < 2_000_000
      assert :ok = PortPool.sleep(0, pool)
    end

    test "requests queued behind a dying request go to the new port" do
      pool = :"#{__MODULE__}.QueuePool"
      start_supervised!({PortPool, name: pool, pool_size: 1})
      assert :ok = PortPool.sleep(0, pool)
      sleeper = Task.async(fn -> PortPool.sleep(10_000, pool) end)
      busy = wait_for_busy(pool)
      bytes = :erlang.term_to_binary([1, 2, 3])

      queued =
        for _ <- 1..3 do
          Task.async(fn ->
            pool_decode(bytes, pool)
          end)
        end

      Process.sleep(50)
      {_, 0} = System.cmd("kill", ["-9", Integer.to_string(busy.os_pid)])
      assert Task.await(sleeper) == {:error, :port_exited}
      assert Enum.map(queued, &Task.await/1) == List.duplicate({:ok, [1, 2, 3]}, 3)
    end
  end

  describe "the pool, under load and failure" do
    test "an input over 64 MiB decodes when :max_size allows it" do
      big = :binary.copy(<<7>>, 65 * 1024 * 1024)
      bytes = :erlang.term_to_binary([big])
      assert port_decode(bytes, max_size: 128 * 1024 * 1024) == {:ok, [big]}
      assert port_decode(bytes) == {:error, {:too_large, 0}}
    end

    test "a worker that dies mid-request takes its port's OS process with it" do
      pool = :"#{__MODULE__}.DyingWorkerPool"
      start_supervised!({PortPool, name: pool, pool_size: 1})
      sleeper = Task.async(fn -> PortPool.sleep(30_000, pool) end)
      busy = wait_for_busy(pool)
      assert os_process_alive?(busy.os_pid)
      Process.exit(busy.worker, :kill)
      assert Task.await(sleeper) == {:error, :port_exited}
      # The port program notices its stdin close, mid-sleep.
      assert wait_until(fn -> not os_process_alive?(busy.os_pid) end, 2_000)
    end

    test "a caller's :timeout answers {:error, :timeout} and replaces the stuck port" do
      pool = :"#{__MODULE__}.CallerTimeoutPool"
      start_supervised!({PortPool, name: pool, pool_size: 1})
      assert :ok = PortPool.sleep(0, pool)
      [%{os_pid: first}] = PortPool.info(pool)

      # At the port: the caller gives up, the port is killed and replaced.
      {time, result} = :timer.tc(fn -> PortPool.sleep(30_000, pool, 200) end)
      assert result == {:error, :timeout}
      assert time < 2_000_000
      assert wait_until(fn -> not os_process_alive?(first) end, 2_000)
      bytes = :erlang.term_to_binary([1, 2, 3])
      assert pool_decode(bytes, pool) == {:ok, [1, 2, 3]}

      # Queued behind a request stuck for longer than the caller will wait:
      # the caller gets :timeout, the stuck port is replaced, and the next
      # caller does not wait for it.
      stuck = Task.async(fn -> PortPool.sleep(30_000, pool) end)
      wait_for_busy(pool)
      Process.sleep(250)
      assert pool_decode(bytes, pool, timeout: 200) == {:error, :timeout}
      assert Task.await(stuck) == {:error, :port_exited}
      {time, result} = :timer.tc(fn -> pool_decode(bytes, pool, timeout: 2_000) end)
      assert result == {:ok, [1, 2, 3]}
      assert time < 2_000_000
    end

    test "the :timeout option is validated" do
      assert_raise ArgumentError,
                   "invalid :timeout option: :soon (expected a non-negative integer)",
                   fn -> Erlpack.decode(<<131, 97, 1>>, isolation: :port, timeout: :soon) end
    end
  end

  describe "properties" do
    property_test "corrupted encodings: the port's verdict is the NIF's", numtests: 300 do
      forall {term, at, byte} <- {any_term(), non_neg_integer(), integer(0, 255)} do
        encoded = :erlang.term_to_binary(term)
        at = rem(at, byte_size(encoded))
        <<before::binary-size(at), _, rest::binary>> = encoded
        corrupted = <<before::binary, byte, rest::binary>>

        Enum.all?([:existing, :binary, :create], fn atoms ->
          opts = [atoms: atoms, trailing: :allow]
          port_decode(corrupted, opts) === Erlpack.decode(corrupted, opts)
        end)
      end
    end
  end

  defp wait_for_busy(pool) do
    case Enum.find(PortPool.info(pool), & &1.busy) do
      nil ->
        Process.sleep(5)
        wait_for_busy(pool)

      busy ->
        busy
    end
  end

  defp pool_decode(bytes, pool, opts \\ []),
    do: PortPool.decode(bytes, Options.decode!(opts, true), pool)

  defp os_process_alive?(os_pid) do
    {_, status} = System.cmd("kill", ["-0", Integer.to_string(os_pid)], stderr_to_stdout: true)
    status == 0
  end

  defp wait_until(check, deadline_ms) do
    cond do
      check.() -> true
      deadline_ms <= 0 -> false
      true -> Process.sleep(20) || wait_until(check, deadline_ms - 20)
    end
  end
end
