# main.py: start the app (lib/wpwithin/app.py) with this board's pins and the
# example charging service. Safe mode, a bad config or Ctrl-C leave you at the
# REPL, with the state kept for inspection:
#   from wpwithin import repl
#   repl.status()     # mode, WiFi, clock, services, orders and units left, errors
#   repl.restart()    # start the app again (Ctrl-C stops it)
# repl is not imported here: a running board keeps its heap for the Thing.
from wpwithin import app

board = app.make_board()
app.main(board, app.make_hooks(board))
