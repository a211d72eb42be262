"""A flash chip for the virtual board: LittleFS's block device over a flash image file.

Runs under the MicroPython unix port (boardshell.py mounts it with
vfs.VfsLfs2). Reads and writes go straight to the image file at their
offsets, so the whole image never sits in the GC heap (the heap is capped
like a chip's) and every write survives the board process being killed,
as flash survives a power cut. Erased bytes are 0xFF; erase works on
whole blocks. It must never change the image's size, and never touch any
other file.
"""

_BLOCK_COUNT = 4
_BLOCK_SIZE = 5
_BLOCK_ERASE = 6
_EIO = 5
_ERASED = b"\xff" * 256  # erase writes this 16 times per block: 256 bytes of heap, not 4 KiB


class FlashFile:
    """Extended block device protocol (offsets allowed), as vfs.VfsLfs2 uses it."""

    def __init__(self, path, block_size=4096):
        self.file = open(path, "r+b")  # opened now: boardshell unmounts the host filesystem next
        size = self.file.seek(0, 2)
        if not size or size % block_size:
            self.file.close()
            raise ValueError("flash image %s: %d bytes is not a whole number of %d-byte blocks"
                             % (path, size, block_size))
        self.block_size = block_size
        self.block_count = size // block_size

    def _seek(self, block, offset, length):
        start = block * self.block_size + (offset or 0)
        if block < 0 or start + length > self.block_count * self.block_size:
            raise OSError(_EIO)  # past the end would grow the image
        self.file.seek(start)

    def readblocks(self, block, buf, offset=0):
        self._seek(block, offset, len(buf))
        if self.file.readinto(buf) != len(buf):
            raise OSError(_EIO)

    def writeblocks(self, block, buf, offset=None):
        self._seek(block, offset, len(buf))
        self.file.write(buf)

    def ioctl(self, op, arg):
        if op == _BLOCK_COUNT:
            return self.block_count
        if op == _BLOCK_SIZE:
            return self.block_size
        if op == _BLOCK_ERASE:
            self._seek(arg, 0, self.block_size)
            for _ in range(self.block_size // len(_ERASED)):
                self.file.write(_ERASED)
            return 0
        return 0  # init, deinit, sync: every write is already in the file
