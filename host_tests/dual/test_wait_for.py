"""net_errors.wait_for: a deadline that never loses a cancel, on both runtimes.

A Ctrl-C reaches a command as a cancel of its main task; if what the task
awaited finished in the same loop round, CPython 3.11's asyncio.wait_for
returned its result and the cancel was lost (wpw redeem then finished a
delivery the user had interrupted, and exited 0).
"""
import asyncio

from wpwithin.net_errors import wait_for


def test_a_cancel_that_lands_as_the_awaited_finishes_is_not_lost():
    async def main():
        done = asyncio.Event()
        outcome = []

        async def caller():
            try:
                outcome.append(await wait_for(done.wait(), 5))
                await asyncio.sleep(0)
                outcome.append("went on")
            except asyncio.CancelledError:
                outcome.append("cancelled")

        task = asyncio.create_task(caller())
        await asyncio.sleep(0)  # the caller now waits
        done.set()
        task.cancel()  # in the same round as what it waits for finishes
        await asyncio.sleep(0.05)
        return outcome

    assert asyncio.run(main()) == ["cancelled"]


def test_results_and_timeouts_are_asyncio_wait_fors():
    async def main():
        async def answer():
            await asyncio.sleep(0)
            return 42

        async def slow():
            await asyncio.sleep(1)

        got = await wait_for(answer(), 1)
        try:
            await wait_for(slow(), 0.01)
            late = "no timeout"
        except asyncio.TimeoutError:
            late = "timed out"
        return got, late

    assert asyncio.run(main()) == (42, "timed out")
