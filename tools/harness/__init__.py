"""Starting Things, boards and gateways on this host, for the tests, the bench and the demo.

  process   the one child-process type: own session, output read by a thread,
            every wait with a deadline, always stopped (SIGTERM, then SIGKILL); free ports
  things    a Thing's config and secrets for loopback (or a namespace); Things,
            consumers and the gateway started and stopped as a group; the heap report
  shopping  CPython consumers buying from a producer: the one shopping loop
  netns     network namespaces made, wired with `ip` and always removed
  broker    mosquitto with the documented users, ACLs and TLS listener
  vboard    virtual boards (tools/vboard) driven with mpremote
Never imported by lib/ or by anything that runs on a board.
"""
