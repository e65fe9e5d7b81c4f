defmodule Switchboard.Json.Options do
  @moduledoc false
  # The one place both JSON codecs read their options, with one wording for
  # bad ones.

  @escapes [:json, :javascript_safe, :html_safe, :unicode_safe]
  @mib 1024 * 1024

  @doc "Encode options as `{escape, strict?}` (the tuple the NIF reads)."
  def encode(opts) when is_list(opts) do
    Enum.reduce(opts, {:json, false}, fn
      {:escape, escape}, {_, strict} when escape in @escapes -> {escape, strict}
      {:maps, :naked}, {escape, _} -> {escape, false}
      {:maps, :strict}, {escape, _} -> {escape, true}
      {:escape, other}, _ -> bad(:escape, other, "one of #{inspect(@escapes)}")
      {:maps, other}, _ -> bad(:maps, other, ":naked or :strict")
      other, _ -> unknown(other, [:escape, :maps])
    end)
  end

  def encode(opts), do: not_a_list(opts)

  @doc "Decode options as `{atom_keys?, max_depth, max_size}` (the tuple the NIF reads)."
  def decode(opts) when is_list(opts) do
    Enum.reduce(opts, {false, 512, 64 * @mib}, fn
      {:keys, :strings}, {_, depth, size} ->
        {false, depth, size}

      {:keys, :atoms!}, {_, depth, size} ->
        {true, depth, size}

      {:max_depth, depth}, {keys, _, size} when is_integer(depth) and depth >= 0 ->
        {keys, depth, size}

      {:max_size, size}, {keys, depth, _} when is_integer(size) and size >= 0 ->
        {keys, depth, size}

      {:keys, other}, _ ->
        bad(:keys, other, ":strings or :atoms!")

      {:max_depth, other}, _ ->
        bad(:max_depth, other, "a non-negative integer")

      {:max_size, other}, _ ->
        bad(:max_size, other, "a non-negative integer")

      other, _ ->
        unknown(other, [:keys, :max_depth, :max_size])
    end)
  end

  def decode(opts), do: not_a_list(opts)

  defp bad(name, value, expected) do
    raise ArgumentError,
          "invalid value for #{inspect(name)}: #{inspect(value)}, expected #{expected}"
  end

  defp unknown(option, known) do
    raise ArgumentError, "unknown option #{inspect(option)}, expected one of #{inspect(known)}"
  end

  defp not_a_list(opts) do
    raise ArgumentError, "expected options as a keyword list, got: #{inspect(opts)}"
  end
end
