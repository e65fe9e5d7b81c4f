defmodule Switchboard.MemberList.PureTest do
  use ExUnit.Case, async: true
  use Switchboard.Contracts.MemberListContract, implementation: Switchboard.MemberList.Pure

  doctest Switchboard.MemberList.Pure
end
