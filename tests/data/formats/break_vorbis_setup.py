#!/usr/bin/env python3
"""Rewrite the Vorbis setup header of an Ogg or WebM file (as ffmpeg writes them) so that its
first codebook claims ENTRIES entries of DIMENSIONS dimensions with a lookup table of type 1;
the rest of the file is unchanged (for Ogg, the page's CRC is redone). The default, 16 777 215
entries of 31 dimensions, makes symphonia's Vorbis decoder fill a 2-GB table for 21 bytes;
255 x 16000 is within libvorbis's limit but makes symphonia's lookup1_values overflow and panic.
    break_vorbis_setup.py IN OUT [DIMENSIONS ENTRIES]"""
import sys


def bits_lsb_first(fields):
    bits = []
    for value, n in fields:
        bits.extend((value >> i) & 1 for i in range(n))
    bits.extend([0] * (-len(bits) % 8))
    return bytes(sum(bits[j + i] << i for i in range(8)) for j in range(0, len(bits), 8))


def ogg_crc(page):
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def main(src, dst, dimensions="31", entries="16777215"):
    dimensions, entries = int(dimensions), int(entries)
    data = bytearray(open(src, "rb").read())
    at = data.find(b"\x05vorbis")
    # codebook count - 1 = 0; sync; dimensions; entries; ordered lengths: first length 1, one
    # run of every entry; lookup type 1, min, delta, 1-bit values, no sequence, and
    # lookup1_values(entries, dimensions) = 1 value (both defaults).
    book = bits_lsb_first([(0, 8), (0x564342, 24), (dimensions, 16), (entries, 24), (1, 1),
                           (0, 5), (entries, entries.bit_length()), (1, 4), (0, 32), (0, 32),
                           (0, 4), (0, 1), (0, 1)])
    data[at + 7:at + 7 + len(book)] = book
    page = data.rfind(b"OggS", 0, at)
    if page >= 0:
        segments = data[page + 26]
        length = 27 + segments + sum(data[page + 27:page + 27 + segments])
        data[page + 22:page + 26] = b"\0\0\0\0"
        data[page + 22:page + 26] = ogg_crc(data[page:page + length]).to_bytes(4, "little")
    open(dst, "wb").write(data)


if __name__ == "__main__":
    main(*sys.argv[1:])
