#!/usr/bin/env python3
"""Draws the test image of the image_filter example: examples/data/scene.pgm.

A 160x120 greyscale scene (sky gradient, sun, hills, a house with a window and a door, a fence)
with a little deterministic noise, so that blur and edge detection have something to show.
Plain Python, no dependencies; the output is committed, this script documents how it was made.
Usage: make_test_image.py [OUTPUT.pgm]
"""
import math
import os
import sys

W, H = 160, 120


def scene(x, y):
    # Sky: brighter towards the horizon.
    v = 150 + 70 * y / H
    # Sun.
    if (x - 124) ** 2 + (y - 26) ** 2 <= 14 ** 2:
        v = 250
    # Two hills.
    if y > 78 - 14 * math.sin(x / 160 * math.pi):
        v = 95
    if y > 92 - 10 * math.cos((x - 20) / 50):
        v = 70
    # House: wall, roof, window, door.
    if 30 <= x < 78 and 58 <= y < 100:
        v = 185
        if 38 <= x < 52 and 66 <= y < 78:
            v = 40
        if 60 <= x < 70 and 76 <= y < 100:
            v = 120
    if y < 58 and y >= 34 and abs(x - 54) <= (y - 34) * 1.1:
        v = 60
    # Fence posts on the right.
    if y >= 88 and y < 108 and x >= 92 and (x - 92) % 10 < 3:
        v = 225
    if 94 <= y < 97 and x >= 92:
        v = 225
    return v


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "scene.pgm")
    seed = 12345
    pixels = bytearray()
    for y in range(H):
        for x in range(W):
            seed = (1103515245 * seed + 12345) % 2 ** 31  # a small LCG: the same noise on every machine
            noise = (seed >> 16) % 11 - 5
            pixels.append(max(0, min(255, int(round(scene(x, y) + noise)))))
    with open(out, "wb") as f:
        f.write(b"P5\n# xconv image_filter test scene, made by make_test_image.py\n%d %d\n255\n" % (W, H))
        f.write(bytes(pixels))


if __name__ == "__main__":
    main()
