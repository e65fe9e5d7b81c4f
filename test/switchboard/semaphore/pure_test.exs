defmodule Switchboard.Semaphore.PureTest do
  use ExUnit.Case, async: true

  use Switchboard.Contracts.SemaphoreContract,
    implementation: Switchboard.Semaphore.Pure,
    free_within_us: 50_000

  doctest Switchboard.Semaphore.Pure
end
