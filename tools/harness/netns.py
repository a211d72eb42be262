"""Network namespaces for the tests that need more than loopback: made, wired with `ip`, always removed.

Namespaces(roles) makes one namespace per role, named with this
process's id and a count so parallel runs and groups never meet, each with its loopback up;
ip(role, ...) runs `ip -n NAME ...`, prefix(role) is what goes before a
command to run it inside (a Process's prefix). close() deletes them all,
also after a failure, and checks none is left. unavailable() says why
this machine cannot make them (not root, no iproute2), for a skip reason.
"""
import itertools
import os
import shutil
import subprocess

_MADE = itertools.count()


def ip(*args, check=True):
    proc = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise AssertionError("ip %s failed: %s" % (" ".join(args), proc.stderr.strip()))
    return proc


def unavailable():
    """None if this machine lets us create network namespaces, else the reason it does not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = "wpw-probe-%d" % os.getpid()
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return "the kernel refused `ip netns add` (%s); run as root with CAP_SYS_ADMIN and CAP_NET_ADMIN" \
            % made.stderr.strip()
    ip("netns", "del", probe, check=False)
    return None


class Namespaces:
    def __init__(self, roles, tag="wpw"):
        self.tag = "%s%d-%d" % (tag, os.getpid(), next(_MADE))
        self.names = {}
        try:
            for role in roles:
                name = "%s-%s" % (self.tag, role)
                ip("netns", "add", name)
                self.names[role] = name
                self.ip(role, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def ip(self, role, *args):
        return ip("-n", self.names[role], *args)

    def prefix(self, role):
        return ["ip", "netns", "exec", self.names[role]]

    def sysctl(self, role, setting):
        subprocess.run(self.prefix(role) + ["sysctl", "-qw", setting], check=True, timeout=20)

    def close(self):
        for name in self.names.values():
            ip("netns", "del", name, check=False)
        self.names = {}
        left = ip("netns", "list", check=False).stdout
        assert self.tag + "-" not in left, "namespaces left behind: %s" % left
