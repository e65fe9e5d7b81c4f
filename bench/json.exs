# Switchboard.Json (NIF) against jiffy (Debian's erlang-jiffy), the pure twin
# and the VM's own term_to_binary/binary_to_term (the floor: no JSON codec
# reads or builds terms faster than the VM's ETF codec), on gateway payloads
# as Discord sends them in JSON (snowflakes as strings); the per-session
# envelope with a fragment against re-encoding the event per session; and
# scheduler latency while multi-MB inputs are encoded and decoded.
#
# Times are CPU time (the VM's, :erlang.statistics(:runtime)), robust on a
# shared machine where wall time is not: blocks of about 100 ms of one
# implementation, the implementations taking turns in each round, the
# median of the rounds kept; ratios are the median of each round's ratio.
# Start the VM so that idle schedulers sleep instead of spinning:
#
#   ELIXIR_ERL_OPTIONS="+sbwt none +sbwtdcpu none +sbwtdio none" \
#     MIX_ENV=prod mix run bench/json.exs
#   (SWITCHBOARD_BENCH_QUICK=1: fewer rounds, about a minute)
#
# Targets (issue 11): encode >= 2x jiffy's speed and decode >= 3x on each
# payload; native >= 5x the twin; envelope with a fragment >= 5x re-encoding.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.Json
alias Switchboard.Json.Pure

[jiffy_ebin | _] = Path.wildcard("/usr/lib/erlang/lib/jiffy-*/ebin")
true = :code.add_pathz(String.to_charlist(jiffy_ebin))

defmodule JsonBench do
  # Discord's JSON gateway sends snowflakes as decimal strings.
  def id(n), do: Integer.to_string(1_200_000_000_000_000_000 + n * 4_194_304)

  def author(n) do
    %{
      "id" => id(n),
      "username" => "someone#{n}",
      "global_name" => "Some One #{n} ✨",
      "avatar" => "9f8e7d6c5b4a39281706f5e4d3c2b1a#{rem(n, 10)}",
      "discriminator" => "0",
      "public_flags" => 256,
      "bot" => false
    }
  end

  # About 1 KB of JSON.
  def message_create(n) do
    %{
      "type" => 0,
      "tts" => false,
      "timestamp" => "2024-05-06T07:08:09.101000+00:00",
      "pinned" => false,
      "nonce" => id(n + 50),
      "mentions" => [author(n + 3)],
      "mention_roles" => [id(7), id(8)],
      "mention_everyone" => false,
      "member" => %{
        "roles" => [id(7), id(9)],
        "premium_since" => nil,
        "nick" => "nick \"#{n}\"",
        "mute" => false,
        "joined_at" => "2022-01-02T03:04:05.600000+00:00",
        "flags" => 0,
        "deaf" => false
      },
      "id" => id(n),
      "flags" => 0,
      "embeds" => [],
      "edited_timestamp" => nil,
      "content" => "hey <@#{id(n + 3)}>, the build on main is green again — ship it? 🚀",
      "components" => [],
      "channel_id" => id(2),
      "author" => author(n),
      "attachments" => [],
      "guild_id" => id(1)
    }
  end

  # About 200 bytes of JSON.
  def presence_update(n) do
    %{
      "user" => %{"id" => id(n)},
      "status" => "idle",
      "guild_id" => id(1),
      "client_status" => %{"mobile" => "idle"},
      "activities" => [%{"type" => 4, "state" => "coding", "name" => "Custom Status"}]
    }
  end

  def guild_member(n) do
    %{
      "user" => author(n),
      "roles" => [id(7 + rem(n, 4))],
      "premium_since" => nil,
      "pending" => false,
      "nick" => if(rem(n, 3) == 0, do: "member #{n}"),
      "mute" => false,
      "joined_at" => "2023-06-07T08:09:10.111000+00:00",
      "flags" => 0,
      "deaf" => false,
      "communication_disabled_until" => nil
    }
  end

  # About 300 KB of JSON with 1,000 members.
  def guild_create(members) do
    %{
      "id" => id(1),
      "name" => "Big Guild",
      "member_count" => members,
      "large" => true,
      "features" => ["COMMUNITY", "DISCOVERABLE", "ANIMATED_BANNER"],
      "roles" =>
        Enum.map(1..15, &%{"id" => id(&1), "name" => "role-#{&1}", "permissions" => "2248"}),
      "channels" =>
        Enum.map(1..40, &%{"id" => id(100 + &1), "name" => "chan-#{&1}", "type" => 0}),
      "members" => Enum.map(1..members, &guild_member/1)
    }
  end

  def repeat(0, _fun, _input), do: :ok

  def repeat(n, fun, input) do
    fun.(input)
    repeat(n - 1, fun, input)
  end

  # Calls with options, as functions compiled here (a closure written at the
  # script's top level would run in the interpreter).
  def jiffy_encode(term), do: :jiffy.encode(term, [:use_nil])
  def jiffy_decode(text), do: :jiffy.decode(text, [:return_maps, :use_nil])
  def json_decode(text), do: Json.decode!(text)
  def pure_decode(text), do: Pure.decode!(text)

  def frame(seq, d), do: %{"op" => 0, "s" => seq, "t" => "MESSAGE_CREATE", "d" => d}

  def frames(encode, event, sessions), do: for(seq <- 1..sessions, do: encode.(frame(seq, event)))

  # The floor of a binary frame holding the event: the frame with no payload,
  # and a new binary of the event's bytes (what any binary output costs).
  def floor_frames(text, sessions),
    do: for(seq <- 1..sessions, do: {Json.encode!(frame(seq, nil)), :binary.copy(text)})

  # The floor of any NIF call: a typed NIF that does nothing but count.
  def empty_nif(_), do: Switchboard.NIF.json_dirty_runs()
end

payloads = [
  {"MESSAGE_CREATE", JsonBench.message_create(1), nil},
  {"PRESENCE_UPDATE", JsonBench.presence_update(1), nil},
  {"GUILD_CREATE (1,000 members)", JsonBench.guild_create(1000), nil}
]

size_rows =
  for {name, term, _} <- payloads do
    [
      {"payload", name},
      {"JSON bytes", byte_size(Json.encode!(term))},
      {"ETF bytes", byte_size(:erlang.term_to_binary(term))}
    ]
  end

defmodule CpuRounds do
  # CPU ns per op of each implementation: each block (ops in a fresh
  # process, about `block_ms` long) is timed with the VM's CPU clock (ms),
  # the implementations take turns in each round; per implementation the
  # median over rounds, and per candidate the median of its ratio to the
  # baseline within each round.
  def measure(impls, input, rounds, block_ms) do
    counts = for {label, fun} <- impls, do: {label, fun, ops_per_block(fun, input, block_ms)}

    per_round =
      for _ <- 1..rounds do
        for {label, fun, ops} <- counts, do: {label, cpu_ns(fun, input, ops) / ops}
      end

    labels = Enum.map(counts, &elem(&1, 0))
    [base | _] = labels

    for label <- labels do
      times = Enum.map(per_round, &List.keyfind(&1, label, 0)) |> Enum.map(&elem(&1, 1))

      ratios =
        Enum.map(per_round, fn round ->
          elem(List.keyfind(round, base, 0), 1) / max(elem(List.keyfind(round, label, 0), 1), 1.0)
        end)

      {label, median(times), median(ratios)}
    end
  end

  defp ops_per_block(fun, input, block_ms) do
    max(div(calibrate(fun, input, 1) * block_ms, 10), 1)
  end

  # Ops that take about 10 ms of wall time.
  defp calibrate(fun, input, ops) do
    {us, _} = :timer.tc(fn -> run_block(fun, input, ops) end)

    if us >= 10_000 or ops > 10_000_000,
      do: trunc(ops * 10_000 / max(us, 1)),
      else: calibrate(fun, input, ops * 4)
  end

  defp cpu_ns(fun, input, ops) do
    {before, _} = :erlang.statistics(:runtime)
    run_block(fun, input, ops)
    {after_, _} = :erlang.statistics(:runtime)
    (after_ - before) * 1.0e6
  end

  defp run_block(fun, input, ops) do
    {pid, ref} = spawn_monitor(fn -> JsonBench.repeat(ops, fun, input) end)
    receive do: ({:DOWN, ^ref, :process, ^pid, reason} -> reason == :normal || exit(reason))
  end

  defp median(list) do
    sorted = Enum.sort(list)
    n = length(sorted)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, div(n, 2)),
      else: (Enum.at(sorted, div(n, 2) - 1) + Enum.at(sorted, div(n, 2))) / 2
  end
end

rounds = Harness.pick(9, 5)
block_ms = Harness.pick(100, 40)

fmt_ns = fn ns -> Harness.format_ns(ns) end
fmt_x = fn x -> "#{Float.round(x * 1.0, 2)}x" end

# Checks first: every implementation gives the right answer.
for {_name, term, _} <- payloads do
  text = Json.encode!(term)
  ^term = JsonBench.jiffy_decode(text)
  ^term = Json.decode!(text)
  ^term = Pure.decode!(text)
  ^term = Json.decode!(Pure.encode!(term))
  ^term = Json.decode!(JsonBench.jiffy_encode(term))
end

codec_results =
  for {name, term, _} <- payloads, op <- [:encode, :decode] do
    IO.write(:stderr, "  json: #{name} #{op}\n")
    text = Json.encode!(term)
    etf = :erlang.term_to_binary(term)

    {input, impls} =
      case op do
        :encode ->
          {term,
           [
             {"jiffy", &JsonBench.jiffy_encode/1},
             {"Switchboard.Json", &Json.encode!/1},
             {"Switchboard.Json.Pure", &Pure.encode!/1},
             {"term_to_binary (VM floor)", &:erlang.term_to_binary/1}
           ]}

        :decode ->
          {text,
           [
             {"jiffy", &JsonBench.jiffy_decode/1},
             {"Switchboard.Json", &JsonBench.json_decode/1},
             {"Switchboard.Json.Pure", &JsonBench.pure_decode/1},
             {"binary_to_term (VM floor)", fn _ -> :erlang.binary_to_term(etf) end}
           ]}
      end

    {"#{name} #{op}", op, CpuRounds.measure(impls, input, rounds, block_ms)}
  end

IO.write(:stderr, "  json: empty typed NIF call\n")

[{_, empty_nif_ns, _}] =
  CpuRounds.measure([{"empty typed NIF", &JsonBench.empty_nif/1}], nil, rounds, block_ms)

codec_rows =
  for {job, _, results} <- codec_results, {label, ns, ratio} <- results do
    [
      {"job", job},
      {"implementation", label},
      {"CPU/op", fmt_ns.(ns)},
      {"speed vs jiffy", fmt_x.(ratio)}
    ]
  end

sessions = 1000
event = JsonBench.message_create(7)
IO.write(:stderr, "  json: envelope\n")

envelope_results =
  CpuRounds.measure(
    [
      {"re-encode event per session (Json.encode!)",
       fn _ -> JsonBench.frames(&Json.encode!/1, event, sessions) end},
      {"fragment once + envelope (Json.encode!)",
       fn _ -> JsonBench.frames(&Json.encode!/1, Json.fragment(event), sessions) end},
      {"fragment once + envelope as iodata (Json.encode_to_iodata!)",
       fn _ -> JsonBench.frames(&Json.encode_to_iodata!/1, Json.fragment(event), sessions) end},
      # The floor of any envelope: the frame's own four keys, no payload.
      {"envelope with no payload (floor)",
       fn _ -> JsonBench.frames(&Json.encode!/1, nil, sessions) end},
      {"envelope with no payload + a new binary of the event's text (floor of a binary frame)",
       fn _ -> JsonBench.floor_frames(Json.encode!(event), sessions) end},
      {"re-encode per session (jiffy)",
       fn _ -> JsonBench.frames(&JsonBench.jiffy_encode/1, event, sessions) end},
      {"fragment once + envelope (Pure.encode_to_iodata!)",
       fn _ -> JsonBench.frames(&Pure.encode_to_iodata!/1, Pure.fragment(event), sessions) end}
    ],
    nil,
    rounds,
    block_ms
  )

envelope_rows =
  for {label, ns, ratio} <- envelope_results do
    [
      {"MESSAGE_CREATE to #{sessions} sessions", label},
      {"CPU per session", fmt_ns.(ns / sessions)},
      {"speed vs re-encoding", fmt_x.(ratio)}
    ]
  end

ratio_of = fn results, label -> results |> List.keyfind(label, 0) |> elem(2) end
ns_of = fn results, label -> results |> List.keyfind(label, 0) |> elem(1) end

target_row = fn target, measured, floor, met ->
  [
    {"target", target},
    {"measured", fmt_x.(measured)},
    {"floor", floor},
    {"met", if(met, do: "yes", else: "no")}
  ]
end

target_rows =
  for {job, op, results} <- codec_results do
    min = if op == :encode, do: 2, else: 3
    native = ratio_of.(results, "Switchboard.Json")
    floor_label = results |> List.last() |> elem(0)
    floor = ratio_of.(results, floor_label)
    twin = ns_of.(results, "Switchboard.Json.Pure") / ns_of.(results, "Switchboard.Json")
    # What the twin costs against the VM's own C codec of the same term: the
    # ratio a native codec reaches if it is as fast as term_to_binary.
    twin_floor = ns_of.(results, "Switchboard.Json.Pure") / ns_of.(results, floor_label)

    [
      target_row.(
        "#{job} >= #{min}x jiffy",
        native,
        "VM's ETF codec: #{fmt_x.(floor)} jiffy",
        native >= min
      ),
      target_row.(
        "#{job} native >= 5x twin",
        twin,
        "twin / VM's ETF codec: #{fmt_x.(twin_floor)}",
        twin >= 5
      )
    ]
  end
  |> Enum.concat()

empty_nif_rows = [
  [
    {"target", "(floor of every call) an empty typed NIF call, from Elixir"},
    {"measured", fmt_ns.(empty_nif_ns)},
    {"floor", ""},
    {"met", ""}
  ]
]

envelope_target_rows =
  for label <- [
        "fragment once + envelope (Json.encode!)",
        "fragment once + envelope as iodata (Json.encode_to_iodata!)"
      ] do
    measured = ratio_of.(envelope_results, label)
    floor = ratio_of.(envelope_results, "envelope with no payload (floor)")

    binary_floor =
      ratio_of.(
        envelope_results,
        "envelope with no payload + a new binary of the event's text (floor of a binary frame)"
      )

    target_row.(
      "#{label} >= 5x re-encoding",
      measured,
      "no payload: #{fmt_x.(floor)}; no payload + a new 1 KB binary: #{fmt_x.(binary_floor)}",
      measured >= 5
    )
  end

# Scheduler latency while multi-MB inputs are encoded and decoded in a loop.
probe_ms = Harness.pick(2000, 800)
big = JsonBench.guild_create(Harness.pick(30_000, 10_000))
big_text = Json.encode!(big)
long_string = [:binary.copy("gateway ", 2_000_000)]
long_text = Json.encode!(long_string)
mb = fn bytes -> Float.round(byte_size(bytes) / 1_000_000, 1) end

probe_rows = [
  SchedulerProbe.row(
    "idle",
    SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 500)
  ),
  SchedulerProbe.row(
    "Json.decode of #{mb.(big_text)} MB (many small items), in a loop",
    SchedulerProbe.measure(fn -> Json.decode!(big_text) end, duration_ms: probe_ms)
  ),
  SchedulerProbe.row(
    "Json.encode of the same, in a loop",
    SchedulerProbe.measure(fn -> Json.encode!(big) end, duration_ms: probe_ms)
  ),
  SchedulerProbe.row(
    "Json.encode and decode of one #{mb.(long_text)} MB string, in a loop",
    SchedulerProbe.measure(fn -> Json.decode!(Json.encode!(long_string)) end,
      duration_ms: probe_ms
    )
  ),
  SchedulerProbe.row(
    "jiffy.decode of #{mb.(big_text)} MB (yields), in a loop",
    SchedulerProbe.measure(fn -> JsonBench.jiffy_decode(big_text) end, duration_ms: probe_ms)
  )
]

Harness.run(
  "json",
  [],
  size_rows ++
    codec_rows ++
    envelope_rows ++ target_rows ++ envelope_target_rows ++ empty_nif_rows ++ probe_rows
)
