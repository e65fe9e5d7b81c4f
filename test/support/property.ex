defmodule Switchboard.Property do
  import Bitwise, only: [<<<: 2]
  @moduledoc false
  # PropEr (Debian's erlang-proper) from ExUnit, so properties read naturally:
  #
  #     use Switchboard.Property
  #
  #     property_test "reverse twice is identity", numtests: 200 do
  #       forall list <- list(integer()) do
  #         Enum.reverse(Enum.reverse(list)) == list
  #       end
  #     end
  #
  # A failing property flunks the test with PropEr's shrunk counterexample.

  defmacro __using__(_opts) do
    quote do
      import Switchboard.Property
      import :proper_types, except: [term: 0]
    end
  end

  @doc "Defines an ExUnit test that checks a PropEr property."
  defmacro property_test(name, opts \\ [], do: body) do
    quote do
      test unquote(name) do
        Switchboard.Property.check!(unquote(body), unquote(opts))
      end
    end
  end

  @doc "`forall pattern <- generator do ... end`: the body must return a boolean."
  defmacro forall({:<-, _, [pattern, generator]}, do: body) do
    quote do
      :proper.forall(unquote(generator), fn unquote(pattern) -> unquote(body) end)
    end
  end

  @doc "Runs `property`; raises ExUnit.AssertionError with the shrunk counterexample on failure."
  def check!(property, opts \\ []) do
    numtests = Keyword.get(opts, :numtests, 100)
    max_size = Keyword.get(opts, :max_size, 42)
    proper_opts = [{:numtests, numtests}, {:max_size, max_size}, :quiet, :long_result]

    case :proper.quickcheck(property, proper_opts) do
      true ->
        :ok

      counterexample when is_list(counterexample) ->
        raise ExUnit.AssertionError,
          message:
            "property failed; shrunk counterexample:\n" <>
              inspect(counterexample, pretty: true, charlists: :as_lists)

      other ->
        raise ExUnit.AssertionError, message: "property could not be checked: #{inspect(other)}"
    end
  end

  @doc "Any Erlang term, including maps, pids and references (which `any()` lacks)."
  def any_term do
    :proper_types.sized(fn size -> any_term(size) end)
  end

  defp any_term(0), do: leaf()

  defp any_term(size) do
    smaller =
      :proper_types.resize(div(size, 4), :proper_types.lazy(fn -> any_term(div(size, 4)) end))

    :proper_types.frequency([
      {5, leaf()},
      {1, :proper_types.list(smaller)},
      {1, :proper_types.loose_tuple(smaller)},
      {1, map_of(smaller, smaller)},
      {1, improper_list(smaller)}
    ])
  end

  @doc "A map with keys and values from the given generators (PropEr 1.2 has no map type)."
  def map_of(key, value) do
    :proper_types.bind(
      :proper_types.list(:proper_types.tuple([key, value])),
      &Map.new/1,
      false
    )
  end

  defp improper_list(element) do
    :proper_types.bind(
      :proper_types.tuple([:proper_types.non_empty(:proper_types.list(element)), element]),
      fn {list, tail} -> if is_list(tail), do: list, else: list ++ tail end,
      false
    )
  end

  defp leaf do
    :proper_types.oneof([
      :proper_types.integer(),
      :proper_types.float(),
      :proper_types.oneof([:proper_types.integer(-(1 <<< 70), 1 <<< 70)]),
      :proper_types.atom(),
      :proper_types.binary(),
      :proper_types.bitstring(),
      :proper_types.exactly(self()),
      :proper_types.exactly(make_ref()),
      :proper_types.exactly(:erlang.list_to_port(~c"#Port<0.1>")),
      :proper_types.oneof([
        :proper_types.exactly(1.0),
        :proper_types.exactly(-0.0),
        :proper_types.exactly(0)
      ])
    ])
  end
end
