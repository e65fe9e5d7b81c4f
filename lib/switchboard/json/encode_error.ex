defmodule Switchboard.Json.EncodeError do
  @moduledoc """
  A term with no JSON form, as `encode/2` returns it and `encode!/2` raises
  it. `reason` says why:

    * `{:invalid_byte, byte, string}` - `string` is not valid UTF-8;
      `byte` starts the first ill-formed sequence;
    * `{:unsupported, term}` - a tuple, pid, reference, port, fun, a
      bitstring that is not a binary, or a struct other than a fragment;
    * `{:invalid_key, key}` - a map key that is not a binary, atom or integer;
    * `{:duplicate_key, text}` - with `maps: :strict`, two keys of one map
      write the same (escaped) text;
    * `{:improper_list, list}`;
    * `{:invalid_fragment, fragment}` - a `Switchboard.Json.Fragment` not
      made by this VM's `fragment/2` or `Switchboard.Json.Fragment.new/1`.
  """

  defexception [:message, :reason]

  @type reason ::
          {:invalid_byte, byte(), binary()}
          | {:unsupported, term()}
          | {:invalid_key, term()}
          | {:duplicate_key, String.t()}
          | {:improper_list, maybe_improper_list()}
          | {:invalid_fragment, map()}

  @type t :: %__MODULE__{message: String.t(), reason: reason()}

  @doc false
  @spec new(reason()) :: t()
  def new(reason), do: %__MODULE__{message: describe(reason), reason: reason}

  defp describe({:invalid_byte, byte, original}),
    do: "invalid byte #{inspect(byte, base: :hex)} in #{short(original)}"

  defp describe({:unsupported, term}), do: "no JSON form for #{short(term)}"

  defp describe({:invalid_key, key}),
    do: "invalid map key #{short(key)}: expected a binary, an atom or an integer"

  defp describe({:duplicate_key, text}), do: "duplicate key: #{text}"
  defp describe({:improper_list, list}), do: "improper list: #{short(list)}"

  defp describe({:invalid_fragment, fragment}),
    do:
      "invalid fragment (not made by this VM's fragment/2 or Fragment.new/1): #{short(fragment)}"

  defp short(term), do: inspect(term, limit: 8, printable_limit: 80)
end
