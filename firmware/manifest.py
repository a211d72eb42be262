# Freeze manifest for Within for MicroPython: builds lib/wpwithin into your own firmware.
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/repo/firmware/manifest.py
#
# Frozen modules run from flash and cost no filesystem space. boot.py, main.py,
# config.json and secrets.json still go onto the board's filesystem (mpremote cp).
# From another manifest, options choose what comes along:
#   include("/path/to/this/repo/firmware/manifest.py", port_manifest=False, producer_only=True)
# port_manifest (default True): also freeze what stock firmware freezes (asyncio,
#   ntptime, mip, requests...); the lib needs asyncio, so only turn this off when
#   your own manifest already includes "$(PORT_DIR)/boards/manifest.py".
# producer_only (default False): leave out the consumer-only modules, as
#   tools/build --producer-only does.
metadata(description="Within for MicroPython: payments between IoT devices", version="0.1.0")

options.defaults(port_manifest=True, producer_only=False)

if options.port_manifest:
    include("$(PORT_DIR)/boards/manifest.py")

# Keep in step with tools/imagebuild/sources.py (host_tests/test_build.py checks).
CONSUMER_ONLY = ("card.py", "consumer.py", "consumer_role.py", "scanner.py", "wallet.py")

if options.producer_only:
    import os

    # Paths here are relative to this file: the manifest tool runs it from firmware/.
    files = sorted(f for f in os.listdir("../lib/wpwithin") if f.endswith(".py") and f not in CONSUMER_ONLY)
    package("wpwithin", files=files, base_path="../lib")
else:
    package("wpwithin", base_path="../lib")
