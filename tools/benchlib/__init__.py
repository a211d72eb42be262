"""The pieces of tools/bench.py: our producer against microdot on one MicroPython unix port build.

Processes, the gateway, a producer's config and the CPython shoppers come
from tools/harness (process, things, shopping), as for the tests.

Host side (CPython):
  context      one run's set-up: builds, anchor, runners, gateway, the price list
  ours         our producer-only bundle, the runners compiled
  anchor       microdot installed, compiled to .mpy, packed into ROMFS
  runners      starts the MicroPython runners with a heap cap and code source
  heapsearch   the smallest passing heap, by bisection
  load         the raw-socket HTTP load generator, the same for both servers
  fig_heap, fig_size, fig_speed, fig_discovery, fig_scale
               the figures of groups 1-2, 3, 4 and 6, 5, 7
  report       figure records, targets, the table, the JSON
MicroPython side (compiled to .mpy, run with `micropython -m`):
  mp_producer  our producer in-process; mp_microdot  the anchor app;
  mp_consumer  discovery and purchase timings; mp_heap  ROMFS mount, heap sampler;
  mp_modules   the heap each of our modules takes at import
"""
