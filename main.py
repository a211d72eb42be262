# main.py: start the app (lib/wpwithin/app.py) with this board's pins and the
# example charging service. Safe mode, a bad config or Ctrl-C leave you at the
# REPL, with the state kept for inspection:
#   from wpwithin import repl
#   repl.status()     # mode, WiFi, clock, services, orders and units left, errors
#   repl.restart()    # start the app again (Ctrl-C stops it)
from wpwithin import app, repl

board = repl.make_board()
app.main(board, repl.make_hooks(board))
