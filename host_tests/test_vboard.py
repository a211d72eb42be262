"""tools/vboard and tools/deploy: a virtual board that real mpremote drives like hardware.

Each test starts its boards with tools/vboard (their serial ports are
ptys), talks to them through mpremote (raw REPL, raw paste, fs cp,
exec, soft-reset, reset), pyserial (as a terminal program would) or the
console log, and stops them with SIGTERM, checking nothing is left running.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from harness.process import free_port
from harness.things import ROOT
from harness.vboard import VBOARD, VBoard, alive, board_files, board_folder, card_file, wpw

from imagebuild import sources
from vboardlib.console import NewlineCooker, ReplMode


def test_an_empty_board_is_a_fresh_micropython_board(vboards):
    board = vboards("b")
    assert board.port.startswith("/dev/pts/")
    out = board.exec("import os, sys\nprint(sys.platform, sys.path, os.getcwd(), os.listdir('/'))")
    assert out.strip() == "linux ['', '.frozen', '/lib'] / []"
    assert "empty temporary folder" in board.stderr()


def test_fs_commands_and_a_soft_reset_that_reboots(vboards, tmp_path):
    board = vboards("b", "--dir", tmp_path / "fs")
    source = tmp_path / "boot.py"
    source.write_text("with open('boots', 'a') as f:\n    f.write('x')\n")
    board.mpremote("fs", "mkdir", ":lib", "+", "fs", "cp", str(source), ":boot.py", resume=False)
    assert (tmp_path / "fs" / "boot.py").read_text() == source.read_text()
    listing = board.mpremote("fs", "ls", ":").stdout
    assert "boot.py" in listing and "lib/" in listing
    assert board.mpremote("fs", "cat", ":boot.py").stdout.replace("\r", "") == source.read_text()
    board.exec("kept = 42")
    assert board.exec("print(kept)").strip() == "42"  # resume: no reset in between
    # Without resume mpremote soft-resets first: Ctrl-D at the raw REPL; the board process restarts.
    assert "NameError" in board.mpremote("exec", "print(kept)", resume=False, check=False).stdout
    assert board.exec("print(open('boots').read())").strip() == "x"  # boot.py ran at that reset
    board.mpremote("soft-reset")
    assert board.exec("print(open('boots').read())").strip() == "xx"
    assert "MPY: soft reboot" in board.log()


def test_ctrl_c_interrupts_code_running_from_raw_paste(vboards):
    board = vboards("b")
    board.mpremote("exec", "--no-follow", "while True:\n    pass\n")
    time.sleep(0.3)
    assert board.exec("print('still here')").strip() == "still here"  # mpremote's Ctrl-C got through


def test_machine_reset_is_a_hard_reset_that_runs_main_py(vboards, tmp_path):
    folder = tmp_path / "fs"
    folder.mkdir()
    (folder / "main.py").write_text("print('main ran')\n")
    board = vboards("b", "--dir", folder)
    first = board.wait_log("main ran")
    board.mpremote("reset")  # exec machine.reset(); a board restarts and runs main.py
    board.wait_log("main ran", after=first)
    assert "[vboard] hard reset" in board.log()


def test_ctrl_d_at_the_friendly_repl_soft_resets_and_main_py_runs_again(vboards, tmp_path):
    import serial  # what a terminal program does: open the port, type

    folder = tmp_path / "fs"
    folder.mkdir()
    (folder / "main.py").write_text("print('main ran')\n")
    board = vboards("b", "--dir", folder)
    first = board.wait_log("main ran")
    with serial.Serial(board.port, 115200, timeout=0.2) as port:
        port.write(b"\r\x04")  # Ctrl-D at the friendly REPL
        board.wait_log("MPY: soft reboot", after=first)
        board.wait_log("main ran", after=first)
        deadline = time.monotonic() + 10
        seen = b""
        while b"main ran\r\n" not in seen and time.monotonic() < deadline:
            seen += port.read(256)
    assert b"MPY: soft reboot\r\n" in seen and b"main ran\r\n" in seen  # newlines as a UART sends them


def test_the_heap_is_capped_like_a_chips(vboards):
    small = vboards("small", "--heap", "64k")
    out = small.exec("import gc\ngc.collect()\nprint(gc.mem_alloc() + gc.mem_free())")
    assert 60 * 1024 <= int(out) <= 64 * 1024
    proc = small.mpremote("exec", "b = bytearray(100 * 1024)", check=False)
    assert "MemoryError" in proc.stdout + proc.stderr


def test_several_boards_at_once_each_with_its_own_filesystem(vboards, tmp_path):
    boards = [vboards("b%d" % i, "--dir", tmp_path / ("fs%d" % i)) for i in range(3)]
    assert len({b.port for b in boards}) == 3

    def name_it(pair):
        i, board = pair
        board.exec("open('me', 'w').write('board %d')" % i)
        return board.exec("import os\nprint(os.listdir('/'), open('me').read())").strip()

    with ThreadPoolExecutor(3) as pool:
        seen = list(pool.map(name_it, enumerate(boards)))
    assert seen == ["['me'] board %d" % i for i in range(3)]


def test_sigterm_powers_off_and_leaves_nothing_behind(tmp_path):
    board = VBoard(tmp_path / "b")
    assert board.board_pids and all(alive(pid) for pid in board.board_pids)
    temporary = board.stderr().split("empty temporary folder ")[1].split(";")[0]
    assert os.path.isdir(temporary)
    assert board.stop() == 0  # and stop() checks the board process is gone
    assert not os.path.exists(temporary)
    assert not os.path.exists(board.port)


def test_killing_the_supervisor_takes_the_board_process_down(tmp_path):
    board = VBoard(tmp_path / "b")
    temporary = board.stderr().split("empty temporary folder ")[1].split(";")[0]
    try:
        os.kill(board.proc.pid, signal.SIGKILL)  # no clean-up runs: the board process gets SIGHUP
        board.proc.wait(5)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in board.board_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        board.stop()  # fails if the board process is still there
    finally:
        shutil.rmtree(os.path.dirname(temporary), ignore_errors=True)  # what tools/vboard had no chance to remove


def test_a_flash_image_boots_and_keeps_what_is_written(vboards, firmware, tmp_path):
    image = os.path.join(firmware, "littlefs.img")
    with open(image, "rb") as f:
        pristine = f.read()
    flash = tmp_path / "flash.img"
    board = vboards("b", "--image", image, "--flash", flash)
    board.wait_log("[wpw] configuration error: config file config.json cannot be read")
    board.wait_log("[wpw] safe mode: the app needs a valid configuration")
    assert "/lib/wpwithin/app.mpy" in board.exec("from wpwithin import app\nprint(app.__file__)")
    board.exec("with open('note', 'w') as f:\n    f.write('kept')")
    board.stop()  # pulls the power: what was closed is on flash
    again = vboards("again", "--flash", flash)  # power on again from the same flash
    assert again.exec("print(open('note').read())").strip() == "kept"
    with open(image, "rb") as f:
        assert f.read() == pristine  # --image was copied, never written
    assert os.path.getsize(flash) == len(pristine)


def test_a_bad_image_leaves_a_board_with_no_filesystem_but_a_repl(vboards, tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\xff" * 8192)
    board = vboards("b", "--image", junk)
    board.wait_log("[vboard] cannot mount the board filesystem")
    assert board.exec("print(1 + 1)").strip() == "2"


def test_bad_arguments_are_refused(tmp_path):
    for args, words in ((["--heap", "lots"], "--heap"), (["--flash", str(tmp_path / "none.img")], "does not exist"),
                        (["--secrets", "s.json"], "go with --config")):
        proc = subprocess.run([sys.executable, VBOARD] + args,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr)


# --- tools/deploy ---------------------------------------------------------------------------------

def deploy(port, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy"), "--port", port] + list(args), capture_output=True, text=True,
                          timeout=120)


def test_deploy_puts_firmware_and_config_on_a_virtual_board_and_it_sells(vboards, gateway, tmp_path):
    port = free_port()
    config = board_files(tmp_path / "thing", gateway, port)
    board = vboards("b")  # a fresh board: stock MicroPython, empty filesystem
    proc = deploy(board.port, "--config", config, "--wait", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr + board.log()
    out = proc.stdout
    files = len(sources.lib_modules(ROOT)) + 2 + 4  # the lib, boot.py and main.py, config, secrets, CA, config.checked
    for step in ("[1/7]", "[2/7] building", "[3/7] connecting", "[5/7] copying %d files" % files,
                 "copied    boot.py", "copied    lib/wpwithin/app.mpy", "copied    secrets.json", "copied    config.checked",
                 "%d files match" % files, "board: [wpw] running: 127.0.0.1:%d" % port, "done: the app is running"):
        assert step in out, (step, out)
    secret = open(os.path.join(tmp_path / "thing", "secrets.json")).read()
    for value in (secret.split('"tokenSigningSecret": "')[1][:64], "T_S_22222222"):
        assert value not in out + proc.stderr + board.log()
    bought = wpw("buy", "127.0.0.1:%d" % port, "--service", "1", "--price", "1", "--units", "2",
                 "--gateway", gateway.url, "--ca", gateway.ca_path, "--card", card_file(tmp_path),
                 "--wallet", str(tmp_path / "wallet.json"))
    assert bought["totalPaid"] == 60
    # Deploying again copies nothing unchanged, and a stale module is removed.
    board.exec("open('lib/wpwithin/old_module.py', 'w').write('x')")
    again = deploy(board.port, "--config", config, "--wait", "20")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 copied, %d unchanged" % files in again.stdout and "removed lib/wpwithin/old_module.py" in again.stdout


def test_deploy_refuses_a_bad_config_before_touching_the_board(vboards, gateway, tmp_path):
    config = board_files(tmp_path / "thing", gateway, free_port(),
                         producer={"services": [{"id": 1, "name": "x", "prices": [
                             {"id": 1, "amount": -5, "currency": "GBP", "unitId": 1, "unitDescription": "kWh"}]}]})
    board = vboards("b")
    proc = deploy(board.port, "--config", config)
    assert proc.returncode == 2
    assert "config.producer.services[0].prices[0].amount" in proc.stderr and "nothing was deployed" in proc.stderr
    assert "[2/7]" not in proc.stdout and "raw REPL" not in board.log()  # the board never heard from us


def test_deploy_to_a_port_with_no_board_fails_cleanly(tmp_path):
    proc = deploy(str(tmp_path / "no-such-port"), "--wait", "0")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "deploy: error: mpremote exec failed on %s" % (tmp_path / "no-such-port") in proc.stderr
    assert "Traceback" not in proc.stderr


# --- the bridge's byte handling ---------------------------------------------------------------------

def test_newlines_are_cooked_as_a_uart_console_writes_them():
    cooker = NewlineCooker()
    assert cooker.cook(b"a\nb\r\nc\r") == b"a\r\nb\r\nc\r"
    assert cooker.cook(b"\nd\n") == b"\nd\r\n"  # the "\r\n" split across two reads stays one


def test_the_repl_mode_is_read_from_the_banners_even_when_split():
    mode = ReplMode()
    assert not mode.feed(b'Type "help()" for more information.\r\n>>> ')
    assert not mode.feed(b"\r\nraw REPL; CTRL-B")
    assert mode.feed(b" to exit\r\n>")
    assert not mode.feed(b'\r\nMicroPython ...\r\nType "help()" for more information.\r\n>>> ')


def test_the_boards_own_lines_show_on_tools_vboards_stdout_without_a_port_or_log(firmware, tmp_path):
    import json

    folder = board_folder(tmp_path / "fs", firmware)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"gateway": {"url": "http://127.0.0.1:9/v1"}, "producer": {"enabled": "yes"}}, f)
    with open(os.path.join(folder, "secrets.json"), "w") as f:
        f.write("{}")
    board = VBoard(tmp_path / "b", "--dir", folder)  # its stdout is read; no mpremote on its port
    try:
        assert board.process.expect("[wpw] configuration error") == \
            "[wpw] configuration error: config.producer.enabled must be true or false"
        assert board.process.expect("[wpw] safe mode").startswith("[wpw] safe mode: the app needs a valid")
    finally:
        board.stop()


def test_mpremote_ls_on_a_folder_board_shows_each_files_size(vboards, tmp_path):
    folder = tmp_path / "fs"
    (folder / "lib").mkdir(parents=True)
    (folder / "notes.txt").write_bytes(b"x" * 1234)
    board = vboards("b", "--dir", str(folder))
    listed = board.mpremote("ls", resume=False).stdout
    assert "        1234 notes.txt" in listed and "           0 lib/" in listed, listed
