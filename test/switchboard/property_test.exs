defmodule Switchboard.PropertyTest do
  use ExUnit.Case, async: true
  use Switchboard.Property

  property_test "PropEr runs from ExUnit", numtests: 50 do
    forall list <- list(integer()) do
      Enum.reverse(Enum.reverse(list)) == list
    end
  end

  test "a failing property reports the shrunk counterexample" do
    error =
      assert_raise ExUnit.AssertionError, fn ->
        check!(forall(n <- integer(), do: n < 10), numtests: 500)
      end

    # PropEr shrinks any failing integer down to the boundary.
    assert error.message =~ "[10]"
  end

  property_test "any_term/0 generates maps, pids and references", numtests: 300 do
    forall t <- any_term() do
      :erlang.binary_to_term(:erlang.term_to_binary(t)) === t
    end
  end
end
