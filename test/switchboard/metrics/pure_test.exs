defmodule Switchboard.Metrics.PureTest do
  use ExUnit.Case, async: true
  import Bitwise
  use Switchboard.Contracts.MetricsContract, implementation: Switchboard.Metrics.Pure

  doctest Switchboard.Metrics.Pure
end
