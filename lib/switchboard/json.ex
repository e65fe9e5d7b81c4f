defmodule Switchboard.Json do
  @moduledoc """
  JSON codec in native code, for gateways: faster than jiffy, with
  fragments encoded once and spliced into many envelopes.

  The same API and results, byte for byte, as its pure-Elixir twin
  `Switchboard.Json.Pure`; the contract (what becomes what, the options,
  the errors, the implementation-defined cases of JSONTestSuite) is
  documented in `Switchboard.Json.Codec`. The API follows Jason's: code
  written for Jason switches by changing an alias.

  A C++ core (`c_src/core/json/`) reads JSON in one pass, building terms
  as it goes (no intermediate document), and writes JSON into one buffer
  that becomes one binary.

  Strings without escapes are sub-binaries of the input (no copy), as
  jiffy's and the pure twin's are, so keeping one keeps the input alive:
  `:binary.copy/1` those kept for long.

  ## Scheduling

  A decode knows its input's size: one of more than 64 KiB (or than the
  library's work budget, `Switchboard.NIF.set_work_budget/1`) runs on a
  dirty CPU scheduler before any work. An encode moves at once when its
  root shows it is large (a long binary, map or list); otherwise it runs
  inline up to about 8 KiB of work (some 8 us; every gateway payload fits)
  and a larger term reruns dirty, so at most that much is done twice.
  Walking the term first to know its size would cost as much as the
  encode's own reading of it (measured: 1.1 us of a 2.4 us MESSAGE_CREATE).
  Big integers in a small decode can outrun the budget; that decode then
  reruns dirty. An input of any size holds a normal scheduler for well
  under a millisecond.
  """

  @behaviour Switchboard.Json.Codec

  alias Switchboard.Json.{DecodeError, EncodeError, Fragment, Options}
  alias Switchboard.NIF

  # The options as the NIF reads them (Options.encode/1, Options.decode/1).
  @default_encode Options.encode([])
  @default_decode Options.decode([])

  @doc """
  Encodes `term` as JSON text.

  ## Options

    * `:escape` - `:json` (default), `:javascript_safe`, `:html_safe` or
      `:unicode_safe` (see `t:Switchboard.Json.Codec.escape/0`).
    * `:maps` - `:naked` (default) or `:strict` (refuse two keys of one
      map that write the same text).

  ## Examples

      iex> Switchboard.Json.encode(%{"op" => 0, "d" => [1, 2.5, nil, "é"]})
      {:ok, ~s({"d":[1,2.5,null,"é"],"op":0})}

      iex> Switchboard.Json.encode("é</", escape: :html_safe)
      {:ok, ~S("é\\u003C\\/")}

      iex> {:error, error} = Switchboard.Json.encode({:ok, 1})
      iex> error.message
      "no JSON form for {:ok, 1}"
  """
  @impl true
  @spec encode(term(), [Switchboard.Json.Codec.encode_option()]) ::
          {:ok, String.t()} | {:error, EncodeError.t()}
  def encode(term, opts \\ []), do: run_encode(term, opts, false)

  @doc """
  Like `encode/2` but raises `Switchboard.Json.EncodeError`.

  ## Examples

      iex> Switchboard.Json.encode!([1.0e16, -0.0, 10 ** 20])
      "[1.0e16,-0.0,100000000000000000000]"

      iex> Switchboard.Json.encode!(<<255>>)
      ** (Switchboard.Json.EncodeError) invalid byte 0xFF in <<255>>
  """
  @impl true
  @spec encode!(term(), [Switchboard.Json.Codec.encode_option()]) :: String.t()
  def encode!(term, opts \\ [])

  # The defaults, straight to the NIF: three local calls fewer, 2% of a
  # PRESENCE_UPDATE encode.
  def encode!(term, []) do
    case NIF.json_encode(term, @default_encode, Fragment.seal(), false) do
      {:ok, text} -> text
      {:error, reason} -> raise EncodeError.new(reason)
    end
  end

  def encode!(term, opts), do: term |> encode(opts) |> unwrap!()

  @doc """
  Encodes `term` as iodata: `encode/2`'s bytes, with each fragment of 256
  bytes or more listed as its own binary (shared, not copied).

  ## Examples

      iex> payload = Switchboard.Json.fragment(%{"content" => String.duplicate("x", 300)})
      iex> {:ok, iodata} = Switchboard.Json.encode_to_iodata(%{"op" => 0, "d" => payload})
      iex> [_, ^payload = _shared | _] = Enum.map(iodata, &(&1 == payload.encoded && payload || &1))
      iex> IO.iodata_to_binary(iodata) == Switchboard.Json.encode!(%{"op" => 0, "d" => payload})
      true
  """
  @impl true
  @spec encode_to_iodata(term(), [Switchboard.Json.Codec.encode_option()]) ::
          {:ok, iodata()} | {:error, EncodeError.t()}
  def encode_to_iodata(term, opts \\ []), do: run_encode(term, opts, true)

  @doc """
  Like `encode_to_iodata/2` but raises `Switchboard.Json.EncodeError`.
  """
  @impl true
  @spec encode_to_iodata!(term(), [Switchboard.Json.Codec.encode_option()]) :: iodata()
  def encode_to_iodata!(term, opts \\ []), do: term |> encode_to_iodata(opts) |> unwrap!()

  @doc """
  Encodes `term` once, as a fragment that later encodes write as is.

  ## Examples

      iex> payload = Switchboard.Json.fragment(%{"id" => "1"})
      iex> Switchboard.Json.encode!(%{"op" => 0, "d" => payload})
      ~s({"d":{"id":"1"},"op":0})
  """
  @impl true
  @spec fragment(term(), [Switchboard.Json.Codec.encode_option()]) :: Fragment.t()
  def fragment(term, opts \\ []), do: term |> encode!(opts) |> Fragment.seal()

  @doc """
  Decodes one JSON text.

  ## Options

    * `:keys` - `:strings` (default) or `:atoms!` (existing atoms only;
      an unknown key is an error, no atom is created).
    * `:max_depth` - nested arrays and objects allowed. Defaults to 512.
    * `:max_size` - the largest input in bytes. Defaults to 64 MiB.

  ## Examples

      iex> Switchboard.Json.decode(~s({"op": 1, "d": [true, null, 2.5]}))
      {:ok, %{"op" => 1, "d" => [true, nil, 2.5]}}

      iex> Switchboard.Json.decode(~s({"op": 1}), keys: :atoms!)
      {:ok, %{op: 1}}

      iex> {:error, error} = Switchboard.Json.decode("[1,]")
      iex> {error.reason, error.position}
      {:unexpected_byte, 3}
  """
  @impl true
  @spec decode(iodata(), [Switchboard.Json.Codec.decode_option()]) ::
          {:ok, Switchboard.Json.Codec.json()} | {:error, DecodeError.t()}
  def decode(input, opts \\ [])

  def decode(input, []) when is_binary(input),
    do: input |> NIF.json_decode(@default_decode) |> decoded(input)

  def decode(input, opts) do
    options = Options.decode(opts)
    input = IO.iodata_to_binary(input)
    input |> NIF.json_decode(options) |> decoded(input)
  end

  @doc """
  Like `decode/2` but raises `Switchboard.Json.DecodeError`.

  ## Examples

      iex> Switchboard.Json.decode!("[1e2, 12345678901234567890]")
      [100.0, 12345678901234567890]

      iex> Switchboard.Json.decode!(~s(["\\\\uD800"]))
      ** (Switchboard.Json.DecodeError) lone surrogate at position 2: "\\\\uD800"
  """
  @impl true
  @spec decode!(iodata(), [Switchboard.Json.Codec.decode_option()]) ::
          Switchboard.Json.Codec.json()
  def decode!(input, opts \\ []), do: input |> decode(opts) |> unwrap!()

  defp run_encode(term, [], iodata),
    do: term |> NIF.json_encode(@default_encode, Fragment.seal(), iodata) |> encoded()

  defp run_encode(term, opts, iodata),
    do: term |> NIF.json_encode(Options.encode(opts), Fragment.seal(), iodata) |> encoded()

  defp encoded({:ok, _} = ok), do: ok
  defp encoded({:error, reason}), do: {:error, EncodeError.new(reason)}

  defp decoded({:ok, _} = ok, _input), do: ok

  defp decoded({:error, reason, position, token}, input),
    do: {:error, %DecodeError{reason: reason, position: position, data: input, token: token}}

  defp unwrap!({:ok, result}), do: result
  defp unwrap!({:error, error}), do: raise(error)
end
