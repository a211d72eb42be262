"""A real mosquitto for the tests: found (or installed), configured as docs/mqtt.md says, always stopped.

mosquitto() finds the broker and mosquitto_passwd, installing the Debian
package when missing and this is root with apt-get (`make test` runs
`python3 -m harness.broker --install` before pytest), else fails with the
command that installs it. Broker writes a configuration into a
folder: per-listener settings, no anonymous clients, a password file (made
with mosquitto_passwd, so no password is ever on a command line) and an
ACL file where each Thing's user may write only under
wpw/v1/things/<its serverID>/# and each consumer's user may only read
wpw/v1/things/#; a plain listener and a TLS listener whose certificate
comes from the gateway simulator's test CA (gatewaysim.tlsca). It runs
mosquitto in the foreground as one harness Process (in a namespace with
`prefix`), waits until it says its listeners are open, and is stopped
with SIGTERM, then SIGKILL. Users and passwords exist only in the folder
and in memory: nothing here prints a password.
"""
import os
import pwd
import secrets
import shutil
import subprocess
import sys

from harness.process import Failed, Process, free_ports

PREFIX = "wpw/v1/things/"
INSTALL = "apt-get install -y mosquitto"
FOLDERS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")  # sbin is not on every user's PATH


def _find(name):
    found = shutil.which(name)
    if found:
        return found
    for folder in FOLDERS:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def mosquitto(install=True):
    """(mosquitto, mosquitto_passwd) paths; installs the Debian package when missing and allowed (root with
    apt-get), else raises Failed naming the command to run."""
    paths = _find("mosquitto"), _find("mosquitto_passwd")
    if all(paths):
        return paths
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print("installing mosquitto: %s" % INSTALL, file=sys.stderr, flush=True)
        proc = subprocess.run(INSTALL.split(), env=env, capture_output=True, text=True)
        if proc.returncode != 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
            proc = subprocess.run(INSTALL.split(), env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise Failed("`%s` failed (exit %s): %s" % (INSTALL, proc.returncode, proc.stderr.strip()[-600:]))
        return mosquitto(install=False)
    raise Failed("mosquitto (the MQTT broker the tests run) is not installed; install it with: sudo %s" % INSTALL)


def acl_text(things, consumers):
    """The ACL file: each Thing's user writes only under its own serverID, each consumer's user only reads."""
    lines = ["# Things: each writes only its own advert and status (user name = serverID)"]
    for server_id in things:
        lines += ["user %s" % server_id, "topic write %s%s/#" % (PREFIX, server_id), ""]
    lines.append("# consumers and fleet views: read every Thing, write nothing")
    for name in consumers:
        lines += ["user %s" % name, "topic read %s#" % PREFIX, ""]
    return "\n".join(lines)


def _listener(port, host, files):
    return ["listener %d %s" % (port, host), "allow_anonymous false",
            "password_file %s" % files["passwd"], "acl_file %s" % files["acl"]]


def config_text(port, tls_port, host, files, user):
    """mosquitto.conf: the plain and the TLS listener, each with its own (identical) security settings."""
    lines = ["# generated for a test run; docs/mqtt.md explains every line",
             "per_listener_settings true", "persistence false", "user %s" % user,
             "log_dest stderr", "log_type error", "log_type warning", "log_type notice", "log_type information",
             "log_timestamp false", "max_packet_size 65536", ""]
    lines += _listener(port, host, files) + [""]
    lines += _listener(tls_port, host, files)
    lines += ["cafile %s" % files["ca"], "certfile %s" % files["cert"], "keyfile %s" % files["key"],
              "tls_version tlsv1.2", ""]
    return "\n".join(lines)


class Broker:
    """mosquitto with users for `things` (serverIDs) and `consumers`: url, tls_url, ca_path, password(user).

    host: the address it listens on (in the namespace of `prefix`); names:
    more names its TLS certificate is valid for. start: a function making
    the Process (a Things group's start, so the group stops it), or None.
    """

    def __init__(self, folder, things=(), consumers=("consumer",), host="127.0.0.1", names=(), prefix=(),
                 start=None, ports=None):
        from gatewaysim import tlsca  # the repository's one test CA

        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.broker, passwd_tool = mosquitto()
        self.host, self.prefix, self._start = host, list(prefix), start
        self.passwords = {name: secrets.token_hex(12) for name in list(things) + list(consumers)}
        tls = tlsca.ensure_credentials(os.path.join(self.folder, "tls"), (host,) + tuple(names))
        self.ca_path = tls.ca_cert
        self.files = {"passwd": os.path.join(self.folder, "passwd"), "acl": os.path.join(self.folder, "acl"),
                      "ca": tls.ca_cert, "cert": tls.server_cert, "key": tls.server_key,
                      "conf": os.path.join(self.folder, "mosquitto.conf")}
        with open(self.files["passwd"], "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write("".join("%s:%s\n" % item for item in self.passwords.items()))
        hashed = subprocess.run([passwd_tool, "-U", self.files["passwd"]], capture_output=True, text=True)
        if hashed.returncode != 0:
            raise Failed("mosquitto_passwd -U failed: %s" % hashed.stderr.strip())
        with open(self.files["acl"], "w") as f:
            f.write(acl_text(things, consumers))
        self.port, self.tls_port = ports or (free_ports(2) if host == "127.0.0.1" else (1883, 8883))
        with open(self.files["conf"], "w") as f:
            f.write(config_text(self.port, self.tls_port, host, self.files, pwd.getpwuid(os.geteuid()).pw_name))
        self.url = "mqtt://%s:%d" % (host, self.port)
        self.tls_url = "mqtts://%s:%d" % (host, self.tls_port)
        self.process = None
        self.restart()

    def password(self, user):
        return self.passwords[user]

    def restart(self, timeout=15):
        """(Re)start mosquitto on the same ports and files; returns once it says it runs."""
        self.stop()
        argv = [self.broker, "-c", self.files["conf"]]
        self.process = (self._start("mosquitto", argv, prefix=self.prefix) if self._start
                        else Process("mosquitto", argv, prefix=self.prefix))
        while not self.process.expect("mosquitto version", timeout).endswith(" running"):
            pass  # "... starting", then "... running" once every listener is open
        return self

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # make test: get mosquitto before the suite needs it
    if sys.argv[1:] != ["--install"]:
        sys.exit("usage: %s --install   (find mosquitto, install it when missing and this is root)" % sys.argv[0])
    try:
        print("mosquitto: %s" % mosquitto()[0])
    except Failed as exc:
        sys.exit(str(exc))
