defmodule Switchboard.Test.HashFlood do
  @moduledoc false
  # Map keys crafted against the ETF core decoder's duplicate-key hash
  # (c_src/core/etf/decoder.hpp: detail::mix, hash_integer, hash_short_words):
  # every key's 64-bit hash has the same bits from 40 up, the bits the
  # checker's open-addressing table probes with, so a table without a probe
  # bound turns quadratic. Built by inverting the hash, as an attacker who
  # reads the source would.
  import Bitwise

  @mask 0xFFFFFFFFFFFFFFFF
  @mix_a 0x7FB5D329728EA185
  @mix_b 0x81DADEF4BC2DD44D
  @seed_integer 0x243F6A8885A308D3
  @seed_binary 0xBE5466CF34E90C6C
  @short_k1 0x9FB21C651E98DF25
  @short_k2 0xC2B2AE3D27D4EB4F

  @doc "`count` integers whose hashes share every probe bit."
  def integer_keys(count) do
    for i <- 0..(count - 1) do
      value = bxor(unmix(shared_hash(i)), @seed_integer)
      if value >= 1 <<< 63, do: value - (1 <<< 64), else: value
    end
  end

  @doc "`count` 8-byte binaries whose hashes share every probe bit."
  def binary_keys(count) do
    # hash = h ^ (h >> 29), h = ((low ^ seed) * k1) ^ rotl((high + 8) * k2, 31), high = 0
    tail = rotl(band(8 * @short_k2, @mask), 31)

    for i <- 0..(count - 1) do
      h = unxorshift(shared_hash(i), 29)
      low = bxor(mul(bxor(h, tail), inverse(@short_k1)), @seed_binary)
      <<low::little-64>>
    end
  end

  @doc "A map from each of `keys` (then each of `extra`) to 0, encoded."
  def flooding_map(keys, extra \\ []) do
    pairs = for key <- keys ++ extra, do: [body(key), 97, 0]
    IO.iodata_to_binary([131, 116, <<length(keys) + length(extra)::32>> | pairs])
  end

  @doc "A term's encoding without the version byte."
  def body(term) do
    <<131, bytes::binary>> = :erlang.term_to_binary(term)
    bytes
  end

  @doc "The same keys, each changed a little: as long, no longer colliding."
  def ordinary_keys(keys) do
    Enum.map(keys, fn
      <<first, rest::binary>> -> <<bxor(first, 1), rest::binary>>
      integer -> bxor(integer, 0x5555)
    end)
  end

  @doc """
  Whether `decode` takes no more on `bytes` than 10 times OTP's
  binary_to_term of them, or 3 times its own time on `ordinary` (the same
  shape, keys nobody chose), plus 100 ms; each timed as the best of two
  runs, in microseconds. A guard against quadratic blow-ups (seconds before
  the fix), not a benchmark. Returns `{ok?, result, ours, otp}`.
  """
  def within_factor_of_otp?(decode, bytes, ordinary) do
    otp = best_of_two(fn -> safe_binary_to_term(bytes) end) |> elem(0)
    usual = best_of_two(fn -> decode.(ordinary) end) |> elem(0)
    {ours, result} = best_of_two(fn -> decode.(bytes) end)
    {ours < max(10 * otp, 3 * usual) + 100_000, result, ours, otp}
  end

  defp best_of_two(fun) do
    {first, result} = :timer.tc(fun)
    {second, _} = :timer.tc(fun)
    {min(first, second), result}
  end

  defp safe_binary_to_term(bytes) do
    :erlang.binary_to_term(bytes)
  rescue
    ArgumentError -> :error
  end

  @doc "The forward integer hash (to check the inversion against)."
  def hash_integer(value), do: mix(band(bxor(value, @seed_integer), @mask))

  # Distinct low bits, the same bits from 40 up.
  defp shared_hash(i), do: 0x5A5A5A <<< 40 ||| i

  defp mix(x) do
    x = bxor(x, x >>> 31) |> mul(@mix_a)
    x = bxor(x, x >>> 27) |> mul(@mix_b)
    bxor(x, x >>> 33)
  end

  defp unmix(x) do
    x
    |> unxorshift(33)
    |> mul(inverse(@mix_b))
    |> unxorshift(27)
    |> mul(inverse(@mix_a))
    |> unxorshift(31)
  end

  defp unxorshift(x, shift),
    do: Enum.reduce(1..div(64, shift), x, fn _, y -> bxor(x, y >>> shift) end)

  defp mul(a, b), do: band(a * b, @mask)

  # The inverse of an odd number modulo 2^64 (Newton's iteration).
  defp inverse(a),
    do: Enum.reduce(1..6, a, fn _, x -> mul(x, band(2 - mul(a, x), @mask)) end)

  defp rotl(x, n), do: band(x <<< n ||| x >>> (64 - n), @mask)
end
