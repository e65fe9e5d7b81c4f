# Scaling with schedulers; see Switchboard.Bench.Scaling (lib/switchboard/bench/scaling.ex)
# for the jobs, the options (SCALING_* variables) and how to run it from a release:
#
#   MIX_ENV=prod mix run bench/scaling.exs
#   SCALING_SIZE=100000 SCALING_SECONDS=1 MIX_ENV=prod mix run bench/scaling.exs
Switchboard.Bench.Scaling.run()
