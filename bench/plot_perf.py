#!/usr/bin/env python3
"""Draws GFLOP/s per shape for xconv and PyTorch against the FMA ceiling, as SVG (plain Python).

    /usr/bin/python3 bench/plot_perf.py results.csv docs/images/performance.svg

The CSV is what bench/compare_torch.py --csv writes: one line per shape and table (dtype, pass,
threads). Each table becomes one panel: a pair of bars per shape (xconv, PyTorch) and the FMA
ceiling of the table's thread count as a dashed line. If the CSV holds several measurements of
the same table, the last one is drawn.
"""
import csv
import sys

XCONV = "#2b6cb0"
TORCH = "#ed8936"
CEILING = "#c53030"
GRID = "#ddd"
TEXT = "#222"

PANEL_W, PANEL_H = 560, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 52, 12, 34, 92


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def read(path):
    tables = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            key = (row["dtype"], row["passname"], int(row["threads"]))
            table = tables.setdefault(key, {})
            table[row["shape"]] = row  # a later measurement replaces an earlier one
    return tables


def nice_top(v):
    for step in (10, 20, 25, 50, 100):
        top = step * int(v / step + 1)
        if top / step <= 8:
            return top, step
    return v, v / 4


def panel(out, x0, y0, title, rows):
    ceiling = max(float(r["ceiling_gflops"]) for r in rows)
    top, step = nice_top(max([ceiling] + [float(r["xconv_gflops"]) for r in rows] + [float(r["torch_gflops"]) for r in rows]))
    w = PANEL_W - MARGIN_L - MARGIN_R
    h = PANEL_H - MARGIN_T - MARGIN_B
    px, py = x0 + MARGIN_L, y0 + MARGIN_T

    def y_of(v):
        return py + h - h * v / top

    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 18}" text-anchor="middle" font-size="14" '
               f'font-weight="bold" fill="{TEXT}">{esc(title)}</text>')
    v = 0.0
    while v <= top + 1e-9:
        y = y_of(v)
        out.append(f'<line x1="{px}" y1="{y:.1f}" x2="{px + w}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{px - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{TEXT}">{v:g}</text>')
        v += step
    out.append(f'<text x="{x0 + 14}" y="{py + h / 2}" text-anchor="middle" font-size="11" fill="{TEXT}" '
               f'transform="rotate(-90 {x0 + 14} {py + h / 2})">GFLOP/s</text>')
    slot = w / len(rows)
    bar = slot * 0.36
    for i, r in enumerate(rows):
        cx = px + slot * (i + 0.5)
        for value, colour, dx in ((float(r["xconv_gflops"]), XCONV, -bar), (float(r["torch_gflops"]), TORCH, 0.0)):
            y = y_of(value)
            out.append(f'<rect x="{cx + dx:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{py + h - y:.1f}" fill="{colour}">'
                       f'<title>{esc(r["shape"])}: {value:.1f} GFLOP/s</title></rect>')
        ly = py + h + 8
        out.append(f'<text x="{cx:.1f}" y="{ly}" text-anchor="end" font-size="10.5" fill="{TEXT}" '
                   f'transform="rotate(-40 {cx:.1f} {ly})">{esc(r["shape"])}</text>')
    yc = y_of(ceiling)
    out.append(f'<line x1="{px}" y1="{yc:.1f}" x2="{px + w}" y2="{yc:.1f}" stroke="{CEILING}" stroke-width="1.5" '
               f'stroke-dasharray="6 4"/>')
    out.append(f'<text x="{px + w - 4}" y="{yc - 5:.1f}" text-anchor="end" font-size="11" fill="{CEILING}">'
               f'FMA ceiling {ceiling:g}</text>')
    out.append(f'<line x1="{px}" y1="{py + h}" x2="{px + w}" y2="{py + h}" stroke="{TEXT}"/>')


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tables = read(sys.argv[1])
    order = {"float": 0, "double": 1}
    keys = sorted(tables, key=lambda k: (order.get(k[0], 9), k[2], k[1] != "forward"))
    cols = 2
    rows_n = (len(keys) + cols - 1) // cols
    width, height = cols * PANEL_W, rows_n * PANEL_H + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for n, key in enumerate(keys):
        dtype, passname, threads = key
        title = (f"{dtype}, {'forward' if passname == 'forward' else 'forward+backward'}, "
                 f"{threads} thread{'s' if threads > 1 else ''}")
        panel(out, (n % cols) * PANEL_W, (n // cols) * PANEL_H, title, list(tables[key].values()))
    ly = rows_n * PANEL_H + 22
    for i, (label, colour) in enumerate((("xconv", XCONV), ("PyTorch 1.13", TORCH))):
        x = 20 + i * 140
        out.append(f'<rect x="{x}" y="{ly - 10}" width="14" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 20}" y="{ly}" font-size="12" fill="{TEXT}">{label}</text>')
    out.append(f'<line x1="300" y1="{ly - 4}" x2="330" y2="{ly - 4}" stroke="{CEILING}" stroke-width="1.5" '
               f'stroke-dasharray="6 4"/>')
    out.append(f'<text x="336" y="{ly}" font-size="12" fill="{TEXT}">FMA ceiling of the thread count</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
