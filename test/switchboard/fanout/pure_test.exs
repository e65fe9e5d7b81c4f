defmodule Switchboard.Fanout.PureTest do
  use ExUnit.Case, async: true

  use Switchboard.Contracts.FanoutContract,
    implementation: Switchboard.Fanout.Pure,
    group: Switchboard.Fanout.Pure.Group

  alias Switchboard.Fanout
  alias Switchboard.Fanout.Pure

  doctest Switchboard.Fanout.Pure
  doctest Switchboard.Fanout.Pure.Group

  # What both twins share is in FanoutContract. The pure twin's one
  # documented difference: send/2 cannot tell a dead local pid from a live
  # one, so dead pids count as delivered.
  test "a dead local pid counts as delivered" do
    [a] = receivers(1)
    dead = dead_pid()
    assert Pure.send([a, dead, nil], :m) == %{local: 2, remote: 0, skipped: 1}
    assert mailbox(a) == [:m]
    kill_all([a])
  end

  property_test "delivers exactly what the native fan-out does", numtests: 40 do
    forall sends <- list(tuple([list(contract_slot()), contract_options()])) do
      {_, native} = run_scenario(Fanout, sends)
      {_, pure} = run_scenario(Pure, sends)
      native == pure
    end
  end
end
