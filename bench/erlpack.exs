# Switchboard.Erlpack (NIF) against term_to_binary/binary_to_term and the
# pure twin, on gateway payloads; the fragment envelope against re-encoding
# per session; scheduler latency while 10 MB encodes and decodes run; and the
# native core's own throughput when its benchmark is built.
#
#   mix run bench/erlpack.exs
#   SWITCHBOARD_BENCH_QUICK=1 mix run bench/erlpack.exs
#
# Each sample times a loop of `ops` calls in a fresh process; figures are per
# call. Targets (issues 4 and 15): encode <= 1.0x term_to_binary, decode
# (atoms: :existing) <= 1.1x binary_to_term, envelope >= 5x re-encoding.
# SWITCHBOARD_BENCH_CPU=1 measures only the encode/decode ratios, in CPU time.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)
Code.require_file("../test/support/test_nif.ex", __DIR__)
# The map keys crafted against the core's duplicate-key hash (issue 9).
Code.require_file("../test/support/hash_flood.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.Erlpack
alias Switchboard.Erlpack.Pure

defmodule ErlpackBench do
  # Snowflakes of 2023: above 2^60, so bignums in the VM, as in production.
  def snowflake(i), do: 1_180_000_000_000_000_000 + i * 4_194_304 + rem(i * 7919, 4096)

  def user(i) do
    %{
      "id" => snowflake(i),
      "username" => "user_#{i}",
      "global_name" => "User Number #{i}",
      "avatar" => "a_3f2b9c0d8e7f6a5b4c3d2e1f0a9b#{rem(i, 9999)}",
      "discriminator" => "0",
      "public_flags" => 64,
      "bot" => false
    }
  end

  def message_create(i) do
    %{
      "id" => snowflake(i + 1),
      "channel_id" => snowflake(2),
      "guild_id" => snowflake(3),
      "author" => user(i),
      "member" => %{
        "roles" => [snowflake(10), snowflake(11), snowflake(12)],
        "joined_at" => "2021-03-04T05:06:07.123000+00:00",
        "deaf" => false,
        "mute" => false,
        "flags" => 0,
        "nick" => nil
      },
      "content" => "Hello there! This is message #{i}, with a little text to make it realistic.",
      "timestamp" => "2024-01-02T03:04:05.678000+00:00",
      "edited_timestamp" => nil,
      "tts" => false,
      "mention_everyone" => false,
      "mentions" => [user(i + 7)],
      "mention_roles" => [],
      "attachments" => [],
      "embeds" => [
        %{
          "type" => "rich",
          "title" => "An embed",
          "description" => "With a description long enough to matter.",
          "color" => 5_814_783
        }
      ],
      "pinned" => false,
      "type" => 0,
      "flags" => 0,
      "nonce" => "#{snowflake(i + 99)}",
      "referenced_message" => nil
    }
  end

  def presence_update(i) do
    %{
      "user" => %{"id" => snowflake(i)},
      "guild_id" => snowflake(3),
      "status" => "online",
      "activities" => [%{"name" => "A Game", "type" => 0, "created_at" => 1_700_000_000_000}],
      "client_status" => %{"desktop" => "online"}
    }
  end

  def member(i) do
    %{
      "user" => user(i),
      "roles" => [snowflake(10 + rem(i, 5)), snowflake(20 + rem(i, 3))],
      "joined_at" => "2021-03-04T05:06:07.123000+00:00",
      "premium_since" => nil,
      "deaf" => false,
      "mute" => false,
      "pending" => false,
      "nick" => if(rem(i, 4) == 0, do: "nick #{i}", else: nil),
      "flags" => 0
    }
  end

  def guild_create(members) do
    %{
      "id" => snowflake(3),
      "name" => "A large guild",
      "icon" => "a_0123456789abcdef0123456789abcdef",
      "owner_id" => snowflake(1),
      "member_count" => members,
      "large" => true,
      "features" => ["COMMUNITY", "NEWS", "ANIMATED_ICON"],
      "roles" =>
        for(
          r <- 1..20,
          do: %{
            "id" => snowflake(10 + r),
            "name" => "role #{r}",
            "color" => r,
            "position" => r,
            "permissions" => "1071698660929"
          }
        ),
      "channels" =>
        for(
          c <- 1..50,
          do: %{
            "id" => snowflake(100 + c),
            "name" => "channel-#{c}",
            "type" => 0,
            "position" => c,
            "parent_id" => nil
          }
        ),
      "members" => for(i <- 1..members, do: member(i))
    }
  end

  def loop(0, _fun, _input), do: :ok

  def loop(n, fun, input) do
    fun.(input)
    loop(n - 1, fun, input)
  end

  # Option-taking calls as one-argument functions compiled here: a closure
  # written at the top level of this script would run in the interpreter.
  def decode_port(bytes), do: Erlpack.decode(bytes, isolation: :port)
  def decode_plain(bytes), do: Erlpack.decode(bytes, plain: true)

  # The seal search's input as Erlpack.encode/2 reads it
  # (Switchboard.Erlpack.Fragment.may_hold_seal?/1).
  def term_to_binary_searched(term) do
    words = :persistent_term.get(:switchboard_erlpack_fragment_seal_words)
    Switchboard.Test.NIF.diag_term_to_binary_searched(term, words)
  end

  def binary_to_term_or_error(bytes) do
    :erlang.binary_to_term(bytes)
  rescue
    ArgumentError -> {:error, :badarg}
  end

  def binary_to_term_safe(bytes), do: :erlang.binary_to_term(bytes, [:safe])

  # The gateway's per-session frame: sequence number and event.
  def envelope(seq, d), do: %{"op" => 0, "s" => seq, "t" => "MESSAGE_CREATE", "d" => d}

  # One frame per session, encoded with `encode` (the event may be a fragment).
  def per_session(encode, event, sessions) do
    for seq <- 1..sessions, do: encode.(envelope(seq, event))
  end

  # A job timing `ops` calls of each implementation (a one-argument function
  # compiled in a module) on `input`.
  def job(name, ops, input, baseline, candidates, check) do
    [
      name: name,
      ops: ops,
      baseline: timed(baseline, ops, input),
      candidates: Enum.map(candidates, &timed(&1, ops, input)),
      check: check
    ]
  end

  defp timed({label, fun}, ops, input) do
    {label,
     fn _ ->
       loop(ops - 1, fun, input)
       fun.(input)
     end}
  end
end

payloads = [
  {"MESSAGE_CREATE", ErlpackBench.message_create(1), Harness.pick(2000, 400)},
  {"PRESENCE_UPDATE", ErlpackBench.presence_update(1), Harness.pick(5000, 1000)},
  {"GUILD_CREATE (1,000 members)", ErlpackBench.guild_create(1000), Harness.pick(10, 3)}
]

# SWITCHBOARD_BENCH_CPU=1: only the codec ratios, in CPU time (the VM's
# own `statistics(:runtime)`, all threads), candidates and baseline
# interleaved in short rounds so that a noisy neighbour hits all alike;
# about 15 s in all. The full run below measures wall time.
if System.get_env("SWITCHBOARD_BENCH_CPU") not in [nil, "", "0"] do
  cpu_ms = fn fun, input, ops ->
    {before, _} = :erlang.statistics(:runtime)
    ErlpackBench.loop(ops, fun, input)
    {after_ms, _} = :erlang.statistics(:runtime)
    after_ms - before
  end

  rounds = 12

  # Beside each Erlpack call, its floor through the VM's codec: the VM's
  # encoder or decoder called from a test NIF with nothing else (and, for
  # encode, followed by the seal search in the same call).
  for {name, term, ops} <- payloads,
      {what, input, base_label, base, candidates} <- [
        {"encode", term, "term_to_binary", &:erlang.term_to_binary/1,
         [
           {"Erlpack", &Erlpack.encode/1},
           {"floor, NIF enif_term_to_binary alone", &Switchboard.Test.NIF.diag_term_to_binary/1},
           {"floor, NIF enif_term_to_binary + seal search",
            &ErlpackBench.term_to_binary_searched/1}
         ]},
        {"decode", :erlang.term_to_binary(term), "binary_to_term", &:erlang.binary_to_term/1,
         [
           {"Erlpack", &Erlpack.decode/1},
           {"floor, NIF enif_binary_to_term alone", &Switchboard.Test.NIF.diag_binary_to_term/1}
         ]}
      ] do
    # About 25 ms per block: well above the 1 ms resolution of the counter.
    {probe_us, _} = :timer.tc(fn -> ErlpackBench.loop(ops, base, input) end)
    block = max(1, div(ops * 25_000, max(probe_us, 1)))
    timed = [{base_label, base} | candidates]
    _warm = for {_, fun} <- timed, do: cpu_ms.(fun, input, block)

    totals =
      Enum.reduce(1..rounds, List.duplicate(0, length(timed)), fn _, sums ->
        Enum.zip_with(sums, timed, fn sum, {_, fun} -> sum + cpu_ms.(fun, input, block) end)
      end)

    [base_ms | candidate_ms] = totals
    per_op = fn ms -> Float.round(ms * 1000 / (rounds * block), 2) end

    for {{label, _}, ms} <- Enum.zip(candidates, candidate_ms) do
      IO.puts(
        "#{name} #{what}: #{label} #{per_op.(ms)} us CPU, #{base_label} " <>
          "#{per_op.(base_ms)} us CPU: #{Float.round(ms / max(base_ms, 1), 3)}x time"
      )
    end
  end

  System.halt(0)
end

sizes =
  for {name, term, _ops} <- payloads do
    [{"payload", name}, {"ETF bytes", byte_size(:erlang.term_to_binary(term))}]
  end

codec_jobs =
  for {name, term, ops} <- payloads do
    bytes = :erlang.term_to_binary(term)

    encode =
      ErlpackBench.job(
        "#{name} encode",
        ops,
        term,
        {"term_to_binary", &:erlang.term_to_binary/1},
        [
          {"Erlpack (NIF)", &Erlpack.encode/1},
          {"Erlpack.Pure", &Pure.encode/1},
          # The floor of any NIF encoder: every node visited through the
          # public API (enif_term_type and the type's reader), nothing written.
          {"enif API walk only (floor)", &Switchboard.Test.NIF.diag_enif_walk/1}
        ],
        fn _, result -> result == bytes or is_integer(result) end
      )

    decode =
      ErlpackBench.job(
        "#{name} decode",
        ops,
        bytes,
        {"binary_to_term", &:erlang.binary_to_term/1},
        [
          {"Erlpack (NIF, atoms: :existing)", &Erlpack.decode/1},
          {"Erlpack (NIF, plain: true)", &ErlpackBench.decode_plain/1},
          {"binary_to_term [:safe]", &ErlpackBench.binary_to_term_safe/1},
          {"Erlpack.Pure", &Pure.decode/1},
          {"Erlpack isolation: :port", &ErlpackBench.decode_port/1}
        ],
        fn _, result -> result == {:ok, term} or result == term end
      )

    [encode, decode]
  end
  |> Enum.concat()

# Hash flooding (issue 9): 100k map keys crafted so that their hashes share
# the duplicate checker's probe bits, against the same keys changed a little.
flood_keys = Harness.pick(100_000, 20_000)
crafted_keys = Switchboard.Test.HashFlood.integer_keys(flood_keys)

flood_jobs =
  for {label, keys} <- [
        {"crafted", crafted_keys},
        {"ordinary", Switchboard.Test.HashFlood.ordinary_keys(crafted_keys)}
      ],
      {what, extra} <- [{"map", []}, {"map + 1 duplicate", [hd(keys)]}] do
    bytes = Switchboard.Test.HashFlood.flooding_map(keys, extra)

    ErlpackBench.job(
      "#{flood_keys} #{label} integer keys, #{what}: decode",
      1,
      bytes,
      {"binary_to_term", &ErlpackBench.binary_to_term_or_error/1},
      [
        {"Erlpack (NIF)", &Erlpack.decode/1},
        {"Erlpack.Pure", &Pure.decode/1},
        {"Erlpack isolation: :port", &ErlpackBench.decode_port/1}
      ],
      fn _, result ->
        match?({:ok, _}, result) or match?({:error, _}, result) or is_map(result)
      end
    )
  end

sessions = 1000
event = ErlpackBench.message_create(42)

envelope_job = [
  name: "MESSAGE_CREATE to #{sessions} sessions (per session)",
  ops: sessions,
  baseline:
    {"re-encode event per session (Erlpack)",
     fn _ -> ErlpackBench.per_session(&Erlpack.encode/1, event, sessions) end},
  candidates: [
    {"fragment once + envelope (Erlpack)",
     fn _ ->
       ErlpackBench.per_session(&Erlpack.encode/1, Erlpack.fragment(event), sessions)
     end},
    {"fragment once + envelope as iodata (Erlpack.encode_iodata)",
     fn _ ->
       ErlpackBench.per_session(&Erlpack.encode_iodata/1, Erlpack.fragment(event), sessions)
     end},
    {"re-encode per session (term_to_binary)",
     fn _ -> ErlpackBench.per_session(&:erlang.term_to_binary/1, event, sessions) end},
    {"fragment once + envelope (Pure)",
     fn _ -> ErlpackBench.per_session(&Pure.encode/1, Pure.fragment(event), sessions) end}
  ],
  check: fn _, frames ->
    frames |> List.last() |> IO.iodata_to_binary() |> :erlang.binary_to_term() ==
      ErlpackBench.envelope(sessions, event)
  end
]

rows = Harness.run("erlpack", codec_jobs ++ flood_jobs ++ [envelope_job], sizes)

# Scheduler latency while 10 MB encodes and decodes run in a loop. The term
# lives in persistent_term: copied into each worker's heap, every garbage
# collection of the worker would copy 10 MB of terms and hold its scheduler
# for ~100 ms, whatever the NIF does.
:persistent_term.put(:erlpack_bench_big, ErlpackBench.guild_create(33_000))
big_bytes = :erlang.term_to_binary(:persistent_term.get(:erlpack_bench_big))
big_mb = Float.round(byte_size(big_bytes) / 1_000_000, 1)
probe_ms = Harness.pick(4000, 1500)
ten_mb_blob = :binary.copy(<<1, 2, 3, 4, 5, 6, 7, 8, 9, 10>>, 1_000_000)

probe_rows = [
  SchedulerProbe.row(
    "idle",
    SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1000)
  ),
  SchedulerProbe.row(
    "Erlpack.encode of #{big_mb} MB, in a loop",
    SchedulerProbe.measure(fn -> Erlpack.encode(:persistent_term.get(:erlpack_bench_big)) end,
      duration_ms: probe_ms
    )
  ),
  SchedulerProbe.row(
    "Erlpack.decode of #{big_mb} MB, in a loop",
    SchedulerProbe.measure(fn -> Erlpack.decode(big_bytes) end, duration_ms: probe_ms)
  ),
  SchedulerProbe.row(
    "term_to_binary of #{big_mb} MB (OTP, yields), in a loop",
    SchedulerProbe.measure(
      fn -> :erlang.term_to_binary(:persistent_term.get(:erlpack_bench_big)) end,
      duration_ms: probe_ms
    )
  ),
  # A dirty NIF that allocates nothing: when this row is slow too, the
  # machine's cores are busy elsewhere and no row of this run means much.
  SchedulerProbe.row(
    "reference: 10 MB FNV-1a dirty CPU NIF, in a loop",
    SchedulerProbe.measure(fn -> Switchboard.Test.NIF.diag_fnv1a_dirty(ten_mb_blob) end,
      duration_ms: probe_ms
    )
  ),
  SchedulerProbe.row(
    "negative control: 10 MB FNV-1a blocking NIF, in a loop",
    SchedulerProbe.measure(fn -> Switchboard.Test.NIF.diag_fnv1a_blocking(ten_mb_blob) end,
      duration_ms: probe_ms
    )
  )
]

# The native core's own benchmark (a Release build with SWITCHBOARD_NATIVE_BENCH=ON,
# as `make native-test` does, or the path in SWITCHBOARD_BENCH_ETF), when present.
native_candidates = [
  System.get_env("SWITCHBOARD_BENCH_ETF"),
  "build/native/native_tests/bench_etf"
]

native_rows =
  case Enum.find(native_candidates, &(&1 && File.exists?(&1))) do
    nil ->
      [[{"native bench_etf", "not built (make native-test builds it)"}]]

    path ->
      # System.cmd looks a relative name up in PATH.
      {output, _status} = System.cmd(Path.expand(path), [], stderr_to_stdout: true)

      for line <- String.split(output, "\n", trim: true) do
        [{"native bench_etf", line}]
      end
  end

ratio = fn job, label ->
  row = Enum.find(rows, &(&1.job == job))
  candidate = Enum.find(row.candidates, &(&1.label == label))
  row.baseline.median_ns / candidate.median_ns
end

target_rows =
  for {name, _term, _ops} <- payloads do
    encode = 1 / ratio.("#{name} encode", "Erlpack (NIF)")
    decode = 1 / ratio.("#{name} decode", "Erlpack (NIF, atoms: :existing)")

    [
      [
        {"target", "#{name} encode <= 1.0x term_to_binary"},
        {"measured", "#{Float.round(encode, 2)}x"},
        {"met", if(encode <= 1.0, do: "yes", else: "no")}
      ],
      [
        {"target", "#{name} decode <= 1.1x binary_to_term"},
        {"measured", "#{Float.round(decode, 2)}x"},
        {"met", if(decode <= 1.1, do: "yes", else: "no")}
      ]
    ]
  end
  |> Enum.concat()

envelope_rows =
  for {label, candidate} <- [
        {"envelope with fragment >= 5x re-encoding (binary frames)",
         "fragment once + envelope (Erlpack)"},
        {"envelope with fragment >= 5x re-encoding (iodata frames)",
         "fragment once + envelope as iodata (Erlpack.encode_iodata)"}
      ] do
    speedup = ratio.(envelope_job[:name], candidate)

    [
      {"target", label},
      {"measured", "#{Float.round(speedup, 2)}x"},
      {"met", if(speedup >= 5, do: "yes", else: "no")}
    ]
  end

target_rows = target_rows ++ envelope_rows

Harness.run("erlpack-probe", [], probe_rows ++ native_rows ++ target_rows)
