defmodule Switchboard.NIF.Library do
  @moduledoc false
  # What every module that owns a NIF library shares (the product's
  # Switchboard.NIF, the tests' Switchboard.Test.NIF):
  #
  #   use Switchboard.NIF.Library, library: "switchboard_nif"
  #   defnif sorted_set_add(set, item)
  #
  # `defnif name(args)` declares the NIF that C++ registered as `name`
  # (SWITCHBOARD_NIF(name, flags)): the library knows it as `nif_name`, the
  # stub here; the public `name` calls it and turns the boundary's
  # tagged bad-argument error into an ArgumentError worded by
  # Switchboard.Errors (Elixir inspect format, like the pure twins).
  #
  # Loading compares the library's table with the stubs and fails naming each
  # stub without a NIF; when the VM refuses the library because a NIF has no
  # stub, the error names every NIF registered in the library's `sources`
  # (read at compile time) that has no stub, not only the VM's first.
  #
  # Options: `library` (file name without .so), `dir` (under the app's lib
  # dir, "priv" by default), `sources` (globs of the library's C++ files,
  # relative to the project root; also @external_resource).

  defmacro __using__(opts) do
    library = Keyword.fetch!(opts, :library)
    priv = Keyword.get(opts, :dir, "priv")
    sources = Enum.flat_map(Keyword.get(opts, :sources, []), &Path.wildcard/1)
    registered = registered_names(sources)

    quote do
      for source <- unquote(sources), do: @external_resource(source)
      @switchboard_registered unquote(registered)
      import Switchboard.NIF.Library, only: [defnif: 1]
      Module.register_attribute(__MODULE__, :switchboard_nifs, accumulate: true)
      @on_load :__load_nif__
      @before_compile Switchboard.NIF.Library
      @switchboard_library {unquote(priv), unquote(library)}

      # The boundary's own NIFs, in every library (c_src/nif/nif.cpp,
      # scheduling.cpp): its NIF table, its counters, its slice budget.
      defnif library_functions()
      defnif library_info()
      defnif set_work_budget(bytes_or_default)
    end
  end

  defmacro __before_compile__(_env) do
    quote do
      @doc false
      def __nifs__, do: Enum.sort(@switchboard_nifs)

      @doc false
      def __load_nif__ do
        {dir, library} = @switchboard_library
        path = Path.join([:code.lib_dir(:switchboard), dir, library])
        # The resource types of the copy of the library loaded before (a
        # token from its library_info/0): a copy from another file tells
        # their resources apart, to say in its errors that they belong to
        # an unloaded library (c_src/nif/nif.hpp, note_resource_type).
        token_key = {__MODULE__, :switchboard_resource_types}
        # load_nif must be called from the module that owns the library.
        result = :erlang.load_nif(String.to_charlist(path), :persistent_term.get(token_key, 0))

        # A local call: the module is not callable from outside until on_load returns.
        functions = if result == :ok, do: nif_library_functions(), else: []

        if result == :ok,
          do: :persistent_term.put(token_key, nif_library_info().resource_types)

        Switchboard.NIF.Library.loaded(
          __MODULE__,
          path,
          result,
          functions,
          @switchboard_nifs,
          @switchboard_registered
        )
      end
    end
  end

  defmacro defnif({name, _, args}) do
    args = if is_list(args), do: args, else: []
    arity = length(args)
    stub = :"nif_#{name}"
    vars = Macro.generate_arguments(arity, __CALLER__.module)
    ignored = Enum.map(vars, fn {var, meta, context} -> {:"_#{var}", meta, context} end)

    quote do
      @switchboard_nifs {unquote(stub), unquote(arity)}

      @doc false
      def unquote(name)(unquote_splicing(vars)) do
        unquote(stub)(unquote_splicing(vars))
      catch
        :error, {:switchboard_badarg, subject, expected, term} ->
          reraise Switchboard.Errors.bad_argument(subject, expected, term), __STACKTRACE__
      end

      # The NIF itself: public so that bench/boundary.exs can time the
      # wrapper against it; callers use `name`, whose errors read well.
      @doc false
      def unquote(stub)(unquote_splicing(ignored)), do: :erlang.nif_error(:not_loaded)
    end
  end

  @doc false
  def loaded(module, path, result, functions, stubs, registered) do
    case result do
      :ok ->
        check_stubs(module, path, functions, stubs)

      {:error, {:reload, _}} ->
        :ok

      {:error, {:bad_lib, text}} ->
        fail(module, path, missing_stub_hint(module, text, stubs, registered))

      {:error, {reason, text}} ->
        fail(module, path, "#{reason}: #{text}")
    end
  end

  # Every stub must have a NIF: a stub left behind would raise :not_loaded
  # only when called.
  defp check_stubs(module, path, functions, stubs) do
    library = MapSet.new(functions)

    case Enum.reject(stubs, &MapSet.member?(library, &1)) do
      [] -> :ok
      missing -> fail(module, path, "no NIF in the library for #{names(missing)}")
    end
  end

  # The VM names the first NIF without a stub: say what to add, and name the
  # others the sources register.
  defp missing_stub_hint(module, text, stubs, registered) do
    text = List.to_string(text)

    case Regex.run(~r/Function not found .*:nif_(\w+)\/(\d+)/, text) do
      [_, name, arity] ->
        args = Enum.map_join(1..String.to_integer(arity)//1, ", ", &"arg#{&1}")
        stubbed = MapSet.new(stubs, fn {stub, _} -> Atom.to_string(stub) end)
        others = Enum.reject(registered, &(&1 == name or MapSet.member?(stubbed, "nif_" <> &1)))

        "the library defines the NIF #{name}/#{arity} but #{inspect(module)} has no stub " <>
          "for it: add `defnif #{name}(#{args})`" <>
          if(others == [], do: "", else: "; nor for #{Enum.join(others, ", ")}") <>
          " (#{text})"

      nil ->
        text
    end
  end

  # Names given to SWITCHBOARD_NIF / SWITCHBOARD_RAW_NIF in the sources.
  @doc false
  def registered_names(sources) do
    sources
    |> Enum.flat_map(&Regex.scan(~r/^\s*SWITCHBOARD_(?:RAW_)?NIF\(\s*(\w+)/m, File.read!(&1)))
    |> Enum.map(fn [_, name] -> name end)
    |> Enum.uniq()
    |> Enum.sort()
  end

  defp names(functions), do: Enum.map_join(functions, ", ", fn {f, a} -> "#{f}/#{a}" end)

  defp fail(module, path, message) do
    message = "#{inspect(module)} could not load #{path}.so: #{message}"
    :logger.error(message)
    {:error, message}
  end
end
