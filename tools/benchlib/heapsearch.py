"""The smallest heap at which a workload passes, by bisection; bounded in trials and time.

trial(heap) -> (passed, why) runs the workload once in a fresh process
capped at `heap` bytes. Heap use is not perfectly repeatable (random
tokens and order ids, GC and task timing, socket buffers): near the edge
a heap may pass one run in four. So a heap passes only when `repeats`
runs in a row pass, and fails at the first run that fails. The search
brackets the answer ([known too small, passes]), doubling the upper end
until it passes, halves the bracket down to `step` bytes, and then tries
the answer once more; an answer that fails then is raised by one step,
at most a few times. Each heap tried is a whole number of steps.
"""
import time

MAX_HEAP = 8 * 1024 * 1024
MAX_TRIALS = 80  # runs, not heaps
CONFIRM_TRIES = 8  # raises of 1, 2, 4 ... 128 steps


class NotFound(RuntimeError):
    pass


def minimum(trial, too_small, first_guess, step, seconds, log=None, repeats=1):
    """{"heap": bytes, "trials": n, "log": [[heap, passed, why], ...]}; NotFound with the last reason.

    trials counts runs (a pass costs `repeats` of them).
    """
    history = []
    deadline = time.monotonic() + seconds

    def run(heap):
        if len(history) >= MAX_TRIALS or time.monotonic() > deadline:
            raise NotFound("search stopped after %d runs (%.0f s budget); bracket not closed"
                           % (len(history), seconds))
        for attempt in range(repeats):
            passed, why = trial(heap)
            history.append([heap, passed, why])
            if not passed:
                break
        if log:
            log("heap %7d: %s" % (heap, "pass x%d" % repeats if passed
                                  else "fail (run %d: %s)" % (attempt + 1, why)))
        return passed

    low = max(step, too_small // step * step)
    high = max(low + step, -(-first_guess // step) * step)
    while not run(high):
        low = high
        high *= 2
        if high > MAX_HEAP:
            raise NotFound("fails even with %d bytes: %s" % (low, history[-1][2]))
    while high - low > step:
        middle = low + (high - low) // 2 // step * step
        if run(middle):
            high = middle
        else:
            low = middle
    raise_by = step
    for _ in range(CONFIRM_TRIES):
        if run(high):
            return {"heap": high, "trials": len(history), "log": history}
        high += raise_by
        raise_by *= 2
    raise NotFound("no repeatable pass up to %d bytes: %s" % (high, history[-1][2]))


def band(history):
    """(lowest heap a single run passed at, highest heap a run failed at); None where there was none."""
    passed = [heap for heap, ok, _ in history if ok]
    failed = [heap for heap, ok, _ in history if not ok]
    return (min(passed) if passed else None), (max(failed) if failed else None)
