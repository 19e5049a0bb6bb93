"""A statement as a PDF (A4 landscape), made with fpdf2 and the DejaVu Sans font, which covers Cyrillic.

The font is not part of the gateway: it comes from Debian's `fonts-dejavu-core` package
(/usr/share/fonts/truetype/dejavu). Without it the statement is refused with an error that names the package.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

from gateway.billing.periods import month_span
from gateway.billing.view import StatementError, StatementView

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
FONT_PACKAGE = "fonts-dejavu-core"
REGULAR, BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"


def find_fonts(dirs: tuple[Path, ...] = FONT_DIRS) -> tuple[Path, Path]:
    """(regular, bold) DejaVu Sans, or a StatementError naming the Debian package that provides them."""
    for d in dirs:
        regular, bold = d / REGULAR, d / BOLD
        if regular.is_file() and bold.is_file():
            return regular, bold
    where = ", ".join(str(d) for d in dirs)
    raise StatementError(f"PDF statements need the DejaVu Sans font ({REGULAR} and {BOLD}, which cover Cyrillic) "
                         f"in {where}; install Debian's {FONT_PACKAGE} package: apt-get install {FONT_PACKAGE}")


def statement_pdf(v: StatementView, *, font_dirs: tuple[Path, ...] = FONT_DIRS) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    regular, bold = find_fonts(font_dirs)
    t = v.t
    pdf = FPDF(orientation="landscape", unit="mm", format="A4")
    # a fixed creation date (the month's start) so that the same statement gives the same file
    start_ns, _ = month_span(v.st.month, zoneinfo.ZoneInfo(v.st.timezone))
    pdf.set_creation_date(datetime.fromtimestamp(start_ns // 1_000_000_000, UTC))
    pdf.set_title(f"{t['title']} — {v.st.partner_name} — {v.st.month}")
    pdf.set_author(v.site_name)
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.cell(0, 8, t["title"], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    for k, val in v.header():
        pdf.cell(35, 5, k)
        pdf.set_font("DejaVu", "B", 9)
        pdf.cell(0, 5, val, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 9)
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(0, 7, t["lines"], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 7)
    heading = FontFace(emphasis="BOLD", fill_color=(235, 235, 235))
    if not v.rows:
        pdf.cell(0, 6, t["none"], new_x="LMARGIN", new_y="NEXT")
    else:
        heads = ("day", "start", "end", "machine", "project", "job", "duration", "billed", "material", "rate",
                 "amount")
        widths = (18, 13, 13, 40, 20, 52, 17, 18, 30, 20, 24)
        aligns = ("LEFT",) * 6 + ("RIGHT", "RIGHT", "LEFT", "RIGHT", "RIGHT")
        with pdf.table(col_widths=widths, text_align=aligns, headings_style=heading, line_height=4,
                       width=sum(widths)) as table:
            row = table.row()
            for h in heads:
                row.cell(t[h])
            for r in v.rows:
                row = table.row()
                for c in (r.day, r.start, r.end, r.machine, r.project, r.job, r.duration, r.billed, r.material,
                          r.rate, r.amount):
                    row.cell(c)
                row = table.row()
                row.cell("")
                row.cell(" · ".join(x for x in (r.extras, f"{t['entry']}: {r.entry}") if x), colspan=len(heads) - 1,
                         align="LEFT")
    by_machine, by_project = v.subtotals()
    sums = [(t["by_machine"], by_machine), (t["by_project"], by_project),
            (f"{t['total']}, {v.st.currency}", v.totals())]
    for title, items in sums:
        if not items:
            continue
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", 10)
        pdf.cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 8)
        for k, amount in items:
            strong = k == t["total"]
            pdf.set_font("DejaVu", "B" if strong else "", 9 if strong else 8)
            pdf.cell(80, 5, k)
            pdf.cell(30, 5, amount, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 7)
    pdf.multi_cell(0, 4, t["note"])
    return bytes(pdf.output())
