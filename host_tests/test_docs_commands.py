"""Every command the docs show in a code block that names one of our tools exists, and its options are real.

The docs are README.md, docs/*.md and firmware/README.md. A command names
a tool when it runs `tools/NAME` (directly or with a Python or MicroPython
in front), `wpw` or `make TARGET`. The tool must exist, and each --option
the line gives must be one its --help lists (for wpw, that of the
subcommand; for make, the target must be in the Makefile and the options
in DEMO_ARGS or BENCH_ARGS must be those of tools/demo.py or
tools/bench.py). Anything else in a code block (mpremote, esptool,
sample output) is left alone.
"""
import functools
import glob
import os
import re
import shlex
import subprocess
import sys

from harness.things import ROOT

WPW = os.path.join(os.path.dirname(sys.executable), "wpw")
CHECKOUT = {"PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "tools"), os.path.join(ROOT, "lib")])}
DOCS = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "firmware", "README.md")] + \
    sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MAKE_ARGS = {"DEMO_ARGS": "tools/demo.py", "BENCH_ARGS": "tools/bench.py"}


def code_lines(path):
    """(line number, command line) of every fenced code block, continuation lines joined."""
    found, fence, pending = [], False, None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = not fence
                continue
            if not fence:
                continue
            if pending is not None:
                stripped = pending[1] + " " + stripped
                number = pending[0]
                pending = None
            if stripped.endswith("\\"):
                pending = (number, stripped[:-1])
                continue
            found.append((number, stripped))
    return found


def commands(line):
    """The simple commands of a shell line: lists of words, comments and `&` dropped."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: sample output, not a command
        return []
    out, current = [], []
    for word in words + [";"]:
        if word in (";", "&&", "||", "|", "&"):
            if current:
                out.append(current)
            current = []
        else:
            current.append(word.rstrip("&;"))
    return out


def tool_of(words):
    """(tool argv to ask --help, the words after it) when the command names one of our tools, else None."""
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the command
        words = words[1:]
    if not words:
        return None
    first = words[0]
    if os.path.basename(first) in ("python", "python3", "micropython") and len(words) > 1:
        words, first = words[1:], words[1]
    if first.startswith("tools/") and not first.endswith("/"):
        return [first], words[1:]
    if first == "wpw":
        return [WPW], words[1:]
    if first == "make":
        return ["make"], words[1:]
    return None


@functools.lru_cache(maxsize=None)
def help_text(argv):
    argv = list(argv)
    if argv[0].startswith("tools/"):
        path = os.path.join(ROOT, argv[0])
        assert os.path.isfile(path), "%s does not exist" % argv[0]
        argv = ([path] if os.access(path, os.X_OK) and not path.endswith(".py") else [sys.executable, path]) + argv[1:]
    proc = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=dict(os.environ, **CHECKOUT))
    assert proc.returncode == 0, (argv, proc.stderr)
    return proc.stdout


def lists(help_out, option):
    """True when --help's text names `option` as an option (not as a part of a longer one)."""
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(option), help_out) is not None


def options(words):
    return [w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("--") and w.strip("[]") != "--"]


def subcommand(tool, words):
    """The subcommand a line runs (wpw buy, tools/gateway ledger): its first word, when `TOOL WORD --help`
    answers with a help of its own."""
    if not words or words[0].startswith("-") or not re.match(r"^[a-z]+$", words[0]):
        return None
    try:
        own = help_text(tuple(tool + [words[0]]))
    except AssertionError:
        return None
    return words[0] if own != help_text(tuple(tool)) else None


def makefile_targets():
    with open(os.path.join(ROOT, "Makefile")) as f:
        return set(re.findall(r"^([a-z][\w-]*):", f.read(), re.M))


def test_every_documented_command_exists_and_takes_the_options_it_is_shown_with():
    checked, wrong = 0, []
    for path in DOCS:
        where = os.path.relpath(path, ROOT)
        for number, line in code_lines(path):
            for words in commands(line):
                found = tool_of(words)
                if found is None:
                    continue
                tool, rest = found
                checked += 1
                if tool == ["make"]:
                    targets = [w for w in rest if "=" not in w]
                    wrong += ["%s:%d: make %s: no such target" % (where, number, t) for t in targets
                              if t not in makefile_targets()]
                    for assignment in (w for w in rest if "=" in w):
                        name, _, value = assignment.partition("=")
                        if name in MAKE_ARGS:
                            given = options(shlex.split(value))
                            known = help_text((MAKE_ARGS[name],))
                            wrong += ["%s:%d: %s: %s has no %s" % (where, number, name, MAKE_ARGS[name], o)
                                      for o in given if not lists(known, o)]
                    continue
                if tool[0].startswith("tools/") and not os.path.isfile(os.path.join(ROOT, tool[0])):
                    wrong.append("%s:%d: %s does not exist" % (where, number, tool[0]))
                    continue
                sub = subcommand(tool, rest)
                known = help_text(tuple(tool + ([sub] if sub else [])))
                name = " ".join([tool[0] if tool[0] != WPW else "wpw"] + ([sub] if sub else []))
                wrong += ["%s:%d: %s has no option %s" % (where, number, name, o)
                          for o in options(rest) if not lists(known, o)]
                print("%s:%d: %s %s" % (where, number, name, " ".join(options(rest))))
    print("%d documented commands checked" % checked)
    assert checked > 40  # the docs do show commands: the extraction found them
    assert not wrong, "\n".join(wrong)


def test_the_check_finds_a_wrong_option_and_a_missing_tool(tmp_path):
    """The check itself: a made-up option and a made-up tool are caught."""
    doc = tmp_path / "doc.md"
    doc.write_text("```sh\nwpw scan --seconds 3 --louder\ntools/nothing --x\n```\n")
    lines = code_lines(str(doc))
    (tool, rest), = [tool_of(w) for _, line in lines[:1] for w in commands(line)]
    known = help_text(tuple(tool + [subcommand(tool, rest)]))
    assert [o for o in options(rest) if not lists(known, o)] == ["--louder"]
    assert not os.path.isfile(os.path.join(ROOT, tool_of(commands(lines[1][1])[0])[0][0]))
