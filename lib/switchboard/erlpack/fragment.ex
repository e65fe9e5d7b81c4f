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
  Build fragments with `fragment/2` only: the encoder does not check the
  bytes, and hand-made bytes that are not one complete term produce an
  undecodable result.
  """

  defstruct [:bytes]

  @typedoc "An encoded term, without the version byte."
  @type t :: %__MODULE__{bytes: binary()}
end
