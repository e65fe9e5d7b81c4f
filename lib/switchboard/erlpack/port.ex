defmodule Switchboard.Erlpack.Port do
  @moduledoc """
  A supervised pool of port programs that decode untrusted External Term
  Format bytes outside the VM, behind `Switchboard.Erlpack.decode/2` with
  `isolation: :port`.

  Each worker owns one `switchboard_etf_port` OS process (the same C++ core
  as the NIF) and sends it one request at a time over `{:packet, 4}`. The
  port validates the bytes under the caller's limits and answers with a
  canonical re-encoding, which the VM reads with `:erlang.binary_to_term/2`
  (`[:safe]` unless `atoms: :create`), or with `{reason, offset}`. Since the
  port cannot see the VM's atom table, it also lists the atom names the
  result needs; when some do not exist, a second request finds where the
  first of them sits, so the error matches the NIF's.

  A port that dies during a request (a crash, `kill -9`) makes that request
  return `{:error, :port_exited}`; the worker starts a new port at once and
  goes on with the requests queued behind it. A request that takes longer
  than `:request_timeout` has its port killed the same way. A caller that
  gives `decode/2` a `:timeout` gets `{:error, :timeout}` once it has waited
  that long, queueing included: a request still queued is dropped, and a
  port still working on it is killed and replaced, so the callers queued
  behind it are not held up. The port program also exits by itself when its
  stdin closes (its worker died), even in the middle of a request. Ports
  start on the first request.

  The pool is started by the application with one worker per scheduler;
  configure it with

      config :switchboard, Switchboard.Erlpack.Port, pool_size: 4, request_timeout: 30_000
  """
  use Supervisor

  alias Switchboard.Erlpack.Fragment
  alias Switchboard.Erlpack.Options
  alias Switchboard.Erlpack.Port.Worker

  # Sizes beyond this are sent as this: the port reads 64-bit signed integers.
  @size_cap 0x3FFFFFFFFFFFFFFF

  @reasons [
    :truncated,
    :bad_version,
    :unknown_tag,
    :depth_exceeded,
    :too_large,
    :decompressed_too_large,
    :bad_compression,
    :invalid_float,
    :duplicate_key,
    :atom_too_long,
    :invalid_utf8,
    :nested_compression,
    :trailing_data,
    :unknown_atom,
    :bad_node,
    :not_plain,
    :invalid_term
  ]

  @doc """
  Starts a pool.

  ## Options

    * `:name` - the pool's name. Defaults to `Switchboard.Erlpack.Port`, the
      pool `Switchboard.Erlpack.decode/2` uses.
    * `:pool_size` - the number of ports. Defaults to the application's
      `:pool_size` setting, or `System.schedulers_online/0`.
    * `:request_timeout` - milliseconds a port may spend on one request
      before it is killed. Defaults to `30_000`.
  """
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []) do
    name = Keyword.get(opts, :name, __MODULE__)
    Supervisor.start_link(__MODULE__, Keyword.put(opts, :name, name), name: name)
  end

  @impl true
  def init(opts) do
    config = Application.get_env(:switchboard, __MODULE__, [])
    name = Keyword.fetch!(opts, :name)
    size = opts[:pool_size] || config[:pool_size] || System.schedulers_online()
    timeout = opts[:request_timeout] || config[:request_timeout] || 30_000
    path = Path.join(:code.priv_dir(:switchboard), "switchboard_etf_port")
    workers = List.to_tuple(for index <- 1..size, do: :"#{name}.Worker#{index}")
    :persistent_term.put({__MODULE__, name}, {workers, :atomics.new(1, [])})

    children =
      for worker <- Tuple.to_list(workers) do
        Supervisor.child_spec({Worker, name: worker, path: path, request_timeout: timeout},
          id: worker
        )
      end

    Supervisor.init(children, strategy: :one_for_one)
  end

  @doc """
  Each worker of `pool`: its pid, its port's OS pid (`nil` before the first
  request) and whether a request is in flight.
  """
  @spec info(atom()) :: [%{worker: pid(), os_pid: non_neg_integer() | nil, busy: boolean()}]
  def info(pool \\ __MODULE__) do
    {workers, _counter} = :persistent_term.get({__MODULE__, pool})
    for worker <- Tuple.to_list(workers), do: Worker.info(worker)
  end

  @doc false
  # Test hook: makes the next port of `pool` sleep for `milliseconds`; the
  # caller waits at most `timeout` (as decode/2's :timeout).
  def sleep(milliseconds, pool \\ __MODULE__, timeout \\ nil) do
    case request({pool, timeout}, {:sleep, milliseconds}) do
      {:ok, :ok} -> :ok
      error -> error
    end
  end

  @doc false
  # Switchboard.Erlpack.decode/2 with isolation: :port, options validated
  # (Switchboard.Erlpack.Options.decode!/2).
  def decode(binary, options, pool \\ __MODULE__)

  def decode(binary, %{max_size: max_size}, _pool) when byte_size(binary) > max_size,
    do: {:error, {:too_large, 0}}

  def decode(binary, options, pool) do
    %{atoms: atoms, trailing: trailing} = options
    limits = [min(options.max_depth, @size_cap), min(options.max_size, @size_cap)]

    limits =
      limits ++ [min(options.max_decompressed, @size_cap), trailing == :allow, options.plain]

    allowance = if atoms == :create, do: Options.new_atom_allowance(options.max_new_atoms)
    call = {pool, options.timeout}
    request = List.to_tuple([:decode, binary, atoms | limits])

    case request(call, request) do
      {:ok, {:ok, canonical, used, needed, opaque}} when is_binary(canonical) ->
        with :ok <- check_atoms(needed, call, binary, atoms, limits, allowance) do
          with {:ok, term} <- read_term(canonical, atoms),
               :ok <- check_opaque(opaque, call, binary, atoms, limits) do
            result(term, binary, used, trailing)
          else
            :refused -> refused(opaque, call, binary, atoms, limits)
            error -> error
          end
        end

      {:ok, {:error, reason, offset, needed, opaque}} when reason in @reasons ->
        with :ok <- check_atoms(needed, call, binary, atoms, limits, allowance),
             :ok <- check_opaque(opaque, call, binary, atoms, limits),
             do: {:error, {reason, offset}}

      {:ok, _unexpected} ->
        {:error, {:invalid_term, 0}}

      {:error, _} = error ->
        error
    end
  end

  # With atoms: :create, the names past the allowance (in document order,
  # as the port lists them) are where the decode is refused.
  defp check_atoms(names, call, binary, :create, limits, allowance) do
    case names |> Enum.reject(&atom_exists?/1) |> Enum.drop(allowance) do
      [] ->
        :ok

      excess ->
        case locate(call, binary, :existing, limits, excess) do
          {:error, {:unknown_atom, offset}} -> {:error, {:too_many_atoms, offset}}
          other -> other
        end
    end
  end

  defp check_atoms(names, call, binary, atoms, limits, _allowance),
    do: check_atoms(names, call, binary, atoms, limits)

  # The names the result needs that this VM has no atom for send a second
  # request: where does the first of them cause a refusal?
  defp check_atoms(_names, _call, _binary, :create, _limits), do: :ok

  defp check_atoms(names, call, binary, atoms, limits) do
    case Enum.reject(names, &atom_exists?/1) do
      [] -> :ok
      unknown -> locate(call, binary, atoms, limits, unknown)
    end
  end

  # Where the first of `unknown` causes a refusal.
  defp locate(call, binary, atoms, limits, unknown) do
    case request(call, List.to_tuple([:locate, binary, atoms | limits] ++ [unknown])) do
      {:ok, {:error, reason, offset}} when reason in @reasons -> {:error, {reason, offset}}
      {:ok, _none} -> {:error, {:invalid_term, 0}}
      {:error, _} = error -> error
    end
  end

  defp atom_exists?(name) do
    _ = :erlang.binary_to_existing_atom(name, :utf8)
    true
  rescue
    ArgumentError -> false
  end

  defp read_term(canonical, atoms) do
    options = if atoms == :create, do: [], else: [:safe]
    {:ok, :erlang.binary_to_term(canonical, options)}
  rescue
    ArgumentError -> :refused
  end

  defp result(term, binary, used, :allow),
    do: {:ok, term, binary_part(binary, used, byte_size(binary) - used)}

  defp result(term, _binary, _used, :error), do: {:ok, term}

  defp refused(opaque, call, binary, atoms, limits) do
    with :ok <- check_opaque(opaque, call, binary, atoms, limits),
         do: {:error, {:invalid_term, 0}}
  end

  # Pids, ports, references and funs the VM refuses (a local pid that
  # cannot exist here, say): the first one, and where it starts.
  defp check_opaque(opaque, call, binary, atoms, limits) do
    # Refused, or the fragments' seal, which decoded data never holds.
    case Enum.find_index(opaque, &(read_term(&1, atoms) in [:refused, {:ok, Fragment.seal()}])) do
      nil ->
        :ok

      index ->
        case request(call, List.to_tuple([:find_opaque, binary, atoms | limits] ++ [index])) do
          {:ok, {:error, :invalid_term, offset}} -> {:error, {:invalid_term, offset}}
          {:ok, _none} -> {:error, {:invalid_term, 0}}
          {:error, _} = error -> error
        end
    end
  end

  # Sends one request to the next worker (round robin) and returns
  # {:ok, reply}, {:error, :port_exited} or {:error, :timeout}.
  defp request({pool, timeout}, request) do
    {workers, counter} = :persistent_term.get({__MODULE__, pool})
    index = rem(:atomics.add_get(counter, 1, 1), tuple_size(workers))
    frame = :erlang.term_to_binary(request)

    case Worker.request(elem(workers, index), frame, timeout) do
      {:ok, reply} -> parse_reply(reply)
      {:error, _} = error -> error
    end
  end

  defp parse_reply(reply) do
    {:ok, :erlang.binary_to_term(reply, [:safe])}
  rescue
    ArgumentError -> {:ok, :unreadable}
  end
end
