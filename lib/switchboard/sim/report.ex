defmodule Switchboard.Sim.Report do
  @moduledoc false
  # The simulator's report as text, JSON and an offline HTML page with
  # inline SVG (latency distribution, throughput over time).

  @summary_keys [
    :mode,
    :receiver,
    :nodes,
    :guilds,
    :members,
    :sessions,
    :relays,
    :duration_s,
    :events_published,
    :frames_delivered,
    :frames_per_s,
    :cpu_s,
    :frames_per_cpu_s,
    :latency_ms,
    :member_list_ops,
    :member_op_us,
    :member_list_us,
    :lost,
    :duplicated,
    :out_of_order,
    :slow_disconnects,
    :memory_bytes_per_session,
    :memory_bytes_per_member,
    :floor,
    :verdict
  ]

  # Added to the summary for a run over real WebSockets.
  @websocket_keys [
    :transport,
    :clients,
    :client_processes,
    :client_mode,
    :encoding,
    :compress,
    :clients_cpu_s,
    :server_cpu_us_per_frame,
    :client_cpu_us_per_frame,
    :wire_bytes_per_frame,
    :seq_gaps,
    :clients_closed
  ]

  defp summary_keys(%{transport: "websocket"}),
    do: Enum.take(@summary_keys, 1) ++ @websocket_keys ++ Enum.drop(@summary_keys, 2)

  defp summary_keys(_report), do: @summary_keys

  # Native over pure for the throughput figures, pure over native for the
  # costs (so above 1 always means native is better).
  def ratios(native, pure) do
    ratio = fn a, b -> if is_number(a) and is_number(b) and b > 0, do: Float.round(a / b, 2) end

    %{
      frames_per_s: ratio.(native.frames_per_s, pure.frames_per_s),
      frames_per_cpu_s: ratio.(native.frames_per_cpu_s, pure.frames_per_cpu_s),
      latency_p99: ratio.(pure.latency_ms.p99, native.latency_ms.p99),
      member_op_p50: ratio.(pure.member_op_us.p50, native.member_op_us.p50),
      member_list_p50: ratio.(pure.member_list_us.p50, native.member_list_us.p50),
      memory_per_member: ratio.(pure.memory_bytes_per_member, native.memory_bytes_per_member)
    }
  end

  def text(report), do: text(report, summary_keys(report))

  def text(report, keys) do
    width = keys |> Enum.map(&String.length(Atom.to_string(&1))) |> Enum.max()

    for key <- keys, into: "" do
      "  #{String.pad_trailing(Atom.to_string(key), width)}  #{plain(report[key])}\n"
    end
  end

  defp plain(%{} = map),
    do: Enum.map_join(Enum.sort(map), "  ", fn {k, v} -> "#{k} #{plain(v)}" end)

  defp plain(nil), do: "-"
  defp plain(value) when is_integer(value) and value >= 10_000, do: group_digits(value)
  defp plain(value), do: to_string(value)

  defp group_digits(value) do
    value
    |> Integer.to_string()
    |> String.reverse()
    |> String.replace(~r/(\d{3})(?=\d)/, "\\1,")
    |> String.reverse()
  end

  # -- JSON -------------------------------------------------------------------

  def json(report), do: IO.iodata_to_binary([json_value(report), "\n"])

  defp json_value(%{} = map) do
    fields =
      map
      |> Enum.sort_by(fn {k, _} -> to_string(k) end)
      |> Enum.map(fn {k, v} -> [json_string(to_string(k)), ":", json_value(v)] end)
      |> Enum.intersperse(",")

    ["{", fields, "}"]
  end

  defp json_value({bound, count}), do: json_value([bound, count])

  defp json_value(list) when is_list(list),
    do: ["[", Enum.intersperse(Enum.map(list, &json_value/1), ","), "]"]

  defp json_value(nil), do: "null"
  defp json_value(value) when is_boolean(value), do: to_string(value)
  defp json_value(value) when is_integer(value), do: Integer.to_string(value)
  defp json_value(value) when is_float(value), do: Float.to_string(value)
  defp json_value(value) when is_atom(value), do: json_string(Atom.to_string(value))
  defp json_value(value) when is_binary(value), do: json_string(value)

  defp json_string(text) do
    escaped =
      for <<char::utf8 <- text>>, into: "" do
        case char do
          ?" -> "\\\""
          ?\\ -> "\\\\"
          c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
          c -> <<c::utf8>>
        end
      end

    [?", escaped, ?"]
  end

  # -- HTML -------------------------------------------------------------------

  def html(report) do
    """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><title>Switchboard simulation</title>
    <style>
    body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}
    table{border-collapse:collapse}td{padding:2px 12px;border-bottom:1px solid #ddd}
    td:first-child{color:#555}.ok{color:#070;font-weight:bold}.failed{color:#b00;font-weight:bold}
    svg text{font-size:11px;fill:#444}
    </style></head><body>
    <h1>Switchboard simulation</h1>
    <p>Verdict: <span class="#{escape(report.verdict)}">#{escape(report.verdict)}</span></p>
    <table>#{rows(report)}</table>
    <h2>Publish-to-frame latency</h2>
    #{latency_svg(report.latency_histogram_us, report.latency_ms)}
    <h2>Frames per second over time</h2>
    #{throughput_svg(report.throughput)}
    </body></html>
    """
  end

  defp rows(report) do
    for key <- summary_keys(report), into: "" do
      "<tr><td>#{key}</td><td>#{escape(plain(report[key]))}</td></tr>\n"
    end
  end

  defp escape(text) do
    text
    |> to_string()
    |> String.replace("&", "&amp;")
    |> String.replace("<", "&lt;")
    |> String.replace(">", "&gt;")
    |> String.replace("\"", "&quot;")
  end

  @w 720
  @h 240
  @pad 40

  defp latency_svg([], _), do: "<p>No frames.</p>"

  defp latency_svg(histogram, percentiles) do
    total = Enum.reduce(histogram, 0, fn {_, c}, s -> s + c end)
    peak = histogram |> Enum.map(&elem(&1, 1)) |> Enum.max()
    {low, high} = {log_us(elem(hd(histogram), 0)), log_us(elem(List.last(histogram), 0)) + 0.1}
    x = fn us -> @pad + (log_us(us) - low) / (high - low) * (@w - 2 * @pad) end
    bar = max((@w - 2 * @pad) / max(length(histogram), 1) * 0.8, 1)

    bars =
      for {bound, count} <- histogram, into: "" do
        height = count / peak * (@h - 2 * @pad)

        ~s|<rect x="#{f(x.(bound) - bar / 2)}" y="#{f(@h - @pad - height)}" width="#{f(bar)}" height="#{f(height)}" fill="#4a7bd0"><title>≤ #{bound} µs: #{count} frames (#{f(count * 100 / total)}%)</title></rect>|
      end

    marks =
      for {name, value} <- Enum.sort(percentiles), value != nil, into: "" do
        px = x.(value * 1000)

        ~s|<line x1="#{f(px)}" x2="#{f(px)}" y1="#{@pad - 10}" y2="#{@h - @pad}" stroke="#c33" stroke-dasharray="3,3"/>| <>
          label(px, @pad - 12 + 12 * rank(name), "#{name} #{value} ms")
      end

    ticks =
      for exponent <- 0..7,
          us = Integer.pow(10, exponent),
          log_us(us) >= low,
          log_us(us) <= high,
          into: "" do
        ~s|<text x="#{f(x.(us))}" y="#{@h - @pad + 16}" text-anchor="middle">#{tick(us)}</text>|
      end

    svg(bars <> marks <> ticks <> axis("latency (log scale)", "frames"))
  end

  # Labels near the right edge are drawn to the left of their line.
  defp label(px, y, text) when px > @w - 120,
    do: ~s|<text x="#{f(px - 3)}" y="#{y}" text-anchor="end">#{text}</text>|

  defp label(px, y, text), do: ~s|<text x="#{f(px + 3)}" y="#{y}">#{text}</text>|

  defp rank(:p50), do: 0
  defp rank(:p99), do: 1
  defp rank(_), do: 2

  defp tick(us) when us >= 1000, do: "#{div(us, 1000)} ms"
  defp tick(us), do: "#{us} µs"

  defp log_us(us), do: :math.log10(max(us, 1))

  defp throughput_svg(samples) when length(samples) < 2, do: "<p>Too short to draw.</p>"

  defp throughput_svg(samples) do
    rates =
      samples
      |> Enum.chunk_every(2, 1, :discard)
      |> Enum.map(fn [a, b] ->
        {b.t_ms, (b.frames - a.frames) * 1000 / max(b.t_ms - a.t_ms, 1)}
      end)

    t_max = rates |> Enum.map(&elem(&1, 0)) |> Enum.max()
    r_max = max(rates |> Enum.map(&elem(&1, 1)) |> Enum.max(), 1)

    points =
      Enum.map_join(rates, " ", fn {t, r} ->
        "#{f(@pad + t / t_max * (@w - 2 * @pad))},#{f(@h - @pad - r / r_max * (@h - 2 * @pad))}"
      end)

    labels =
      ~s|<text x="#{@pad - 4}" y="#{@pad}" text-anchor="end">#{round(r_max)}</text>| <>
        ~s|<text x="#{@w - @pad}" y="#{@h - @pad + 16}" text-anchor="end">#{f(t_max / 1000)} s</text>|

    svg(
      ~s|<polyline fill="none" stroke="#2a9d5c" stroke-width="2" points="#{points}"/>| <>
        labels <> axis("time", "frames/s")
    )
  end

  defp axis(x_label, y_label) do
    ~s|<line x1="#{@pad}" y1="#{@h - @pad}" x2="#{@w - @pad}" y2="#{@h - @pad}" stroke="#888"/>| <>
      ~s|<line x1="#{@pad}" y1="#{@pad}" x2="#{@pad}" y2="#{@h - @pad}" stroke="#888"/>| <>
      ~s|<text x="#{div(@w, 2)}" y="#{@h - 4}" text-anchor="middle">#{x_label}</text>| <>
      ~s|<text x="12" y="#{div(@h, 2)}" transform="rotate(-90 12 #{div(@h, 2)})" text-anchor="middle">#{y_label}</text>|
  end

  defp svg(body),
    do:
      ~s|<svg xmlns="http://www.w3.org/2000/svg" width="#{@w}" height="#{@h}" viewBox="0 0 #{@w} #{@h}">#{body}</svg>|

  defp f(number), do: :erlang.float_to_binary(number / 1, decimals: 1)
end
