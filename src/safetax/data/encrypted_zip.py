"""A one-member zip encrypted with the traditional PKWARE cipher (ZipCrypto), which ``zipfile`` reads.

GPQA's authors ask that its questions never sit in plain text where a crawler could read them, and
ship them in a password-protected zip; ``zipfile`` can read such a zip but not write one. This module
writes the same kind, so that ``safetax data fetch`` never puts GPQA's CSV on disk unencrypted. The
cipher is obfuscation against crawlers, as GPQA intends, not protection against a reader who wants
the text (the password is public).

>>> import io, zipfile
>>> buf = io.BytesIO()
>>> encrypted_zip(buf, "q.csv", b"a,b\\n1,2\\n", b"pw")
>>> z = zipfile.ZipFile(buf)
>>> z.infolist()[0].flag_bits & 1, z.open("q.csv", pwd=b"pw").read()
(1, b'a,b\\n1,2\\n')
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import BinaryIO

_DOS_DATE = (1 << 5) | 1  # 1980-01-01, the earliest DOS date: the zip's bytes depend on the content only
_DEFLATE, _ENCRYPTED, _VERSION = 8, 0x1, 20


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


class _Keys:
    """The cipher's three keys (APPNOTE 6.1.5), updated with every plaintext byte."""

    def __init__(self, password: bytes) -> None:
        self.k0, self.k1, self.k2 = 0x12345678, 0x23456789, 0x34567890
        for b in password:
            self.update(b)

    def update(self, b: int) -> None:
        self.k0 = _CRC[(self.k0 ^ b) & 0xFF] ^ (self.k0 >> 8)
        self.k1 = ((self.k1 + (self.k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        self.k2 = _CRC[(self.k2 ^ (self.k1 >> 24)) & 0xFF] ^ (self.k2 >> 8)

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray(len(data))
        for i, b in enumerate(data):
            t = (self.k2 | 2) & 0xFFFF
            out[i] = b ^ (((t * (t ^ 1)) >> 8) & 0xFF)
            self.update(b)
        return bytes(out)


def encrypted_zip(out: BinaryIO, member: str, data: bytes, password: bytes) -> None:
    """Write a zip holding ``data`` as ``member``, deflated and encrypted with ``password``."""
    name = member.encode("utf-8")
    crc = zlib.crc32(data)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as zip stores it
    body = deflate.compress(data) + deflate.flush()
    # The 12-byte encryption header: 11 filler bytes (derived from the content, so the output is
    # reproducible) and the CRC's high byte, which readers check the password against.
    header = hashlib.sha256(data).digest()[:11] + bytes([crc >> 24])
    payload = _Keys(password).encrypt(header + body)
    common = (_ENCRYPTED, _DEFLATE, 0, _DOS_DATE, crc, len(payload), len(data), len(name))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, _VERSION, *common, 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, _VERSION, _VERSION, *common, 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(payload), 0)
    out.write(local + payload + central + end)
