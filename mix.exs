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
  Builds the C++ native code (NIF library and port programs) with CMake.

  Runs CMake configure + build with live output, fails the compile with the
  build's error, does nothing when no native source changed, installs the
  artifacts into `priv/` atomically and cleans on `mix clean`.

  Set `SWITCHBOARD_BUILD_TYPE=Debug` for a debug build (Release by default).
  """
  use Mix.Task.Compiler

  @native_inputs ["CMakeLists.txt", "c_src"]
  @artifacts ["switchboard_nif.so", "switchboard_etf_port"]

  @impl true
  def run(_args) do
    build_type = System.get_env("SWITCHBOARD_BUILD_TYPE", "Release")
    build_dir = build_dir(build_type)
    fingerprint = fingerprint(build_type)
    manifest = Path.join(build_dir, "switchboard.fingerprint")

    if File.read(manifest) == {:ok, fingerprint} and artifacts_installed?() do
      {:noop, []}
    else
      File.mkdir_p!(build_dir)

      cmake!(
        [
          "-S",
          File.cwd!(),
          "-B",
          build_dir,
          "-DCMAKE_BUILD_TYPE=#{build_type}",
          "-DSWITCHBOARD_ERTS_INCLUDE_DIR=#{erts_include_dir()}",
          "-DSWITCHBOARD_WERROR=#{if System.get_env("CI"), do: "ON", else: "OFF"}"
        ],
        "configure"
      )

      cmake!(["--build", build_dir, "--parallel", "#{System.schedulers_online()}"], "build")
      install!(Path.join(build_dir, "out"))
      # priv/ may be new: link it into the app's build path now.
      Mix.Project.build_structure()
      File.write!(manifest, fingerprint)
      {:ok, []}
    end
  end

  @impl true
  def clean do
    File.rm_rf!(Path.join(Mix.Project.build_path(), "native"))
    Enum.each(@artifacts, &File.rm_rf!(Path.join("priv", &1)))
  end

  defp build_dir(build_type),
    do: Path.join([Mix.Project.build_path(), "native", String.downcase(build_type)])

  defp erts_include_dir do
    Path.join([:code.root_dir(), "erts-#{:erlang.system_info(:version)}", "include"])
  end

  # Hash of every native input's path, size and mtime, plus the build type:
  # cheap to compute and changes whenever a source file is touched.
  defp fingerprint(build_type) do
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

    :crypto.hash(:sha256, :erlang.term_to_binary({build_type, stats})) |> Base.encode16()
  end

  defp artifacts_installed?, do: Enum.all?(@artifacts, &File.exists?(Path.join("priv", &1)))

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
    File.mkdir_p!("priv")

    for artifact <- @artifacts do
      source = Path.join(out_dir, artifact)
      unless File.exists?(source), do: Mix.raise("native build did not produce #{source}")
      target = Path.join("priv", artifact)
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
      xref: [exclude: [:proper, :proper_types]],
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
