"""The ESP32 board layer with stand-ins for machine, network and ntptime: the NTP server asked, and why the clock
is not set (what the producer's 503 and the log then say)."""
import sys

FAKES = ("machine", "network", "ntptime", "wpwithin.board_esp32")


class Pin:
    OUT = IN = PULL_UP = 0

    def __init__(self, *args, **kwargs):
        pass

    def value(self, *args):
        return 1


class Fake:
    pass


def load(ntp_answers):
    machine, network, ntptime = Fake(), Fake(), Fake()
    machine.Pin = Pin
    network.STA_IF = 0
    network.WLAN = lambda interface: Fake()
    ntptime.host = "pool.ntp.org"
    ntptime.asked = []

    def settime():
        ntptime.asked.append(ntptime.host)
        if not ntp_answers:
            raise OSError(110)

    ntptime.settime = settime
    saved = dict((name, sys.modules.get(name)) for name in FAKES)
    sys.modules.update({"machine": machine, "network": network, "ntptime": ntptime})
    sys.modules.pop("wpwithin.board_esp32", None)
    try:
        from wpwithin.board_esp32 import Esp32Board

        return Esp32Board(), ntptime
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        sys.modules["ntptime"] = ntptime  # sync_time imports it when called


def test_the_clock_is_set_from_the_configured_ntp_server_and_a_failure_says_which():
    board, ntptime = load(ntp_answers=False)
    try:
        board.time = lambda: 0  # a board fresh from reset: 1970 (or 2000)
        assert board.clock_problem() == "WiFi is not up, so the NTP server cannot be asked"
        assert board.sync_time("ntp.bench.example", attempts=1) is False
        assert ntptime.asked == ["ntp.bench.example"]
        assert board.clock_problem() == ("no answer from NTP server ntp.bench.example: set network.ntpServer to "
                                         "one this network reaches")
        board.time = lambda: 1767225600  # set after all
        assert board.clock_problem() is None
        board, ntptime = load(ntp_answers=True)
        assert board.sync_time("10.0.0.1", attempts=1) is True and ntptime.asked == ["10.0.0.1"]
    finally:
        sys.modules.pop("ntptime", None)
