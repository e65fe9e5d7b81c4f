defmodule Switchboard.Erlpack.SchedulingTest do
  # Alone (not async): it installs the VM's one system monitor.
  use ExUnit.Case, async: false

  alias Switchboard.Erlpack
  alias Switchboard.Test.HashFlood
  alias Switchboard.Test.SchedulerHold

  # Each of these inputs held a normal scheduler for about 100 ms or more
  # before the fix; a call that yields or goes dirty holds it for well under
  # 1 ms, and this shared machine's own noise (OS preemption, garbage
  # collection of the result) stays under this threshold.
  @threshold_ms 50

  describe "no Erlpack call holds a normal scheduler, counting bytes" do
    test "encoding a large non-byte bitstring" do
      bits = <<:binary.copy(<<7>>, 100_000_000)::binary, 1::3>>
      assert SchedulerHold.long_schedules(fn -> Erlpack.encode(bits) end, 1, @threshold_ms) == []
      assert Erlpack.encode(bits) == :erlang.term_to_binary(bits)
    end

    test "encoding large binaries, a fun with a large environment and a large bignum" do
      big = :binary.copy("0123456789", 2_000_000)
      env = <<:binary.copy(<<1>>, 20_000_000)::binary, 1::3>>
      fun = fn -> env end
      bignum = Bitwise.bsl(1, 30_000_000)

      for term <- [[big, big], {fun}, [bignum]] do
        work = fn -> Erlpack.encode(term) end
        assert SchedulerHold.long_schedules(work, 2, @threshold_ms) == []
      end
    end

    test "encoding a 10 MB term of small nodes, by the VM's encoder and by the NIF's walk" do
      # Plain options: term_to_binary/1, a BIF that yields; string_keys or a
      # fragment: the NIF's walk, which moves to a dirty scheduler when its
      # slice ends.
      term = for i <- 1..200_000, do: %{"id" => i, "name" => "member #{i}", "ok" => true}
      framed = [Erlpack.fragment(%{"op" => 0}) | term]

      for work <- [
            fn -> Erlpack.encode(term) end,
            fn -> Erlpack.encode(term, string_keys: true) end,
            fn -> Erlpack.encode(framed) end,
            fn -> Erlpack.encode_iodata(framed) end
          ] do
        assert SchedulerHold.long_schedules(work, 2, @threshold_ms) == []
      end
    end

    test "searching 10 MB of output, and 500 KB, made of the seal's bytes but for one" do
      # The search behind encode/2's use of term_to_binary (may_hold_seal?):
      # its slowest input stops it at every byte; past 512 KB it runs dirty.
      <<131, seal::binary>> = :erlang.term_to_binary(Erlpack.Fragment.seal())
      <<head::binary-size(11), last>> = binary_part(seal, byte_size(seal) - 12, 12)
      unit = head <> <<Bitwise.bxor(last, 1)>>

      for copies <- [40_000, 850_000] do
        bytes = :binary.copy(unit, copies)
        work = fn -> Erlpack.Fragment.may_hold_seal?(bytes) end
        assert SchedulerHold.long_schedules(work, 3, @threshold_ms) == []
        refute work.()
      end
    end

    test "decoding a fun whose free variables hold keys crafted to collide" do
      # Under the dirty threshold (256 KB): this decode starts on a normal
      # scheduler, and its work budget moves it off.
      env = Map.new(HashFlood.integer_keys(20_000), &{&1, 0})
      bytes = :erlang.term_to_binary(fn -> env end)
      assert byte_size(bytes) < 256 * 1024
      assert SchedulerHold.long_schedules(fn -> Erlpack.decode(bytes) end, 3, @threshold_ms) == []
    end

    test "refusing a duplicate among keys crafted to collide" do
      keys = HashFlood.integer_keys(20_000)
      bytes = HashFlood.flooding_map(keys, [hd(keys)])
      assert byte_size(bytes) < 256 * 1024
      assert {:error, {:duplicate_key, _}} = Erlpack.decode(bytes)
      assert SchedulerHold.long_schedules(fn -> Erlpack.decode(bytes) end, 3, @threshold_ms) == []
    end
  end
end
