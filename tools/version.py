"""The project's version, read from pyproject.toml (its one source), and the --version option of every command.

Tools run from the checkout read pyproject.toml beside tools/; a wpw
installed without the checkout asks the installed package's metadata,
which pip took from the same file. Never writes anything.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTRIBUTION = "wpwithin-micropython"


def version():
    """The version string, e.g. 0.1.0."""
    path = os.path.join(ROOT, "pyproject.toml")
    if os.path.exists(path):
        import tomllib
        with open(path, "rb") as f:
            return tomllib.load(f)["project"]["version"]
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a copied tool outside checkout and venv
        return "unknown (no pyproject.toml beside tools/ and not installed)"


def add_option(parser):
    """Give an argparse parser --version, printing "PROG VERSION"."""
    parser.add_argument("--version", action="version", version="%(prog)s " + version(),
                        help="print the version and exit")
