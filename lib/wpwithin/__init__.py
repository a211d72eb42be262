"""Within for MicroPython: payments between Things (producer and consumer roles).

The protocol core (wire, catalogue, ledger, delivery_token, consumer,
producer) does no I/O; the shells around it move bytes. Importing this
package imports nothing else, so a board only loads what it uses.
"""
