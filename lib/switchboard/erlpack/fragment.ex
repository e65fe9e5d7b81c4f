defmodule Switchboard.Erlpack.Fragment do
  @moduledoc """
  A term already encoded in the External Term Format, spliced as bytes by
  later encodes.

  A gateway sends one payload to many sessions, each wrapped in its own
  envelope (`%{"op" => 0, "s" => seq, "d" => payload}`). Encoding the payload
  once with `fragment/2` and then encoding only the small envelope per session
  turns N encodes of the payload into one:

      payload = Switchboard.Erlpack.Pure.fragment(%{"content" => "hi"})

      for {pid, seq} <- sessions do
        send(pid, Switchboard.Erlpack.Pure.encode(%{"op" => 0, "s" => seq, "d" => payload}))
      end

  When an encoder meets a fragment anywhere inside a term (a map value, a
  list element, a tuple element, even the top-level term), it writes `bytes`
  as-is, so the result decodes exactly as if the original term had been
  there.

  `bytes` is the term's encoding without the leading version byte (131),
  made with the options given to `fragment/2` (such as `:string_keys`).

  ## Fragments cannot be forged

  Only `fragment/2` makes fragments: each holds a seal, a reference made
  once per VM, and the encoders splice only a struct holding that seal. A
  map that merely says `__struct__: Switchboard.Erlpack.Fragment` (decoded
  from a client's bytes, say, or built by hand) is encoded as the ordinary
  map it is, never as raw bytes. Decoded data could carry the seal only by
  naming the reference's exact id words, and `decode(bytes, plain: true)`
  refuses references outright. A fragment is valid only in the VM that
  made it; the seal is left out of `inspect/1`.
  """

  alias Switchboard.NIF

  @derive {Inspect, except: [:seal]}
  @enforce_keys [:bytes, :seal]
  defstruct [:bytes, :seal]

  @typedoc "An encoded term, without the version byte, and its seal."
  @type t :: %__MODULE__{bytes: binary(), seal: reference()}

  # Atom keys: persistent_term hashes its key on every get, and every encode
  # and decode reads these (an atom's hash is its index; a tuple's costs
  # 20-30 ns more, measured).
  @seal_key :switchboard_erlpack_fragment_seal
  @seal_words_key :switchboard_erlpack_fragment_seal_words
  # Where code before 2026-12-06 kept the seal: a reload keeps it.
  @earlier_seal_key {__MODULE__, :seal}

  @on_load :make_seal

  @doc false
  # Runs when the module loads (serialised by the code server), and keeps
  # the seal of an earlier load so that reloading keeps fragments valid.
  def make_seal do
    if :persistent_term.get(@seal_key, nil) == nil do
      :persistent_term.put(@seal_key, :persistent_term.get(@earlier_seal_key, make_ref()))
    end

    if :persistent_term.get(@seal_words_key, nil) == nil do
      :persistent_term.put(@seal_words_key, seal_words(seal()))
    end

    :ok
  end

  # The seal's id words as term_to_binary writes them (NEWER_REFERENCE_EXT:
  # tag, word count, node, creation, words): the part of its encoding that
  # does not depend on the node's name and creation, which change when the
  # node starts distribution.
  defp seal_words(seal) do
    <<131, 90, words::16, rest::binary>> = :erlang.term_to_binary(seal)
    binary_part(rest, byte_size(rest) - 4 * words, 4 * words)
  end

  @doc false
  # True when `encoded` (term_to_binary's output) may hold a sealed
  # fragment, that is the seal's id words (12 bytes). A term without the
  # seal cannot hold them; a false positive (a binary that happens to hold
  # those bytes) only costs the encoders their own walk. Searched natively
  # (memchr for the words' least common-looking byte, then a compare:
  # Switchboard.NIF.erlpack_may_hold_seal/2), a few ns for a gateway payload.
  @spec may_hold_seal?(binary()) :: boolean()
  def may_hold_seal?(encoded),
    do: NIF.erlpack_may_hold_seal(encoded, :persistent_term.get(@seal_words_key))

  @doc false
  # The seal the encoders check fragments against.
  @spec seal() :: reference()
  def seal, do: :persistent_term.get(@seal_key)

  @doc false
  # A fragment of `bytes`, which must be one complete encoded term.
  @spec new(binary()) :: t()
  def new(bytes) when is_binary(bytes), do: %__MODULE__{bytes: bytes, seal: seal()}

  @doc false
  @spec sealed?(term()) :: boolean()
  def sealed?(%__MODULE__{seal: seal}), do: seal === seal()
  def sealed?(_other), do: false
end
