defmodule Switchboard.Bench.ScalingTest do
  # Not async: the jobs load every scheduler for a moment.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  alias Switchboard.Bench.Scaling

  # The child side, in this VM: every job runs, on small data for a short
  # while, and reports what it did (the parent side starts VMs and is run
  # by bench/scaling.exs and the release).
  test "a child VM's run measures every job and reports it in one tagged line" do
    jobs = ~w(sorted_set_find_index pure_find_index ets_lookup sorted_set_add_remove fanout_send)
    opts = [size: 2000, seconds: 0.1, jobs: jobs]
    output = capture_io(fn -> Scaling.child(Base.encode64(:erlang.term_to_binary(opts))) end)
    assert ["SWITCHBOARD_SCALING_RESULT " <> encoded] = String.split(output, "\n", trim: true)
    results = encoded |> Base.decode64!() |> :erlang.binary_to_term()
    assert Enum.sort(Map.keys(results)) == Enum.sort(jobs)

    for {_name, result} <- results do
      assert result.processes == System.schedulers_online()
      assert result.ops > 0 and result.ops_per_s > 0
    end
  end

  test "a child runs more processes than schedulers when asked" do
    opts = [size: 2000, seconds: 0.1, jobs: ["sorted_set_add_remove"], processes_per_scheduler: 3]
    output = capture_io(fn -> Scaling.child(Base.encode64(:erlang.term_to_binary(opts))) end)
    assert ["SWITCHBOARD_SCALING_RESULT " <> encoded] = String.split(output, "\n", trim: true)

    assert %{"sorted_set_add_remove" => %{processes: processes, ops: ops}} =
             encoded |> Base.decode64!() |> :erlang.binary_to_term()

    assert processes == 3 * System.schedulers_online() and ops > 0
  end

  test "member-list keys are distinct and sort by role first" do
    keys = Scaling.keys(1000)
    assert length(Enum.uniq(keys)) == 1000
    assert Scaling.key(2, 1, 1) < Scaling.key(1, 1, 1)
  end
end
