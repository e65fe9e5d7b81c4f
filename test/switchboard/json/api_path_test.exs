defmodule Switchboard.Json.ApiPathTest do
  # The encoder reads small integers, atoms, list cells, heap binaries and
  # flat maps in place when this VM's term layout passes a check made once
  # (json_nif.cpp, `layout`), and through the NIF API otherwise. On the VM
  # the tests run on, the in-place path is what every other test exercises;
  # here a :peer node started with SWITCHBOARD_JSON_API_ONLY=1 takes the API
  # path, and both must write the same bytes (and the same errors) as the
  # pure twin for the same terms.
  use ExUnit.Case, async: false
  use Switchboard.Property

  @moduletag :distributed
  @moduletag timeout: 120_000

  alias Switchboard.Json.{Contract, Pure}
  alias Switchboard.{NIF, Peer}

  setup_all do
    Peer.ensure_distributed!("switchboard_test")
    {peer, node} = Peer.start("json_api_peer", [], [{"SWITCHBOARD_JSON_API_ONLY", "1"}])
    on_exit(fn -> Peer.stop(peer) end)
    %{node: node}
  end

  test "the peer reads through the API", %{node: node} do
    assert :erpc.call(node, NIF, :json_reads_in_place, []) == false
    # This VM: in place on the layout it was written for (OTP 25, 64-bit);
    # on any other the check fails and every encode goes through the API.
    otp25_64? = System.otp_release() == "25" and :erlang.system_info(:wordsize) == 8
    assert NIF.json_reads_in_place() == otp25_64?
  end

  property_test "the API path and this VM's path write the same bytes as the twin",
    numtests: 150,
    max_size: 30 do
    forall {term, mode} <-
             {:proper_types.oneof([
                Contract.json_term(),
                Contract.gateway_event(),
                Switchboard.Property.any_term()
              ]), :proper_types.elements([:json, :html_safe, :unicode_safe])} do
      node = hd(Node.list())
      expected = reason(Pure.encode(term, escape: mode))

      reason(Switchboard.Json.encode(term, escape: mode)) == expected and
        reason(:erpc.call(node, Switchboard.Json, :encode, [term, [escape: mode]])) == expected and
        reason(:erpc.call(node, Switchboard.Json, :encode, [term, [maps: :strict]])) ==
          reason(Pure.encode(term, maps: :strict))
    end
  end

  # An error compared by its reason: its message inspects the bad term, and
  # a pid or reference prints differently on the node that made the error.
  defp reason({:error, %{reason: reason}}), do: {:error, reason}
  defp reason(ok), do: ok
end
