"""The library behind tools/vboard (a virtual board) and tools/deploy (firmware onto a board).

A virtual board is the firmware running under the MicroPython unix port,
with a board filesystem (a folder or a LittleFS flash image), a capped GC
heap and a pseudo-terminal serial port that mpremote drives like a USB
serial port. Modules, one job each:

  cli.py         tools/vboard's command line: prepares the filesystem, prints the port
  supervisor.py  runs the board process, bridges its console to the port, resets it
  console.py     what the bridge does to the bytes: newline cooking, REPL mode tracking
  ports.py       the pseudo-terminals: the user's serial port and the board's console
  boardshell.py  (MicroPython) the board's side: mount the filesystem, run boot.py, main.py
  flashdev.py    (MicroPython) a flash chip: block device over an image file
  boardfiles.py  which host files a config brings onto a board (config, secrets, CA)
  deploy.py      tools/deploy: build, copy with mpremote, reset, watch the board start

None of them edits the repository or a board it was not pointed at.
"""
