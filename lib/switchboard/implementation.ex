defmodule Switchboard.Implementation do
  @moduledoc """
  Which twin of each module the runtime uses: native (the default) or pure.

  The runtime (`Switchboard.Guild`, its relays and sessions) never names a
  native module directly; it asks here, so `--mode pure` in the simulator
  (or `config :switchboard, mode: :pure`) swaps every native module for its
  pure-Elixir twin at once and changes nothing else.

      iex> Switchboard.Implementation.modules(:pure).fanout
      Switchboard.Fanout.Pure
  """

  @type mode :: :native | :pure

  @type modules :: %{
          mode: mode(),
          member_list: module(),
          fanout: module(),
          group: module(),
          codec: module()
        }

  @doc "The configured mode (`:switchboard, :mode`), `:native` unless set."
  @spec mode() :: mode()
  def mode, do: Application.get_env(:switchboard, :mode, :native)

  @doc """
  The modules of `mode`: `:member_list`, `:fanout` (with its `:group`) and
  `:codec` (a `Switchboard.Codec`: ETF frames, their payload encoded by
  `Switchboard.Erlpack` or its twin).

  Raises `ArgumentError` for an unknown mode.
  """
  @spec modules(mode()) :: modules()
  def modules(mode \\ mode())

  def modules(:native) do
    %{
      mode: :native,
      member_list: Switchboard.MemberList,
      fanout: Switchboard.Fanout,
      group: Switchboard.Fanout.Group,
      codec: Switchboard.Codec.ETF
    }
  end

  def modules(:pure) do
    %{
      mode: :pure,
      member_list: Switchboard.MemberList.Pure,
      fanout: Switchboard.Fanout.Pure,
      group: Switchboard.Fanout.Pure.Group,
      codec: Switchboard.Codec.ETF.Pure
    }
  end

  def modules(other),
    do: raise(ArgumentError, "expected mode :native or :pure, got: #{inspect(other)}")
end
