defmodule Switchboard do
  @moduledoc """
  C++ native extensions for Elixir realtime infrastructure.

  Each native module has a pure-Elixir twin with the same API, used as the
  oracle in differential tests and as the baseline in benchmarks.
  """

  @doc """
  Bytes the native core currently holds (mimalloc allocations made by the
  C++ core), as counted by its allocator.

  ## Examples

      iex> is_integer(Switchboard.native_allocated_bytes())
      true
  """
  @spec native_allocated_bytes() :: non_neg_integer()
  def native_allocated_bytes do
    Switchboard.NIF.library_info().allocated_bytes
  end
end
