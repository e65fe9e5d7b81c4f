defmodule Switchboard.Erlpack.PureTest do
  use ExUnit.Case, async: true
  use Switchboard.Contracts.ErlpackContract, codec: Switchboard.Erlpack.Pure

  doctest Switchboard.Erlpack.Pure
end
