"""A block device over a bytearray, for mounting flash images (LittleFS) in RAM.

Runs under MicroPython (the unix port mounts it with vfs.VfsLfs2) and
CPython. It behaves like erased NOR flash in a partition: erased bytes
are 0xFF, erase works on whole blocks, writes land where they are told.
It must never grow or shrink its buffer (an image keeps its size) and
never import anything, so it loads anywhere.
"""

ERASED = 0xFF
# ioctl operations of MicroPython's block device protocol.
_BLOCK_COUNT = 4
_BLOCK_SIZE = 5
_BLOCK_ERASE = 6
_EIO = 5


def erased(size, block_size=4096):
    """A bytearray of `size` erased bytes, built a block at a time (no second full-size copy)."""
    data = bytearray(size)
    block = bytes([ERASED]) * block_size
    view = memoryview(data)
    for start in range(0, size, block_size):
        view[start:start + block_size] = block[:size - start]
    return data


class RamBlockDevice:
    """Extended block device protocol (with offsets), as vfs.VfsLfs2 uses it."""

    def __init__(self, data, block_size=4096):
        if len(data) % block_size or not len(data):
            raise ValueError("image of %d bytes is not a whole number of %d-byte blocks" % (len(data), block_size))
        self.data = data
        self.block_size = block_size
        self.block_count = len(data) // block_size

    def _span(self, block, offset, length):
        start = block * self.block_size + (offset or 0)
        if block < 0 or start + length > len(self.data):
            raise OSError(_EIO)  # a slice assignment past the end would grow the image
        return start

    def readblocks(self, block, buf, offset=0):
        start = self._span(block, offset, len(buf))
        buf[:] = memoryview(self.data)[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        start = self._span(block, offset, len(buf))
        self.data[start:start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == _BLOCK_COUNT:
            return self.block_count
        if op == _BLOCK_SIZE:
            return self.block_size
        if op == _BLOCK_ERASE:
            start = self._span(arg, 0, self.block_size)
            memoryview(self.data)[start:start + self.block_size] = bytes([ERASED]) * self.block_size
            return 0
        return 0  # init, deinit, sync: nothing to do in RAM
