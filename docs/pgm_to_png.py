#!/usr/bin/env python3
"""Converts a binary (P5) or plain (P2) PGM image to PNG, with nothing but the standard library.

Usage: pgm_to_png.py INPUT.pgm OUTPUT.png [--scale N]

Used to put the example programs' PGM outputs into the README.
"""
import argparse
import struct
import zlib


def read_pgm(path):
    with open(path, "rb") as f:
        data = f.read()
    tokens = []
    pos = 0
    # Header: magic, width, height, maxval, with '#' comments allowed between tokens.
    while len(tokens) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while data[pos:pos + 1] not in (b"\n", b""):
                pos += 1
            continue
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        tokens.append(data[start:pos])
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if magic == b"P5":
        if maxval > 255:
            raise ValueError("16-bit PGM is not supported")
        pixels = list(data[pos + 1:pos + 1 + width * height])
    elif magic == b"P2":
        pixels = [int(t) for t in data[pos:].split()][: width * height]
    else:
        raise ValueError("not a PGM file: %r" % magic)
    if len(pixels) != width * height:
        raise ValueError("truncated PGM file")
    if maxval != 255:
        pixels = [round(p * 255 / maxval) for p in pixels]
    return width, height, pixels


def write_png(path, width, height, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))  # 8-bit greyscale
    png += chunk(b"IDAT", zlib.compress(rows, 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--scale", type=int, default=1, help="repeat each pixel N times in each direction")
    args = parser.parse_args()
    width, height, pixels = read_pgm(args.input)
    s = args.scale
    if s > 1:
        scaled = []
        for y in range(height * s):
            row = pixels[(y // s) * width:(y // s + 1) * width]
            scaled.extend(p for p in row for _ in range(s))
        width, height, pixels = width * s, height * s, scaled
    write_png(args.output, width, height, pixels)


if __name__ == "__main__":
    main()
