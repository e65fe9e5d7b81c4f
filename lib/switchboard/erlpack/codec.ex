defmodule Switchboard.Erlpack.Codec do
  @moduledoc """
  The behaviour both External Term Format codecs implement:
  `Switchboard.Erlpack` (native) and `Switchboard.Erlpack.Pure` (its
  pure-Elixir twin).

  The two accept the same options (parsed by one module), give the same
  results, refuse the same bad bytes with the same `{reason, offset}` and
  raise the same messages; one contract test suite runs against both. The
  native codec adds `isolation: :port` and `:timeout` to decoding.

  ## Error reasons

  Unless said otherwise the offset is that of the offending term's tag:

    * `:truncated` - the input ends inside a term, or holds fewer bytes
      than a container's count needs; also a zlib stream that stops early.
    * `:bad_version` - the first byte is not 131.
    * `:unknown_tag` - a tag OTP 25 does not decode.
    * `:depth_exceeded` - tuples, lists and maps nest deeper than `:max_depth`.
    * `:too_large` - the input is larger than `:max_size`.
    * `:decompressed_too_large` - a compressed term inflates to, or declares,
      more than `:max_decompressed` bytes.
    * `:bad_compression` - the zlib data is corrupt, or inflates (within
      `:max_decompressed`) to a size other than the one declared.
    * `:invalid_float` - NaN, infinity, or a malformed `FLOAT_EXT` string.
    * `:duplicate_key` - a map holds two keys that are `===` (offset: the
      second occurrence of the smallest such key).
    * `:atom_too_long` - an atom of more than 255 characters.
    * `:invalid_utf8` - a UTF-8 atom that is not valid UTF-8.
    * `:nested_compression` - a compressed term anywhere but at the top.
    * `:trailing_data` - bytes after the term (offset: the first of them),
      unless `trailing: :allow`; also data left over inside a compressed
      payload.
    * `:unknown_atom` - an atom that does not exist, with `atoms: :existing`
      (offset: the atom's own tag, also inside a pid or fun).
    * `:too_many_atoms` - with `atoms: :create`, the first atom past
      `:max_new_atoms` new ones (offset: that atom's tag).
    * `:not_plain` - a pid, port, reference, fun or export with `plain: true`.
    * `:bad_node` - a pid, port or reference whose node is not an atom.
    * `:invalid_term` - anything else OTP refuses.

  Errors found inside a compressed payload are reported at offset 1, the
  offset of the compressed term's tag.
  """

  @type encode_option :: {:compressed, boolean() | 0..9} | {:string_keys, boolean()}

  @type decode_option ::
          {:atoms, :existing | :binary | :create}
          | {:max_new_atoms, non_neg_integer()}
          | {:plain, boolean()}
          | {:max_depth, non_neg_integer()}
          | {:max_size, non_neg_integer()}
          | {:max_decompressed, non_neg_integer()}
          | {:trailing, :error | :allow}

  @type reason ::
          :truncated
          | :bad_version
          | :unknown_tag
          | :depth_exceeded
          | :too_large
          | :decompressed_too_large
          | :bad_compression
          | :invalid_float
          | :duplicate_key
          | :atom_too_long
          | :invalid_utf8
          | :nested_compression
          | :trailing_data
          | :unknown_atom
          | :too_many_atoms
          | :not_plain
          | :bad_node
          | :invalid_term

  @type error :: {:error, {reason(), offset :: non_neg_integer()}}

  @doc """
  Encodes a term; byte-identical to `:erlang.term_to_binary/1` for numbers,
  atoms, binaries, bitstrings, lists, tuples and maps of up to 32 keys.
  Raises `ArgumentError` for invalid options.
  """
  @callback encode(term(), [encode_option()]) :: binary()

  @doc "Encodes a term as iodata, sharing the bytes of large fragments."
  @callback encode_iodata(term(), [encode_option()]) :: iodata()

  @doc "Encodes a term once, for splicing into later encodes."
  @callback fragment(term(), [encode_option()]) :: Switchboard.Erlpack.Fragment.t()

  @doc """
  Decodes External Term Format bytes; never raises on bad bytes, raises
  `ArgumentError` for a non-binary or invalid options.
  """
  @callback decode(binary(), [decode_option()]) ::
              {:ok, term()} | {:ok, term(), binary()} | {:error, term()}

  @doc "Like `c:decode/2` but raises `ArgumentError` on bad input."
  @callback decode!(binary(), [decode_option()]) :: term() | {term(), binary()}
end
