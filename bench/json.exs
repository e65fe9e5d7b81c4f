# Switchboard.Json (NIF) against jiffy (Debian's erlang-jiffy), the pure twin
# and the VM's own term_to_binary/binary_to_term (the floor: no JSON codec
# reads or builds terms faster than the VM's ETF codec), on gateway payloads
# as Discord sends them in JSON (snowflakes as strings); the per-session
# envelope with a fragment against re-encoding the event per session; and
# scheduler latency while multi-MB inputs are encoded and decoded.
#
#   MIX_ENV=prod mix run bench/json.exs
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/json.exs
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

  def timed(ops, {label, fun}) do
    {label,
     fn input ->
       repeat(ops - 1, fun, input)
       fun.(input)
     end}
  end
end

payloads = [
  {"MESSAGE_CREATE", JsonBench.message_create(1), Harness.pick(2000, 400)},
  {"PRESENCE_UPDATE", JsonBench.presence_update(1), Harness.pick(5000, 1000)},
  {"GUILD_CREATE (1,000 members)", JsonBench.guild_create(1000), Harness.pick(8, 3)}
]

size_rows =
  for {name, term, _} <- payloads do
    [
      {"payload", name},
      {"JSON bytes", byte_size(Json.encode!(term))},
      {"ETF bytes", byte_size(:erlang.term_to_binary(term))}
    ]
  end

codec_jobs =
  for {name, term, ops} <- payloads do
    text = Json.encode!(term)
    etf = :erlang.term_to_binary(term)
    ^term = JsonBench.jiffy_decode(text)

    [
      [
        name: "#{name} encode",
        ops: ops,
        setup: fn -> term end,
        baseline: JsonBench.timed(ops, {"jiffy", &JsonBench.jiffy_encode/1}),
        candidates:
          Enum.map(
            [
              {"Switchboard.Json", &Json.encode!/1},
              {"Switchboard.Json.Pure", &Pure.encode!/1},
              {"term_to_binary (VM floor)", &:erlang.term_to_binary/1}
            ],
            &JsonBench.timed(ops, &1)
          ),
        check: fn _, out -> out == etf or JsonBench.jiffy_decode(out) == term end
      ],
      [
        name: "#{name} decode",
        ops: ops,
        setup: fn -> text end,
        baseline: JsonBench.timed(ops, {"jiffy", &JsonBench.jiffy_decode/1}),
        candidates:
          Enum.map(
            [
              {"Switchboard.Json", &JsonBench.json_decode/1},
              {"Switchboard.Json.Pure", &JsonBench.pure_decode/1},
              {"binary_to_term (VM floor, of the ETF)", fn _ -> :erlang.binary_to_term(etf) end}
            ],
            &JsonBench.timed(ops, &1)
          ),
        check: fn _, out -> out == term end
      ]
    ]
  end
  |> Enum.concat()

sessions = 1000
event = JsonBench.message_create(7)

envelope_job = [
  name: "MESSAGE_CREATE to #{sessions} sessions",
  ops: sessions,
  baseline:
    {"re-encode event per session (Json.encode!)",
     fn _ -> JsonBench.frames(&Json.encode!/1, event, sessions) end},
  candidates: [
    {"fragment once + envelope (Json.encode!)",
     fn _ -> JsonBench.frames(&Json.encode!/1, Json.fragment(event), sessions) end},
    {"fragment once + envelope as iodata (Json.encode_to_iodata!)",
     fn _ -> JsonBench.frames(&Json.encode_to_iodata!/1, Json.fragment(event), sessions) end},
    {"re-encode per session (jiffy)",
     fn _ -> JsonBench.frames(&JsonBench.jiffy_encode/1, event, sessions) end},
    {"fragment once + envelope (Pure.encode_to_iodata!)",
     fn _ -> JsonBench.frames(&Pure.encode_to_iodata!/1, Pure.fragment(event), sessions) end}
  ],
  check: fn _, frames ->
    frames |> List.last() |> IO.iodata_to_binary() |> Json.decode!() ==
      JsonBench.frame(sessions, event)
  end
]

rows = Harness.run("json", codec_jobs ++ [envelope_job], size_rows)

speedup = fn job, label ->
  row = Enum.find(rows, &(&1.job == job))
  Enum.find(row.candidates, &(&1.label == label)).ratio
end

target_row = fn target, measured, floor, met ->
  [
    {"target", target},
    {"measured", "#{Float.round(measured, 2)}x"},
    {"floor", floor},
    {"met", if(met, do: "yes", else: "no")}
  ]
end

target_rows =
  for {name, _, _} <- payloads, {op, min} <- [{"encode", 2}, {"decode", 3}] do
    job = "#{name} #{op}"
    native = speedup.(job, "Switchboard.Json")
    twin = speedup.(job, "Switchboard.Json.Pure")
    floor_label = Enum.find(rows, &(&1.job == job)).candidates |> List.last() |> Map.get(:label)
    floor = speedup.(job, floor_label)

    [
      target_row.(
        "#{job} >= #{min}x jiffy",
        native,
        "VM's ETF codec: #{Float.round(floor, 2)}x jiffy",
        native >= min
      ),
      target_row.("#{job} native >= 5x twin", native / twin, "", native / twin >= 5)
    ]
  end
  |> Enum.concat()

envelope_rows =
  for label <- [
        "fragment once + envelope (Json.encode!)",
        "fragment once + envelope as iodata (Json.encode_to_iodata!)"
      ] do
    measured = speedup.(envelope_job[:name], label)
    target_row.("#{label} >= 5x re-encoding", measured, "", measured >= 5)
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

Harness.run("json-targets", [], target_rows ++ envelope_rows ++ probe_rows)
