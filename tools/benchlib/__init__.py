"""The pieces of tools/bench.py: our producer against microdot on one MicroPython unix port build.

Host side (CPython):
  context      one run's set-up: builds, anchor, runners, gateway, the price list
  ours         our producer-only bundle, the runners compiled, a producer's config
  anchor       microdot installed, compiled to .mpy, packed into ROMFS
  gateway      the simulated gateway as its own process
  runners      starts the MicroPython runners with a heap cap and code source
  procs        child processes with deadlines and clean-up; free ports
  heapsearch   the smallest passing heap, by bisection
  load         the raw-socket HTTP load generator, the same for both servers
  shoppers     CPython consumers making purchases
  fig_heap, fig_size, fig_speed, fig_discovery, fig_scale
               the figures of groups 1-2, 3, 4 and 6, 5, 7
  report       figure records, targets, the table, the JSON
MicroPython side (compiled to .mpy, run with `micropython -m`):
  mp_producer  our producer in-process; mp_microdot  the anchor app;
  mp_consumer  discovery and purchase timings; mp_heap  ROMFS mount, heap sampler
"""
