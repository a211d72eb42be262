"""A Thing whose journal compaction fails keeps selling, and compacts on a later sweep.

The sweep runs every 5 s, so this waits for two sweeps (bounded, never a timing assertion).
"""
import asyncio
import json
import os

from test_roles import HOST, WAIT, GatewayStandIn, make_thing, stop

from wpwithin import http_client
from wpwithin.journal import FileJournal


async def request_total(thing, client_id):
    body = json.dumps({"clientID": client_id, "selectedNumberOfUnits": 1, "selectedPriceID": 1}).encode()
    status, _, answer = await http_client.request("POST", HOST, thing.server.port, "/service/1/requestTotal",
                                                  body, {"Content-Type": "application/json"})
    return status, answer


async def until(check, seconds):
    for _ in range(int(seconds * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within %d s" % seconds)


def test_a_failed_compaction_leaves_the_journal_appending_and_is_retried_next_sweep():
    async def main():
        gateway = GatewayStandIn()
        await gateway.server.start()
        seller = make_thing("compaction", gateway.url, producer=True)
        messages = []
        seller.log = messages.append
        tmp = None
        try:
            await seller.start()
            journal = seller.journal
            tmp = journal.path + ".tmp"
            os.mkdir(tmp)  # the temporary file cannot be written
            journal.compact_at = 0
            compactions = []
            compact = journal.compact

            def counted(records):
                compactions.append("failed")
                compact(records)
                compactions[-1] = "done"
            journal.compact = counted
            assert (await request_total(seller, "car-1"))[0] == 200
            await until(lambda: compactions, 5 + WAIT)
            failed = [m for m in messages if m.startswith("journal: compaction failed")]
            assert len(failed) == 1 and "appending as before, retrying" in failed[0], messages
            status, answer = await request_total(seller, "car-2")  # a closed journal answered 500 here
            assert status == 200, answer
            os.rmdir(tmp)
            tmp = None
            await until(lambda: len(compactions) >= 2, 5 + WAIT)
            assert compactions[:2] == ["failed", "done"], compactions  # retried on the next sweep
            assert (await request_total(seller, "car-3"))[0] == 200
            path = journal.path
            await seller.stop()
            clients = sorted(r[2] for r in FileJournal(path).load() if r[0] == "q")
            assert clients == ["car-1", "car-2", "car-3"], clients
        finally:
            if tmp is not None:
                os.rmdir(tmp)
            await stop(gateway, seller)
    asyncio.run(main())
