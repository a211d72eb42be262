"""Which host files a configuration brings onto a board, and whether the lib accepts them.

A Thing's board holds /config.json, /secrets.json and, when
config.gateway.ca names one, the CA certificate at that path. plan()
finds them on the host: the secrets beside the config unless given, the
CA at the config's own path relative to the config's folder unless
given. check() runs the lib's own config loader (wpwithin.config, under
CPython) so a mistake is reported, naming the field, before anything
touches a board; write_checked() then makes config.checked, the checked
form a board starts from without loading the checker (wpwithin.checked_config). Used by tools/vboard and tools/deploy. Never prints,
returns or logs the contents of a file: secrets.json holds keys.
"""
import json
import os


class Plan:
    def __init__(self):
        self.files = []  # (host path, board path)
        self.problems = []  # sentences

    def add(self, host, board):
        self.files.append((os.path.abspath(host), board))


def plan(config, secrets=None, ca=None, secrets_required=True):
    """The files to put on a board for `config`; problems say what is missing."""
    out = Plan()
    if not os.path.isfile(config):
        out.problems.append("config file %s does not exist" % config)
        return out
    out.add(config, "config.json")
    if secrets is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(config)), "secrets.json")
        secrets = beside if os.path.isfile(beside) or secrets_required else None
    if secrets is not None:
        if os.path.isfile(secrets):
            out.add(secrets, "secrets.json")
        else:
            out.problems.append("secrets file %s does not exist (give --secrets FILE)" % secrets)
    try:
        with open(config, "rb") as f:
            obj = json.loads(f.read().decode("utf-8"))
        board_ca = obj.get("gateway", {}).get("ca")
        broker_cas = [(section, obj.get(section, {}).get("brokerCa")) for section in ("network", "consumer")]
    except (ValueError, AttributeError):
        board_ca, broker_cas = None, []  # check() names the problem
    if isinstance(board_ca, str) and board_ca:
        host_ca = ca or os.path.join(os.path.dirname(os.path.abspath(config)), board_ca)
        if os.path.isfile(host_ca):
            out.add(host_ca, board_ca.lstrip("/"))
        else:
            out.problems.append("config.gateway.ca names %s, which is not beside the config: give --ca FILE"
                                % board_ca)
    elif ca:
        out.problems.append("--ca given, but the config has no gateway.ca saying where the board reads it")
    copied = [board_ca]
    for section, broker_ca in broker_cas:
        if isinstance(broker_ca, str) and broker_ca and broker_ca not in copied:
            copied.append(broker_ca)
            host_ca = os.path.join(os.path.dirname(os.path.abspath(config)), broker_ca)
            if os.path.isfile(host_ca):
                out.add(host_ca, broker_ca.lstrip("/"))
            else:
                out.problems.append("config.%s.brokerCa names %s, which is not beside the config"
                                    % (section, broker_ca))
    return out


def check(config, secrets=None):
    """None when the lib accepts the config (and secrets, when given); else its message naming the field."""
    from wpwithin import config as config_file

    try:
        if secrets is not None:
            config_file.load(config, secrets)
        else:
            config_file.check(config_file.read(config))
    except config_file.ConfigError as exc:
        return "configuration error: %s" % exc
    return None


def write_checked(config, secrets, folder):
    """(host path, board path) of config.checked for a config and secrets check() accepted, written in folder."""
    from wpwithin import config as config_file

    path = os.path.join(folder, "config.checked")
    with open(path, "w") as f:
        f.write(config_file.checked_form(config, secrets))
    return path, "config.checked"
