"""Decides what goes on the board: the lib modules, the entry points, optional config files.

Reads the checkout only. Must never write a file, and never import the lib
it lists (the build host need not be able to run it).
"""
import ast
import json
import os

from imagebuild import BuildError

PACKAGE = "wpwithin"
# Modules only the consumer (shopper) role uses; --producer-only leaves them out.
CONSUMER_ONLY = ("card.py", "consumer.py", "consumer_role.py", "scanner.py", "wallet.py")
# MicroPython runs these from the filesystem root at reset, and only as source.
ENTRY_POINTS = ("boot.py", "main.py")


def lib_dir(root):
    return os.path.join(root, "lib", PACKAGE)


def lib_modules(root, producer_only=False):
    """Sorted paths of the lib's .py files relative to lib/ ("wpwithin/x.py")."""
    base = lib_dir(root)
    if not os.path.isdir(base):
        raise BuildError("%s is missing: run tools/build from a checkout of the project" % base)
    found = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, name), os.path.dirname(base))
                found.append(relative.replace(os.sep, "/"))
    if not found:
        raise BuildError("%s holds no .py modules" % base)
    if producer_only:
        consumer_only = ["%s/%s" % (PACKAGE, name) for name in CONSUMER_ONLY]
        found = [m for m in found if m not in consumer_only]
    return sorted(found)


def excluded_modules(root, producer_only):
    """The lib modules left out of this build, relative to lib/."""
    if not producer_only:
        return []
    kept = set(lib_modules(root, producer_only=True))
    return [m for m in lib_modules(root) if m not in kept]


def entry_points(root):
    """Paths of boot.py and main.py at the checkout root; BuildError naming any that is missing."""
    paths = [os.path.join(root, name) for name in ENTRY_POINTS]
    missing = [name for name, path in zip(ENTRY_POINTS, paths) if not os.path.isfile(path)]
    if missing:
        raise BuildError(
            "%s missing at the repository root (%s): the board runs boot.py and main.py from its "
            "filesystem at reset, so every image needs them" % (" and ".join(missing), root))
    return paths


def top_level_imports(path):
    """Module names `path` imports at module level (what importing it pulls in at once)."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    names = []
    statements = list(tree.body)
    while statements:
        node = statements.pop(0)
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend("%s.%s" % (node.module, alias.name) for alias in node.names)
        elif isinstance(node, (ast.Try, ast.If)):
            for block in (node.body, node.orelse, getattr(node, "finalbody", []),
                          *[h.body for h in getattr(node, "handlers", [])]):
                statements.extend(block)
    return names


def broken_imports(root, modules, excluded):
    """Warnings for kept modules that import an excluded one at module level."""
    gone = {m[:-3].replace("/", ".") for m in excluded}
    warnings = []
    for module in modules:
        hits = sorted(set(top_level_imports(os.path.join(root, "lib", module))) & gone)
        if hits:
            warnings.append("%s imports %s at module level, so it cannot be imported from this image"
                            % (module, ", ".join(hits)))
    return warnings
