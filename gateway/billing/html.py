"""A statement as one self-contained HTML page: inline styles, no scripts, no external assets; prints on A4
landscape (a browser's "Print to PDF" gives a clean document too)."""

from __future__ import annotations

from html import escape

from gateway.billing.view import StatementView

STYLE = """
@page { size: A4 landscape; margin: 12mm; }
body { font-family: "DejaVu Sans", "Segoe UI", Arial, sans-serif; font-size: 10pt; color: #111; margin: 1.5em; }
h1 { font-size: 15pt; margin: 0 0 .6em; }
h2 { font-size: 11pt; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #999; padding: 3px 5px; vertical-align: top; }
th { background: #eee; text-align: left; }
td.n, th.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.x { font-size: 8pt; color: #444; }
table.head td { border: none; padding: 1px 8px 1px 0; }
table.sums { width: auto; min-width: 40%; }
tr.total td { font-weight: bold; border-top: 2px solid #111; }
p.note { font-size: 8pt; color: #444; }
@media print { body { margin: 0; } tr { page-break-inside: avoid; } }
"""


def statement_html(v: StatementView) -> str:
    t = v.t
    e = escape
    out = [f'<!DOCTYPE html>\n<html lang="{v.lang}">\n<head>\n<meta charset="utf-8">\n',
           f"<title>{e(t['title'])} — {e(v.st.partner_name)} — {e(v.st.month)}</title>\n",
           f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{e(t['title'])}</h1>\n<table class=\"head\">\n"]
    out += [f"<tr><td>{e(k)}</td><td><b>{e(val)}</b></td></tr>\n" for k, val in v.header()]
    out.append(f"</table>\n<h2>{e(t['lines'])}</h2>\n")
    if not v.rows:
        out.append(f"<p>{e(t['none'])}</p>\n")
    else:
        heads = [("day", ""), ("start", ""), ("end", ""), ("machine", ""), ("project", ""), ("job", ""),
                 ("duration", "n"), ("billed", "n"), ("material", ""), ("rate", "n"), ("amount", "n"),
                 ("entry", "")]
        out.append("<table>\n<thead><tr>" + "".join(
            f'<th class="{c}">{e(t[h])}</th>' if c else f"<th>{e(t[h])}</th>" for h, c in heads)
            + "</tr></thead>\n<tbody>\n")
        for r in v.rows:
            cells = [r.day, r.start, r.end, r.machine, r.project, r.job]
            out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells)
                       + f'<td class="n">{e(r.duration)}</td><td class="n">{e(r.billed)}</td>'
                       + f'<td>{e(r.material)}</td><td class="n">{e(r.rate)}</td>'
                       + f'<td class="n">{e(r.amount)}</td><td class="x">{e(r.entry)}</td></tr>\n')
            if r.extras:
                out.append(f'<tr><td></td><td colspan="11" class="x">{e(r.extras)}</td></tr>\n')
        out.append("</tbody>\n</table>\n")
    by_machine, by_project = v.subtotals()
    for title, items in ((t["by_machine"], by_machine), (t["by_project"], by_project)):
        if items:
            out.append(f'<h2>{e(title)}</h2>\n<table class="sums">\n')
            out += [f'<tr><td>{e(k)}</td><td class="n">{e(a)}</td></tr>\n' for k, a in items]
            out.append("</table>\n")
    out.append(f'<h2>{e(t["total"])}, {e(v.st.currency)}</h2>\n<table class="sums">\n')
    totals = v.totals()
    for k, a in totals:
        cls = ' class="total"' if k == t["total"] else ""
        out.append(f'<tr{cls}><td>{e(k)}</td><td class="n">{e(a)}</td></tr>\n')
    out.append(f'</table>\n<p class="note">{e(t["note"])}</p>\n</body>\n</html>\n')
    return "".join(out)
