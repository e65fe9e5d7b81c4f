defmodule Switchboard.ReloadTest do
  # Deletes, purges and reloads Switchboard.NIF: must not run beside other tests.
  use ExUnit.Case, async: false

  alias Switchboard.Fanout
  alias Switchboard.Fanout.Group
  alias Switchboard.NIF
  alias Switchboard.SortedSet

  # The sequence of a hot fix in a release, or `r Switchboard.NIF` after
  # `:code.purge/1` in a shell: the old module (and its library instance) is
  # gone before the new one loads, so the VM runs `load`, not `upgrade`, and
  # the resource types are new. Sets and groups made before must keep
  # working with the new code.
  test "sets and groups made before a delete + purge + reload of Switchboard.NIF keep working" do
    set = SortedSet.from_enumerable([3, 1, 2])
    group = Group.new([self()])

    assert :code.delete(NIF)
    :code.purge(NIF)
    assert {:module, NIF} = :code.load_file(NIF)

    assert SortedSet.to_list(set) == [1, 2, 3]
    assert SortedSet.add(set, 0) |> SortedSet.size() == 4
    assert SortedSet.copy(set) |> SortedSet.to_list() == [0, 1, 2, 3]
    assert Group.size(group) == 1
    assert Fanout.send(group, :after_reload) == %{local: 1, remote: 0, skipped: 0}
    assert_receive :after_reload

    # New ones work beside them, and the two kinds are still told apart.
    assert SortedSet.from_enumerable([:new]) |> SortedSet.to_list() == [:new]

    assert_raise ArgumentError,
                 ~r/^expected argument 1 to be a Switchboard.SortedSet reference/,
                 fn ->
                   NIF.sorted_set_size(group.ref)
                 end
  end
end
