defmodule Switchboard.SimTest do
  use ExUnit.Case, async: false

  alias Switchboard.Sim
  alias Switchboard.Sim.Report

  @tag timeout: 60_000
  test "a tiny run of each mode reports every field, and checks out" do
    for mode <- [:native, :pure] do
      report =
        Sim.run(
          mode: mode,
          members: 400,
          sessions: 60,
          passive: 0.5,
          duration: 0.4,
          relay_threshold: 20,
          slow: 2,
          progress: false
        )

      assert report.mode == Atom.to_string(mode)
      assert report.verdict == "ok"
      assert %{lost: 0, duplicated: 0, out_of_order: 0} = report
      assert report.relays >= 3
      assert report.events_published > 0
      assert report.frames_delivered > 0
      assert report.member_list_ops > 0
      assert is_float(report.latency_ms.p99)
      assert report.memory_bytes_per_member > 0

      json = Report.json(report)
      assert json =~ ~s("verdict":"ok")
      assert json =~ ~s("frames_per_s":)
      html = Report.html(report)
      assert html =~ "<svg"
      assert html =~ "polyline"
      assert Report.text(report) =~ "verdict"
    end
  end
end
