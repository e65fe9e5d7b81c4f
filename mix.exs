defmodule Mix.Tasks.Compile.SwitchboardNative.Tee do
  @moduledoc false
  # Streams the build's output live and keeps it for the error message.
  defstruct chunks: []

  defimpl Collectable do
    def into(tee) do
      fun = fn
        acc, {:cont, chunk} ->
          IO.write(chunk)
          %{acc | chunks: [chunk | acc.chunks]}

        acc, :done ->
          acc

        _acc, :halt ->
          :ok
      end

      {tee, fun}
    end
  end
end

defmodule Mix.Tasks.Compile.SwitchboardNative do
  @moduledoc """
  Builds the C++ native code (NIF library, test NIF library and port
  programs) with CMake and installs it into this environment's own app
  directory.

  * One CMake build directory per build type, shared by every Mix env
    (`_build/native/<type>`): switching `MIX_ENV` does not rebuild the C++.
  * Artifacts are installed into `_build/<env>/lib/switchboard/priv` (the
    test library into `.../test_priv`), never into a shared project `priv/`.
  * Freshness is judged by the inputs (every file under `c_src/`, the root
    `CMakeLists.txt`, the build type and CMake options) and by the installed
    artifacts themselves: a stamp beside them records the inputs' fingerprint,
    the build type and each artifact's hash. Anything that differs (a Debug
    library installed, a file replaced or missing) reinstalls.

  Set `SWITCHBOARD_BUILD_TYPE=Debug` for a debug build (Release by default).
  """
  use Mix.Task.Compiler

  @native_inputs ["CMakeLists.txt", "c_src"]
  # {artifact in the build's out/, directory under the app}
  @artifacts [
    {"switchboard_nif.so", "priv"},
    {"switchboard_etf_port", "priv"},
    {"switchboard_test_nif.so", "test_priv"}
  ]
  @stamp "switchboard_native.stamp"

  @impl true
  def run(_args) do
    build_type = System.get_env("SWITCHBOARD_BUILD_TYPE", "Release")
    build_dir = build_dir(build_type)
    options = cmake_options(build_type)
    inputs = fingerprint(build_type, options)

    if installed_stamp() == expected_stamp(inputs, build_type) do
      {:noop, []}
    else
      build_stamp = Path.join(build_dir, @stamp)

      if File.read(build_stamp) != {:ok, inputs} or not built?(build_dir) do
        File.mkdir_p!(build_dir)
        cmake!(["-S", File.cwd!(), "-B", build_dir | options], "configure")
        cmake!(["--build", build_dir, "--parallel", "#{System.schedulers_online()}"], "build")
        File.write!(build_stamp, inputs)
      end

      install!(Path.join(build_dir, "out"))
      File.write!(stamp_path(), expected_stamp(inputs, build_type))
      {:ok, []}
    end
  end

  @impl true
  def clean do
    for {artifact, dir} <- @artifacts, do: File.rm_rf!(Path.join(app_dir(dir), artifact))
    File.rm_rf!(stamp_path())
  end

  @doc false
  def build_dir(build_type) do
    Path.join([Path.dirname(Mix.Project.build_path()), "native", String.downcase(build_type)])
  end

  defp app_dir(dir), do: Path.join(Mix.Project.app_path(), dir)
  defp stamp_path, do: Path.join(app_dir("priv"), @stamp)

  defp cmake_options(build_type) do
    [
      "-DCMAKE_BUILD_TYPE=#{build_type}",
      "-DSWITCHBOARD_ERTS_INCLUDE_DIR=#{erts_include_dir()}",
      "-DSWITCHBOARD_BUILD_TEST_NIF=ON",
      "-DSWITCHBOARD_WERROR=#{if System.get_env("CI"), do: "ON", else: "OFF"}"
    ]
  end

  defp erts_include_dir do
    Path.join([:code.root_dir(), "erts-#{:erlang.system_info(:version)}", "include"])
  end

  # Hash of every native input's path, size and mtime, plus the build type
  # and options: cheap to compute and changes whenever a source is touched.
  defp fingerprint(build_type, options) do
    files =
      @native_inputs
      |> Enum.flat_map(fn input ->
        if File.dir?(input), do: Path.wildcard(Path.join(input, "**/*")), else: [input]
      end)
      |> Enum.filter(&File.regular?/1)
      |> Enum.sort()

    stats =
      for file <- files do
        %File.Stat{size: size, mtime: mtime} = File.stat!(file)
        {file, size, mtime}
      end

    hash({build_type, options, stats})
  end

  defp hash(term), do: :crypto.hash(:sha256, :erlang.term_to_binary(term)) |> Base.encode16()

  defp built?(build_dir) do
    Enum.all?(@artifacts, fn {artifact, _} ->
      File.exists?(Path.join([build_dir, "out", artifact]))
    end)
  end

  # What the stamp beside the installed artifacts must say for them to be
  # current: the inputs, the build type, and the hash of each artifact as it
  # is now (so a replaced or missing file is noticed).
  defp expected_stamp(inputs, build_type) do
    artifacts =
      for {artifact, dir} <- @artifacts do
        path = Path.join(app_dir(dir), artifact)

        case File.read(path) do
          {:ok, bytes} -> "#{dir}/#{artifact} #{hash(bytes)}"
          {:error, _} -> "#{dir}/#{artifact} missing"
        end
      end

    Enum.join(["inputs #{inputs}", "build_type #{build_type}" | artifacts], "\n") <> "\n"
  end

  defp installed_stamp do
    case File.read(stamp_path()) do
      {:ok, stamp} -> stamp
      {:error, _} -> nil
    end
  end

  defp cmake!(args, step) do
    # The child build must not inherit the running VM's identity: these
    # variables confuse tools that embed or spawn an Erlang runtime.
    env = for var <- ~w(BINDIR ROOTDIR PROGNAME EMU), do: {var, nil}
    collector = %__MODULE__.Tee{}

    {tee, status} = System.cmd("cmake", args, env: env, stderr_to_stdout: true, into: collector)

    if status != 0 do
      errors =
        tee.chunks
        |> Enum.reverse()
        |> IO.iodata_to_binary()
        |> String.split("\n")
        |> Enum.filter(&(&1 =~ ~r/error/i))
        |> Enum.take(20)
        |> Enum.join("\n")

      Mix.raise("native #{step} failed (cmake exit #{status}):\n" <> errors)
    end
  end

  defp install!(out_dir) do
    for {artifact, dir} <- @artifacts do
      source = Path.join(out_dir, artifact)
      unless File.exists?(source), do: Mix.raise("native build did not produce #{source}")
      target_dir = app_dir(dir)
      # An older compiler linked a shared project priv/ here: never write through it.
      if match?({:ok, %File.Stat{type: :symlink}}, File.lstat(target_dir)),
        do: File.rm!(target_dir)

      File.mkdir_p!(target_dir)
      target = Path.join(target_dir, artifact)
      # Copy under a temporary name then rename: a running VM that has the
      # old library mapped, or a reader of priv/, never sees a half-written file.
      temporary = target <> ".tmp#{System.unique_integer([:positive])}"
      File.cp!(source, temporary)
      %File.Stat{mode: mode} = File.stat!(source)
      File.chmod!(temporary, mode)
      File.rename!(temporary, target)
    end
  end
end

defmodule Switchboard.MixProject do
  use Mix.Project

  # The gateway frames WebSockets with Debian's erlang-cowlib, installed into
  # /usr/lib/erlang/lib: already on the code path when OTP is Debian's; with
  # an OTP installed elsewhere its ebin directory is added here.
  for app <- [:cowlib],
      match?({:error, _}, :code.lib_dir(app)),
      ebin <- Path.wildcard("/usr/lib/erlang/lib/#{app}-*/ebin") do
    Code.prepend_path(ebin)
  end

  def project do
    [
      app: :switchboard,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:switchboard_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      # PropEr ships with Debian's erlang-proper and is used by tests only.
      xref: [exclude: [:proper, :proper_types, :proper_unicode, :jiffy]],
      aliases: aliases()
    ]
  end

  def application do
    [
      extra_applications: [:logger, :crypto, :cowlib],
      mod: {Switchboard.Application, []}
    ]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp aliases do
    [bench: "run"]
  end
end
