"""The example service: "charging" holds the relay on while bought units are delivered.

Driven by the producer's delivery hooks. Each unit takes seconds_per_unit;
the relay goes off when the units are supplied or the delivery ends,
whichever comes first, so a consumer that vanishes never gets more than
it paid for. The LED shows a payment arriving. Pins are passed in.
"""
import asyncio


class ChargingHooks:
    def __init__(self, relay, led=None, seconds_per_unit=1):
        self.relay = relay
        self.led = led
        self.seconds_per_unit = seconds_per_unit
        self.supplied = 0
        self._timer = None

    async def payment_received(self, service_id, units, total):
        if self.led is not None:
            self.led.on()
            await asyncio.sleep(0.2)
            self.led.off()

    async def delivery_begin(self, service_id, units):
        if self._timer is not None:
            self._timer.cancel()  # a new session replaces the old one's timer, not races it
        self.relay.on()
        self._timer = asyncio.create_task(self._stop_after(units))

    async def _stop_after(self, units):
        await asyncio.sleep(units * self.seconds_per_unit)
        self.relay.off()

    async def delivery_end(self, service_id, units_supplied):
        self.relay.off()
        self.supplied += units_supplied
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
