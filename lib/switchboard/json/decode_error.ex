defmodule Switchboard.Json.DecodeError do
  @moduledoc """
  Text that is not one JSON value (within the limits), as `decode/2`
  returns it and `decode!/2` raises it.

    * `position` - the 0-based byte offset where the offending token starts
      (the input's size when it ends too early, 0 for `:max_size`);
    * `data` - the input;
    * `reason` - `:unexpected_byte`, `:unexpected_end`, `:invalid_escape`,
      `:lone_surrogate`, `:invalid_utf8`, `:max_depth`, `:max_size`,
      `:number_too_large` or `:unknown_atom` (`keys: :atoms!`);
    * `token` - the offending escape sequence, or the unknown key, else `nil`.
  """

  defexception [:position, :data, :reason, :token]

  @type reason ::
          :unexpected_byte
          | :unexpected_end
          | :invalid_escape
          | :lone_surrogate
          | :invalid_utf8
          | :max_depth
          | :max_size
          | :number_too_large
          | :unknown_atom

  @type t :: %__MODULE__{
          position: non_neg_integer(),
          data: binary(),
          reason: reason(),
          token: binary() | nil
        }

  @impl true
  def message(%{reason: :unexpected_end, position: position}),
    do: "unexpected end of input at position #{position}"

  def message(%{reason: :unexpected_byte, position: position, data: data}) do
    byte = :binary.at(data, position)
    hex = "0x" <> Integer.to_string(byte, 16)

    if byte in 0x20..0x7E,
      do: "unexpected byte at position #{position}: #{hex} (#{inspect(<<byte>>)})",
      else: "unexpected byte at position #{position}: #{hex}"
  end

  def message(%{reason: :unknown_atom, position: position, token: key}),
    do: "unknown atom for key #{inspect(key)} at position #{position}"

  def message(%{reason: :max_size, data: data}),
    do: "input of #{byte_size(data)} bytes exceeds max_size"

  def message(%{reason: :max_depth, position: position}),
    do: "nesting deeper than max_depth at position #{position}"

  def message(%{reason: reason, position: position, token: token}) when is_binary(token),
    do: "#{describe(reason)} at position #{position}: #{inspect(token)}"

  def message(%{reason: reason, position: position}),
    do: "#{describe(reason)} at position #{position}"

  defp describe(:invalid_escape), do: "invalid escape"
  defp describe(:lone_surrogate), do: "lone surrogate"
  defp describe(:invalid_utf8), do: "invalid UTF-8"
  defp describe(:number_too_large), do: "number too large"
end
