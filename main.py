# main.py: start the configured roles (lib/wpwithin/app.py). Safe mode, a bad
# config or Ctrl-C leave you at the REPL; there `from wpwithin import repl`
# then repl.status() shows the state and repl.restart() starts the app again.
import asyncio

from wpwithin import app, repl

board = repl.make_board()
try:
    asyncio.run(app.run(board, hooks=repl.make_hooks(board)))
except KeyboardInterrupt:
    print("[wpw] stopped. from wpwithin import repl; repl.status(); repl.restart()")
