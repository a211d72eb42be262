"""The virtual board's own side: what its firmware does at reset, in the MicroPython unix port.

tools/vboard runs `micropython -X heapsize=N -i boardshell.py ARGS` on the
board's console. This mounts the board filesystem at / (a folder with
--dir, or a LittleFS flash image with --flash, through flashdev), puts
the files given with --put onto it (first power-on only), gives the board
an ESP32's sys.path and working folder, adds machine.reset(), and runs
boot.py then main.py from the board filesystem in the REPL's namespace,
as the firmware does (main.py is skipped when boot.py fails, and after a
soft reset from the raw REPL: --raw). `-i` then leaves the unix port's
REPL on the console, raw REPL and raw-paste included.

It must never read or write a host file other than the flash image and
the --put files, and leaves in the REPL's namespace only what main.py
defines.
"""
import sys

HARD_RESET = 100  # exit status tools/vboard reads as machine.reset(); any other exit is a soft reset


def _vboard_args(argv):
    args = {"dir": None, "flash": None, "raw": False, "put": []}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--dir", "--flash"):
            args[arg[2:]] = argv[i + 1]
            i += 2
        elif arg == "--put":
            args["put"].append((argv[i + 1], argv[i + 2]))
            i += 3
        elif arg == "--raw":
            args["raw"] = True
            i += 1
        else:
            raise ValueError("boardshell: unknown argument %s" % arg)
    return args


class _SizedDir:
    """The unix port's VfsPosix, listing each entry with its size (os.ilistdir's 4th field), as an
    ESP32's filesystem does: mpremote ls shows sizes from it. Everything else is VfsPosix's."""

    def __init__(self, fs):
        self.fs = fs
        for name in ("mount", "umount", "open", "chdir", "getcwd", "mkdir", "remove", "rename", "rmdir", "stat",
                     "statvfs"):
            setattr(self, name, getattr(fs, name))

    def ilistdir(self, path):
        for entry in self.fs.ilistdir(path):
            size = 0
            if entry[1] != 0x4000:
                try:
                    size = self.fs.stat(path.rstrip("/") + "/" + entry[0])[6]
                except OSError:
                    pass
            yield (entry[0], entry[1], entry[2] if len(entry) > 2 else 0, size)


def _vboard_filesystem(args):
    """Mount the board filesystem at /; False when it cannot be (the board then has none)."""
    import os
    import vfs

    files = []
    for host, board in args["put"]:  # read now: the host filesystem goes away below
        try:
            with open(host, "rb") as f:
                files.append((board, f.read()))
        except OSError as exc:
            print("[vboard] cannot put %s on the board: %r" % (board, exc))
    try:
        if args["dir"]:
            board_fs = _SizedDir(vfs.VfsPosix(args["dir"]))
        else:
            from flashdev import FlashFile

            board_fs = vfs.VfsLfs2(FlashFile(args["flash"]))
    except (OSError, ValueError) as exc:
        board_fs = None
        print("[vboard] cannot mount the board filesystem: %r; the board runs without one" % (exc,))
    vfs.umount("/")  # the host's: a board sees only its own filesystem
    sys.path[:] = ["", ".frozen", "/lib"]  # an ESP32's
    if board_fs is None:
        return False
    vfs.mount(board_fs, "/")
    os.chdir("/")
    for board, data in files:
        folder = ""
        for part in board.split("/")[:-1]:
            folder += part + "/"
            try:
                os.mkdir(folder)
            except OSError:
                pass  # already there
        with open(board, "wb") as f:
            f.write(data)
    return True


def _vboard_machine():
    """machine as the unix port has it, plus reset() as on a chip (the board restarts)."""
    import machine as port_machine

    class Machine:
        def __getattr__(self, name):
            return getattr(port_machine, name)

        def reset(self, _status=HARD_RESET):  # bound now: the name is gone from the REPL's namespace
            raise SystemExit(_status)

    sys.modules["machine"] = Machine()


def _vboard_run(name, namespace):
    """Run a script from the board filesystem as the firmware does; False when it raised."""
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return True  # no such script: nothing to run
    try:
        exec(compile(source, name, "exec"), namespace)
    except SystemExit:
        # A board soft-resets here; the unix port's -i REPL cannot be left from a script.
        print("[vboard] %s called sys.exit(): press Ctrl-D to soft-reset the board" % name)
        return False
    except BaseException as exc:  # as the firmware: print it, carry on to the REPL
        sys.print_exception(exc)
        return False
    finally:
        source = None
    return True


def _vboard_boot():
    args = _vboard_args(sys.argv[1:])
    sys.argv[:] = []  # a board's; the host paths stay out of sight
    _vboard_machine()
    if _vboard_filesystem(args) and _vboard_run("boot.py", globals()) and not args["raw"]:
        _vboard_run("main.py", globals())


_vboard_boot()
for _name in ("_SizedDir", "_vboard_args", "_vboard_filesystem", "_vboard_machine", "_vboard_run", "_vboard_boot",
              "HARD_RESET", "__file__"):
    globals().pop(_name, None)
del _name
