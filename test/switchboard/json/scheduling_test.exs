defmodule Switchboard.Json.SchedulingTest do
  # The work budget and the system monitor are global to the VM: not async.
  use ExUnit.Case, async: false

  alias Switchboard.Json
  alias Switchboard.Json.{Fragment, Pure}
  alias Switchboard.NIF
  alias Switchboard.Test.SchedulerHold

  setup do
    on_exit(fn -> NIF.set_work_budget(:default) end)
  end

  defp user(n),
    do: %{"id" => Integer.to_string(1_200_000_000_000_000_000 + n), "name" => "user ✨ #{n}"}

  defp message(n) do
    %{
      "id" => Integer.to_string(n),
      "content" => "line\n\"quoted\" </script> \u2028 #{n}",
      "author" => user(n),
      "mentions" => Enum.map(1..5, &user/1),
      "flags" => [1, -2, 3.25, 1.0e300, nil, true, false, :some_atom]
    }
  end

  # Calls moved dirty by `fun`: {before any work, after a first try inline}.
  defp moves(fun) do
    {before_0, after_0} = NIF.json_dirty_runs()
    result = fun.()
    {before_1, after_1} = NIF.json_dirty_runs()
    {{before_1 - before_0, after_1 - after_0}, result}
  end

  defp encodes do
    fragment = Json.fragment(message(1))
    big_fragment = Json.fragment(Enum.map(1..3, &message/1))

    [
      {message(1), []},
      {message(2), escape: :unicode_safe},
      {message(3), escape: :html_safe, maps: :strict},
      {%{"op" => 0, "s" => 1, "d" => fragment}, []},
      {[big_fragment, %{"d" => big_fragment}], []},
      {Enum.map(1..5, &message/1), escape: :javascript_safe},
      # Errors after more than 32 bytes of work.
      {[String.duplicate("z", 40), {:no_json, 2}], []},
      {%{"a" => String.duplicate("x", 40), "b" => <<255>>}, []},
      {%{:a => 1, "a" => 2, "pad" => String.duplicate("y", 100)}, maps: :strict}
    ]
  end

  defp encode_all(encodes) do
    for {term, opts} <- encodes,
        do: {Json.encode(term, opts), Json.encode_to_iodata(term, opts)}
  end

  defp texts do
    good = Enum.map(1..50, &message/1) |> Json.encode!()

    [
      good,
      Json.encode!(message(7), escape: :unicode_safe),
      "[" <> String.duplicate("1,", 200) <> "]",
      ~s({"a": [1, 2, {"b": "\\uD800"}]}) <> String.duplicate(" ", 100),
      ~s({"id": 1, "name": "x", "other": ) <> String.duplicate("1", 200) <> "}"
    ]
  end

  defp decode_all(texts) do
    for text <- texts,
        opts <- [[], [keys: :atoms!], [max_depth: 2]],
        do: Json.decode(text, opts)
  end

  describe "a shrunk work budget" do
    test "moves encodes dirty, with the same results as inline" do
      encodes = encodes()
      {{0, 0}, inline} = moves(fn -> encode_all(encodes) end)
      NIF.set_work_budget(64)
      {{before, after_try}, dirty} = moves(fn -> encode_all(encodes) end)
      assert dirty == inline
      # Every term here is more than half of 64 bytes of work; those whose
      # root map has more than 4 keys move before any work.
      assert before + after_try == 2 * length(encodes)
      assert before >= 2 and after_try >= 2
      # The results are the twin's.
      for {{term, opts}, {binary, iodata}} <- Enum.zip(encodes, dirty) do
        assert binary == Pure.encode(term, opts)

        assert (case iodata do
                  {:ok, data} -> {:ok, IO.iodata_to_binary(data)}
                  error -> error
                end) == Pure.encode(term, opts)
      end
    end

    test "moves decodes dirty before any work, with the same results and errors" do
      texts = texts()
      {{0, 0}, inline} = moves(fn -> decode_all(texts) end)
      NIF.set_work_budget(64)
      {{moved, 0}, dirty} = moves(fn -> decode_all(texts) end)
      assert dirty == inline
      assert moved == length(inline)
      assert Enum.any?(dirty, &match?({:error, %{reason: :lone_surrogate}}, &1))
      assert Enum.any?(dirty, &match?({:error, %{reason: :max_depth}}, &1))
    end

    test "inputs within it stay inline" do
      NIF.set_work_budget(4096)
      {{0, 0}, {:ok, [1, "a"]}} = moves(fn -> Json.decode(~s([1,"a"])) end)
      {{0, 0}, {:ok, "[1,\"a\"]"}} = moves(fn -> Json.encode([1, "a"]) end)
      {{0, 0}, :ok} = moves(fn -> Fragment.new("[1]") |> then(fn _ -> :ok end) end)
    end

    test "big integers in a small decode are the one case of work done twice" do
      text = "[" <> Enum.map_join(1..4, ",", fn _ -> String.duplicate("7", 4000) end) <> "]"
      NIF.set_work_budget(32 * 1024)
      {{0, 1}, {:ok, [n | _]}} = moves(fn -> Json.decode(text) end)
      assert n == String.to_integer(String.duplicate("7", 4000))
    end
  end

  describe "the default budget" do
    test "small gateway payloads run inline; large ones move" do
      encodes = encodes()
      {{0, 0}, _} = moves(fn -> encode_all(encodes) end)
      many = Enum.map(1..2_000, &message/1)
      {{1, 0}, {:ok, text}} = moves(fn -> Json.encode(many) end)
      {{1, 0}, {:ok, ^many}} = moves(fn -> Json.decode(text, keys: :strings) |> atoms_back() end)
      {{1, 0}, {:ok, ^text}} = moves(fn -> Json.encode_to_iodata(many) end)
      # A term whose root looks small moves after its first try: a map
      # holding a long list, a bignum (its digits cost their count squared).
      for {term, expected} <- [
            {%{"n" => [10 ** 40]}, {0, 0}},
            {%{"n" => [-(10 ** 5000)]}, {0, 1}},
            {%{"d" => many}, {0, 1}},
            {%{"s" => String.duplicate("x", 10_000)}, {0, 1}}
          ] do
        {^expected, encoded} = moves(fn -> Json.encode(term) end)
        assert encoded == Pure.encode(term)
      end
    end

    test "multi-MB strings and many small items never hold a normal scheduler" do
      big = :binary.copy("0123456789abcdef", 2_000_000)
      many = for i <- 1..100_000, do: %{"id" => Integer.to_string(i), "n" => i, "ok" => true}
      text = Json.encode!(many)
      big_text = Json.encode!([big])
      fragment = Json.fragment(big)

      {held, {{before, after_try}, :done}} =
        SchedulerHold.measure(fn ->
          moves(fn ->
            ^big_text = Json.encode!([big])
            [^big] = Json.decode!(big_text)
            ^text = Json.encode!(many)
            [%{"id" => "1"} | _] = Json.decode!(text)
            [_, _ | _] = Json.encode_to_iodata!([fragment, many])
            %Fragment{} = Fragment.new(big_text)
            :done
          end)
        end)

      assert held == nil
      assert before + after_try == 6
    end
  end

  # The atom :some_atom encodes as a string: compare decoded text with that.
  defp atoms_back({:ok, list}) do
    {:ok,
     Enum.map(list, fn message ->
       Map.update!(message, "flags", fn flags ->
         Enum.map(flags, &if(&1 == "some_atom", do: :some_atom, else: &1))
       end)
     end)}
  end
end
