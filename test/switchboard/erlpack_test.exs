defmodule Switchboard.ErlpackTest do
  use ExUnit.Case, async: true
  use Switchboard.Property
  import Bitwise, only: [<<<: 2]

  alias Switchboard.Erlpack
  alias Switchboard.Erlpack.Fragment
  alias Switchboard.Erlpack.Pure

  doctest Switchboard.Erlpack

  @vectors_path Path.expand("../fixtures/erlpack_vectors.json", __DIR__)

  # ATOM_INTERNAL_REF2/3, read by binary_to_term and refused on purpose.
  @internal_tags [73, 75]

  # Terms for which encode/1 promises term_to_binary's exact bytes.
  defp identity_terms do
    [
      0,
      1,
      255,
      256,
      -1,
      -256,
      (1 <<< 31) - 1,
      1 <<< 31,
      -(1 <<< 31),
      -(1 <<< 31) - 1,
      (1 <<< 59) - 1,
      1 <<< 59,
      (1 <<< 63) - 1,
      1 <<< 63,
      -(1 <<< 63),
      -(1 <<< 63) - 1,
      (1 <<< 64) - 1,
      1 <<< 64,
      1 <<< 2040,
      -(3 ** 5000),
      0.0,
      -0.0,
      1.0e300,
      5.0e-324,
      -2.2250738585072014e-308,
      :a,
      nil,
      true,
      false,
      :"",
      :héllo,
      :日本語,
      :"emoji 🎉",
      String.to_atom(String.duplicate("a", 255)),
      String.to_atom(String.duplicate("é", 255)),
      String.to_atom(String.duplicate("日", 86)),
      "",
      "hello",
      :binary.copy(<<7>>, 70_000),
      <<1::1>>,
      <<1, 2, 3::7>>,
      [],
      [0],
      [0, 0, 255],
      [256],
      [-1],
      ~c"hello",
      [1, 2 | 3],
      [1, 2 | "tail"],
      [[] | []],
      [:a, 1, "b", 2.0, {}],
      List.duplicate(1, 65_535),
      List.duplicate(1, 65_536),
      [1 | List.duplicate(2, 65_535)] ++ [300],
      {},
      {{{{}}}},
      List.to_tuple(Enum.to_list(1..256)),
      %{},
      %{1 => :a, 1.0 => :b, :x => :c},
      %{2 => :a, 1.5 => :b, 1 => :c, 3.0 => :d, -1 => :e, -2.5 => :f},
      %{"op" => 0, "d" => %{"heartbeat_interval" => 41_250}, "s" => nil, "t" => nil},
      %{{1, 2} => [1], [1] => {1, 2}, "b" => <<1::2>>, :a => 1.0, 7 => %{}},
      %{%{1 => 2} => %{3 => 4}, [] => [], {} => {}},
      %{a: 1, b: 2, aa: 3, ba: 4, é: 5, 日: 6},
      Map.new(1..32, &{&1, &1}),
      Map.new(1..32, &{"key#{&1}", [&1]})
    ]
  end

  describe "encode/2" do
    test "is byte-identical to term_to_binary/1, and to the pure twin" do
      for term <- identity_terms() do
        assert Erlpack.encode(term) == :erlang.term_to_binary(term),
               "for #{inspect(term, limit: 8)}"

        assert Erlpack.encode(term) == Pure.encode(term)
      end
    end

    test "is byte-identical to term_to_binary/2 with every compression level" do
      terms = [:binary.copy("abc", 100), List.duplicate(:x, 50), :binary.copy("ab", 20_000)]

      for term <- terms ++ identity_terms(), level <- [0, 1, 6, 9] do
        assert Erlpack.encode(term, compressed: level) ==
                 :erlang.term_to_binary(term, compressed: level),
               "for #{inspect(term, limit: 8)} at level #{level}"
      end

      assert Erlpack.encode(:ok, compressed: true) == <<131, 100, 0, 2, "ok">>
    end

    test "round-trips pids, references, ports, funs and large maps" do
      terms = [
        Map.new(1..100, &{"key#{&1}", &1}),
        self(),
        make_ref(),
        :erlang.list_to_port(~c"#Port<0.1>"),
        &Enum.map/2,
        fn x -> x + 1 end,
        {self(), [make_ref()], %{pid: self()}}
      ]

      for term <- terms do
        assert :erlang.binary_to_term(Erlpack.encode(term)) === term
      end
    end

    test "encodes a 10 MB term, off the normal schedulers, correctly" do
      term = for i <- 1..200_000, do: %{"id" => i, "name" => "member #{i}", "ok" => true}
      assert :erlang.binary_to_term(Erlpack.encode(term)) == term
      assert Erlpack.encode(term) == :erlang.term_to_binary(term)
      big = :binary.copy("0123456789", 1_000_000)
      assert Erlpack.encode([big]) == :erlang.term_to_binary([big])

      assert Erlpack.encode(big, compressed: 6) ==
               :erlang.term_to_binary(big, compressed: 6)
    end

    test "a walk longer than a slice continues where it stopped, byte for byte" do
      # Many slices of small nodes (the walk yields and resumes), with tuples,
      # lists, maps, atom keys and improper tails at every depth.
      term =
        for i <- 1..2_000 do
          {i, [for(j <- 1..50, do: %{"id" => j, :kind => "v#{j}", "at" => {j, [j | :tail]}})]}
        end

      assert Erlpack.encode(term) == :erlang.term_to_binary(term)
      assert Erlpack.encode(term, string_keys: true) == Pure.encode(term, string_keys: true)
      assert Erlpack.encode(term, compressed: 1) == :erlang.term_to_binary(term, compressed: 1)

      # Fragments spliced in any slice.
      with_fragments = Enum.map(term, fn {i, maps} -> {i, Erlpack.fragment(maps)} end)
      assert Erlpack.encode(with_fragments) == :erlang.term_to_binary(term)
      assert Erlpack.fragment(term).bytes == Pure.fragment(term).bytes

      # A node too large for a slice, met after the walk has yielded: the rest
      # continues on a dirty scheduler.
      big = :binary.copy("0123456789", 200_000)
      mixed = [term, big, {big, term}, Map.new(1..50_000, &{&1, [&1]})]
      assert :erlang.binary_to_term(Erlpack.encode(mixed)) == mixed
      assert Erlpack.encode(Enum.take(mixed, 3)) == :erlang.term_to_binary(Enum.take(mixed, 3))
    end

    test "a string_keys collision or a bad fragment found after a yield is still reported" do
      filler = for i <- 1..100_000, do: {i, "x"}
      collision = %{:a => 1, "a" => 2}

      assert_raise ArgumentError, ~r/string_keys/, fn ->
        Erlpack.encode([filler, collision], string_keys: true)
      end

      bad = %Switchboard.Erlpack.Fragment{bytes: :not_bytes}
      assert_raise ArgumentError, ~r/fragment/, fn -> Erlpack.encode([filler, bad]) end
    end

    test "encode_iodata: the bytes of encode/2, large fragments shared, not copied" do
      big = Erlpack.fragment(%{"content" => String.duplicate("x", 1000), "id" => 1})
      small = Erlpack.fragment(%{"id" => 2})

      for term <- [
            %{"op" => 0, "s" => 7, "t" => "MESSAGE_CREATE", "d" => big},
            [big, small, {big, %{a: big}}],
            big,
            small,
            %{"d" => small},
            [1, 2.5, :ok, "no fragments"]
          ],
          opts <- [[], [string_keys: true], [compressed: 6], [compressed: 0]] do
        iodata = Erlpack.encode_iodata(term, opts)
        assert IO.iodata_to_binary(iodata) == Erlpack.encode(term, opts)
        assert IO.iodata_to_binary(Pure.encode_iodata(term, opts)) == Erlpack.encode(term, opts)
      end

      frame = Erlpack.encode_iodata(%{"op" => 0, "d" => big})
      assert [_header, shared, _rest] = frame
      assert :erts_debug.same(shared, big.bytes)
      # Small fragments are copied: one binary.
      assert is_binary(Erlpack.encode_iodata(%{"op" => 0, "d" => small}))
      # Compressed: one binary.
      assert is_binary(Erlpack.encode_iodata([big, big], compressed: 9))
    end

    test "encode_iodata: a walk that continues in a later call copies its fragments in" do
      big = Erlpack.fragment(String.duplicate("y", 2000))
      term = for i <- 1..50_000, do: {i, big, %{"n" => i}}
      iodata = Erlpack.encode_iodata(term)
      assert IO.iodata_to_binary(iodata) == Erlpack.encode(term)

      assert IO.iodata_to_binary(Erlpack.encode_iodata(term, string_keys: true)) ==
               Erlpack.encode(term, string_keys: true)
    end

    test "encode_iodata: bad fragments, collisions and options as encode/2" do
      assert_raise ArgumentError, ~r/invalid fragment/, fn ->
        Erlpack.encode_iodata([%Fragment{bytes: :nope}])
      end

      assert_raise ArgumentError, ~r/string_keys/, fn ->
        Erlpack.encode_iodata(%{:a => 1, "a" => 2}, string_keys: true)
      end

      assert_raise ArgumentError, ~r/keyword list/, fn -> Erlpack.encode_iodata(:ok, :bad) end

      assert_raise ArgumentError, ~r/compressed/, fn ->
        Erlpack.encode_iodata(:ok, compressed: 10)
      end
    end

    test "rejects bad options with exact messages" do
      assert_raise ArgumentError,
                   "invalid :compressed option: 10 (expected a boolean or a level 0..9)",
                   fn -> Erlpack.encode(1, compressed: 10) end

      assert_raise ArgumentError,
                   "invalid :string_keys option: 1 (expected a boolean)",
                   fn -> Erlpack.encode(1, string_keys: 1) end

      assert_raise ArgumentError, ~r/unknown keys \[:compress\]/, fn ->
        Erlpack.encode(1, compress: true)
      end

      assert_raise ArgumentError,
                   "expected options to be a keyword list, got: :fast",
                   fn -> Erlpack.encode(1, :fast) end
    end

    test "refuses a malformed fragment, naming it" do
      assert_raise ArgumentError,
                   "invalid fragment (its :bytes must be a binary made by fragment/2): " <>
                     "%Switchboard.Erlpack.Fragment{bytes: :oops}",
                   fn -> Erlpack.encode([%Fragment{bytes: :oops}]) end

      assert_raise ArgumentError, ~r/invalid fragment/, fn ->
        Erlpack.encode(%{"d" => %Fragment{bytes: <<1::3>>}})
      end
    end
  end

  describe "encode/2 with string_keys: true" do
    test "writes atom keys as binaries, at every level, leaving atom values alone" do
      term = %{"s" => :seq, op: 0, d: %{user: nil, list: [%{ok: true}]}, t: false}

      expected = %{
        "op" => 0,
        "d" => %{"user" => nil, "list" => [%{"ok" => true}]},
        "t" => false,
        "s" => :seq
      }

      assert Erlpack.encode(term, string_keys: true) == :erlang.term_to_binary(expected)
      assert Erlpack.encode(term, string_keys: true) == Pure.encode(term, string_keys: true)
    end

    test "sorts renamed keys among existing bitstring keys" do
      term = %{:b => 1, "a" => 2, "c" => 3, <<1::3>> => 4, 7 => 5, zz: 6}
      expected = %{"b" => 1, "a" => 2, "c" => 3, <<1::3>> => 4, 7 => 5, "zz" => 6}
      assert Erlpack.encode(term, string_keys: true) == :erlang.term_to_binary(expected)
    end

    test "reaches maps inside tuples, lists and keys, and UTF-8 names" do
      term = {[%{é: 1, 日: 2}], %{%{k: 1} => :v}}
      expected = {[%{"é" => 1, "日" => 2}], %{%{"k" => 1} => :v}}
      assert Erlpack.encode(term, string_keys: true) == :erlang.term_to_binary(expected)
    end

    test "refuses a map whose keys would collide, naming it" do
      assert_raise ArgumentError,
                   ~s(string_keys: true makes two keys of this map equal: %{:a => 1, "a" => 2}),
                   fn -> Erlpack.encode(%{:a => 1, "a" => 2}, string_keys: true) end

      large = Map.new(1..40, &{"k#{&1}", &1}) |> Map.put(:k7, 0)

      assert_raise ArgumentError, ~r/makes two keys of this map equal/, fn ->
        Erlpack.encode(large, string_keys: true)
      end
    end

    test "keeps large maps decodable" do
      term = Map.new(1..100, &{:"key#{&1}", &1})
      expected = Map.new(1..100, &{"key#{&1}", &1})
      assert :erlang.binary_to_term(Erlpack.encode(term, string_keys: true)) == expected
    end
  end

  describe "fragment/2" do
    test "holds the encoding without the version byte, as the pure twin does" do
      payload = %{"content" => "hi", "n" => [1, 2, 3], "id" => 1 <<< 62}
      <<131, bytes::binary>> = :erlang.term_to_binary(payload)
      assert Erlpack.fragment(payload) == %Fragment{bytes: bytes}
      assert Erlpack.fragment(payload) == Pure.fragment(payload)

      assert Erlpack.fragment(%{a: 1}, string_keys: true) ==
               Pure.fragment(%{a: 1}, string_keys: true)
    end

    test "is spliced as-is wherever it appears, also from the pure twin" do
      payload = %{"content" => "hi", "embeds" => [%{"x" => 1.5}], "id" => 1 <<< 60}

      for fragment <- [Erlpack.fragment(payload), Pure.fragment(payload)],
          wrap <- [
            &%{"op" => 0, "s" => 7, "d" => &1},
            &[&1, &1],
            &{:dispatch, &1},
            &[1 | &1],
            &%{&1 => 1},
            & &1
          ] do
        spliced = Erlpack.encode(wrap.(fragment))
        assert spliced == Erlpack.encode(wrap.(payload))
        assert :erlang.binary_to_term(spliced) == wrap.(payload)
      end
    end

    test "is spliced inside compressed encodings, and with string_keys" do
      payload = List.duplicate("repeated", 40)
      envelope = %{"op" => 0, "d" => Erlpack.fragment(payload)}
      assert <<131, 80, _::binary>> = Erlpack.encode(envelope, compressed: true)

      assert :erlang.binary_to_term(Erlpack.encode(envelope, compressed: true)) == %{
               "op" => 0,
               "d" => payload
             }

      inner = Erlpack.fragment(%{a: 1})

      assert Erlpack.decode(Erlpack.encode(%{op: inner}, string_keys: true)) ==
               {:ok, %{"op" => %{a: 1}}}
    end

    test "cannot be compressed" do
      assert_raise ArgumentError, ~r/a fragment cannot be compressed/, fn ->
        Erlpack.fragment([1], compressed: 6)
      end

      assert %Fragment{} = Erlpack.fragment([1], compressed: false)
    end
  end

  describe "decode/2" do
    test "decodes every tag OTP 25 decodes" do
      pid = self()
      fun = fn x -> {x, pid} end
      extra = [pid, make_ref(), :erlang.list_to_port(~c"#Port<0.1>"), &Enum.map/2, fun]

      for term <- identity_terms() ++ extra ++ [Map.new(1..100, &{&1, &1})] do
        assert {:ok, decoded} = Erlpack.decode(:erlang.term_to_binary(term))
        assert decoded === term
      end

      old_formats = [
        <<131, 115, 2, "ok">>,
        <<131, 119, 2, "ok">>,
        <<131, 118, 0, 2, "ok">>,
        <<131, 115, 1, 233>>,
        <<131, 99, "1.50000000000000000000e+00", 0::40>>,
        <<131, 99, "-2,5", 0::27*8>>,
        <<131, 110, 1, 0, 5>>,
        <<131, 111, 0, 0, 0, 2, 1, 7, 0>>,
        <<131, 105, 0, 0, 0, 1, 97, 1>>,
        <<131, 108, 0, 0, 0, 0, 97, 1>>,
        <<131, 108, 0, 0, 0, 1, 97, 1, 108, 0, 0, 0, 1, 97, 2, 106>>,
        <<131, 77, 0, 0, 0, 1, 3, 255>>,
        <<131, 116, 0, 0, 0, 2, 97, 2, 97, 0, 97, 1, 97, 0>>
      ]

      node = <<100, 0, 13, "nonode@nohost">>

      opaque = [
        <<131, 103, node::binary, 0, 0, 0, 1, 0, 0, 0, 0, 0>>,
        <<131, 102, node::binary, 0, 0, 0, 1, 0>>,
        <<131, 120, node::binary, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0>>,
        <<131, 101, node::binary, 0, 0, 0, 1, 0>>,
        <<131, 114, 0, 3, node::binary, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3>>,
        <<131, 113, 100, 0, 11, "Elixir.Enum", 115, 3, "map", 110, 1, 0, 2>>
      ]

      for bytes <- old_formats ++ opaque do
        assert {:ok, decoded} = Erlpack.decode(bytes)
        assert decoded === :erlang.binary_to_term(bytes), inspect(bytes)
      end
    end

    test "the atoms option" do
      assert Erlpack.decode(<<131, 100, 0, 9, "zq_nx_one">>) == {:error, {:unknown_atom, 1}}
      assert Erlpack.decode(<<131, 104, 1, 119, 9, "zq_nx_two">>) == {:error, {:unknown_atom, 3}}
      assert Erlpack.decode(<<131, 118, 0, 5, "zq日">>) == {:error, {:unknown_atom, 1}}
      pid = <<131, 88, 100, 0, 10, "zq_ny@node", 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1>>
      assert Erlpack.decode(pid) == {:error, {:unknown_atom, 2}}
      assert Erlpack.decode(pid, atoms: :binary) == {:error, {:unknown_atom, 2}}
      assert {:ok, pid} = Erlpack.decode(pid, atoms: :create)
      assert Atom.to_string(node(pid)) == "zq_ny@node"

      term = [:ok, :é, :日本, true, false, nil, %{key: :value}]

      assert Erlpack.decode(:erlang.term_to_binary(term), atoms: :binary) ==
               {:ok, ["ok", "é", "日本", true, false, nil, %{"key" => "value"}]}

      assert {:ok, atom} = Erlpack.decode(<<131, 119, 12, "zq_créé_n1">>, atoms: :create)
      assert Atom.to_string(atom) == "zq_créé_n1"
    end

    test "unknown atoms inside exports and funs, at the offsets the pure twin reports" do
      export = <<131, 113, 100, 0, 5, "zq_m1", 100, 0, 3, "map", 97, 2>>
      export2 = <<131, 113, 100, 0, 11, "Elixir.Enum", 100, 0, 5, "zq_f1", 97, 2>>
      <<131, fun::binary>> = :erlang.term_to_binary(fn -> :ok end)
      bad_fun = <<131, :binary.replace(fun, "Elixir", "Zq_nxr")::binary>>

      for bytes <- [export, export2, bad_fun], atoms <- [:existing, :binary] do
        assert Erlpack.decode(bytes, atoms: atoms) == Pure.decode(bytes, atoms: atoms)
        assert {:error, {:unknown_atom, _}} = Erlpack.decode(bytes, atoms: atoms)
      end

      # A fun whose environment holds an atom that does not exist.
      env_atom = :"zq_env_#{System.unique_integer([:positive])}"
      closure = :erlang.term_to_binary(fn -> env_atom end)
      name = Atom.to_string(env_atom)
      renamed = :binary.replace(closure, name, String.replace(name, "zq_env", "zq_nxe"))

      for atoms <- [:existing, :binary] do
        assert Erlpack.decode(renamed, atoms: atoms) == Pure.decode(renamed, atoms: atoms)
      end
    end

    test "atoms: :binary refuses keys that become equal, where the pure twin does" do
      bytes = :erlang.term_to_binary(%{:a => 1, "a" => 2, "b" => 3, :b => 4})
      assert Erlpack.decode(bytes, atoms: :binary) == Pure.decode(bytes, atoms: :binary)
      assert {:error, {:duplicate_key, _}} = Erlpack.decode(bytes, atoms: :binary)
    end

    test "atoms: :binary refuses keys that become equal in a large (hash) map too" do
      # OTP builds a map of more than 32 keys even from equal keys, keeping one.
      for size <- [31, 33, 100, 1000] do
        map = Map.new(1..size, &{&1, &1}) |> Map.merge(%{:"" => 1, "" => 2})
        bytes = :erlang.term_to_binary([map])
        assert {:error, {:duplicate_key, offset}} = Erlpack.decode(bytes, atoms: :binary)
        assert Pure.decode(bytes, atoms: :binary) == {:error, {:duplicate_key, offset}}

        assert Erlpack.decode(bytes, atoms: :binary, isolation: :port) ==
                 {:error, {:duplicate_key, offset}}
      end
    end

    test "equal keys are refused where the pure twin and the port refuse them, in every atoms mode" do
      # The NIF leaves equal keys to the VM and looks for the offset only then.
      body = fn term ->
        binary_part(:erlang.term_to_binary(term), 1, byte_size(:erlang.term_to_binary(term)) - 1)
      end

      map = fn pairs ->
        encoded = for {key, value} <- pairs, into: <<>>, do: body.(key) <> body.(value)
        <<116, length(pairs)::32, encoded::binary>>
      end

      filler = fn size -> for i <- 1..size, do: {"key #{i}", i} end
      one_as_bignum = <<110, 1, 0, 1>>

      inputs =
        for size <- [0, 29, 30, 31, 32, 100],
            pairs <- [
              [{:a, 1}, {:b, 2}, {:a, 3}],
              [{"z", 1}, {"b", 2}, {"z", 3}, {"b", 4}],
              [{%{"k" => 1}, 1}, {[1, 2], 2}, {%{"k" => 1}, 3}]
            ] do
          <<131, map.(filler.(size) ++ pairs)::binary>>
        end

      bignum_key = <<131, 116, 2::32, 97, 1, 97, 1, one_as_bignum::binary, 97, 2>>
      nested = <<131, 108, 1::32, map.([{"x", 1}, {"x", 2}])::binary, 106>>
      inputs = [bignum_key, nested | inputs]

      compress = fn <<131, inner::binary>> ->
        <<131, 80, byte_size(inner)::32, :zlib.compress(inner)::binary>>
      end

      for input <- inputs ++ Enum.map(inputs, compress), atoms <- [:existing, :create, :binary] do
        expected = Pure.decode(input, atoms: atoms)
        assert {:error, {:duplicate_key, _}} = expected
        assert Erlpack.decode(input, atoms: atoms) == expected, "#{inspect(input)} #{atoms}"
        assert Erlpack.decode(input, atoms: atoms, isolation: :port) == expected
      end
    end

    test "equal keys in a fun's free variables are refused as the pure twin refuses them" do
      # Built at run time, so the fun captures it rather than a literal.
      env = %{"zq_key_1" => System.unique_integer(), "zq_key_2" => 2}
      closure = :erlang.term_to_binary(fn -> env end)
      bytes = :binary.replace(closure, "zq_key_2", "zq_key_1")
      assert bytes != closure

      for atoms <- [:existing, :create, :binary] do
        assert {:error, {:duplicate_key, _}} = Pure.decode(bytes, atoms: atoms)
        assert Erlpack.decode(bytes, atoms: atoms) == Pure.decode(bytes, atoms: atoms)
      end
    end

    test "trailing: :allow returns the rest" do
      assert Erlpack.decode(<<131, 97, 1, 2, 3>>, trailing: :allow) == {:ok, 1, <<2, 3>>}
      assert Erlpack.decode(<<131, 97, 1>>, trailing: :allow) == {:ok, 1, ""}
      assert Erlpack.decode(<<131, 97, 1, 2, 3>>) == {:error, {:trailing_data, 3}}

      compressed = :erlang.term_to_binary(List.duplicate("text", 50), compressed: 6)

      assert Erlpack.decode(compressed <> "x", trailing: :allow) ==
               {:ok, List.duplicate("text", 50), "x"}

      assert Erlpack.decode(compressed <> "x") ==
               {:error, {:trailing_data, byte_size(compressed)}}
    end

    test "large binaries share the input, small ones are copied" do
      big = :binary.copy("x", 1000)
      {:ok, [decoded, small]} = Erlpack.decode(:erlang.term_to_binary([big, "tiny"]))
      assert decoded == big and small == "tiny"
      assert :binary.referenced_byte_size(decoded) > 1000
      assert :binary.referenced_byte_size(small) == 4

      # Small inputs too: a binary beyond the heap binary limit shares the input.
      bytes = :erlang.term_to_binary(["tiny", :binary.copy("y", 65)])
      {:ok, [small, medium]} = Erlpack.decode(bytes)
      assert :binary.referenced_byte_size(medium) == byte_size(bytes)
      assert :binary.referenced_byte_size(small) == 4
    end

    test "small plain inputs decode alike with every option" do
      bytes = :erlang.term_to_binary(%{"a" => [1, 2.5, true, nil], "b" => {:ok, "x"}})
      term = :erlang.binary_to_term(bytes)
      assert Erlpack.decode(bytes) == {:ok, term}
      assert Erlpack.decode(bytes <> "rest", trailing: :allow) == {:ok, term, "rest"}
      assert Erlpack.decode(bytes <> "rest") == {:error, {:trailing_data, byte_size(bytes)}}
      assert Erlpack.decode(bytes, atoms: :create) == {:ok, term}

      assert Erlpack.decode(bytes, atoms: :binary) ==
               {:ok, %{"a" => [1, 2.5, true, nil], "b" => {"ok", "x"}}}

      assert Erlpack.decode(bytes, max_depth: 2) == {:ok, term}
      assert Erlpack.decode(bytes, max_depth: 1) == {:error, {:depth_exceeded, 12}}
      assert Erlpack.decode(bytes, max_size: byte_size(bytes) - 1) == {:error, {:too_large, 0}}

      # Equal keys in a map, and an atom that does not exist.
      assert Erlpack.decode(<<131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3>>) ==
               {:error, {:duplicate_key, 10}}

      unknown = <<131, 100, 0, 18, "switchboard_nope_1">>
      assert Erlpack.decode(unknown) == {:error, {:unknown_atom, 1}}
      assert Erlpack.decode(unknown, atoms: :binary) == {:ok, "switchboard_nope_1"}
    end

    test "decodes 10 MB inputs, plain and compressed" do
      term = for i <- 1..200_000, do: %{"id" => i, "name" => "member #{i}", "ok" => true}
      bytes = :erlang.term_to_binary(term)
      assert byte_size(bytes) > 8_000_000
      assert Erlpack.decode(bytes) == {:ok, term}
      assert Erlpack.decode(:erlang.term_to_binary(term, compressed: 1)) == {:ok, term}
    end

    test "a compression bomb is stopped by what it inflates to" do
      bomb = :erlang.term_to_binary(:binary.copy(<<0>>, 20_000_000), compressed: 9)

      assert Erlpack.decode(bomb, max_decompressed: 1_000_000) ==
               {:error, {:decompressed_too_large, 1}}

      <<131, 80, _declared::32, zdata::binary>> = bomb
      liar = <<131, 80, 1000::32, zdata::binary>>

      assert Erlpack.decode(liar, max_decompressed: 100_000) ==
               Pure.decode(liar, max_decompressed: 100_000)
    end

    test "every truncation of a valid encoding is refused as truncated" do
      terms = [
        %{"op" => 0, "d" => [1, 2.5, :ok, "text", {<<1::3>>, 1 <<< 80}], "s" => nil},
        [self(), make_ref(), &Enum.map/2, :erlang.list_to_port(~c"#Port<0.1>")],
        [:日本, :é, -(1 <<< 300), fn -> self() end]
      ]

      for term <- terms,
          encoded = :erlang.term_to_binary(term),
          size <- 0..(byte_size(encoded) - 1) do
        cut = binary_part(encoded, 0, size)
        assert {:error, {:truncated, _}} = Erlpack.decode(cut)
        assert {:error, {:truncated, _}} = Pure.decode(cut)
      end
    end
  end

  describe "decode/2 refuses" do
    # {input, options, reason, offset}: the pure twin's table.
    @refusals [
      {<<>>, [], :truncated, 0},
      {<<131>>, [], :truncated, 1},
      {<<131, 104, 2, 97, 1>>, [], :truncated, 5},
      {<<131, 109, 0, 0, 0, 5, "abc">>, [], :truncated, 1},
      {<<131, 108, 0, 0, 0, 1, 97, 1>>, [], :truncated, 8},
      {<<131, 80, 0, 0>>, [], :truncated, 1},
      {<<130, 97, 1>>, [], :bad_version, 0},
      {<<131, 104, 1, 1>>, [], :unknown_tag, 3},
      {<<131, 82, 0>>, [], :unknown_tag, 1},
      {<<131, 73, 0, 1>>, [atoms: :create], :unknown_tag, 1},
      {<<131, 104, 1, 104, 1, 104, 1, 97, 1>>, [max_depth: 2], :depth_exceeded, 5},
      {<<131, 108, 0, 0, 0, 1, 106, 106>>, [max_depth: 0], :depth_exceeded, 1},
      {<<131, 97, 1>>, [max_size: 2], :too_large, 0},
      {<<131, 80, 0, 0, 0, 4, "not zlib at all">>, [], :bad_compression, 1},
      {<<131, 70, 0x7FF8000000000000::64>>, [], :invalid_float, 1},
      {<<131, 104, 1, 70, 0x7FF0000000000000::64>>, [], :invalid_float, 3},
      {<<131, 99, "1.0e400", 0::24*8>>, [], :invalid_float, 1},
      {<<131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2>>, [], :duplicate_key, 10},
      {<<131, 100, 1, 0, String.duplicate("a", 256)::binary>>, [], :atom_too_long, 1},
      {<<131, 119, 2, 0xC3, 0x28>>, [], :invalid_utf8, 1},
      {<<131, 104, 1, 80, 0, 0, 0, 1, 120, 156, 203, 2, 0, 0, 107, 0, 107>>, [],
       :nested_compression, 3},
      {<<131, 97, 1, 0>>, [], :trailing_data, 3},
      {<<131, 100, 0, 9, "zq_nx_ref">>, [], :unknown_atom, 1},
      {<<131, 88, 109, 0, 0, 0, 1, "a", 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1>>, [], :bad_node, 1},
      {<<131, 77, 0, 0, 0, 1, 0, 255>>, [], :invalid_term, 1},
      {<<131, 112, 0::32, 0, 0::128, 0::32, 0::32, 97, 1>>, [], :invalid_term, 1},
      {<<131, 113, 100, 0, 2, "ok", 100, 0, 2, "ok", 70, 1.0::float>>, [], :invalid_term, 1}
    ]

    test "bad input with the exact reason and offset, as the pure twin" do
      for {input, opts, reason, offset} <- @refusals do
        assert Erlpack.decode(input, opts) == {:error, {reason, offset}},
               "for #{inspect(input, limit: 20)} with #{inspect(opts)}"

        assert Pure.decode(input, opts) == {:error, {reason, offset}}
      end
    end

    test "errors inside a compressed payload at the compressed tag's offset" do
      compress = fn inner -> <<131, 80, byte_size(inner)::32, :zlib.compress(inner)::binary>> end

      for inner <- [
            <<104, 2, 97, 1>>,
            <<70, 0x7FF8000000000000::64>>,
            <<97, 1, 97, 2>>,
            <<100, 0, 9, "zq_nx_cmp">>,
            <<103, 100, 0, 9, "zq_nx_cmp", 0::72>>
          ] do
        assert {:error, {_reason, 1}} = Erlpack.decode(compress.(inner))
        assert Erlpack.decode(compress.(inner)) == Pure.decode(compress.(inner))
      end
    end

    test "a non-binary or bad options with exact messages" do
      assert_raise ArgumentError, "expected a binary to decode, got: :nope", fn ->
        Erlpack.decode(:nope)
      end

      assert_raise ArgumentError, "expected a binary to decode, got: <<1::size(3)>>", fn ->
        Erlpack.decode(<<1::3>>, atoms: :binary)
      end

      assert_raise ArgumentError, "invalid :atoms option: :maybe", fn ->
        Erlpack.decode(<<131, 97, 1>>, atoms: :maybe)
      end

      assert_raise ArgumentError, "invalid :max_depth option: -1", fn ->
        Erlpack.decode(<<131, 97, 1>>, max_depth: -1)
      end

      assert_raise ArgumentError, "invalid :isolation option: :thread", fn ->
        Erlpack.decode(<<131, 97, 1>>, isolation: :thread)
      end

      assert_raise ArgumentError, ~r/unknown keys \[:safe\]/, fn ->
        Erlpack.decode(<<131, 97, 1>>, safe: true)
      end
    end
  end

  describe "decode!/2" do
    test "returns the term, or raises naming the reason and offset" do
      assert Erlpack.decode!(<<131, 97, 1>>) == 1
      assert Erlpack.decode!(<<131, 97, 1, 2>>, trailing: :allow) == {1, <<2>>}

      assert_raise ArgumentError,
                   "cannot decode External Term Format: unknown_atom at byte 1",
                   fn -> Erlpack.decode!(<<131, 100, 0, 9, "zq_nx_rai">>) end
    end
  end

  describe "the discord/erlpack test vectors" do
    setup do
      vectors = @vectors_path |> File.read!() |> Switchboard.Test.JSON.decode!()
      assert length(vectors) == 115
      %{vectors: vectors}
    end

    test "every ok vector decodes to OTP's value, and re-encodes as OTP", %{vectors: vectors} do
      ok = Enum.filter(vectors, &(&1["otp25_binary_to_term"] == "ok"))
      assert length(ok) == 99

      for vector <- ok do
        bytes = Base.decode16!(vector["etf_hex"], case: :lower)
        label = vector["source"]
        used = vector["otp25_bytes_used"]
        expected = :erlang.binary_to_term(bytes)

        assert {:ok, term, rest} = Erlpack.decode(bytes, atoms: :create, trailing: :allow), label
        assert term === expected, label
        assert byte_size(bytes) - byte_size(rest) == used, label
        assert {:ok, term, rest} === Pure.decode(bytes, atoms: :create, trailing: :allow)
        reencoded = Base.decode16!(vector["otp25_reencoded_hex"], case: :lower)
        assert Erlpack.encode(term) == reencoded, label
      end
    end

    test "every error vector is refused, as by the pure twin", %{vectors: vectors} do
      errors = Enum.filter(vectors, &(&1["otp25_binary_to_term"] == "error"))
      assert length(errors) == 16

      for vector <- errors, opts <- [[atoms: :create], [atoms: :create, trailing: :allow], []] do
        bytes = Base.decode16!(vector["etf_hex"], case: :lower)
        assert {:error, {reason, offset}} = Erlpack.decode(bytes, opts), vector["source"]
        assert is_atom(reason) and offset in 0..byte_size(bytes)
        assert Erlpack.decode(bytes, opts) == Pure.decode(bytes, opts), vector["source"]
      end
    end
  end

  describe "properties" do
    property_test "binary_to_term(encode(t)) === t", numtests: 300 do
      forall term <- any_term() do
        :erlang.binary_to_term(Erlpack.encode(term)) === term
      end
    end

    property_test "decode(term_to_binary(t)) === {:ok, t}", numtests: 300 do
      forall term <- any_term() do
        exactly?(Erlpack.decode(:erlang.term_to_binary(term)), term) and
          exactly?(Erlpack.decode(:erlang.term_to_binary(term, compressed: 1)), term)
      end
    end

    property_test "encode is byte-identical to term_to_binary and the pure twin where promised",
      numtests: 300 do
      forall term <- oneof([any(), any_term(), map_of(any(), any())]) do
        not identity_promised?(term) or
          (Erlpack.encode(term) == :erlang.term_to_binary(term) and
             Erlpack.encode(term) == Pure.encode(term))
      end
    end

    property_test "compressed and string_keys encodes agree with the pure twin", numtests: 200 do
      forall {term, level} <- {map_of(oneof([atom(), integer(), binary()]), any()), integer(0, 9)} do
        opts = [compressed: level, string_keys: true]
        native = safe(fn -> Erlpack.encode(term, opts) end)
        pure = safe(fn -> Pure.encode(term, opts) end)

        # Maps of more than 32 keys have no promised byte order.
        if map_size(term) <= 32 do
          native == pure
        else
          native == pure or :erlang.binary_to_term(native) === :erlang.binary_to_term(pure)
        end
      end
    end

    property_test "gateway-shaped maps: byte identity, round trip, fragments", numtests: 200 do
      forall event <- gateway_event() do
        encoded = Erlpack.encode(event)

        envelope = %{
          "op" => 0,
          "s" => 42,
          "t" => "MESSAGE_CREATE",
          "d" => Erlpack.fragment(event)
        }

        whole = :erlang.term_to_binary(%{envelope | "d" => event})

        encoded == :erlang.term_to_binary(event) and
          Erlpack.decode(encoded) === {:ok, event} and
          Erlpack.encode(envelope) == whole and
          IO.iodata_to_binary(Erlpack.encode_iodata(envelope)) == whole and
          IO.iodata_to_binary(Pure.encode_iodata(envelope)) == whole
      end
    end

    property_test "decode agrees with the pure twin on every option", numtests: 200 do
      forall {term, atoms, trailing} <-
               {any_term(), oneof([:existing, :binary, :create]), oneof([:error, :allow])} do
        bytes = :erlang.term_to_binary(term) <> if(trailing == :allow, do: <<1, 2>>, else: "")
        opts = [atoms: atoms, trailing: trailing]
        Erlpack.decode(bytes, opts) === Pure.decode(bytes, opts)
      end
    end

    property_test "corrupted encodings: never a raise, the pure twin's verdict, OTP's value",
      numtests: 1000 do
      forall {term, flips, cut} <-
               {any_term(), list({non_neg_integer(), integer(0, 7)}), non_neg_integer()} do
        encoded = :erlang.term_to_binary(term)
        corrupted = corrupt(encoded, flips, cut)
        agrees?(corrupted)
      end
    end

    property_test "random bytes after a version byte: the pure twin's verdict", numtests: 500 do
      forall bytes <- binary() do
        agrees?(<<131, bytes::binary>>)
      end
    end
  end

  # Flips the given bits, then maybe cuts the end off.
  defp corrupt(encoded, flips, cut) do
    size = byte_size(encoded)

    flipped =
      Enum.reduce(flips, encoded, fn {at, bit}, bytes ->
        at = rem(at, size)
        <<before::binary-size(at), byte, rest::binary>> = bytes
        <<before::binary, Bitwise.bxor(byte, 1 <<< bit), rest::binary>>
      end)

    if rem(cut, 3) == 0, do: binary_part(flipped, 0, rem(cut, size)), else: flipped
  end

  # What decode accepts, binary_to_term accepts with the same value; the
  # verdict (value, or reason and offset) is the pure twin's. Booleans only:
  # this PropEr reports a raise inside a property badly.
  defp agrees?(bytes) do
    opts = [atoms: :create, trailing: :allow]
    native = safe(fn -> Erlpack.decode(bytes, opts) end)

    pure = safe(fn -> Pure.decode(bytes, opts) end)

    (same_verdict?(native, pure) or core_refused_fun?(bytes, native, pure)) and
      case {native, otp_decode(bytes)} do
        {{:ok, term, rest}, {:ok, {otp_term, used}}} ->
          term === otp_term and byte_size(bytes) - byte_size(rest) == used

        {{:ok, _, _}, :error} ->
          false

        {{:error, {:unknown_tag, offset}}, {:ok, _}} ->
          :binary.at(bytes, offset) in @internal_tags

        {{:error, {reason, offset}}, _otp} ->
          is_atom(reason) and offset in 0..byte_size(bytes)

        {:raised, _} ->
          false
      end
  end

  # The core decoder and the pure twin place some errors differently: a
  # truncation inside a pid, port or reference is reported at its node atom
  # by the core and at the term's tag by the twin, and a reference with no id
  # words is bad (invalid_term) to the core before it is short (truncated).
  defp same_verdict?(same, same), do: true
  defp same_verdict?({:error, {:truncated, _}}, {:error, {:truncated, _}}), do: true
  defp same_verdict?({:error, {:invalid_term, at}}, {:error, {:truncated, at}}), do: true

  defp same_verdict?(native, pure) do
    IO.puts("native #{inspect(native)} != pure #{inspect(pure)}")
    false
  end

  # The core reads a fun's OldIndex and OldUniq as small integers and its
  # creator as a pid, field by field, and refuses anything else at the fun's
  # tag; OTP and the pure twin read those fields as any term. So the NIF may
  # refuse a corrupted fun (invalid_term at its NEW_FUN_EXT tag) that the twin
  # refuses later, elsewhere, or not at all.
  defp core_refused_fun?(bytes, {:error, {:invalid_term, at}}, pure) do
    at < byte_size(bytes) and :binary.at(bytes, at) == 112 and pure != :raised
  end

  defp core_refused_fun?(_bytes, _native, _pure), do: false

  defp safe(fun) do
    fun.()
  rescue
    _ -> :raised
  end

  defp otp_decode(bytes) do
    {:ok, :erlang.binary_to_term(bytes, [:used])}
  rescue
    ArgumentError -> :error
  end

  defp exactly?({:ok, decoded}, term), do: decoded === term
  defp exactly?(_other, _term), do: false

  defp identity_promised?(term) when is_map(term) do
    map_size(term) <= 32 and
      Enum.all?(term, fn {key, value} -> identity_promised?(key) and identity_promised?(value) end)
  end

  defp identity_promised?(term) when is_tuple(term),
    do: term |> Tuple.to_list() |> identity_promised?()

  defp identity_promised?([head | tail]),
    do: identity_promised?(head) and identity_promised?(tail)

  defp identity_promised?(term),
    do: is_number(term) or is_atom(term) or is_bitstring(term) or term == []

  # A gateway event: string keys, snowflakes, nested objects and arrays,
  # booleans and nil.
  defp gateway_event do
    snowflake = integer(1 <<< 50, (1 <<< 63) - 1)
    text = oneof([binary(), exactly("hello world"), exactly("")])
    scalar = oneof([snowflake, text, boolean(), exactly(nil), integer(), float()])

    key =
      oneof(
        Enum.map(
          ~w(id content author username channel_id guild_id embeds mentions type),
          &exactly/1
        )
      )

    object = map_of(key, scalar)
    map_of(key, oneof([scalar, object, list(object), list(snowflake)]))
  end
end
