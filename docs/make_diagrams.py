#!/usr/bin/env python3
"""Draws the two diagrams of the README and docs/design.md as SVG: plain Python, no dependencies.

    docs/images/unfold.svg   convolution = unfold -> matrix product (-> reshape)
    docs/images/fold.svg     transposed convolution = matrix product -> fold

Both use the small example of the worked_examples program: a 3x3 input holding 0..8 with a 2x2
kernel holding 0..3, and a 2x2 input holding 0..3 with the same kernel. Every number drawn is
computed here from those inputs. Usage: make_diagrams.py [OUTPUT_DIR]
"""
import os
import sys

CELL = 34
BLUE_FILL = "#c6dbef"
BLUE_STROKE = "#08519c"
LIGHT_FILL = "#eff3ff"
GREY = "#555"


class Svg:
    def __init__(self, width, height):
        self.width, self.height = width, height
        self.items = []

    def add(self, text):
        self.items.append(text)

    def text(self, x, y, s, size=13, anchor="middle", weight="normal", fill="#222", style="normal"):
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.add('<text x="%g" y="%g" font-size="%g" text-anchor="%s" font-weight="%s" font-style="%s" fill="%s">%s</text>'
                 % (x, y, size, anchor, weight, style, fill, s))

    def rect(self, x, y, w, h, fill="white", stroke="#333", width=1.0):
        self.add('<rect x="%g" y="%g" width="%g" height="%g" fill="%s" stroke="%s" stroke-width="%g"/>'
                 % (x, y, w, h, fill, stroke, width))

    def arrow(self, x1, y, x2, label_top="", label_bottom=""):
        self.add('<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="2" marker-end="url(#head)"/>'
                 % (x1, y, x2 - 4, y, GREY))
        if label_top:
            self.text((x1 + x2) / 2, y - 8, label_top, size=12, fill=GREY)
        if label_bottom:
            self.text((x1 + x2) / 2, y + 18, label_bottom, size=11, fill=GREY)

    def grid(self, x, y, values, highlight=(), light=(), caption="", sub="", place="below"):
        """A matrix of numbers; `highlight` / `light` are sets of (row, col) to colour; the caption
        goes below the matrix, or to its left or right."""
        rows, cols = len(values), len(values[0])
        for r in range(rows):
            for c in range(cols):
                fill = BLUE_FILL if (r, c) in highlight else (LIGHT_FILL if (r, c) in light else "white")
                self.rect(x + c * CELL, y + r * CELL, CELL, CELL, fill=fill)
                self.text(x + c * CELL + CELL / 2, y + r * CELL + CELL / 2 + 5, fmt(values[r][c]), size=14)
        # Redraw highlighted borders on top so that they are not hidden by neighbours.
        for (r, c) in highlight:
            self.rect(x + c * CELL, y + r * CELL, CELL, CELL, fill="none", stroke=BLUE_STROKE, width=2)
        if place == "below":
            cx, cy, anchor = x + cols * CELL / 2, y + rows * CELL + 20, "middle"
        elif place == "right":
            cx, cy, anchor = x + cols * CELL + 10, y + rows * CELL / 2 - 2, "start"
        else:
            cx, cy, anchor = x - 10, y + rows * CELL / 2 - 2, "end"
        if caption:
            self.text(cx, cy, caption, size=13, weight="bold", anchor=anchor)
        if sub:
            self.text(cx, cy + 17, sub, size=11, fill=GREY, anchor=anchor)

    def save(self, path):
        head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
                'font-family="DejaVu Sans, Arial, sans-serif">\n'
                '<defs><marker id="head" markerWidth="10" markerHeight="8" refX="8" refY="4" orient="auto">'
                '<path d="M0,0 L10,4 L0,8 z" fill="%s"/></marker></defs>\n'
                '<rect width="100%%" height="100%%" fill="white"/>\n'
                % (self.width, self.height, self.width, self.height, GREY))
        with open(path, "w", encoding="utf-8") as f:
            f.write(head + "\n".join(self.items) + "\n</svg>\n")


def fmt(v):
    return str(int(v)) if float(v).is_integer() else "%g" % v


def unfold(image, k):
    """im2col of one channel, stride 1, no padding: rows = kernel taps, columns = blocks."""
    h, w = len(image), len(image[0])
    bh, bw = h - k + 1, w - k + 1
    return [[image[by + i][bx + j] for by in range(bh) for bx in range(bw)] for i in range(k) for j in range(k)]


def fold(columns, k, out_h, out_w):
    """col2im of one channel, stride 1, no padding: overlapping values are summed."""
    out = [[0] * out_w for _ in range(out_h)]
    bw = out_w - k + 1
    for l in range(len(columns[0])):
        by, bx = divmod(l, bw)
        for t in range(k * k):
            i, j = divmod(t, k)
            out[by + i][bx + j] += columns[t][l]
    return out


def matmul(a, b):
    return [[sum(a[i][t] * b[t][j] for t in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def block_labels(svg, x, y, n):
    for c in range(n):
        svg.text(x + c * CELL + CELL / 2, y - 8, "(%d,%d)" % divmod(c, 2), size=10, fill=GREY)


def draw_unfold(path):
    x = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    kernel = [[0, 1], [2, 3]]
    cols = unfold(x, 2)                               # [4 taps, 4 blocks]
    w_row = [[v for row in kernel for v in row]]      # [1, 4]
    y_row = matmul(w_row, cols)                       # [1, 4]
    y = [y_row[0][0:2], y_row[0][2:4]]
    blk = 2                                           # block (1, 0): the seed's example
    by, bx = divmod(blk, 2)
    patch = {(by + i, bx + j) for i in range(2) for j in range(2)}

    # The product is laid out as C = A x B with B above C and A to the left of C.
    svg = Svg(760, 360)
    svg.text(380, 26, "Convolution = unfold, then one matrix product", size=17, weight="bold")
    bx0, by0 = 300, 70
    cy0 = by0 + 4 * CELL + 16
    svg.grid(20, by0 + CELL / 2, x, highlight=patch, caption="input x", sub="3×3, C_in = 1")
    svg.arrow(135, by0 + 2 * CELL, bx0 - 8, "unfold", "kernel 2×2, stride 1")
    svg.grid(bx0, by0, cols, highlight={(r, blk) for r in range(4)}, caption="columns",
             sub="[C_in·kh·kw, L] = [4, 4]", place="right")
    block_labels(svg, bx0, by0, 4)
    svg.grid(bx0 - 4 * CELL - 16, cy0, w_row, highlight={(0, c) for c in range(4)}, caption="weight W",
             sub="[C_out, C_in·kh·kw] = [1, 4]")
    svg.grid(bx0, cy0, y_row, highlight={(0, blk)}, caption="W × columns", sub="[C_out, L] = [1, 4]")
    svg.arrow(bx0 + 4 * CELL + 10, cy0 + CELL / 2, bx0 + 4 * CELL + 110, "reshape", "to 2×2")
    svg.grid(bx0 + 4 * CELL + 120, cy0 - CELL / 2, y, highlight={(by, bx)}, caption="output y", sub="2×2")
    terms = " + ".join("%s·%s" % (fmt(w_row[0][t]), fmt(cols[t][blk])) for t in range(4))
    svg.text(380, 342, "block (%d,%d):  %s = %s" % (by, bx, terms, fmt(y_row[0][blk])), size=15)
    svg.save(path)


def draw_fold(path):
    x = [[0, 1], [2, 3]]
    kernel = [[0, 1], [2, 3]]
    w_col = [[v] for row in kernel for v in row]      # W^T: [4 taps, C_in = 1]
    x_row = [[v for row in x for v in row]]           # [1, L = 4]
    cols = matmul(w_col, x_row)                       # [4, 4]: column l = x[l] * kernel
    y = fold(cols, 2, 3, 3)
    blk = 2                                           # input (1, 0), value 2: the seed's example
    by, bx = divmod(blk, 2)
    landing = {(by + i, bx + j) for i in range(2) for j in range(2)}

    svg = Svg(760, 380)
    svg.text(380, 26, "Transposed convolution = one matrix product, then fold", size=17, weight="bold")
    cx0, cy0 = 300, 130
    rx0, ry0 = cx0, cy0 - CELL - 16
    svg.grid(40, ry0 - CELL / 2, x, highlight={(by, bx)}, caption="input x", sub="2×2, C_in = 1")
    svg.arrow(125, ry0 + CELL / 2, rx0 - 8, "flatten")
    svg.grid(rx0, ry0, x_row, highlight={(0, blk)}, caption="input row", sub="[C_in, L] = [1, 4]", place="right")
    svg.grid(cx0 - CELL - 16, cy0, w_col, highlight={(r, 0) for r in range(4)}, caption="Wᵀ",
             sub="[C_out·kh·kw, C_in]", place="left")
    svg.text(cx0 - CELL - 26, cy0 + 2 * CELL + 34, "= [4, 1]", size=11, fill=GREY, anchor="end")
    svg.grid(cx0, cy0, cols, highlight={(r, blk) for r in range(4)}, caption="Wᵀ × row: one patch per value",
             sub="[C_out·kh·kw, L] = [4, 4]")
    svg.arrow(cx0 + 4 * CELL + 10, cy0 + 2 * CELL, cx0 + 4 * CELL + 120, "fold", "sum overlaps")
    svg.grid(cx0 + 4 * CELL + 130, cy0 + CELL / 2, y, highlight={(1, 1)}, light=landing, caption="output y",
             sub="3×3")
    v = x[by][bx]
    products = ", ".join("%s·%s=%s" % (fmt(k[0]), fmt(v), fmt(k[0] * v)) for k in w_col)
    svg.text(380, 330, "input (%d,%d) = %s gives the patch  %s" % (by, bx, fmt(v), products), size=14)
    contributions = []
    for l in range(4):
        a, b = divmod(l, 2)
        contributions.append(fmt(cols[(1 - a) * 2 + (1 - b)][l]))
    svg.text(380, 356, "centre of the output = %s = %s" % (" + ".join(contributions), fmt(y[1][1])), size=14)
    svg.save(path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
    os.makedirs(out, exist_ok=True)
    draw_unfold(os.path.join(out, "unfold.svg"))
    draw_fold(os.path.join(out, "fold.svg"))


if __name__ == "__main__":
    main()
