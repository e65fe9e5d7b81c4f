defmodule Switchboard.Fanout.Options do
  @moduledoc false
  # The one parser of fan-out options (`Switchboard.Fanout.send/3` and its
  # pure twin's), so both twins accept and refuse the same options with the
  # same words, and a `Switchboard.Fanout.Batcher` can check its
  # `:fanout_opts` when it starts instead of at its first flush.

  @type t :: %{offload: boolean(), pack: :binary | nil, deliver: :term | :packed}

  @doc "Checks fan-out options; raises ArgumentError naming the bad one."
  @spec parse!(term()) :: t()
  def parse!(opts) when is_list(opts) do
    unless Enum.all?(opts, &match?({key, _} when is_atom(key), &1)) do
      raise ArgumentError, "expected fan-out options to be a keyword list, got: #{inspect(opts)}"
    end

    opts = Keyword.validate!(opts, offload: false, pack: nil, deliver: :term)

    %{
      offload: offload!(opts[:offload]),
      pack: pack!(opts[:pack]),
      deliver: deliver!(opts[:deliver])
    }
  end

  def parse!(other) do
    raise ArgumentError, "expected fan-out options to be a keyword list, got: #{inspect(other)}"
  end

  @doc """
  Checks the options of one `send/3` and applies `:deliver`: returns
  `{offload, pack, message}`, where with `deliver: :packed` the message is
  already the packed envelope (and needs no further packing).
  """
  @spec prepare!(term(), term()) :: {boolean(), :binary | nil, term()}
  def prepare!(opts, message) do
    case parse!(opts) do
      %{offload: offload, deliver: :packed} ->
        {offload, nil, {:switchboard_packed, pack(message)}}

      %{offload: offload, pack: pack} ->
        {offload, pack, message}
    end
  end

  # The one codec of `pack: :binary` and `deliver: :packed`: switching it
  # (to Switchboard.Erlpack, say) means changing these two.

  @doc "Encodes a message once for many receivers or nodes."
  @spec pack(term()) :: binary()
  def pack(message), do: :erlang.term_to_binary(message)

  @doc "Decodes what `pack/1` made, bare or in its `deliver: :packed` envelope."
  @spec unpack({:switchboard_packed, binary()} | binary()) :: term()
  def unpack({:switchboard_packed, binary}) when is_binary(binary), do: unpack(binary)
  def unpack(binary) when is_binary(binary), do: :erlang.binary_to_term(binary)

  @doc """
  Checks `module` is a fan-out implementation (it exports `send/3`, as
  `Switchboard.Fanout` and `Switchboard.Fanout.Pure` do).
  """
  @spec implementation!(term()) :: module()
  def implementation!(module) do
    if is_atom(module) and Code.ensure_loaded?(module) and function_exported?(module, :send, 3) do
      module
    else
      raise ArgumentError,
            "expected :fanout to be a module with send/3 (Switchboard.Fanout or " <>
              "Switchboard.Fanout.Pure), got: #{inspect(module)}"
    end
  end

  defp offload!(value) when is_boolean(value), do: value

  defp offload!(other),
    do: raise(ArgumentError, "expected :offload to be a boolean, got: #{inspect(other)}")

  defp pack!(value) when value in [nil, :binary], do: value

  defp pack!(other),
    do: raise(ArgumentError, "expected :pack to be :binary or nil, got: #{inspect(other)}")

  defp deliver!(value) when value in [:term, :packed], do: value

  defp deliver!(other),
    do: raise(ArgumentError, "expected :deliver to be :term or :packed, got: #{inspect(other)}")
end
