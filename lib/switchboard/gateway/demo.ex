defmodule Switchboard.Gateway.Demo do
  @moduledoc """
  Demo data for a gateway: bot users for tokens, and guilds with text
  channels and members, as Discord's API shapes them (snowflakes as strings).
  """

  import Bitwise

  # 2025-01-01T00:00:00Z in Discord's epoch: fixed, so demo ids are stable.
  @demo_ms 1_735_689_600_000 - 1_420_070_400_000
  @channel_names ["general", "random", "bots"]

  @doc """
  A snowflake for a (kind, index) pair: the demo timestamp plus `index`
  milliseconds, the kind as the worker id. Consecutive guilds so fall in
  different shards, as `(id >> 22) % num_shards` spreads them.

      iex> Switchboard.Gateway.Demo.snowflake(0, 1)
      "1323802873040994304"
  """
  @spec snowflake(0..31, non_neg_integer()) :: String.t()
  def snowflake(kind, index),
    do: Integer.to_string(((@demo_ms + index) <<< 22) + (kind <<< 17))

  @doc "A fresh random bot token."
  @spec generate_token() :: String.t()
  def generate_token do
    Base.url_encode64(:crypto.strong_rand_bytes(18), padding: false) <>
      "." <> Base.url_encode64(:crypto.strong_rand_bytes(24), padding: false)
  end

  @doc "The bot user of the `index`th token."
  @spec bot_user(non_neg_integer()) :: map()
  def bot_user(index) do
    %{
      "id" => snowflake(1, index),
      "username" => "switchboard-bot-#{index}",
      "global_name" => nil,
      "discriminator" => "0",
      "avatar" => nil,
      "bot" => true,
      "verified" => true,
      "mfa_enabled" => false,
      "flags" => 0,
      "email" => nil
    }
  end

  @doc """
  `count` guilds, each with three text channels (`general`, `random`,
  `bots`), the bots as members and `members` demo users.
  """
  @spec guilds(non_neg_integer(), non_neg_integer(), [map()]) :: [map()]
  def guilds(count, members, bots) do
    users = for i <- 1..members//1, do: user(i)
    for i <- 1..count//1, do: guild(i, bots, users)
  end

  @doc """
  Every member of a demo guild (GUILD_CREATE lists the first 100 only, as
  Discord does for large guilds).
  """
  @spec members(non_neg_integer(), [map()]) :: [map()]
  def members(members, bots),
    do: Enum.map(bots ++ for(i <- 1..members//1, do: user(i)), &member/1)

  defp user(i) do
    %{
      "id" => snowflake(2, i),
      "username" => "user#{i}",
      "global_name" => "User #{i}",
      "discriminator" => "0",
      "avatar" => nil,
      "bot" => false
    }
  end

  defp guild(i, bots, users) do
    id = snowflake(3, i)

    channels =
      for {name, position} <- Enum.with_index(@channel_names) do
        %{
          "id" => snowflake(4, i * 8 + position),
          "type" => 0,
          "name" => name,
          "position" => position,
          "topic" => nil,
          "nsfw" => false,
          "parent_id" => nil,
          "permission_overwrites" => [],
          "rate_limit_per_user" => 0,
          "last_message_id" => nil,
          "guild_id" => id
        }
      end

    everyone = %{
      "id" => id,
      "name" => "@everyone",
      "color" => 0,
      "hoist" => false,
      "position" => 0,
      "permissions" => "2248473465835073",
      "managed" => false,
      "mentionable" => false,
      "flags" => 0
    }

    all_members = bots ++ users

    %{
      "id" => id,
      "name" => "Demo guild #{i}",
      "icon" => nil,
      "splash" => nil,
      "banner" => nil,
      "description" => nil,
      "owner_id" => (List.first(all_members) || %{"id" => id})["id"],
      "afk_channel_id" => nil,
      "afk_timeout" => 300,
      "verification_level" => 0,
      "default_message_notifications" => 0,
      "explicit_content_filter" => 0,
      "mfa_level" => 0,
      "nsfw_level" => 0,
      "premium_tier" => 0,
      "premium_subscription_count" => 0,
      "preferred_locale" => "en-US",
      "system_channel_id" => hd(channels)["id"],
      "system_channel_flags" => 0,
      "rules_channel_id" => nil,
      "public_updates_channel_id" => nil,
      "vanity_url_code" => nil,
      "application_id" => nil,
      "features" => [],
      "roles" => [everyone],
      "emojis" => [],
      "stickers" => [],
      "max_members" => 500_000,
      "joined_at" => "2025-01-01T00:00:00.000000+00:00",
      "large" => length(all_members) > 250,
      "unavailable" => false,
      "member_count" => length(all_members),
      "channels" => channels,
      "threads" => [],
      "members" => all_members |> Enum.take(100) |> Enum.map(&member/1),
      "presences" => [],
      "voice_states" => [],
      "stage_instances" => [],
      "guild_scheduled_events" => [],
      "soundboard_sounds" => []
    }
  end

  @doc """
  The status of the `index`th member of a demo guild (the bots come
  first): every fifth offline (not the first), else every third idle
  (from the third), the rest online.

      iex> Enum.map(0..5, &Switchboard.Gateway.Demo.status/1)
      [:online, :online, :idle, :online, :online, :offline]
  """
  @spec status(non_neg_integer()) :: :online | :idle | :offline
  def status(index) when rem(index, 5) == 0 and index > 0, do: :offline
  def status(index) when rem(index, 3) == 2, do: :idle
  def status(_index), do: :online

  @doc "A guild member object for a user."
  @spec member(map()) :: map()
  def member(user) do
    %{
      "user" => user,
      "nick" => nil,
      "avatar" => nil,
      "roles" => [],
      "joined_at" => "2025-01-01T00:00:00.000000+00:00",
      "premium_since" => nil,
      "deaf" => false,
      "mute" => false,
      "flags" => 0,
      "pending" => false
    }
  end
end
