defmodule Switchboard.Contracts.ErlpackContract do
  @moduledoc false
  # The contract both External Term Format codecs keep (the behaviour
  # Switchboard.Erlpack.Codec): OTP's term_to_binary/binary_to_term as the
  # oracle, exact errors and messages, the untrusted-input defences. Each
  # implementation's test file runs it:
  #
  #     use Switchboard.Contracts.ErlpackContract, codec: Switchboard.Erlpack.Pure
  #
  # Tests that compare the two codecs with each other, or that only one of
  # them can pass (scheduling, the port), live in that implementation's file.

  defmacro __using__(opts) do
    codec = Keyword.fetch!(opts, :codec)

    quote do
      use Switchboard.Property
      import Bitwise, only: [<<<: 2]

      alias Switchboard.Erlpack.Fragment

      @codec unquote(codec)

      # ATOM_INTERNAL_REF2/3: OTP's decoder reads these atom-table indexes,
      # which are not part of the external format; the codec refuses them.
      @internal_tags [73, 75]

      @vectors_path unquote(Path.expand("../../fixtures/erlpack_vectors.json", __DIR__))

      # Terms for which encode/1 promises term_to_binary's exact bytes.
      defp identity_terms do
        [
          # integers around every boundary of every encoding
          0,
          1,
          127,
          128,
          255,
          256,
          -1,
          -255,
          -256,
          65_535,
          65_536,
          (1 <<< 31) - 1,
          1 <<< 31,
          -(1 <<< 31),
          -(1 <<< 31) - 1,
          (1 <<< 32) - 1,
          1 <<< 32,
          (1 <<< 63) - 1,
          1 <<< 63,
          -(1 <<< 63),
          -(1 <<< 63) - 1,
          (1 <<< 64) - 1,
          1 <<< 64,
          -(1 <<< 64),
          (1 <<< 2040) - 1,
          1 <<< 2040,
          -(1 <<< 2040),
          1 <<< 10_000,
          -(3 ** 5000),
          # floats
          0.0,
          -0.0,
          1.0,
          -1.5,
          0.1,
          1.0e300,
          -2.2250738585072014e-308,
          5.0e-324,
          1.7976931348623157e308,
          # atoms
          :a,
          nil,
          true,
          false,
          :"",
          :"with space",
          :héllo,
          :日本語,
          :"emoji 🎉",
          String.to_atom(String.duplicate("a", 255)),
          String.to_atom(String.duplicate("é", 255)),
          String.to_atom(String.duplicate("日", 85)),
          String.to_atom(String.duplicate("日", 86)),
          String.to_atom(String.duplicate("日", 255)),
          # binaries and bitstrings
          "",
          "hello",
          <<0, 255, 128>>,
          :binary.copy(<<7>>, 70_000),
          <<1::1>>,
          <<5::3>>,
          <<1, 2, 3::7>>,
          <<255, 1::1>>,
          # lists: strings (STRING_EXT) and not
          [],
          [0],
          [255],
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
          [[1, 2], [3, [4, [5]]]],
          # tuples
          {},
          {1},
          {:ok, "value"},
          {{{{}}}},
          List.to_tuple(Enum.to_list(1..255)),
          List.to_tuple(Enum.to_list(1..256)),
          List.to_tuple(Enum.to_list(1..1000)),
          # maps
          %{},
          %{1 => :a, 1.0 => :b, :x => :c},
          %{2 => :a, 1.5 => :b, 1 => :c, 3.0 => :d, -1 => :e, -2.5 => :f},
          %{
            "op" => 0,
            "d" => %{"heartbeat_interval" => 41_250},
            "s" => nil,
            "t" => nil
          },
          %{{1, 2} => [1], [1] => {1, 2}, "b" => <<1::2>>, :a => 1.0, 7 => %{}},
          %{%{1 => 2} => %{3 => 4}, [] => [], {} => {}},
          %{a: 1, b: 2, aa: 3, ba: 4, é: 5, 日: 6}
        ] ++
          for(size <- [1, 2, 3, 5, 8, 13, 21, 31, 32], do: Map.new(1..size, &{&1, &1})) ++
          for(
            size <- [4, 16, 32],
            do:
              Map.new(1..size, fn i ->
                key =
                  Enum.at(
                    [i, i * 1.5, :"k#{i}", "k#{i}", {i}, [i], <<i::3>>, -i],
                    rem(i, 8)
                  )

                {key, i}
              end)
          )
      end

      describe "contract: encode/2" do
        test "is byte-identical to term_to_binary/1" do
          for term <- identity_terms() do
            assert @codec.encode(term) == :erlang.term_to_binary(term),
                   "for #{inspect(term, limit: 8)}"
          end
        end

        test "is byte-identical to term_to_binary/2 with every compression level" do
          terms = [
            :binary.copy("abc", 100),
            List.duplicate(:x, 50),
            %{"a" => String.duplicate("b", 40)}
          ]

          for term <- terms ++ identity_terms(), level <- [0, 1, 6, 9] do
            assert @codec.encode(term, compressed: level) ==
                     :erlang.term_to_binary(term, compressed: level),
                   "for #{inspect(term, limit: 8)} at level #{level}"
          end

          term = :binary.copy("abc", 100)

          assert @codec.encode(term, compressed: true) ==
                   :erlang.term_to_binary(term, [:compressed])

          assert <<131, 80, _::binary>> = @codec.encode(term, compressed: true)
          # Compression that does not pay is not used, as in OTP.
          assert @codec.encode(:ok, compressed: 9) == <<131, 100, 0, 2, "ok">>
        end

        test "writes Latin-1 atoms as ATOM_EXT and others as UTF-8, like OTP 25" do
          assert @codec.encode(:ok) == <<131, 100, 0, 2, "ok">>
          assert @codec.encode(:é) == <<131, 100, 0, 1, 233>>
          assert @codec.encode(:日) == <<131, 119, 3, "日">>
          long = String.to_atom(String.duplicate("日", 86))
          assert <<131, 118, 258::16, _::binary>> = @codec.encode(long)
        end

        test "writes small map keys in the runtime's order: all integers before floats" do
          encoded = @codec.encode(%{1.5 => :a, 2 => :b})

          assert encoded ==
                   <<131, 116, 2::32, 97, 2, 100, 1::16, "b", 70, 1.5::float, 100, 1::16, "a">>
        end

        test "round-trips terms it does not promise bytes for" do
          large_map = Map.new(1..100, &{"key#{&1}", &1})
          fun = fn x -> x + 1 end

          terms = [
            large_map,
            self(),
            make_ref(),
            :erlang.list_to_port(~c"#Port<0.1>"),
            &Enum.map/2,
            {self(), [make_ref()], %{pid: self()}}
          ]

          for term <- terms do
            assert :erlang.binary_to_term(@codec.encode(term)) === term
          end

          assert :erlang.binary_to_term(@codec.encode(fun)).(1) == 2
        end

        test "rejects bad options" do
          assert_raise ArgumentError, ~r/invalid :compressed option: 10/, fn ->
            @codec.encode(1, compressed: 10)
          end

          assert_raise ArgumentError, ~r/invalid :string_keys option: 1/, fn ->
            @codec.encode(1, string_keys: 1)
          end

          assert_raise ArgumentError, ~r/unknown keys \[:compress\]/, fn ->
            @codec.encode(1, compress: true)
          end
        end
      end

      describe "contract: encode/2 with string_keys: true" do
        test "writes atom keys as binaries, at every level, leaving atom values alone" do
          term = %{"s" => :seq, op: 0, d: %{user: nil, list: [%{ok: true}]}, t: false}

          expected = %{
            "op" => 0,
            "d" => %{"user" => nil, "list" => [%{"ok" => true}]},
            "t" => false,
            "s" => :seq
          }

          assert @codec.encode(term, string_keys: true) == :erlang.term_to_binary(expected)
          assert @codec.decode(@codec.encode(term, string_keys: true)) == {:ok, expected}
        end

        test "reaches maps inside tuples, lists and keys, and UTF-8 names" do
          term = {[%{é: 1, 日: 2}], %{%{k: 1} => :v}}
          expected = {[%{"é" => 1, "日" => 2}], %{%{"k" => 1} => :v}}
          assert @codec.encode(term, string_keys: true) == :erlang.term_to_binary(expected)
        end

        test "is off by default" do
          assert @codec.encode(%{a: 1}) == :erlang.term_to_binary(%{a: 1})
          assert @codec.encode(%{a: 1}, string_keys: false) == :erlang.term_to_binary(%{a: 1})
        end

        test "refuses a map whose keys would collide" do
          assert_raise ArgumentError, ~r/makes two keys of this map equal/, fn ->
            @codec.encode(%{:a => 1, "a" => 2}, string_keys: true)
          end
        end

        test "keeps large maps decodable" do
          term = Map.new(1..100, &{:"key#{&1}", &1})
          expected = Map.new(1..100, &{"key#{&1}", &1})
          assert :erlang.binary_to_term(@codec.encode(term, string_keys: true)) == expected
        end
      end

      describe "contract: fragment/2" do
        test "holds the encoding without the version byte" do
          payload = %{"content" => "hi", "n" => [1, 2, 3]}
          <<131, bytes::binary>> = :erlang.term_to_binary(payload)
          assert %Fragment{bytes: ^bytes} = @codec.fragment(payload)
        end

        test "is spliced as-is wherever it appears" do
          payload = %{"content" => "hi", "embeds" => [%{"x" => 1.5}], "id" => 1 <<< 60}
          fragment = @codec.fragment(payload)

          for wrap <- [
                &%{"op" => 0, "s" => 7, "d" => &1},
                &[&1, &1],
                &{:dispatch, &1},
                &[1 | &1],
                &%{&1 => 1},
                & &1
              ] do
            spliced = @codec.encode(wrap.(fragment))
            assert spliced == @codec.encode(wrap.(payload))
            assert :erlang.binary_to_term(spliced) == wrap.(payload)
          end
        end

        test "is spliced inside compressed encodings" do
          payload = List.duplicate("repeated", 40)
          envelope = %{"op" => 0, "d" => @codec.fragment(payload)}
          encoded = @codec.encode(envelope, compressed: true)
          assert <<131, 80, _::binary>> = encoded
          assert :erlang.binary_to_term(encoded) == %{"op" => 0, "d" => payload}
        end

        test "uses its own options, not the enclosing encode's" do
          fragment = @codec.fragment(%{a: 1}, string_keys: true)
          assert @codec.decode(@codec.encode([fragment])) == {:ok, [%{"a" => 1}]}

          assert @codec.decode(@codec.encode([@codec.fragment(%{a: 1})], string_keys: true)) ==
                   {:ok, [%{a: 1}]}
        end

        test "cannot be compressed" do
          assert_raise ArgumentError, ~r/a fragment cannot be compressed/, fn ->
            @codec.fragment([1], compressed: 6)
          end

          assert %Fragment{} = @codec.fragment([1], compressed: false)
        end
      end

      describe "contract: decode/2" do
        test "decodes every tag OTP 25 decodes" do
          pid = self()
          ref = make_ref()
          port = :erlang.list_to_port(~c"#Port<0.1>")
          fun = fn x -> {x, pid} end

          terms =
            identity_terms() ++ [pid, ref, port, &Enum.map/2, fun, Map.new(1..100, &{&1, &1})]

          for term <- terms do
            assert {:ok, decoded} = @codec.decode(:erlang.term_to_binary(term))
            assert decoded === term
          end

          old_formats = [
            # SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT
            {<<131, 115, 2, "ok">>, :ok},
            {<<131, 119, 2, "ok">>, :ok},
            {<<131, 118, 0, 2, "ok">>, :ok},
            {<<131, 115, 1, 233>>, :é},
            # FLOAT_EXT, with "," as the decimal point too
            {<<131, 99, "1.50000000000000000000e+00", 0::40>>, 1.5},
            {<<131, 99, "-2,5", 0::27*8>>, -2.5},
            {<<131, 99, "1.0e-400", 0::23*8>>, 0.0},
            # non-canonical integers
            {<<131, 110, 1, 0, 5>>, 5},
            {<<131, 110, 0, 0>>, 0},
            {<<131, 111, 0, 0, 0, 2, 1, 7, 0>>, -7},
            {<<131, 105, 0, 0, 0, 1, 97, 1>>, {1}},
            {<<131, 108, 0, 0, 0, 0, 106>>, []},
            {<<131, 108, 0, 0, 0, 0, 97, 1>>, 1},
            # a list whose tail is a list
            {<<131, 108, 0, 0, 0, 1, 97, 1, 108, 0, 0, 0, 1, 97, 2, 106>>, [1, 2]},
            # bitstring padding bits are ignored
            {<<131, 77, 0, 0, 0, 1, 3, 255>>, <<7::3>>},
            {<<131, 77, 0, 0, 0, 0, 0>>, ""},
            # a map with keys out of order
            {<<131, 116, 0, 0, 0, 2, 97, 2, 97, 0, 97, 1, 97, 0>>, %{1 => 0, 2 => 0}}
          ]

          for {bytes, term} <- old_formats do
            assert {:ok, decoded} = @codec.decode(bytes)
            assert decoded === term, "for #{inspect(bytes)}"
            assert decoded === :erlang.binary_to_term(bytes)
          end
        end

        test "decodes old pid, port and reference formats" do
          node = <<100, 0, 13, "nonode@nohost">>

          for bytes <- [
                <<131, 103, node::binary, 0, 0, 0, 1, 0, 0, 0, 0, 0>>,
                <<131, 88, node::binary, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0>>,
                <<131, 102, node::binary, 0, 0, 0, 1, 0>>,
                <<131, 89, node::binary, 0, 0, 0, 1, 0, 0, 0, 0>>,
                <<131, 120, node::binary, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0>>,
                <<131, 101, node::binary, 0, 0, 0, 1, 0>>,
                <<131, 114, 0, 3, node::binary, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3>>,
                <<131, 90, 0, 3, node::binary, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3>>,
                <<131, 88, 119, 13, "nonode@nohost", 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0>>,
                <<131, 113, 100, 0, 11, "Elixir.Enum", 115, 3, "map", 97, 2>>,
                # an export's arity may be any small integer encoding
                <<131, 113, 100, 0, 11, "Elixir.Enum", 115, 3, "map", 98, 0, 0, 0, 2>>,
                <<131, 113, 100, 0, 11, "Elixir.Enum", 115, 3, "map", 110, 1, 0, 2>>
              ] do
            assert @codec.decode(bytes) == {:ok, :erlang.binary_to_term(bytes)}, inspect(bytes)
          end
        end

        test "atoms: :existing refuses atoms that do not exist" do
          assert @codec.decode(<<131, 100, 0, 9, "zq_nx_one">>) == {:error, {:unknown_atom, 1}}

          assert @codec.decode(<<131, 104, 1, 119, 9, "zq_nx_two">>) ==
                   {:error, {:unknown_atom, 3}}

          assert @codec.decode(<<131, 118, 0, 5, "zq日">>, atoms: :existing) ==
                   {:error, {:unknown_atom, 1}}

          assert @codec.decode(<<131, 100, 0, 2, "ok">>) == {:ok, :ok}
          # not even inside a pid's node
          # (a name no other test, of either codec, creates)
          node = "zq_nx#{System.unique_integer([:positive])}@node"
          pid = <<131, 88, 100, byte_size(node)::16, node::binary, 1::32, 0::32, 1::32>>
          assert @codec.decode(pid) == {:error, {:unknown_atom, 2}}
          assert @codec.decode(pid, atoms: :binary) == {:error, {:unknown_atom, 2}}
          assert {:ok, pid} = @codec.decode(pid, atoms: :create)
          assert Atom.to_string(node(pid)) == node
        end

        test "atoms: :binary returns names as binaries but keeps true, false and nil" do
          term = [:ok, :é, :日本, true, false, nil, %{key: :value}]
          encoded = :erlang.term_to_binary(term)

          assert @codec.decode(encoded, atoms: :binary) ==
                   {:ok, ["ok", "é", "日本", true, false, nil, %{"key" => "value"}]}

          assert @codec.decode(<<131, 119, 4, "true">>, atoms: :binary) == {:ok, true}
          assert @codec.decode(<<131, 115, 3, "nil">>, atoms: :binary) == {:ok, nil}

          assert @codec.decode(<<131, 100, 0, 9, "zq_nx_bin">>, atoms: :binary) ==
                   {:ok, "zq_nx_bin"}
        end

        test "atoms: :create creates atoms" do
          latin1 = "zq_created_#{System.unique_integer([:positive])}"
          utf8 = "zq_créé_#{System.unique_integer([:positive])}"

          assert @codec.decode(<<131, 100, byte_size(latin1)::16, latin1::binary>>) ==
                   {:error, {:unknown_atom, 1}}

          assert {:ok, atom} =
                   @codec.decode(<<131, 100, byte_size(latin1)::16, latin1::binary>>,
                     atoms: :create
                   )

          assert Atom.to_string(atom) == latin1

          assert {:ok, atom} =
                   @codec.decode(<<131, 119, byte_size(utf8), utf8::binary>>, atoms: :create)

          assert Atom.to_string(atom) == utf8
        end

        test "trailing: :allow returns the rest" do
          assert @codec.decode(<<131, 97, 1, 2, 3>>, trailing: :allow) == {:ok, 1, <<2, 3>>}
          assert @codec.decode(<<131, 97, 1>>, trailing: :allow) == {:ok, 1, ""}
          assert @codec.decode(<<131, 97, 1, 2, 3>>) == {:error, {:trailing_data, 3}}
        end

        test "decodes compressed terms, with or without trailing data" do
          term = %{"list" => List.duplicate("repeated text", 50)}
          compressed = :erlang.term_to_binary(term, compressed: 6)
          assert <<131, 80, _::binary>> = compressed

          assert @codec.decode(compressed) == {:ok, term}
          assert @codec.decode(compressed <> "extra", trailing: :allow) == {:ok, term, "extra"}

          assert @codec.decode(compressed <> "extra") ==
                   {:error, {:trailing_data, byte_size(compressed)}}
        end

        test "finds the end of a zlib stream even when its checksum recurs after it" do
          compressed = :erlang.term_to_binary(:binary.copy("ab", 100), compressed: 9)
          checksum = binary_part(compressed, byte_size(compressed) - 4, 4)
          tail = checksum <> "x" <> checksum <> checksum

          assert @codec.decode(compressed <> tail, trailing: :allow) ==
                   {:ok, :binary.copy("ab", 100), tail}

          assert @codec.decode(compressed <> tail) ==
                   {:error, {:trailing_data, byte_size(compressed)}}
        end

        test "rejects bad options" do
          assert_raise ArgumentError, ~r/invalid :atoms option: :maybe/, fn ->
            @codec.decode(<<131, 97, 1>>, atoms: :maybe)
          end

          assert_raise ArgumentError, ~r/invalid :max_depth option: -1/, fn ->
            @codec.decode(<<131, 97, 1>>, max_depth: -1)
          end

          assert_raise ArgumentError, ~r/unknown keys \[:safe\]/, fn ->
            @codec.decode(<<131, 97, 1>>, safe: true)
          end
        end
      end

      describe "contract: decode/2 refuses" do
        # {input, options, reason, offset}
        @refusals [
          {<<>>, [], :truncated, 0},
          {<<131>>, [], :truncated, 1},
          {<<131, 97>>, [], :truncated, 1},
          {<<131, 104, 2, 97, 1>>, [], :truncated, 5},
          {<<131, 109, 0, 0, 0, 5, "abc">>, [], :truncated, 1},
          {<<131, 108, 0, 0, 0, 1, 97, 1>>, [], :truncated, 8},
          {<<131, 80, 0, 0>>, [], :truncated, 1},
          {<<130, 97, 1>>, [], :bad_version, 0},
          {<<97, 1>>, [], :bad_version, 0},
          {<<131, 104, 1, 1>>, [], :unknown_tag, 3},
          {<<131, 82, 0>>, [], :unknown_tag, 1},
          {<<131, 117, 0, 0, 0, 0>>, [], :unknown_tag, 1},
          {<<131, 104, 1, 104, 1, 104, 1, 97, 1>>, [max_depth: 2], :depth_exceeded, 5},
          {<<131, 108, 0, 0, 0, 1, 106, 106>>, [max_depth: 0], :depth_exceeded, 1},
          {<<131, 116, 0, 0, 0, 1, 97, 1, 116, 0, 0, 0, 1, 97, 1, 97, 1>>, [max_depth: 1],
           :depth_exceeded, 8},
          {<<131, 97, 1>>, [max_size: 2], :too_large, 0},
          {<<131, 80, 0, 0, 0, 4, "not zlib at all">>, [], :bad_compression, 1},
          {<<131, 70, 0x7FF8000000000000::64>>, [], :invalid_float, 1},
          {<<131, 70, 0xFFF0000000000000::64>>, [], :invalid_float, 1},
          {<<131, 104, 1, 70, 0x7FF0000000000000::64>>, [], :invalid_float, 3},
          {<<131, 99, "1.0e400", 0::24*8>>, [], :invalid_float, 1},
          {<<131, 99, "15", 0::29*8>>, [], :invalid_float, 1},
          {<<131, 99, "1.5abc", 0::25*8>>, [], :invalid_float, 1},
          {<<131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2>>, [], :duplicate_key, 10},
          {<<131, 108, 0, 0, 0, 1, 116, 0, 0, 0, 2, 106, 97, 1, 107, 0, 0, 97, 2, 106>>, [],
           :duplicate_key, 14},
          {<<131, 100, 1, 0, String.duplicate("a", 256)::binary>>, [], :atom_too_long, 1},
          {<<131, 118, 512::16, String.duplicate("é", 256)::binary>>, [atoms: :create],
           :atom_too_long, 1},
          {<<131, 118, 512::16, String.duplicate("é", 256)::binary>>, [atoms: :binary],
           :atom_too_long, 1},
          {<<131, 119, 2, 0xC3, 0x28>>, [], :invalid_utf8, 1},
          {<<131, 119, 2, 0xC0, 0x80>>, [atoms: :create], :invalid_utf8, 1},
          {<<131, 119, 3, 0xED, 0xA0, 0x80>>, [atoms: :binary], :invalid_utf8, 1},
          {<<131, 104, 1, 80, 0, 0, 0, 1, 120, 156, 203, 2, 0, 0, 107, 0, 107>>, [],
           :nested_compression, 3},
          {<<131, 97, 1, 0>>, [], :trailing_data, 3},
          {<<131, 106, 106>>, [], :trailing_data, 2},
          {<<131, 100, 0, 9, "zq_nx_ref">>, [], :unknown_atom, 1},
          {<<131, 88, 109, 0, 0, 0, 1, "a", 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1>>, [], :bad_node,
           1},
          {<<131, 104, 1, 103, 97, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0>>, [], :bad_node, 3},
          {<<131, 77, 0, 0, 0, 1, 0, 255>>, [], :invalid_term, 1},
          {<<131, 77, 0, 0, 0, 1, 9, 255>>, [], :invalid_term, 1},
          {<<131, 77, 0, 0, 0, 0, 3>>, [], :invalid_term, 1},
          # a fun whose module is not an atom
          {<<131, 112, 0::32, 0, 0::128, 0::32, 0::32, 97, 1>>, [], :invalid_term, 1},
          {<<131, 113, 100, 0, 2, "ok", 100, 0, 2, "ok", 70, 1.0::float>>, [], :invalid_term, 1}
        ]

        test "bad input with the exact reason and offset" do
          for {input, opts, reason, offset} <- @refusals do
            assert @codec.decode(input, opts) == {:error, {reason, offset}},
                   "for #{inspect(input, limit: 20)} with #{inspect(opts)}"
          end
        end

        test "what OTP refuses" do
          accepted_by_otp =
            for {input, _opts, reason, _offset} <- @refusals,
                reason not in [:depth_exceeded, :too_large, :trailing_data, :unknown_atom],
                match?({:ok, _}, otp_decode(input, [])),
                do: input

          assert accepted_by_otp == []
        end

        test "a FLOAT_EXT string that does not end within its 31 bytes" do
          # OTP's parser reads on past the field, into whatever follows.
          unterminated = String.duplicate("1", 29) <> ".5"
          assert @codec.decode(<<131, 99, unterminated::binary>>) == {:error, {:invalid_float, 1}}

          assert @codec.decode(<<131, 108, 1::32, 99, unterminated::binary, 0, 106>>) ==
                   {:error, {:invalid_float, 6}}
        end

        test "the runtime-internal atom-index tags, which binary_to_term reads" do
          for bytes <- [<<131, 73, 0, 1>>, <<131, 75, 0, 0, 1>>] do
            assert is_atom(:erlang.binary_to_term(bytes))
            assert @codec.decode(bytes, atoms: :create) == {:error, {:unknown_tag, 1}}
          end
        end

        test "errors inside a compressed payload at the compressed tag's offset" do
          compress = fn inner ->
            <<131, 80, byte_size(inner)::32, :zlib.compress(inner)::binary>>
          end

          assert @codec.decode(compress.(<<104, 2, 97, 1>>)) == {:error, {:truncated, 1}}

          assert @codec.decode(compress.(<<70, 0x7FF8000000000000::64>>)) ==
                   {:error, {:invalid_float, 1}}

          assert @codec.decode(compress.(<<97, 1, 97, 2>>)) == {:error, {:trailing_data, 1}}

          assert @codec.decode(compress.(<<100, 0, 9, "zq_nx_cmp">>)) ==
                   {:error, {:unknown_atom, 1}}

          assert @codec.decode(compress.(<<104, 1, 104, 1, 97, 1>>), max_depth: 1) ==
                   {:error, {:depth_exceeded, 1}}

          nested = <<80, 0, 0, 0, 1, :zlib.compress(<<106>>)::binary>>
          assert @codec.decode(compress.(nested)) == {:error, {:nested_compression, 1}}
        end

        test "a compressed payload whose size is not the declared one" do
          zdata = :zlib.compress(<<107, 0, 3, 1, 2, 3>>)
          assert @codec.decode(<<131, 80, 6::32, zdata::binary>>) == {:ok, [1, 2, 3]}

          assert @codec.decode(<<131, 80, 5::32, zdata::binary>>) ==
                   {:error, {:bad_compression, 1}}

          assert @codec.decode(<<131, 80, 7::32, zdata::binary>>) ==
                   {:error, {:bad_compression, 1}}

          # an incomplete zlib stream
          cut = binary_part(zdata, 0, byte_size(zdata) - 1)
          assert @codec.decode(<<131, 80, 6::32, cut::binary>>) == {:error, {:truncated, 1}}
          # a corrupt one
          <<header::binary-size(2), _::8, rest::binary>> = zdata
          corrupt = <<header::binary, 0xFF, rest::binary>>

          assert @codec.decode(<<131, 80, 6::32, corrupt::binary>>) ==
                   {:error, {:bad_compression, 1}}
        end

        test "a compression bomb, by its actual inflated size" do
          bomb = :erlang.term_to_binary(:binary.copy(<<0>>, 20_000_000), compressed: 9)
          assert byte_size(bomb) < 25_000

          assert @codec.decode(bomb, max_decompressed: 1_000_000) ==
                   {:error, {:decompressed_too_large, 1}}

          # The declared size is not what is checked: a bomb that declares a
          # small size is stopped by what it inflates to, as soon as it passes
          # the limit.
          <<131, 80, _declared::32, zdata::binary>> = bomb
          liar = <<131, 80, 1000::32, zdata::binary>>
          {time, result} = :timer.tc(fn -> @codec.decode(liar, max_decompressed: 100_000) end)
          assert result == {:error, {:decompressed_too_large, 1}}
          assert time < 1_000_000
          assert @codec.decode(liar) == {:error, {:bad_compression, 1}}

          # A declared size over the limit is refused before any inflating.
          <<131, 80, _::32, small_zdata::binary>> =
            :erlang.term_to_binary(:binary.copy("ab", 100), compressed: 9)

          assert @codec.decode(<<131, 80, 0xFFFFFFFF::32, small_zdata::binary>>) ==
                   {:error, {:decompressed_too_large, 1}}

          # The default limit is 64 MiB.
          big = :erlang.term_to_binary(:binary.copy(<<0>>, 64 * 1024 * 1024), compressed: 1)
          assert @codec.decode(big) == {:error, {:decompressed_too_large, 1}}
          assert {:ok, _} = @codec.decode(big, max_decompressed: 65 * 1024 * 1024)
        end

        test "every truncation of a valid encoding, without raising" do
          terms = [
            %{"op" => 0, "d" => [1, 2.5, :ok, "text", {<<1::3>>, 1 <<< 80}], "s" => nil},
            [self(), make_ref(), &Enum.map/2, :erlang.list_to_port(~c"#Port<0.1>")],
            [:日本, :é, String.to_atom(String.duplicate("日", 100)), -(1 <<< 300)],
            {[1 | 2], ~c"abc", List.to_tuple(Enum.to_list(1..300))}
          ]

          for term <- terms do
            encoded = :erlang.term_to_binary(term)

            for size <- 0..(byte_size(encoded) - 1) do
              assert {:error, {:truncated, _}} = @codec.decode(binary_part(encoded, 0, size))
            end

            compressed = :erlang.term_to_binary(term, compressed: 9)

            for size <- 0..(byte_size(compressed) - 1) do
              assert {:error, {reason, _}} = @codec.decode(binary_part(compressed, 0, size))
              assert reason in [:truncated, :bad_compression]
            end
          end
        end
      end

      describe "contract: decode/2 agrees with binary_to_term" do
        test "on every single-byte corruption of funs, pids, references and compressed terms" do
          pid = self()
          env = {[1, 2], "env"}

          terms = [
            fn x -> {x, pid, env} end,
            fn -> :no_free_variables end,
            &Enum.map/2,
            [pid, make_ref(), :erlang.list_to_port(~c"#Port<0.1>")],
            %{"op" => 0, "d" => [1, 2.5, :ok, "text", {<<1::3>>, 1 <<< 80}], "s" => nil}
          ]

          encodings =
            Enum.map(terms, &:erlang.term_to_binary/1) ++
              [:erlang.term_to_binary(List.duplicate("repeated", 20), compressed: 9)]

          for encoded <- encodings,
              at <- 1..(byte_size(encoded) - 1),
              <<before::binary-size(at), original, rest::binary>> = encoded,
              byte <- Enum.uniq([0, 1, 0x7F, 0x80, 0xFF, rem(original + 1, 256)]) do
            corrupted = <<before::binary, byte, rest::binary>>
            assert agrees_with_otp?(corrupted), "for #{inspect(corrupted, limit: :infinity)}"
          end
        end

        test "on funs, which are containers for max_depth" do
          env = [self()]
          with_env = :erlang.term_to_binary(fn -> env end)
          assert {:error, {:depth_exceeded, 1}} = @codec.decode(with_env, max_depth: 0)
          assert {:ok, _fun} = @codec.decode(with_env, max_depth: 2)
          assert {:error, {:depth_exceeded, _}} = @codec.decode(with_env, max_depth: 1)

          assert {:ok, _fun} =
                   @codec.decode(:erlang.term_to_binary(fn -> :none end), max_depth: 0)
        end
      end

      describe "contract: decode!/2" do
        test "returns the term, or the term and the rest" do
          assert @codec.decode!(<<131, 97, 1>>) == 1
          assert @codec.decode!(<<131, 97, 1, 2>>, trailing: :allow) == {1, <<2>>}
        end

        test "raises ArgumentError naming the reason and the offset" do
          assert_raise ArgumentError,
                       "cannot decode External Term Format: :truncated at byte 5",
                       fn -> @codec.decode!(<<131, 104, 2, 97, 1>>) end

          assert_raise ArgumentError,
                       "cannot decode External Term Format: :unknown_atom at byte 1",
                       fn -> @codec.decode!(<<131, 100, 0, 9, "zq_nx_rai">>) end
        end
      end

      describe "contract: the discord/erlpack test vectors" do
        setup do
          vectors = @vectors_path |> File.read!() |> Switchboard.Test.JSON.decode!()
          assert length(vectors) == 115
          %{vectors: vectors}
        end

        test "every ok vector decodes as binary_to_term does, and re-encodes as OTP", %{
          vectors: vectors
        } do
          ok = Enum.filter(vectors, &(&1["otp25_binary_to_term"] == "ok"))
          assert length(ok) == 99

          for vector <- ok do
            bytes = Base.decode16!(vector["etf_hex"], case: :lower)
            expected = :erlang.binary_to_term(bytes)
            used = vector["otp25_bytes_used"]
            label = vector["source"]

            assert {:ok, term, rest} = @codec.decode(bytes, atoms: :create, trailing: :allow),
                   label

            assert term === expected, label
            assert byte_size(bytes) - byte_size(rest) == used, label

            if used == byte_size(bytes) do
              assert {:ok, ^term} = @codec.decode(bytes, atoms: :create)
            else
              assert @codec.decode(bytes, atoms: :create) == {:error, {:trailing_data, used}}
            end

            assert @codec.encode(term) ==
                     Base.decode16!(vector["otp25_reencoded_hex"], case: :lower),
                   label
          end
        end

        test "every error vector is refused", %{vectors: vectors} do
          errors = Enum.filter(vectors, &(&1["otp25_binary_to_term"] == "error"))
          assert length(errors) == 16

          for vector <- errors,
              opts <- [[atoms: :create], [atoms: :create, trailing: :allow], []] do
            bytes = Base.decode16!(vector["etf_hex"], case: :lower)
            assert {:error, {reason, offset}} = @codec.decode(bytes, opts), vector["source"]
            assert is_atom(reason) and offset in 0..byte_size(bytes)
          end
        end
      end

      describe "contract: properties" do
        property_test "binary_to_term(encode(t)) === t", numtests: 300 do
          forall term <- any_term() do
            :erlang.binary_to_term(@codec.encode(term)) === term
          end
        end

        property_test "decode(term_to_binary(t)) === t", numtests: 300 do
          forall term <- any_term() do
            decoded_exactly?(@codec.decode(:erlang.term_to_binary(term), atoms: :create), term) and
              decoded_exactly?(@codec.decode(:erlang.term_to_binary(term)), term)
          end
        end

        property_test "decode(encode(t)) === t, compressed or not", numtests: 200 do
          forall {term, level} <- {any_term(), integer(0, 9)} do
            decoded_exactly?(@codec.decode(@codec.encode(term, compressed: level)), term)
          end
        end

        property_test "encode is byte-identical to term_to_binary where promised", numtests: 300 do
          forall term <- oneof([any(), any_term(), map_of(any(), any())]) do
            not identity_promised?(term) or @codec.encode(term) == :erlang.term_to_binary(term)
          end
        end

        property_test "compressed encode is byte-identical to term_to_binary", numtests: 150 do
          forall {term, level} <- {any(), integer(1, 9)} do
            @codec.encode(term, compressed: level) ==
              :erlang.term_to_binary(term, compressed: level)
          end
        end

        property_test "string_keys writes what term_to_binary writes for renamed keys",
          numtests: 300 do
          forall map <- map_of(oneof([atom(), integer(), binary()]), any()) do
            renamed =
              Map.new(map, fn {k, v} -> {if(is_atom(k), do: Atom.to_string(k), else: k), v} end)

            case safe_encode(map, string_keys: true) do
              {:ok, encoded} ->
                :erlang.binary_to_term(encoded) === renamed and
                  (map_size(renamed) > 32 or encoded == :erlang.term_to_binary(renamed))

              :collision ->
                map_size(renamed) < map_size(map)
            end
          end
        end

        property_test "a fragment decodes as the term it holds", numtests: 200 do
          forall term <- any_term() do
            envelope = %{"op" => 0, "s" => 7, "d" => @codec.fragment(term)}

            :erlang.binary_to_term(@codec.encode(envelope)) ===
              %{"op" => 0, "s" => 7, "d" => term}
          end
        end

        property_test "every truncation is refused as truncated", numtests: 100 do
          forall term <- any_term() do
            encoded = :erlang.term_to_binary(term)
            # Every prefix of small encodings, about 200 spread over larger ones.
            step = max(div(byte_size(encoded), 200), 1)

            Enum.all?(0..(byte_size(encoded) - 1)//step, fn size ->
              match?({:error, {:truncated, _}}, @codec.decode(binary_part(encoded, 0, size)))
            end)
          end
        end

        test "a fun with more than 255 free variables is refused at its tag, before its module" do
          long_module = <<100, 300::16, :binary.copy("m", 300)::binary>>
          bytes = <<131, 112, 0::32, 0, 0::128, 0::32, 256::32, long_module::binary>>
          assert @codec.decode(bytes) == {:error, {:invalid_term, 1}}
          assert Switchboard.Erlpack.decode(bytes) == {:error, {:invalid_term, 1}}
          assert_raise ArgumentError, fn -> :erlang.binary_to_term(bytes) end
        end

        test "an atom-index tag as a pid's node: binary_to_term reads it, we refuse it as bad_node" do
          <<head::binary-size(2), _tag, rest::binary>> = :erlang.term_to_binary(self())
          bytes = <<head::binary, 73, rest::binary>>
          assert is_pid(:erlang.binary_to_term(bytes))
          assert @codec.decode(bytes) == {:error, {:bad_node, 1}}
          assert Switchboard.Erlpack.decode(bytes) == {:error, {:bad_node, 1}}
        end

        test "a reference with no id words: binary_to_term reads one anyway, we refuse it" do
          # OTP 25.2 takes an id count of 0 as one id word (checked, then
          # ignored), read even past the binary's end: only a word of
          # zeros after it gives a repeatable verdict.
          node = :erlang.term_to_binary(node()) |> binary_part(1, byte_size("nonode@nohost") + 3)

          for tag <- [90, 114] do
            creation = if tag == 90, do: <<0::32>>, else: <<0>>
            bytes = <<131, tag, 0::16, node::binary, creation::binary, 0::32>>
            {ref, used} = :erlang.binary_to_term(bytes, [:used])
            assert is_reference(ref) and used == byte_size(bytes)
            assert @codec.decode(bytes) == {:error, {:invalid_term, 1}}
          end
        end

        property_test "corrupted encodings: same verdict as binary_to_term, never a raise",
          numtests: 600 do
          forall {term, at, byte} <- {any_term(), non_neg_integer(), integer(0, 255)} do
            encoded = :erlang.term_to_binary(term)
            at = rem(at, byte_size(encoded))
            <<before::binary-size(at), _, rest::binary>> = encoded
            corrupted = <<before::binary, byte, rest::binary>>
            agrees_with_otp?(corrupted)
          end
        end

        property_test "random bytes never make decode raise", numtests: 500 do
          forall bytes <- binary() do
            match?({:error, {_, _}}, @codec.decode(bytes)) or
              match?({:ok, _}, @codec.decode(bytes))
          end
        end

        property_test "random bytes after a version byte: same verdict as binary_to_term",
          numtests: 500 do
          forall bytes <- binary() do
            agrees_with_otp?(<<131, bytes::binary>>)
          end
        end
      end

      defp safe_encode(term, opts) do
        {:ok, @codec.encode(term, opts)}
      rescue
        ArgumentError -> :collision
      end

      describe "contract: untrusted input" do
        # Time for decoding `bytes` against OTP's binary_to_term of them and
        # against this codec's own decode of `ordinary` (the same shape, keys
        # nobody chose), in microseconds: a guard against quadratic blow-ups
        # (seconds, before the fix), not a benchmark.
        defp within_factor_of_otp?(bytes, ordinary) do
          Switchboard.Test.HashFlood.within_factor_of_otp?(&@codec.decode/1, bytes, ordinary)
        end

        import Switchboard.Test.HashFlood, only: [flooding_map: 1, ordinary_keys: 1]

        test "keys crafted to collide in the duplicate check cost no more than OTP's decode" do
          for keys <- [
                Switchboard.Test.HashFlood.integer_keys(100_000),
                Switchboard.Test.HashFlood.binary_keys(100_000)
              ] do
            map = flooding_map(keys)
            ordinary = flooding_map(ordinary_keys(keys))
            assert {fast?, {:ok, decoded}, ours, otp} = within_factor_of_otp?(map, ordinary)
            assert fast?, "#{ours} us against OTP's #{otp} us"
            assert map_size(decoded) == 100_000
          end
        end

        test "crafted keys in a fun's free variables cost no more than OTP's decode" do
          keys = Switchboard.Test.HashFlood.integer_keys(20_000)
          env = Map.new(keys, &{&1, 0})
          bytes = :erlang.term_to_binary(fn -> env end)
          ordinary_env = Map.new(ordinary_keys(keys), &{&1, 0})
          ordinary = :erlang.term_to_binary(fn -> ordinary_env end)
          assert {fast?, {:ok, fun}, ours, otp} = within_factor_of_otp?(bytes, ordinary)
          assert fast?, "#{ours} us against OTP's #{otp} us"
          assert fun.() == env
        end

        test "a decoded map naming the Fragment struct is encoded as a map, never as raw bytes" do
          # What a client would send to rewrite every receiver's frame.
          forged = %{__struct__: Fragment, bytes: <<97, 66>>}
          assert {:ok, decoded} = @codec.decode(:erlang.term_to_binary(forged))
          assert is_struct(decoded, Fragment)
          assert @codec.encode(%{"d" => decoded}) == :erlang.term_to_binary(%{"d" => forged})

          assert IO.iodata_to_binary(@codec.encode_iodata([decoded])) ==
                   :erlang.term_to_binary([forged])

          # A seal that is some other reference is no seal.
          sealed_wrong = Map.put(forged, :seal, make_ref())
          assert {:ok, decoded} = @codec.decode(:erlang.term_to_binary(sealed_wrong))
          assert @codec.encode(decoded) == :erlang.term_to_binary(sealed_wrong)
          # A fragment written out whole (term_to_binary, not an encoder,
          # which splices it) holds the seal: decoding refuses the seal.
          fragment = @codec.fragment(:spliced)
          leaked = :erlang.term_to_binary(%{fragment | bytes: <<97, 66>>})
          assert {:error, {:invalid_term, at}} = @codec.decode(leaked)
          assert :binary.at(leaked, at) == 90
          # The real one is spliced, by either twin.
          assert @codec.encode([fragment]) == :erlang.term_to_binary([:spliced])
          assert Switchboard.Erlpack.Pure.encode([fragment]) == :erlang.term_to_binary([:spliced])
          assert Switchboard.Erlpack.encode([fragment]) == :erlang.term_to_binary([:spliced])
        end

        test "a sealed fragment whose bytes were replaced by a non-binary is refused, naming it" do
          bad = %{@codec.fragment(1) | bytes: :oops}

          assert_raise ArgumentError,
                       "invalid fragment (its :bytes must be a binary made by fragment/2): " <>
                         "#Switchboard.Erlpack.Fragment<bytes: :oops, ...>",
                       fn -> @codec.encode([bad]) end
        end

        test "plain: true refuses pids, ports, references, funs and exports at their tag" do
          opaque = [
            self(),
            :erlang.list_to_port(~c"#Port<0.1>"),
            make_ref(),
            fn -> :ok end,
            &Enum.map/2
          ]

          for term <- opaque do
            bytes = :erlang.term_to_binary(%{"a" => [1, term]})
            # version and map header (6), "a" (6), list header (5), 1 (2)
            assert @codec.decode(bytes, plain: true) == {:error, {:not_plain, 19}}, inspect(term)
            assert {:ok, _} = @codec.decode(bytes)

            compressed =
              :erlang.term_to_binary([term | List.duplicate(:padding, 50)], compressed: 9)

            assert <<131, 80, _::binary>> = compressed
            assert @codec.decode(compressed, plain: true) == {:error, {:not_plain, 1}}
          end

          # Plain data, under every atoms policy.
          plain = %{"op" => 0, "d" => [1.5, <<1::3>>, {:ok, nil}, -(1 <<< 70)], key: true}
          bytes = :erlang.term_to_binary(plain)
          assert @codec.decode(bytes, plain: true) == {:ok, plain}
          assert {:ok, %{"key" => true}} = @codec.decode(bytes, plain: true, atoms: :binary)
          assert @codec.decode(bytes, plain: true, atoms: :create) == {:ok, plain}
          # Even truncated, the tag is what is refused.
          assert @codec.decode(<<131, 88>>, plain: true) == {:error, {:not_plain, 1}}
        end

        test "plain: true refuses the map of external references that crashes OTP 25.2" do
          # Two NEWER_REFERENCE_EXT keys of another node. OTP's own
          # binary_to_term(bin, [:safe]) segfaults the VM building such a map:
          # this input is only ever decoded with plain: true.
          ref = fn id ->
            node = "zq_other@host"

            <<90, 5::16, 100, byte_size(node)::16, node::binary, 7::32, id::32, 0::32, 0::32,
              0::32, 0::32>>
          end

          bytes = <<131, 116, 2::32, ref.(1)::binary, 97, 1, ref.(2)::binary, 97, 2>>
          assert @codec.decode(bytes, plain: true) == {:error, {:not_plain, 6}}
          assert @codec.decode(bytes, plain: true, atoms: :create) == {:error, {:not_plain, 6}}
        end

        test "atoms: :create makes at most :max_new_atoms new atoms" do
          fresh = fn -> "zq_new_#{System.unique_integer([:positive])}" end
          [a, b, c] = [fresh.(), fresh.(), fresh.()]
          atom = fn name -> <<100, byte_size(name)::16, name::binary>> end
          # [a, :ok, a, b, c]: :ok exists, a repeats (one atom), c is the third new one.
          items = [atom.(a), atom.("ok"), atom.(a), atom.(b), atom.(c)]
          bytes = IO.iodata_to_binary([131, 108, <<5::32>>, items, 106])
          c_at = byte_size(bytes) - byte_size(atom.(c)) - 1

          assert @codec.decode(bytes, atoms: :create, max_new_atoms: 2) ==
                   {:error, {:too_many_atoms, c_at}}

          # Nothing past the allowance was made.
          assert @codec.decode(<<131>> <> atom.(c)) == {:error, {:unknown_atom, 1}}
          # A node counts like any atom.
          node = "#{fresh.()}@host"
          pid = <<131, 88, 100, byte_size(node)::16, node::binary, 1::32, 0::32, 1::32>>

          assert @codec.decode(pid, atoms: :create, max_new_atoms: 0) ==
                   {:error, {:too_many_atoms, 2}}

          # Within the allowance, all are made.
          assert {:ok, [first, :ok, first, second, third]} =
                   @codec.decode(bytes, atoms: :create, max_new_atoms: 3)

          assert Enum.map([first, second, third], &Atom.to_string/1) == [a, b, c]
        end

        test "invalid :max_new_atoms and :plain options are refused with exact messages" do
          assert_raise ArgumentError,
                       "invalid :max_new_atoms option: -1 (expected a non-negative integer)",
                       fn -> @codec.decode(<<131, 97, 1>>, max_new_atoms: -1) end

          assert_raise ArgumentError, "invalid :plain option: :yes (expected a boolean)", fn ->
            @codec.decode(<<131, 97, 1>>, plain: :yes)
          end
        end
      end

      defp decoded_exactly?({:ok, decoded}, term), do: decoded === term
      defp decoded_exactly?(_other, _term), do: false

      defp otp_decode(bytes, opts) do
        {:ok, :erlang.binary_to_term(bytes, opts)}
      rescue
        ArgumentError -> :error
      end

      # OTP decodes with [:used] to tell trailing data apart.
      # OTP decodes with [:used] to tell trailing data apart. A raise inside a
      # property is reported badly by this PropEr, hence booleans only.
      defp agrees_with_otp?(bytes) do
        case {otp_decode(bytes, [:used]), @codec.decode(bytes, atoms: :create, trailing: :allow)} do
          {{:ok, {term, used}}, {:ok, decoded, rest}} ->
            decoded === term and byte_size(bytes) - byte_size(rest) == used

          {:error, {:error, {reason, offset}}} ->
            is_atom(reason) and offset in 0..byte_size(bytes)

          # The runtime-internal atom-index tags, refused on purpose; as the node
          # of a pid, port or reference they make the whole term a bad_node.
          {{:ok, _}, {:error, {:unknown_tag, offset}}} ->
            :binary.at(bytes, offset) in @internal_tags

          # A reference with no id words (see the test above).
          {{:ok, _}, {:error, {:invalid_term, offset}}} ->
            case bytes do
              <<_::binary-size(offset), tag, 0::16, _::binary>> -> tag in [90, 114]
              _ -> false
            end

          {{:ok, _}, {:error, {:bad_node, offset}}} ->
            # The node atom follows the tag (pid, port) or the tag and a length (reference).
            Enum.any?([offset + 1, offset + 3], fn at ->
              at < byte_size(bytes) and :binary.at(bytes, at) in @internal_tags
            end)

          _disagreement ->
            false
        end
      end

      defp identity_promised?(term) when is_map(term) do
        map_size(term) <= 32 and
          Enum.all?(term, fn {key, value} ->
            identity_promised?(key) and identity_promised?(value)
          end)
      end

      defp identity_promised?(term) when is_tuple(term),
        do: term |> Tuple.to_list() |> identity_promised?()

      defp identity_promised?([head | tail]),
        do: identity_promised?(head) and identity_promised?(tail)

      defp identity_promised?(term),
        do: is_number(term) or is_atom(term) or is_bitstring(term) or term == []
    end
  end
end
