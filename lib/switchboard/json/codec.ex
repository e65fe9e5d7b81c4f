defmodule Switchboard.Json.Codec do
  @moduledoc """
  The contract of Switchboard's JSON codecs: `Switchboard.Json` (native) and
  `Switchboard.Json.Pure` (pure Elixir) implement it with the same results,
  byte for byte, and the same errors.

  The API follows Jason's, so code written for Jason switches by changing
  an alias.

  ## Encoding

    * maps with binary, atom or integer keys become objects, lists become
      arrays (a map's keys in the order the runtime iterates them, sorted
      for maps of up to 32 keys);
    * binaries become strings (invalid UTF-8 is an error), `nil`, `true`
      and `false` become `null`, `true` and `false`, other atoms become
      strings of their name;
    * integers of any size become numbers; floats become the fewest
      significant digits that read back to the same double, always with a
      fraction or an exponent, exactly as `Float.to_string/1` prints them on
      OTP 25 (`1.0`, `1.0e16`, `-0.0`);
    * a `Switchboard.Json.Fragment` is written as its text;
    * anything else (tuples, pids, references, ports, funs, bitstrings that
      are not binaries, other structs, improper lists) is an
      `Switchboard.Json.EncodeError`.

  ## Decoding

  RFC 8259 exactly: objects become maps with binary keys (or existing atoms
  with `keys: :atoms!`), arrays lists, strings binaries, numbers integers
  (of any size, exact) or floats, `null` `nil`. When an object repeats a
  key, the last value wins. Everything the RFC refuses is refused,
  including byte order marks, a `\\u` escape of a lone surrogate (as jiffy
  does) and strings that are not UTF-8; the error's `position` is the
  0-based byte offset where the offending token starts.

  Two refusals go beyond the RFC to bound the work a hostile input can
  cause: an integer of more than 4,300 digits (converting digits to a
  binary integer costs their count squared; Python refuses the same), and
  a float whose magnitude overflows a double (Erlang has no infinity); both
  are `:number_too_large`. A float that underflows reads as `0.0`.

  ### JSONTestSuite's implementation-defined cases

  Of nst/JSONTestSuite's `i_` cases (test/fixtures/json_test_suite), these
  are accepted: `i_number_double_huge_neg_exp`, `i_number_real_underflow`,
  `i_number_too_big_neg_int`, `i_number_too_big_pos_int`,
  `i_number_very_big_negative_int` (big integers are exact) and
  `i_structure_500_nested_arrays` (within `max_depth`); every other `i_`
  case is refused: huge exponents overflow (`:number_too_large`), invalid
  UTF-8 and lone surrogates in any form (`:invalid_utf8`,
  `:lone_surrogate`), UTF-16 and byte-order-marked texts
  (`:unexpected_byte`).
  """

  alias Switchboard.Json.{DecodeError, EncodeError, Fragment}

  @typedoc """
  How strings are escaped: `:json` (default) escapes `"`, `\\` and control
  characters; `:javascript_safe` also U+2028 and U+2029; `:html_safe` also
  `<` (as `\\u003C`), `/` (as `\\/`), U+2028 and U+2029; `:unicode_safe`
  every non-ASCII character (`\\uXXXX`, surrogate pairs above U+FFFF).
  """
  @type escape :: :json | :javascript_safe | :html_safe | :unicode_safe

  @typedoc """
  * `:escape` - see `t:escape/0`. Defaults to `:json`.
  * `:maps` - `:naked` (default) writes keys as they come; `:strict` also
    refuses a map two of whose keys write the same text (`%{:a => 1, "a" => 2}`).
  """
  @type encode_option :: {:escape, escape()} | {:maps, :naked | :strict}

  @typedoc """
  * `:keys` - `:strings` (default) or `:atoms!`: keys become existing atoms,
    and an unknown one is an error (`:unknown_atom`); no atom is ever created.
  * `:max_depth` - nested arrays and objects allowed (the outermost is 1).
    Defaults to 512.
  * `:max_size` - the largest input in bytes. Defaults to 64 MiB.
  """
  @type decode_option ::
          {:keys, :strings | :atoms!}
          | {:max_depth, non_neg_integer()}
          | {:max_size, non_neg_integer()}

  @typedoc "A decoded value."
  @type json ::
          nil
          | boolean()
          | integer()
          | float()
          | String.t()
          | [json()]
          | %{optional(String.t() | atom()) => json()}

  @doc "Encodes `term` as JSON text."
  @callback encode(term(), [encode_option()]) :: {:ok, String.t()} | {:error, EncodeError.t()}

  @doc "Like `c:encode/2` but raises `Switchboard.Json.EncodeError`."
  @callback encode!(term(), [encode_option()]) :: String.t()

  @doc """
  Encodes `term` as iodata: the same bytes as `c:encode/2`, with every
  fragment of 256 bytes or more listed as its own binary (shared, not
  copied), the frame a gateway writes to many sockets.
  """
  @callback encode_to_iodata(term(), [encode_option()]) ::
              {:ok, iodata()} | {:error, EncodeError.t()}

  @doc "Like `c:encode_to_iodata/2` but raises `Switchboard.Json.EncodeError`."
  @callback encode_to_iodata!(term(), [encode_option()]) :: iodata()

  @doc "Decodes one JSON text."
  @callback decode(iodata(), [decode_option()]) :: {:ok, json()} | {:error, DecodeError.t()}

  @doc "Like `c:decode/2` but raises `Switchboard.Json.DecodeError`."
  @callback decode!(iodata(), [decode_option()]) :: json()

  @doc """
  Encodes `term` once, as a `Switchboard.Json.Fragment` that later encodes
  write as is. Raises `Switchboard.Json.EncodeError` when `term` has no JSON form.
  """
  @callback fragment(term(), [encode_option()]) :: Fragment.t()
end
