defmodule Switchboard.MemberListTest do
  use ExUnit.Case, async: true
  use Switchboard.Contracts.MemberListContract, implementation: Switchboard.MemberList

  alias Switchboard.Contracts.MemberListContract, as: Contract
  alias Switchboard.MemberList
  alias Switchboard.MemberList.Pure

  doctest Switchboard.MemberList

  test "native and twin return identical updates and items over random streams" do
    Contract.check_streams!([MemberList, Pure], 300)
  end
end
