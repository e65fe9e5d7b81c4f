defmodule Switchboard.Test.RuntimeClient do
  @moduledoc false
  # The client side of sessions in tests: sessions whose sink forwards every
  # frame here, frames decoded, and a model client that applies member-list
  # ops to its slots as a real client would.

  alias Switchboard.Session
  alias Switchboard.Transport.Sink

  def start_session(opts \\ []) do
    sink = [forward: self(), hold: Keyword.get(opts, :hold, false)]
    session_opts = Keyword.merge([transport: {Sink, sink}], Keyword.drop(opts, [:hold]))
    {:ok, pid} = Session.start_link(session_opts)
    pid
  end

  # Every frame received so far, per session, as decoded envelopes, until
  # each session in `sessions` has a frame for which `done?` holds.
  def collect_until(sessions, done?, acc \\ %{}) do
    if Enum.all?(sessions, fn s -> Enum.any?(Map.get(acc, s, []), done?) end) do
      Map.new(acc, fn {s, frames} -> {s, Enum.reverse(frames)} end)
    else
      receive do
        {:frame, session, frame, meta} ->
          envelope = :erlang.binary_to_term(IO.iodata_to_binary(frame))
          ^meta = %{seq: envelope["s"], type: envelope["t"]}
          collect_until(sessions, done?, Map.update(acc, session, [envelope], &[envelope | &1]))
      after
        5_000 ->
          raise "timed out waiting for frames: #{inspect(Map.new(acc, fn {s, f} -> {s, length(f)} end))}"
      end
    end
  end

  # A model client's slots: index => item.
  def apply_ops(slots, ops) do
    Enum.reduce(ops, slots, fn
      {:sync, [first, last], items}, slots ->
        slots = Map.drop(slots, Enum.to_list(first..last))

        items
        |> Enum.with_index(first)
        |> Enum.reduce(slots, fn {item, i}, s -> Map.put(s, i, item) end)

      {:insert, index, item}, slots ->
        shifted = Map.new(slots, fn {i, v} -> if i >= index, do: {i + 1, v}, else: {i, v} end)
        Map.put(shifted, index, item)

      {:delete, index}, slots ->
        slots
        |> Map.delete(index)
        |> Map.new(fn {i, v} -> if i > index, do: {i - 1, v}, else: {i, v} end)

      {:update, index, item}, slots ->
        Map.put(slots, index, item)

      {:invalidate, [first, last]}, slots ->
        Map.drop(slots, Enum.to_list(first..last))
    end)
  end

  # What the client shows for `ranges`, to compare with the server's items.
  def shown(slots, ranges, size) do
    for [first, last] <- ranges,
        i <- first..min(last, size - 1)//1,
        do: Map.get(slots, i, :unknown)
  end

  def expected(items, ranges) do
    for [first, last] <- ranges,
        i <- first..min(last, length(items) - 1)//1,
        do: Enum.at(items, i)
  end

  def member(id, opts \\ []) do
    %{
      id: id,
      name: Keyword.get(opts, :name, "user#{id}"),
      status: Keyword.get(opts, :status, :online),
      hoist: Keyword.get(opts, :hoist, nil)
    }
  end
end
