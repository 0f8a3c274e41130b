"""Self-contained HTML pages for the Snakemake report: a page shell and tables.

The report shows an HTML result in an iframe, so every page here carries its
own style and no external resource (no scripts, fonts or images): it reads the
same offline, and a page can never pull a face picture in by reference.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2933; margin: 1.5rem auto; max-width: 64rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 1.6rem; border-bottom: 1px solid #d9e2ec; padding-bottom: .2rem; }
p.lead { font-size: 1.05rem; margin-top: .25rem; }
div.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .88rem; width: max-content; }
th, td { border: 1px solid #d9e2ec; padding: .25rem .5rem; text-align: right; vertical-align: top; }
th { background: #f0f4f8; }
td.text, th.text { text-align: left; max-width: 28rem; }
.caption { color: #52606d; font-size: .9rem; max-width: 48rem; }
.warnings { border-left: 4px solid #d64545; background: #fff5f5; padding: .5rem 1rem; }
.ok { border-left: 4px solid #3f9142; background: #f3faf3; padding: .5rem 1rem; }
.warnings li { margin-bottom: .5rem; }
.stage { font-weight: 600; text-transform: uppercase; font-size: .75rem; color: #8a2c2c; }
.todo { color: #3e4c59; }
.metric { font-size: 1.4rem; font-weight: 600; }
code { background: #f0f4f8; padding: 0 .2rem; }
.refs li { margin-bottom: .3rem; }
"""


def escape(value: object) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def format_cell(value: object, digits: int = 3, decimals: int | None = None) -> str:
    """A table cell: numbers to ``digits`` significant digits (or fixed ``decimals``), missing values empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if decimals is not None:
            return f"{value:.{decimals}f}"
        if value.is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def html_table(
    table: pd.DataFrame, digits: int = 3, max_rows: int | None = None, decimals: int | None = None
) -> str:
    """``table`` as an HTML table; text columns left-aligned, numbers rounded (``format_cell``).

    With ``max_rows`` only the first rows are shown and a last row says how
    many were left out (the CSV beside it holds them all).
    """
    shown = table if max_rows is None else table.head(max_rows)
    text_columns = {column for column in table.columns if not pd.api.types.is_numeric_dtype(table[column])}

    def cell(tag: str, column: object, value: object) -> str:
        css = ' class="text"' if column in text_columns else ""
        return f"<{tag}{css}>{escape(format_cell(value, digits, decimals))}</{tag}>"

    head = "".join(cell("th", column, column) for column in table.columns)
    rows = [
        "<tr>" + "".join(cell("td", column, value) for column, value in zip(table.columns, row)) + "</tr>"
        for row in shown.itertuples(index=False)
    ]
    if len(shown) < len(table):
        rows.append(
            f'<tr><td class="text" colspan="{len(table.columns)}">… {len(table) - len(shown)} more rows '
            "in the CSV file</td></tr>"
        )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def bullet_list(items: Iterable[str], css: str = "") -> str:
    """An HTML list of already-escaped items."""
    attribute = f' class="{css}"' if css else ""
    return f"<ul{attribute}>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def key_value_table(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of already-escaped label/value pairs."""
    body = "".join(
        f'<tr><th class="text">{label}</th><td class="text">{value}</td></tr>' for label, value in rows
    )
    return f"<table><tbody>{body}</tbody></table>"
