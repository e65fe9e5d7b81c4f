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

  # A reload from another file (a copy of the .so at another path, or a
  # rebuild) maps a second copy of the library, with its own statics and
  # resource types: resources of the first copy's types are not ones it may
  # read (their layout may differ), and its errors say so.
  test "a reload from a copy of the library at another path names the unloaded library" do
    set = SortedSet.from_enumerable([3, 1, 2])
    group = Group.new([self()])
    original = List.to_string(:code.lib_dir(:switchboard))

    # The code server takes an application's directory by its name only.
    scratch = Path.join(System.tmp_dir!(), "reload_#{System.unique_integer([:positive])}")
    copy = Path.join(scratch, "switchboard")

    File.mkdir_p!(Path.join(copy, "priv"))
    File.ln_s!(Path.join(original, "ebin"), Path.join(copy, "ebin"))

    for file <- File.ls!(Path.join(original, "priv")),
        do: File.cp!(Path.join([original, "priv", file]), Path.join([copy, "priv", file]))

    try do
      reload_from(Path.join(copy, "ebin"))
      assert :code.lib_dir(:switchboard) == String.to_charlist(copy)
      # Another copy: its own counters start again.
      assert NIF.library_info().instances == 1

      # New sets and groups work; old ones are refused, saying why.
      assert SortedSet.from_enumerable([:new]) |> SortedSet.to_list() == [:new]
      assert Group.size(Group.new([self()])) == 1

      for {call, description} <- [
            {fn -> NIF.sorted_set_size(set.ref) end, "a Switchboard.SortedSet reference"},
            {fn -> SortedSet.to_list(set) end, "a Switchboard.SortedSet reference"},
            {fn -> Group.size(group) end, ""}
          ] do
        error = assert_raise ArgumentError, call

        assert error.message =~
                 ~r/^expected argument 1 to be #{description}.* of the loaded library \(this one belongs to a Switchboard.NIF library that was unloaded\), got: #Reference</
      end

      # Any other term is refused as before.
      assert_raise ArgumentError,
                   ~r/^expected argument 1 to be a Switchboard.SortedSet reference, got: #Reference/,
                   fn -> NIF.sorted_set_size(make_ref()) end

      made_by_copy = SortedSet.from_enumerable([:copy])
      reload_from(Path.join(original, "ebin"))

      # Back on the first copy (the same file, still mapped): its sets work
      # again, and the second copy's are the unloaded ones now.
      assert SortedSet.to_list(set) == [1, 2, 3]

      assert_raise ArgumentError,
                   ~r/this one belongs to a Switchboard.NIF library that was unloaded/,
                   fn -> SortedSet.to_list(made_by_copy) end
    after
      if :code.lib_dir(:switchboard) != String.to_charlist(original),
        do: reload_from(Path.join(original, "ebin"))

      File.rm_rf!(scratch)
    end
  end

  defp reload_from(ebin) do
    true = :code.replace_path(:switchboard, String.to_charlist(ebin))
    assert :code.delete(NIF)
    :code.purge(NIF)
    assert {:module, NIF} = :code.load_file(NIF)
  end
end
