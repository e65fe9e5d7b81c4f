defmodule Switchboard.Json.Contract do
  @moduledoc false
  # The one contract suite of Switchboard.Json.Codec, `use`d by the test file
  # of each implementation:
  #
  #     use Switchboard.Json.Contract, codec: Switchboard.Json.Pure
  #
  # Jason's API and behaviour, the errors and their positions, the options,
  # floats and big integers, fragments, JSONTestSuite's cases, and
  # differential properties against jiffy (Debian's erlang-jiffy).

  import Bitwise, only: [<<<: 2]

  @suite_dir Path.expand("../../fixtures/json_test_suite/test_parsing", __DIR__)

  # What each of JSONTestSuite's implementation-defined cases does: :ok
  # (accepted) or the refusal's reason. Documented in Switchboard.Json.Codec.
  @implementation_defined %{
    "i_number_double_huge_neg_exp.json" => :ok,
    "i_number_huge_exp.json" => :number_too_large,
    "i_number_neg_int_huge_exp.json" => :number_too_large,
    "i_number_pos_double_huge_exp.json" => :number_too_large,
    "i_number_real_neg_overflow.json" => :number_too_large,
    "i_number_real_pos_overflow.json" => :number_too_large,
    "i_number_real_underflow.json" => :ok,
    "i_number_too_big_neg_int.json" => :ok,
    "i_number_too_big_pos_int.json" => :ok,
    "i_number_very_big_negative_int.json" => :ok,
    "i_object_key_lone_2nd_surrogate.json" => :lone_surrogate,
    "i_string_1st_surrogate_but_2nd_missing.json" => :lone_surrogate,
    "i_string_1st_valid_surrogate_2nd_invalid.json" => :lone_surrogate,
    "i_string_UTF-16LE_with_BOM.json" => :unexpected_byte,
    "i_string_UTF-8_invalid_sequence.json" => :invalid_utf8,
    "i_string_UTF8_surrogate_U+D800.json" => :invalid_utf8,
    "i_string_incomplete_surrogate_and_escape_valid.json" => :lone_surrogate,
    "i_string_incomplete_surrogate_pair.json" => :lone_surrogate,
    "i_string_incomplete_surrogates_escape_valid.json" => :lone_surrogate,
    "i_string_invalid_lonely_surrogate.json" => :lone_surrogate,
    "i_string_invalid_surrogate.json" => :lone_surrogate,
    "i_string_invalid_utf-8.json" => :invalid_utf8,
    "i_string_inverted_surrogates_U+1D11E.json" => :lone_surrogate,
    "i_string_iso_latin_1.json" => :invalid_utf8,
    "i_string_lone_second_surrogate.json" => :lone_surrogate,
    "i_string_lone_utf8_continuation_byte.json" => :invalid_utf8,
    "i_string_not_in_unicode_range.json" => :invalid_utf8,
    "i_string_overlong_sequence_2_bytes.json" => :invalid_utf8,
    "i_string_overlong_sequence_6_bytes.json" => :invalid_utf8,
    "i_string_overlong_sequence_6_bytes_null.json" => :invalid_utf8,
    "i_string_truncated-utf-8.json" => :invalid_utf8,
    "i_string_utf16BE_no_BOM.json" => :unexpected_byte,
    "i_string_utf16LE_no_BOM.json" => :unexpected_byte,
    "i_structure_500_nested_arrays.json" => :ok,
    "i_structure_UTF-8_BOM_empty_object.json" => :unexpected_byte
  }

  @doc "The implementation-defined cases' table (also read by the module doc's test)."
  def implementation_defined, do: @implementation_defined

  @doc "JSONTestSuite's parsing cases as `{name, text}`, sorted by name."
  def suite_cases do
    @suite_dir
    |> File.ls!()
    |> Enum.filter(&String.ends_with?(&1, ".json"))
    |> Enum.sort()
    |> Enum.map(&{&1, File.read!(Path.join(@suite_dir, &1))})
  end

  @doc "Makes Debian's jiffy loadable."
  def load_jiffy do
    case Path.wildcard("/usr/lib/erlang/lib/jiffy-*/ebin") do
      [ebin | _] -> :code.add_pathz(String.to_charlist(ebin))
      [] -> raise "jiffy (Debian's erlang-jiffy) is not installed"
    end

    {:module, :jiffy} = Code.ensure_loaded(:jiffy)
    :ok
  end

  def jiffy_decode(text), do: :jiffy.decode(text, [:return_maps, :use_nil])
  def jiffy_encode(term), do: IO.iodata_to_binary(:jiffy.encode(term, [:use_nil]))

  @doc "`{:ok, term}` where jiffy accepts `text`, else `:error`."
  def jiffy_result(text) do
    {:ok, jiffy_decode(text)}
  catch
    _, _ -> :error
  end

  ## Generators (PropEr)

  @doc "Valid UTF-8 text, mostly ASCII, with escapes and every plane."
  def utf8_text do
    :proper_types.frequency([
      {3, :proper_types.elements(["", "id", "content", "a\"b\\c", "\n\t\u0001", "é</", "😀"])},
      {3, :proper_unicode.utf8()},
      {1, :proper_types.bind(:proper_types.binary(), &ascii/1, false)}
    ])
  end

  defp ascii(bytes), do: for(<<byte <- bytes>>, into: "", do: <<rem(byte, 128)>>)

  @doc "A term with a JSON form that decodes back to itself (binary keys, nil)."
  def json_term, do: :proper_types.sized(&json_term/1)

  defp json_term(0), do: json_leaf()

  defp json_term(size) do
    smaller = :proper_types.lazy(fn -> json_term(div(size, 3)) end)

    :proper_types.frequency([
      {4, json_leaf()},
      {1, :proper_types.list(smaller)},
      {1, Switchboard.Property.map_of(utf8_text(), smaller)}
    ])
  end

  defp json_leaf do
    :proper_types.oneof([
      :proper_types.integer(),
      :proper_types.integer(-(1 <<< 100), 1 <<< 100),
      :proper_types.float(),
      :proper_types.bind(:proper_types.binary(8), &float_of_bits/1, false),
      utf8_text(),
      :proper_types.elements([nil, true, false, 0, -0.0, 1.0, 1.0e16, 1.0e-7, 2.0e-308])
    ])
  end

  # Any finite double but the subnormals, every exponent equally likely.
  # jiffy reads subnormals as 0.0 (5e-324 among them); the codecs' own
  # float tests cover them.
  defp float_of_bits(<<bits::64>>) do
    case <<bits::64>> do
      <<_::1, 0x7FF::11, _::52>> -> 0.5
      <<_::1, 0::11, _::52>> -> 0.0
      <<float::float-64>> -> float
    end
  end

  @doc "A gateway event: op, sequence, type and a MESSAGE_CREATE-like payload."
  def gateway_event do
    snowflake =
      :proper_types.bind(:proper_types.integer(0, 1 <<< 62), &Integer.to_string/1, false)

    user =
      :proper_types.bind(
        :proper_types.tuple([snowflake, utf8_text(), :proper_types.bool()]),
        fn {id, name, bot} ->
          %{"id" => id, "username" => name, "bot" => bot, "avatar" => nil, "public_flags" => 64}
        end,
        false
      )

    :proper_types.bind(
      :proper_types.tuple([
        :proper_types.integer(0, 1 <<< 31),
        snowflake,
        user,
        utf8_text(),
        :proper_types.list(user),
        :proper_types.list(snowflake),
        :proper_types.float()
      ]),
      fn {seq, id, author, content, mentions, roles, score} ->
        %{
          "op" => 0,
          "s" => seq,
          "t" => "MESSAGE_CREATE",
          "d" => %{
            "id" => id,
            "author" => author,
            "content" => content,
            "mentions" => mentions,
            "mention_roles" => roles,
            "tts" => false,
            "edited_timestamp" => nil,
            "embeds" => [%{"title" => content, "score" => score, "fields" => []}]
          }
        }
      end,
      false
    )
  end

  @doc "Bytes that are often nearly JSON: a valid text with one byte changed or cut."
  def json_like_bytes do
    :proper_types.bind(
      :proper_types.tuple([json_term(), :proper_types.non_neg_integer(), :proper_types.byte()]),
      fn {term, at, byte} ->
        text = jiffy_encode(term)

        case rem(at, 3) do
          0 -> text
          1 -> mutate(text, at, byte)
          2 -> binary_part(text, 0, rem(at, byte_size(text) + 1))
        end
      end,
      false
    )
  end

  defp mutate(text, at, byte) do
    at = rem(at, byte_size(text))
    <<before::binary-size(at), _, rest::binary>> = text
    <<before::binary, byte, rest::binary>>
  end

  defmacro __using__(codec: codec) do
    quote do
      use Switchboard.Property
      import Bitwise, only: [<<<: 2]

      alias Switchboard.Json.{Contract, DecodeError, EncodeError, Fragment}

      @codec unquote(codec)

      setup_all do
        Contract.load_jiffy()
      end

      unquote(api_tests())
      unquote(error_tests())
      unquote(option_tests())
      unquote(number_tests())
      unquote(fragment_tests())
      unquote(suite_tests())
      unquote(property_tests())
    end
  end

  defp api_tests do
    quote do
      describe "Jason's API" do
        test "terms become JSON text and back" do
          term = %{"op" => 0, "d" => [1, 2.5, nil, true, false, "é\n"], "s" => %{}}
          assert {:ok, text} = @codec.encode(term)
          assert text == ~s({"d":[1,2.5,null,true,false,"é\\n"],"op":0,"s":{}})
          assert @codec.decode(text) == {:ok, term}
          assert @codec.encode!(term) == text
          assert @codec.decode!(text) == term
          assert @codec.encode!([]) == "[]"
          assert @codec.encode!("") == ~s("")
        end

        test "atoms are strings, atom and integer keys are strings" do
          assert @codec.encode!([:ok, :"with space", nil]) == ~s(["ok","with space",null])
          assert @codec.encode!(%{a: 1}) == ~s({"a":1})
          assert @codec.encode!(%{1 => 2, -3 => 4}) =~ ~r/^\{("-3":4,"1":2|"1":2,"-3":4)\}$/
        end

        test "encode_to_iodata gives encode's bytes" do
          term = %{"list" => Enum.to_list(1..100), "text" => String.duplicate("ab", 200)}
          assert {:ok, iodata} = @codec.encode_to_iodata(term)
          assert IO.iodata_to_binary(iodata) == @codec.encode!(term)
          assert IO.iodata_to_binary(@codec.encode_to_iodata!(term)) == @codec.encode!(term)
        end

        test "decode accepts iodata and whitespace around the value" do
          assert @codec.decode([" [1,", ["2]"], ?\n]) == {:ok, [1, 2]}
          assert @codec.decode!(" \t\r\n\"x\" ") == "x"
        end

        test "the last of duplicate keys wins" do
          assert @codec.decode!(~s({"a": 1, "b": 2, "a": 3})) == %{"a" => 3, "b" => 2}
        end

        test "strings decode to binaries, escapes included" do
          assert @codec.decode!(~S(["\"\\\/\b\f\n\r\t", "\u00e9\uD83D\uDE00", "\u0000"])) ==
                   ["\"\\/\b\f\n\r\t", "é😀", <<0>>]

          long = String.duplicate("z", 1000)
          assert @codec.decode!(~s(["#{long}"])) == [long]
        end
      end
    end
  end

  defp error_tests do
    quote do
      describe "errors" do
        test "terms with no JSON form are EncodeErrors naming the term" do
          pid = self()
          ref = make_ref()
          fun = &Enum.map/2
          port = hd(Port.list())

          for term <- [{:ok, 1}, pid, ref, fun, port, <<1::3>>, %URI{}] do
            assert {:error, %EncodeError{reason: {:unsupported, ^term}}} =
                     @codec.encode([1, %{"a" => term}])
          end

          assert {:error, %EncodeError{reason: {:improper_list, [1 | 2]}}} =
                   @codec.encode(%{"x" => [1 | 2]})

          assert {:error, %EncodeError{reason: {:invalid_key, {1}}}} = @codec.encode(%{{1} => 1})

          assert {:error, %EncodeError{reason: {:invalid_byte, 0xFF, "ok\xFF"}} = error} =
                   @codec.encode(["ok\xFF"])

          assert error.message == ~s(invalid byte 0xFF in <<111, 107, 255>>)

          assert_raise EncodeError, "no JSON form for {:ok, 1}", fn ->
            @codec.encode!({:ok, 1})
          end
        end

        test "DecodeError's position is the byte offset where the offending token starts" do
          cases = [
            {"", :unexpected_end, 0},
            {"[1,]", :unexpected_byte, 3},
            {"[1 2]", :unexpected_byte, 3},
            {~s({"a" 1}), :unexpected_byte, 5},
            {~s({"a":1,}), :unexpected_byte, 7},
            {"{1:2}", :unexpected_byte, 1},
            {"[01]", :unexpected_byte, 2},
            {"[1.]", :unexpected_byte, 3},
            {"[-]", :unexpected_byte, 2},
            {"[tru]", :unexpected_byte, 4},
            {"nul", :unexpected_end, 3},
            {"[1] x", :unexpected_byte, 4},
            {~s(["abc), :unexpected_end, 5},
            {~s(["a\tb"]), :unexpected_byte, 3},
            {~S(["ab\x"]), :invalid_escape, 4},
            {~S(["ab\u12"]), :invalid_escape, 4},
            {~S([1, "\uD800"]), :lone_surrogate, 5},
            {~S(["\uDC00\uD800"]), :lone_surrogate, 2},
            {"[\"é\xFF\"]", :invalid_utf8, 4},
            {"[\"\xC0\xAF\"]", :invalid_utf8, 2},
            {"\uFEFF[]", :unexpected_byte, 0},
            {"[1e400]", :number_too_large, 1},
            {"[" <> String.duplicate("9", 4301) <> "]", :number_too_large, 1}
          ]

          for {input, reason, position} <- cases do
            assert {:error, %DecodeError{reason: ^reason, position: ^position, data: ^input}} =
                     @codec.decode(input),
                   "#{inspect(input)}: expected #{reason} at #{position}, got #{inspect(@codec.decode(input))}"
          end
        end

        test "decode! raises the error with a message that shows the token" do
          assert_raise DecodeError, "unexpected byte at position 3: 0x5D (\"]\")", fn ->
            @codec.decode!("[1,]")
          end

          assert_raise DecodeError, "unexpected end of input at position 2", fn ->
            @codec.decode!("[1")
          end

          assert_raise DecodeError, ~S(lone surrogate at position 1: "\\uDFFF"), fn ->
            @codec.decode!(~S("\uDFFF"))
          end

          assert_raise DecodeError, "unexpected byte at position 0: 0xEF", fn ->
            @codec.decode!("\uFEFF1")
          end
        end
      end
    end
  end

  defp option_tests do
    quote do
      describe "options" do
        test "escape modes" do
          text = "<\"/\\\u2028é😀\u0001>"

          assert @codec.encode!(text) == ~s("<\\"/\\\\\u2028é😀\\u0001>")
          assert @codec.encode!(text, escape: :json) == @codec.encode!(text)

          assert @codec.encode!(text, escape: :javascript_safe) ==
                   ~S("<\"/\\\u2028) <> "é😀" <> ~S(\u0001>")

          assert @codec.encode!(text, escape: :html_safe) ==
                   ~S("\u003C\"\/\\\u2028) <> "é😀" <> ~S(\u0001>")

          assert @codec.encode!(text, escape: :unicode_safe) ==
                   ~S("<\"/\\\u2028\u00E9\uD83D\uDE00\u0001>")

          for mode <- [:json, :javascript_safe, :html_safe, :unicode_safe] do
            assert @codec.decode!(@codec.encode!(text, escape: mode)) == text
          end
        end

        test "maps: :strict refuses keys that write the same text" do
          assert {:error, %EncodeError{reason: {:duplicate_key, "a"}}} =
                   @codec.encode([%{:a => 1, "a" => 2}], maps: :strict)

          assert {:error, %EncodeError{reason: {:duplicate_key, "1"}}} =
                   @codec.encode(%{1 => 1, "1" => 2}, maps: :strict)

          assert @codec.encode(%{:a => 1, "b" => 2}, maps: :strict) == {:ok, ~s({"a":1,"b":2})}
          assert {:ok, _} = @codec.encode(%{:a => 1, "a" => 2}, maps: :naked)
        end

        test "keys: :atoms! takes existing atoms only and never creates one" do
          assert @codec.decode!(~s({"op": {"d": 1}}), keys: :atoms!) == %{op: %{d: 1}}
          name = "json_contract_never_an_atom_#{System.unique_integer([:positive])}"

          assert {:error, %DecodeError{reason: :unknown_atom, position: 8, token: ^name}} =
                   @codec.decode(~s({"op": {"#{name}": 1}}), keys: :atoms!)

          # Not the VM's atom count: other async tests create atoms meanwhile.
          assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
          assert @codec.decode!(~s({"#{name}": 1})) == %{name => 1}
        end

        test "max_depth counts nested arrays and objects" do
          assert @codec.decode!("[[{}]]", max_depth: 3) == [[%{}]]

          assert {:error, %DecodeError{reason: :max_depth, position: 2}} =
                   @codec.decode("[[{}]]", max_depth: 2)

          assert @codec.decode!("1", max_depth: 0) == 1
          deep = String.duplicate("[", 512) <> String.duplicate("]", 512)
          assert {:ok, _} = @codec.decode(deep)

          assert {:error, %DecodeError{reason: :max_depth, position: 512}} =
                   @codec.decode("[" <> deep <> "]")
        end

        test "max_size bounds the input in bytes" do
          assert @codec.decode!("[1, 2]", max_size: 6) == [1, 2]

          assert {:error, %DecodeError{reason: :max_size, position: 0} = error} =
                   @codec.decode("[1, 2]", max_size: 5)

          assert Exception.message(error) == "input of 6 bytes exceeds max_size"
        end

        test "bad options are ArgumentErrors" do
          assert_raise ArgumentError, ~r/invalid value for :escape: :xml/, fn ->
            @codec.encode(1, escape: :xml)
          end

          assert_raise ArgumentError, ~r/unknown option/, fn -> @codec.decode("1", foo: 1) end

          assert_raise ArgumentError, ~r/invalid value for :max_depth: -1/, fn ->
            @codec.decode("1", max_depth: -1)
          end
        end
      end
    end
  end

  defp number_tests do
    quote do
      describe "numbers" do
        test "floats: the fewest digits that read back, always a fraction or an exponent" do
          cases = [
            {1.0, "1.0"},
            {-0.0, "-0.0"},
            {0.1, "0.1"},
            {1.0e16, "1.0e16"},
            {123_456_789.0, "123456789.0"},
            {1.0e-7, "1.0e-7"},
            {5.0e-324, "5.0e-324"},
            {1.7976931348623157e308, "1.7976931348623157e308"},
            {0.30000000000000004, "0.30000000000000004"}
          ]

          for {float, text} <- cases do
            assert @codec.encode!(float) == text
            assert @codec.decode!(text) === float
          end

          assert <<1::1, _::63>> = <<@codec.decode!("-0.0")::float>>
        end

        property_test "floats print as Float.to_string/1 and read back exactly", numtests: 500 do
          forall bits <- :proper_types.binary(8) do
            case bits do
              <<_::1, 0x7FF::11, _::52>> ->
                true

              <<float::float>> ->
                text = @codec.encode!(float)
                text == Float.to_string(float) and @codec.decode!(text) === float
            end
          end
        end

        test "integers of any size, exact" do
          for n <- [0, -1, 1 <<< 63, -(1 <<< 63) - 1, 1 <<< 64, 10 ** 100, -(3 ** 5000)] do
            assert @codec.encode!(n) == Integer.to_string(n)
            assert @codec.decode!(Integer.to_string(n)) == n
          end

          assert @codec.decode!("[-0, 1E2, 1e-2, 2.5E+1]") == [0, 100.0, 0.01, 25.0]
        end
      end
    end
  end

  defp fragment_tests do
    quote do
      describe "fragments" do
        test "are written as is, in encode and encode_to_iodata" do
          fragment = @codec.fragment(%{"id" => "1", "n" => [1, 2]})
          assert %Fragment{encoded: ~s({"id":"1","n":[1,2]})} = fragment
          assert @codec.encode!(%{"d" => fragment}) == ~s({"d":{"id":"1","n":[1,2]}})

          assert IO.iodata_to_binary(@codec.encode_to_iodata!([fragment, fragment])) ==
                   ~s([{"id":"1","n":[1,2]},{"id":"1","n":[1,2]}])

          raw = Fragment.new([" [1, ", "\"x\"] "])
          assert @codec.encode!(%{"d" => raw}) == ~s({"d": [1, "x"] })
        end

        test "of 256 bytes or more are shared by encode_to_iodata, not copied" do
          payload = @codec.fragment(%{"content" => String.duplicate("x", 300)})
          assert byte_size(payload.encoded) >= 256
          iodata = @codec.encode_to_iodata!(%{"op" => 0, "d" => payload, "s" => 1})
          parts = iodata_parts(iodata)

          assert Enum.count(parts, &(is_binary(&1) and :erts_debug.same(&1, payload.encoded))) ==
                   1

          assert IO.iodata_to_binary(iodata) ==
                   @codec.encode!(%{"op" => 0, "d" => payload, "s" => 1})
        end

        # The binaries of an iolist, improper tails included.
        defp iodata_parts(binary) when is_binary(binary), do: [binary]
        defp iodata_parts([head | tail]), do: iodata_parts(head) ++ iodata_parts(tail)
        defp iodata_parts(_byte_or_empty), do: []

        test "Fragment.new/1 refuses text that is not one JSON value" do
          assert_raise DecodeError, "unexpected end of input at position 3", fn ->
            Fragment.new("[1,")
          end

          assert_raise DecodeError, ~r/unexpected byte at position 2/, fn ->
            Fragment.new("1 2")
          end
        end

        test "cannot be forged from decoded data or by hand" do
          forged = %Fragment{encoded: ~s("injected"), seal: make_ref()}

          assert {:error, %EncodeError{reason: {:invalid_fragment, ^forged}}} =
                   @codec.encode(%{"d" => forged})

          decoded =
            @codec.decode!(
              ~s({"__struct__": "Elixir.Switchboard.Json.Fragment", "encoded": "1", "seal": 1}),
              keys: :atoms!
            )

          assert {:error, %EncodeError{reason: {:unsupported, ^decoded}}} =
                   @codec.encode([decoded])

          assert {:error, %EncodeError{}} = @codec.encode(%{"d" => Map.delete(forged, :seal)})
        end
      end
    end
  end

  defp suite_tests do
    quote do
      describe "JSONTestSuite" do
        test "every y_ case is accepted, every n_ case refused" do
          for {name, text} <- Contract.suite_cases() do
            case name do
              "y_" <> _ -> assert {:ok, _} = @codec.decode(text), name
              "n_" <> _ -> assert {:error, %DecodeError{}} = @codec.decode(text), name
              "i_" <> _ -> :ok
            end
          end
        end

        test "every i_ case behaves as pinned in the table and documented" do
          table = Contract.implementation_defined()
          names = for {"i_" <> _ = name, _} <- Contract.suite_cases(), do: name
          assert Enum.sort(names) == Enum.sort(Map.keys(table))
          {:docs_v1, _, _, _, %{"en" => doc}, _, _} = Code.fetch_docs(Switchboard.Json.Codec)

          for {name, text} <- Contract.suite_cases(), Map.has_key?(table, name) do
            outcome =
              case @codec.decode(text) do
                {:ok, _} -> :ok
                {:error, %DecodeError{reason: reason}} -> reason
              end

            assert outcome == table[name], name
            if outcome == :ok, do: assert(doc =~ "`#{Path.rootname(name)}`", name)
          end
        end

        test "accepted cases decode as jiffy decodes them" do
          for {"y_" <> _ = name, text} <- Contract.suite_cases(),
              {:ok, jiffy} = Contract.jiffy_result(text) do
            assert @codec.decode!(text) == jiffy, name
          end
        end
      end
    end
  end

  defp property_tests do
    quote do
      describe "against jiffy" do
        property_test "what we encode, jiffy decodes to the input", numtests: 100, max_size: 20 do
          forall term <- Contract.json_term() do
            Contract.jiffy_decode(@codec.encode!(term)) == term
          end
        end

        property_test "what jiffy encodes, we decode to the input", numtests: 100, max_size: 20 do
          forall term <- Contract.json_term() do
            @codec.decode!(Contract.jiffy_encode(term)) == term
          end
        end

        property_test "gateway events: jiffy decodes ours, we decode jiffy's", numtests: 100 do
          forall event <- Contract.gateway_event() do
            Contract.jiffy_decode(@codec.encode!(event)) == event and
              @codec.decode!(Contract.jiffy_encode(event)) == event
          end
        end

        property_test "on near-JSON bytes, what both accept decodes the same",
          numtests: 200,
          max_size: 20 do
          forall bytes <- Contract.json_like_bytes() do
            case {@codec.decode(bytes), Contract.jiffy_result(bytes)} do
              {{:ok, ours}, {:ok, theirs}} -> ours == theirs
              _ -> true
            end
          end
        end
      end
    end
  end
end
