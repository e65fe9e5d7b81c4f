# CI machines are small and shared: give asynchronous deliveries (native
# sender threads, dirty schedulers, peers) time before a receive fails.
ExUnit.start(assert_receive_timeout: 2_000)
