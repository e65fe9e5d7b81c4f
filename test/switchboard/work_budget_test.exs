defmodule Switchboard.WorkBudgetTest do
  # The slice budget is global to the library, and the count of ended slices
  # counts every NIF's: alone (not async), so that only these calls move it.
  use ExUnit.Case, async: false

  alias Switchboard.Erlpack
  alias Switchboard.Erlpack.Pure
  alias Switchboard.Fanout
  alias Switchboard.Fanout.Group
  alias Switchboard.NIF

  # One WorkSlice (c_src/nif/scheduling.hpp) for every NIF: shrunk with
  # set_work_budget/1 (which also turns its clock off), it ends after a
  # known number of bytes of work, so the number of yields (or moves to a
  # dirty scheduler) depends on the input only.
  setup do
    on_exit(fn -> NIF.set_work_budget(:default) end)
  end

  defp slices_ended(fun) do
    before = NIF.library_info().work_slices_ended
    result = fun.()
    {NIF.library_info().work_slices_ended - before, result}
  end

  defp payload(n) do
    for i <- 1..n do
      %{"id" => i, :kind => "v#{i}", "at" => {i, [i | :tail]}, "blob" => :binary.copy("b", 100)}
    end
  end

  describe "Erlpack" do
    test "an encode whose slice ends continues dirty, once, with the same bytes" do
      term = payload(200)
      fragment = Erlpack.fragment(%{"content" => "hi"})
      framed = [fragment | term]
      unfragmented = [%{"content" => "hi"} | term]

      expected = {
        Erlpack.encode(term, string_keys: true),
        Erlpack.encode(framed),
        IO.iodata_to_binary(Erlpack.encode_iodata(framed)),
        Erlpack.fragment(term, string_keys: true)
      }

      assert elem(expected, 0) == Pure.encode(term, string_keys: true)
      assert elem(expected, 1) == :erlang.term_to_binary(unfragmented)

      NIF.set_work_budget(1)

      # The NIF's own walk (string_keys, a sealed fragment) ends its slice at
      # its first batch of terms, and continues on a dirty scheduler, where
      # nothing counts: one slice per call.
      assert slices_ended(fn -> Erlpack.encode(term, string_keys: true) end) ==
               {1, elem(expected, 0)}

      assert slices_ended(fn -> Erlpack.encode(framed) end) == {1, elem(expected, 1)}

      assert {1, iodata} = slices_ended(fn -> Erlpack.encode_iodata(framed) end)
      assert IO.iodata_to_binary(iodata) == elem(expected, 2)

      assert slices_ended(fn -> Erlpack.fragment(term, string_keys: true) end) ==
               {1, elem(expected, 3)}

      # Without them the VM's term_to_binary encodes: no NIF slice at all.
      assert slices_ended(fn -> Erlpack.encode(term) end) == {0, :erlang.term_to_binary(term)}
    end

    test "a decode whose slice ends starts again dirty, once, with the same term" do
      term = payload(200)
      bytes = :erlang.term_to_binary(term)
      expected = Erlpack.decode(bytes)
      assert expected == {:ok, term}
      refusal = Erlpack.decode(bytes <> <<0>>)
      assert refusal == {:error, {:trailing_data, byte_size(bytes)}}

      NIF.set_work_budget(1)
      assert slices_ended(fn -> Erlpack.decode(bytes) end) == {1, expected}

      assert slices_ended(fn -> Erlpack.decode(bytes, atoms: :binary) end) ==
               {1, {:ok, Pure.decode!(bytes, atoms: :binary)}}

      assert slices_ended(fn -> Erlpack.decode(bytes <> <<0>>) end) == {1, refusal}

      # A small input of plain data is built by the VM's binary_to_term
      # after the core's checks: no slice to end.
      small = :erlang.term_to_binary(%{"op" => 1, "d" => [1, 2, 3]})

      assert slices_ended(fn -> Erlpack.decode(small) end) ==
               {0, {:ok, %{"op" => 1, "d" => [1, 2, 3]}}}
    end

    test "the default budget lets the same calls finish in their first slice" do
      term = payload(200)
      bytes = :erlang.term_to_binary(term)
      assert {0, _} = slices_ended(fn -> Erlpack.encode(term, string_keys: true) end)
      assert {0, {:ok, ^term}} = slices_ended(fn -> Erlpack.decode(bytes) end)
    end
  end

  describe "Zstd" do
    # Typed NIFs that rerun themselves dirty (call.dirty()) above 32 KiB of
    # input or 128 KiB of output: large calls hold no normal scheduler.
    test "large compress and decompress calls run dirty, with the same bytes" do
      # Hex of random bytes: zstd entropy-codes it (about 300 ms for 24 MB
      # compressed here, 70 ms decompressed), where repeated text is a few ms.
      data = Base.encode16(:crypto.strong_rand_bytes(12_000_000))
      frame = Switchboard.Zstd.compress(Switchboard.Zstd.compress_stream(), data)

      work = fn ->
        stream = Switchboard.Zstd.compress_stream()
        ^frame = Switchboard.Zstd.compress(stream, data)

        {:ok, ^data} =
          Switchboard.Zstd.decompress(Switchboard.Zstd.decompress_stream(), frame, 32_000_000)
      end

      assert Switchboard.Test.SchedulerHold.long_schedules(work, 2, 40) == []
    end
  end

  describe "Fanout.send" do
    # A send of a small message counts 1 KiB of work: a 4 KiB budget ends a
    # slice after every fourth receiver, and the send yields there.
    test "a list of receivers is sent to in slices of four sends" do
      receivers = List.duplicate(self(), 100)
      NIF.set_work_budget(4096)

      assert slices_ended(fn -> Fanout.send(receivers, :sliced) end) ==
               {25, %{local: 100, remote: 0, skipped: 0}}

      for _ <- 1..100, do: assert_received(:sliced)
      refute_received :sliced

      NIF.set_work_budget(:default)

      assert slices_ended(fn -> Fanout.send(receivers, :whole) end) ==
               {0, %{local: 100, remote: 0, skipped: 0}}
    end

    test "a group is sent to in slices of four sends" do
      parent = self()
      # A group holds each pid once: 100 receivers that report to this test.
      pids =
        for _ <- 1..100 do
          spawn_link(fn -> receive do: (message -> send(parent, {:got, message})) end)
        end

      group = Group.new(pids)
      NIF.set_work_budget(4096)
      {ended, summary} = slices_ended(fn -> Fanout.send(group, :sliced) end)
      assert summary == %{local: 100, remote: 0, skipped: 0}
      assert ended == 25
      for _ <- 1..100, do: assert_receive({:got, :sliced})
    end

    test "each share of a split fan-out is sent in slices of four sends" do
      # 2,048 members: split into one range per scheduler (at most 4, the
      # shares of 512 they make), each share a process of its own.
      pids = for _ <- 1..2_048, do: spawn(fn -> Process.sleep(:infinity) end)
      group = Group.new(pids)
      shares = min(System.schedulers_online(), 4)
      sizes = for i <- 0..(shares - 1), do: div(2_048 * (i + 1), shares) - div(2_048 * i, shares)
      NIF.set_work_budget(4096)
      {ended, summary} = slices_ended(fn -> Fanout.send(group, :sliced) end)
      assert summary == %{local: 2_048, remote: 0, skipped: 0}
      assert ended == Enum.sum(for size <- sizes, do: div(size, 4))
      Enum.each(pids, &Process.exit(&1, :kill))
    end
  end
end
