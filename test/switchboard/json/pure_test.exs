defmodule Switchboard.Json.PureTest do
  use ExUnit.Case, async: true
  use Switchboard.Json.Contract, codec: Switchboard.Json.Pure
end
