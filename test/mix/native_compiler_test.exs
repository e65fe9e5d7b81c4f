defmodule Mix.Tasks.Compile.SwitchboardNativeTest do
  # Drives the real compiler task (this project's mix.exs) in a scratch
  # project whose CMakeLists.txt only writes its build type into each
  # artifact and logs each configure: fast, and it shows which library each
  # env would load.
  use ExUnit.Case, async: true

  @moduletag :tmp_dir
  @moduletag timeout: 120_000

  @fake_cmake """
  cmake_minimum_required(VERSION 3.20)
  project(fake NONE)
  file(APPEND ${CMAKE_SOURCE_DIR}/configures.log "${CMAKE_BUILD_TYPE}\\n")
  file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/out)
  foreach(artifact switchboard_nif.so switchboard_etf_port switchboard_test_nif.so)
    file(WRITE ${PROJECT_BINARY_DIR}/out/${artifact} "${CMAKE_BUILD_TYPE}")
  endforeach()
  """

  setup %{tmp_dir: dir} do
    File.cp!("mix.exs", Path.join(dir, "mix.exs"))
    File.write!(Path.join(dir, "CMakeLists.txt"), @fake_cmake)
    File.mkdir_p!(Path.join(dir, "c_src"))
    File.write!(Path.join(dir, "c_src/source.cpp"), "// one\n")
    File.mkdir_p!(Path.join(dir, "lib"))
    :ok
  end

  defp compile(dir, env, build_type) do
    {output, status} =
      System.cmd("mix", ["compile"],
        cd: dir,
        stderr_to_stdout: true,
        env: [
          {"MIX_ENV", env},
          {"SWITCHBOARD_BUILD_TYPE", build_type},
          {"MIX_BUILD_PATH", nil},
          {"CI", nil}
        ]
      )

    assert status == 0, output
  end

  defp installed(dir, env, artifact \\ "switchboard_nif.so") do
    File.read!(Path.join([dir, "_build", env, "lib/switchboard/priv", artifact]))
  end

  defp configures(dir), do: dir |> Path.join("configures.log") |> File.read!() |> String.split()

  test "each env runs the library it built, and switching env does not rebuild", %{tmp_dir: dir} do
    compile(dir, "test", "Release")
    compile(dir, "dev", "Debug")
    assert installed(dir, "dev") == "Debug"

    # The reproduced bug: this was a no-op that left the tests on the Debug
    # library the dev build had just installed into the shared priv/.
    compile(dir, "test", "Release")
    assert installed(dir, "test") == "Release"
    assert installed(dir, "dev") == "Debug"

    assert File.read!(
             Path.join([dir, "_build/test/lib/switchboard/test_priv/switchboard_test_nif.so"])
           ) ==
             "Release"

    # Both builds are current: nothing configures again.
    compile(dir, "dev", "Debug")
    compile(dir, "test", "Release")
    assert configures(dir) == ["Release", "Debug"]
    assert installed(dir, "dev") == "Debug"
    assert installed(dir, "test") == "Release"

    # A third env shares the Release build directory: installed, not rebuilt.
    compile(dir, "prod", "Release")
    assert installed(dir, "prod") == "Release"
    assert configures(dir) == ["Release", "Debug"]
    refute File.exists?(Path.join(dir, "priv"))
  end

  test "an installed artifact that changed or vanished is reinstalled", %{tmp_dir: dir} do
    compile(dir, "test", "Release")
    File.write!(Path.join([dir, "_build/test/lib/switchboard/priv/switchboard_nif.so"]), "Debug")
    compile(dir, "test", "Release")
    assert installed(dir, "test") == "Release"

    File.rm!(Path.join([dir, "_build/test/lib/switchboard/priv/switchboard_etf_port"]))
    compile(dir, "test", "Release")
    assert installed(dir, "test", "switchboard_etf_port") == "Release"
    assert configures(dir) == ["Release"]
  end

  test "a changed native source rebuilds", %{tmp_dir: dir} do
    compile(dir, "test", "Release")
    File.write!(Path.join(dir, "c_src/source.cpp"), "// two, longer\n")
    compile(dir, "test", "Release")
    assert configures(dir) == ["Release", "Release"]
  end
end
