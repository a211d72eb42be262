"""The mip package list (package.json at the repository root): what it must say, and rewriting it.

`mpremote mip install github:OWNER/REPO` reads package.json and copies each
[destination, url] pair, urls relative to the repository root. Must never
list a file that is not in lib/wpwithin, and never write package.json
unless asked to (tools/build --write-package-json).
"""
import json
import os

from imagebuild import sources

VERSION = "0.1.0"


def expected(root, version=VERSION):
    """The package.json content for the lib as it is in `root` now."""
    modules = sources.lib_modules(root)
    return {"urls": [[module, "lib/" + module] for module in modules], "version": version}


def write(root):
    """Rewrite root/package.json from lib/wpwithin, keeping its version; returns the path."""
    path = os.path.join(root, "package.json")
    version = VERSION
    if os.path.isfile(path):
        with open(path) as f:
            version = json.load(f).get("version", VERSION)
    with open(path, "w") as f:
        f.write(render(expected(root, version)))
    return path


def render(content):
    """package.json text: one url pair a line, so a diff shows the module added or removed."""
    lines = ['    [%s, %s]' % (json.dumps(dest), json.dumps(url)) for dest, url in content["urls"]]
    return '{\n  "urls": [\n%s\n  ],\n  "version": %s\n}\n' % (",\n".join(lines), json.dumps(content["version"]))
