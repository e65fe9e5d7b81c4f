defmodule Switchboard.ErlpackTest do
  use ExUnit.Case, async: true
  use Switchboard.Contracts.ErlpackContract, codec: Switchboard.Erlpack

  alias Switchboard.Erlpack
  alias Switchboard.Erlpack.Pure

  doctest Switchboard.Erlpack

  describe "encode/2" do
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

      bad = %{Erlpack.fragment(1) | bytes: :not_bytes}
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
        Erlpack.encode_iodata([%{Erlpack.fragment(1) | bytes: :nope}])
      end

      assert_raise ArgumentError, ~r/string_keys/, fn ->
        Erlpack.encode_iodata(%{:a => 1, "a" => 2}, string_keys: true)
      end

      assert_raise ArgumentError, ~r/keyword list/, fn -> Erlpack.encode_iodata(:ok, :bad) end

      assert_raise ArgumentError, ~r/compressed/, fn ->
        Erlpack.encode_iodata(:ok, compressed: 10)
      end
    end
  end

  describe "encode/2 with string_keys: true" do
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
  end

  describe "fragment/2" do
    test "holds the encoding without the version byte, as the pure twin does" do
      payload = %{"content" => "hi", "n" => [1, 2, 3], "id" => 1 <<< 62}
      <<131, bytes::binary>> = :erlang.term_to_binary(payload)
      assert Erlpack.fragment(payload).bytes == bytes
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

    test "the VM's encoder serves every term without the seal, byte for byte" do
      # term_to_binary writes the seal inside a fragment: its bytes (or only
      # its id words) inside a binary make the encoders walk the term
      # themselves, which gives the same bytes.
      <<131, seal::binary>> = :erlang.term_to_binary(Erlpack.Fragment.seal())
      words = binary_part(seal, byte_size(seal) - 12, 12)
      big = :binary.copy("x", 70_000)

      for term <- [words, [1, seal], %{"a" => big <> seal}, [big, words], {big}] do
        assert Erlpack.encode(term) == :erlang.term_to_binary(term)
        assert IO.iodata_to_binary(Erlpack.encode_iodata(term)) == :erlang.term_to_binary(term)
        assert Erlpack.fragment(term) == Pure.fragment(term)
      end

      # A sealed fragment in a large term (whose output is searched for the
      # whole seal) and in a small one (for its id words) is spliced.
      payload = %{"content" => "hi"}

      for filler <- [big, "small"] do
        term = [filler, Erlpack.fragment(payload)]
        assert Erlpack.encode(term) == :erlang.term_to_binary([filler, payload])
      end
    end

    test "the seal search: on both sides of its dirty threshold, and on the seal's own bytes" do
      <<131, seal::binary>> = :erlang.term_to_binary(Erlpack.Fragment.seal())
      words = binary_part(seal, byte_size(seal) - 12, 12)
      <<head::binary-size(11), last>> = words
      near_miss = :binary.copy(head <> <<Bitwise.bxor(last, 1)>>, 60_000)

      for size <- [100, 500 * 1024, 600 * 1024] do
        filler = :binary.copy("f", size)
        refute Erlpack.Fragment.may_hold_seal?(filler)
        assert Erlpack.Fragment.may_hold_seal?(filler <> words)
        assert Erlpack.Fragment.may_hold_seal?(words <> filler)
        term = [filler, Erlpack.fragment(%{"content" => "hi"})]
        assert Erlpack.encode(term) == :erlang.term_to_binary([filler, %{"content" => "hi"}])
      end

      refute Erlpack.Fragment.may_hold_seal?(near_miss)
      assert Erlpack.Fragment.may_hold_seal?(near_miss <> words)
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
  end

  describe "decode/2" do
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

    test "decode/1 of small inputs that are not plain data: the full decode's answer" do
      ref = make_ref()
      fun = fn -> ref end

      for term <- [[self()], {ref, 1}, fun, %{"a" => <<1::3>>}, 2.5, [1 | 2]] do
        bytes = :erlang.term_to_binary(term)
        assert byte_size(bytes) <= 511
        assert Erlpack.decode(bytes) == {:ok, term}
      end

      unknown = <<131, 100, 0, 9, "zq_nope_1">>
      assert Erlpack.decode(unknown) == {:error, {:unknown_atom, 1}}
      assert Erlpack.decode(<<131, 97, 1, 0>>) == {:error, {:trailing_data, 3}}

      assert Erlpack.decode(<<131, 116, 2::32, 97, 1, 97, 2, 97, 1, 97, 3>>) ==
               {:error, {:duplicate_key, 10}}

      compressed = :erlang.term_to_binary(List.duplicate("abc", 50), compressed: 9)
      assert byte_size(compressed) <= 511
      assert Erlpack.decode(compressed) == {:ok, List.duplicate("abc", 50)}
    end

    test "decode/1 on either side of the small-input size, and deeper than a stack of 64" do
      for size <- [506, 507, 508] do
        bytes = :erlang.term_to_binary(:binary.copy("z", size))
        assert Erlpack.decode(bytes) == {:ok, :binary.copy("z", size)}
        assert :binary.referenced_byte_size(elem(Erlpack.decode(bytes), 1)) == byte_size(bytes)
      end

      deep = Enum.reduce(1..200, [], fn _, acc -> {acc} end)
      assert Erlpack.decode(:erlang.term_to_binary(deep)) == {:ok, deep}
      deeper = Enum.reduce(1..600, [], fn _, acc -> {acc} end)
      assert {:error, {:depth_exceeded, _}} = Erlpack.decode(:erlang.term_to_binary(deeper))
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
  end

  describe "properties" do
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
      forall {term, atoms, trailing, plain} <-
               {any_term(), oneof([:existing, :binary, :create]), oneof([:error, :allow]),
                boolean()} do
        bytes = :erlang.term_to_binary(term) <> if(trailing == :allow, do: <<1, 2>>, else: "")
        opts = [atoms: atoms, trailing: trailing, plain: plain]
        Erlpack.decode(bytes, opts) === Pure.decode(bytes, opts)
      end
    end

    property_test "corrupted encodings: never a raise, the pure twin's verdict, OTP's value",
      numtests: 500 do
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
    plain = [plain: true, trailing: :allow]

    same_verdict?(native, pure) and
      same_verdict?(safe(fn -> Erlpack.decode(bytes, plain) end), Pure.decode(bytes, plain)) and
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

  # One input, one verdict: the same term or the same {reason, offset}.
  defp same_verdict?(same, same), do: true

  defp same_verdict?(native, pure) do
    IO.puts("native #{inspect(native)} != pure #{inspect(pure)}")
    false
  end

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
