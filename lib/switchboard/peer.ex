defmodule Switchboard.Peer do
  @moduledoc false
  # Real `:peer` nodes on this host, for the simulator's `--nodes` and the
  # distributed tests: this node made distributed on demand, peers started
  # with this node's code path and Switchboard running.

  @doc "Makes this node distributed (long names on 127.0.0.1) unless it is."
  def ensure_distributed!(prefix) do
    unless Node.alive?() do
      # epmd ships with Erlang; -daemon is a no-op when it already runs.
      {_, 0} = System.cmd("epmd", ["-daemon"])
      name = :"#{prefix}_#{System.os_time(:millisecond)}_#{:os.getpid()}@127.0.0.1"
      {:ok, _} = :net_kernel.start([name, :longnames])
    end

    :ok
  end

  @doc """
  Starts a peer running Switchboard, its application env set from `env`
  first and its OS environment from `os_env` (`[{name, value}]` strings);
  returns `{peer, node}`.
  """
  def start(prefix, env \\ [], os_env \\ []) do
    paths = Enum.reject(:code.get_path(), &List.starts_with?(&1, :code.root_dir()))
    name = :"#{prefix}_#{System.unique_integer([:positive])}_#{:os.getpid()}"

    {:ok, peer, node} =
      :peer.start(%{
        name: name,
        host: ~c"127.0.0.1",
        longnames: true,
        env:
          for({name, value} <- os_env, do: {String.to_charlist(name), String.to_charlist(value)}),
        # A star around this node: peers do not mesh, so one going down
        # does not make `global` disconnect the others.
        args: [~c"-connect_all", ~c"false" | Enum.flat_map(paths, &[~c"-pa", &1])]
      })

    :ok = :erpc.call(node, Application, :load, [:switchboard])

    for {key, value} <- env,
        do: :ok = :erpc.call(node, Application, :put_env, [:switchboard, key, value])

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:switchboard])
    {peer, node}
  end

  @doc "Stops a peer; a peer already gone is fine."
  def stop(peer) do
    :peer.stop(peer)
  catch
    :exit, _ -> :ok
  end
end
