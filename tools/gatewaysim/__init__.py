"""Simulated Worldpay Online Payments gateway (host tool, CPython 3.11 only).

Modules, inner to outer: cards, fields, errors, merchants, faults (pure
rules); ledger (SQLite); api (request -> reply); tlsca (local test CA);
server (HTTP/1.1 sockets); simulator (assembles them); report and cli.
This package never talks to the real Worldpay and never accepts live keys.
"""
