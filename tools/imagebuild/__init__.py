"""Builds the images a board is flashed with: the .mpy tree, a ROMFS image and a LittleFS image.

Host-side (CPython) package behind tools/build; one small module per job:
toolchain (find mpy-cross, micropython, mpremote), sources (what goes on
the board), compiler (mpy-cross -march=xtensawin, .mpy headers), littlefs
and lfs_writer (the LittleFS image, written by the MicroPython unix port),
ramdisk (the RAM block device both sides mount images with), romfs
(mpremote romfs build), package_json (the mip package list), report (the
size report) and cli (the command line). Never imports lib/wpwithin, never
talks to a board and never writes outside the output directory it is given
(package.json only when asked to).
"""


class BuildError(Exception):
    """A failure the user can act on; the message says what to do."""
