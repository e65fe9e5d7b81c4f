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

    test "terms the encoder reads in place and their neighbours read through the API" do
      small_max = Bitwise.bsl(1, 59) - 1
      heap = String.duplicate("h", 64)
      refc = String.duplicate("r", 65)
      sub = binary_part("--" <> refc, 2, 65)
      fragment = Json.fragment(%{"a" => 1})

      terms = [
        [0, -1, small_max, small_max + 1, -small_max - 1, -small_max - 2, 1.5],
        [heap, refc, sub, binary_part(heap, 1, 3), "", <<"é">>],
        %{heap => refc, sub => heap, :atom => [nil, true, false, :x], 7 => %{}},
        %{"__struct__" => 1, "b" => 2, "c" => 3},
        %{"a" => fragment, "b" => [fragment, %{"c" => fragment}]},
        Map.new(1..32, &{&1, &1}),
        Map.new(1..33, &{&1, &1})
      ]

      for term <- terms, mode <- [:json, :html_safe, :unicode_safe] do
        assert Json.encode(term, escape: mode) == Pure.encode(term, escape: mode)
        assert Json.encode(term, maps: :strict) == Pure.encode(term, maps: :strict)
      end

      bad = [
        [1 | 2],
        ["a", "b" | "c"],
        %{"k" => <<0xFF>>},
        %{<<0xC3>> => 1},
        %{"a" => 2, a: 1},
        %{__struct__: URI, a: 1},
        %{"a" => [1 | :tail]},
        {:tuple}
      ]

      for term <- bad do
        assert {:error, _} = Json.encode(term, maps: :strict)
        assert Json.encode(term, maps: :strict) == Pure.encode(term, maps: :strict)
        assert Json.encode(term) == Pure.encode(term)
      end
    end

    property_test "gateway events: the same bytes and values", numtests: 100 do
      forall event <- Contract.gateway_event() do
        text = Json.encode!(event)
        text == Pure.encode!(event) and Json.decode(text) == Pure.decode(text)
      end
    end
  end

  test "strings without escapes are sub-binaries of the input, short ones too" do
    input = ~s({"id": "1234", "long": "#{String.duplicate("x", 100)}", "esc": "a\\nb"})
    %{"id" => id, "long" => long, "esc" => esc} = Json.decode!(input)
    assert :binary.referenced_byte_size(id) == byte_size(input)
    assert :binary.referenced_byte_size(long) == byte_size(input)
    assert esc == "a\nb" and :binary.referenced_byte_size(esc) == 3
  end

  test "fragments of 256 bytes or more: copied once into a binary, listed in iodata" do
    big = Json.fragment(%{"content" => String.duplicate("x", 300)})
    small = Json.fragment(%{"c" => "x"})

    for term <- [big, [big], %{"d" => big, "s" => small, "op" => 0}, [big, 1, big, [big]]] do
      assert Json.encode!(term) == Pure.encode!(term)
      assert IO.iodata_to_binary(Json.encode_to_iodata!(term)) == Json.encode!(term)
    end
  end

  test "a fragment whose seal is an equal copy, not the same term, encodes" do
    fragment = Json.fragment(%{"a" => 1})
    copied = :erlang.binary_to_term(:erlang.term_to_binary(fragment))
    assert Json.encode!(%{"d" => copied}) == ~s({"d":{"a":1}})
    assert Json.encode!([copied, fragment]) == ~s([{"a":1},{"a":1}])
  end

  test "fragments under 256 bytes are copied into the output, not listed" do
    small = Json.fragment(%{"c" => "x"})
    assert Json.encode_to_iodata!([small, 1]) == ~s([{"c":"x"},1])
    assert Json.encode_to_iodata!(%{"d" => small}) == ~s({"d":{"c":"x"}})
  end
end
