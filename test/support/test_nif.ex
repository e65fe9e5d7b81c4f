defmodule Switchboard.Test.NIF do
  @moduledoc false
  # The test NIF library (c_src/test_nif/): NIFs that exercise the boundary
  # itself, never part of the product. Built beside the product library and
  # installed into the app's test_priv/ (not priv/, so no release ships it);
  # bench/ loads this file with Code.require_file for its control rows.
  use Switchboard.NIF.Library,
    library: "switchboard_test_nif",
    dir: "test_priv",
    sources: ["c_src/test_nif/*.cpp", "c_src/nif/nif.cpp", "c_src/nif/scheduling.cpp"]

  defnif diag_add(a, b)
  defnif diag_process_cpu_ns()
  defnif diag_raise(kind)
  defnif diag_probe_new(owner, id)
  defnif diag_probe_id(probe)
  defnif diag_probe_id_borrowed(probe)
  defnif diag_watch(watched, notify, id)
  defnif diag_unwatch(watch)
  defnif diag_non_negative(value)
  defnif diag_next_level(level)
  defnif diag_bytes(binary)
  defnif diag_limits(limits)
  defnif diag_result(kind)
  defnif diag_fnv1a_yielding(binary)
  defnif diag_fnv1a_dirty(binary)
  defnif diag_checked_dirty(value)
  defnif diag_fnv1a_blocking(binary)
  defnif diag_fnv1a_threaded(binary)
  defnif diag_enif_walk(term)
  defnif diag_term_to_binary(term)
  defnif diag_term_to_binary_searched(term, seal_words)
  defnif diag_binary_to_term(binary)
end
