#!/usr/bin/env python3
"""Rewrite a WebM (one cluster of SimpleBlocks, as ffmpeg writes it) so that its blocks use
lacing, as mkvmerge's output does: groups of frames become one SimpleBlock each, Xiph-laced,
EBML-laced, or fixed-size-laced when the group's frames are of equal size; the frames
themselves are unchanged, and the SeekHead (whose positions past the cluster move) is voided.
ffmpeg never laces, so this makes the fixture for the lacing check.
    relace_webm.py IN.webm OUT.webm"""
import sys


def vint_at(b, i):
    first = b[i]
    width = 8 - first.bit_length() + 1
    value = first & (0xFF >> width)
    for k in range(1, width):
        value = (value << 8) | b[i + k]
    return value, width


def element_id_at(b, i):
    width = 8 - b[i].bit_length() + 1
    return b[i:i + width], width


def size_vint(n):
    """An 8-byte EBML size (as ffmpeg writes them)."""
    return bytes([0x01]) + n.to_bytes(7, "big")


def ebml_unsigned(n):
    for width in range(1, 9):
        if n < (1 << (7 * width)) - 1:
            return ((1 << (7 * width)) | n).to_bytes(width, "big")
    raise ValueError(n)


def ebml_signed(n):
    for width in range(1, 9):
        half = (1 << (7 * width - 1)) - 1
        if -half <= n <= half:
            return ((1 << (7 * width)) | (n + half)).to_bytes(width, "big")
    raise ValueError(n)


def xiph(n):
    return b"\xff" * (n // 255) + bytes([n % 255])


def laced_block(blocks, kind):
    """One SimpleBlock holding the frames of `blocks` (their headers: track, timecode, flags)."""
    head = blocks[0][:3]
    flags = blocks[0][3] & ~0x06
    frames = [blk[4:] for blk in blocks]
    sizes = [len(f) for f in frames[:-1]]
    if kind == "xiph":
        lacing = bytes([len(sizes)]) + b"".join(xiph(s) for s in sizes)
        flags |= 0x02
    elif kind == "ebml":
        lacing = bytes([len(sizes)]) + ebml_unsigned(sizes[0])
        lacing += b"".join(ebml_signed(b - a) for a, b in zip(sizes, sizes[1:]))
        flags |= 0x06
    else:
        assert len(set(len(f) for f in frames)) == 1
        lacing = bytes([len(frames) - 1])
        flags |= 0x04
    data = head + bytes([flags]) + lacing + b"".join(frames)
    return b"\xa3" + size_vint(len(data)) + data


def main(src, dst):
    b = open(src, "rb").read()
    i = 0
    out = bytearray()
    while i < len(b):
        eid, w = element_id_at(b, i)
        size, sw = vint_at(b, i + w)
        data = i + w + sw
        if eid == b"\x18\x53\x80\x67":  # Segment: rewritten below, size fixed at the end
            segment_at = len(out)
            out += eid + size_vint(0)
            segment_data = len(out)
            i = data
            continue
        if eid == b"\x1f\x43\xb6\x75":  # Cluster: its blocks regrouped
            body = b[data:data + size]
            j, kept, blocks = 0, bytearray(), []
            while j < len(body):
                cid, cw = element_id_at(body, j)
                csize, csw = vint_at(body, j + cw)
                end = j + cw + csw + csize
                if cid == b"\xa3" and (body[j + cw + csw + 3] & 0x06) == 0:
                    blocks.append(body[j + cw + csw:end])
                else:
                    kept += regroup(blocks) + body[j:end]
                    blocks = []
                j = end
            kept += regroup(blocks)
            out += eid + size_vint(len(kept)) + kept
            i = data + size
            continue
        if eid == b"\x11\x4d\x9b\x74":  # SeekHead: its positions past the cluster moved; voided
            out += b"\xec" + size_vint(data + size - i - 9) + bytes(data + size - i - 9)
        else:
            out += b[i:data + size]
        i = data + size
    out[segment_at:segment_data] = b"\x18\x53\x80\x67" + size_vint(len(out) - segment_data)
    open(dst, "wb").write(out)


def regroup(blocks):
    """Xiph, EBML and fixed-size lacing in turn, over groups of 3 frames."""
    out, k, turn = bytearray(), 0, 0
    while k < len(blocks):
        group = blocks[k:k + 3]
        if len(group) < 2:
            out += b"\xa3" + size_vint(len(group[0])) + group[0]
        elif len(set(len(g) for g in group)) == 1:
            out += laced_block(group, "fixed")
        else:
            out += laced_block(group, ["xiph", "ebml"][turn % 2])
            turn += 1
        k += 3
    return out


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
