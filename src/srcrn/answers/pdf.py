"""A one-page PDF record of one image's answer, to file or print: the image and its overlay,
the verdict with what it means, the measurements in a dermatologist's words (millimetres when
the image has a scale), warnings, the clinical context, the model card's short form, the date,
the image file's SHA-256, and the notice that this is research software.

Drawn with fpdf2 (pure Python, no browser or system library, so the torch-free install
writes reports too). Its built-in Helvetica covers windows-1252 only: the few other symbols
of our texts are spelt out (``_printable``)."""

from __future__ import annotations

import datetime as dt
import io
from typing import TYPE_CHECKING, Any

from srcrn.answers.readings import readings, short_form
from srcrn.answers.rendering import encode_png  # the one PNG encoder
from srcrn.bundle.card import ModelCard

if TYPE_CHECKING:
    from srcrn.answers.compare import Comparison
    from srcrn.answers.results import PipelineResult

NOTICE = "Research software: not a diagnosis, and not a medical device. A clinician decides."
# Characters outside windows-1252 that our texts use, spelt out for the PDF's core font.
SPELT_OUT = {"π": "pi", "≥": ">=", "≤": "<=", "−": "-"}
PAGE_WIDTH_MM, MARGIN_MM = 210, 12


def _printable(text: str) -> str:
    for symbol, spelt in SPELT_OUT.items():
        text = text.replace(symbol, spelt)
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _png(pixels: Any) -> io.BytesIO:
    return io.BytesIO(encode_png(pixels))


class _Page:
    """One A4 page of fpdf2 with our margins, no page breaks, and a text helper."""

    def __init__(self, title: str):
        from fpdf import FPDF

        self.pdf = FPDF(format="A4", unit="mm")
        self.pdf.set_auto_page_break(auto=False)
        self.pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
        self.pdf.set_title(_printable(title))
        self.pdf.set_creator("srcrn")
        self.pdf.add_page()
        self.width = PAGE_WIDTH_MM - 2 * MARGIN_MM

    def text(self, line: str, size: float = 9, style: str = "", height: float = 4.6) -> None:
        self.pdf.set_font("Helvetica", style, size)
        self.pdf.multi_cell(self.width, height, _printable(line), new_x="LMARGIN", new_y="NEXT")

    def notice(self) -> None:
        """The research-software notice, boxed and shaded."""
        self.pdf.set_fill_color(255, 243, 205)
        self.pdf.set_font("Helvetica", "B", 9)
        self.pdf.multi_cell(self.width, 6, _printable(NOTICE), border=1, fill=True, align="C", new_x="LMARGIN",
                            new_y="NEXT")  # fmt: skip

    def footer(self, line: str) -> bytes:
        """The last line at the foot of the page, and the PDF's bytes."""
        self.pdf.set_y(-18)
        self.pdf.set_font("Helvetica", "", 7)
        self.pdf.multi_cell(self.width, 3.5, _printable(line), align="C")
        return bytes(self.pdf.output())


def _when(moment: dt.datetime) -> str:
    """Local date and time with the UTC offset (a report is read where it was written, and later)."""
    return moment.strftime("%Y-%m-%d %H:%M (UTC%z)")


def report_pdf(result: PipelineResult, card: ModelCard | None, *, created: dt.datetime | None = None) -> bytes:
    """The PDF bytes of ``result``'s one-page report; ``card`` is its pipeline's model card."""
    created = (created or dt.datetime.now(dt.UTC)).astimezone()  # the reader's local time, offset shown
    page = _Page(f"srcrn report: {result.image_id}")
    pdf, width, text = page.pdf, page.width, page.text

    text("srcrn lesion report", 16, "B", 8)
    text(
        f"Image {result.image_id} ({result.width} x {result.height} px); "
        f"{_when(created)}; srcrn {card.srcrn_version if card else ''} "
        f"({card.engine if card else ''})",
        8,
    )
    text(f"Image file SHA-256: {result.image_sha256 or 'n/a (pixels given in memory)'}", 8)
    scale = result.measurements.mm_per_pixel
    text(f"Scale: {f'{scale:g} mm per pixel (given)' if scale else 'none given: lengths in pixels, areas in px²'}", 8)
    pdf.ln(1)
    page.notice()
    pdf.set_fill_color(238, 240, 246)  # the table's heading row
    pdf.ln(2)

    # The image and its overlay side by side, the same height.
    top, gap = pdf.get_y(), 4
    side = (width - gap) / 2
    height = min(70.0, side * result.height / max(1, result.width))
    pdf.image(_png(result.working_image), x=MARGIN_MM, y=top, w=side, h=height, keep_aspect_ratio=True)
    pdf.image(_png(result.overlay(caption=False)), x=MARGIN_MM + side + gap, y=top, w=side, h=height,
              keep_aspect_ratio=True)  # fmt: skip
    pdf.set_y(top + height + 1)
    text("Left: the image. Right: the lesion contour found by the segmenter.", 7)
    pdf.ln(2)

    if result.assessment.assessed:
        verdict = "Melanoma suspected" if result.decision == "melanoma" else "Below the referral threshold"
        verdict = f"{result.band.capitalize()} band" if result.band else verdict
        text(f"{verdict}: P(melanoma) {result.probability:.3f} (threshold {result.threshold:.3f})", 12, "B", 6)
        if result.spread is not None:
            low, high = result.spread
            text(f"Spread: P(melanoma) {low:.3f} to {high:.3f} with the lesion turned by up to 15 degrees "
                 "(the photo's orientation is arbitrary; a difference within it is not a change).", 8)  # fmt: skip
    else:  # the input gate refused it: no verdict and no number to read
        text("Not assessable: no verdict", 12, "B", 6)
    text(result.meaning)
    given = {k: v for k, v in result.context.to_dict().items() if v is not None}
    text(
        "Clinical context given: "
        + (", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in given.items()) or "none")
        + "; used by the model: "
        + (", ".join(result.clinical_used) or "none"),
        8,
    )
    pdf.ln(2)

    text("Measurements (one lesion region: the largest, holes filled)", 10, "B", 5)
    pdf.set_font("Helvetica", "", 8)
    with pdf.table(col_widths=(30, 38, width - 68), line_height=4.2, text_align="LEFT", cell_fill_mode="ROWS") as table:
        table.row(["Measure", "Value", "What it means"])
        for reading in readings(result.measurements):
            table.row([_printable(reading.name), _printable(reading.value), _printable(reading.explanation)])
    for warning in result.warnings:
        text(f"Note: {warning}", 8, "I")
    pdf.ln(2)

    summary = short_form(card)
    if summary:
        text("The model", 10, "B", 5)
        for term, line in summary:
            text(f"{term}: {line}", 7.5, height=3.8)
    return page.footer(f"{NOTICE} Generated by srcrn from {result.source}.")


def _signed(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}{unit}"


def comparison_pdf(comparison: Comparison, card: ModelCard | None, *, created: dt.datetime | None = None) -> bytes:
    """The one-page follow-up record of two visits: both contours and the change map, the
    registration and whether it can be trusted, the changes, both probabilities, the notice."""
    created = (created or dt.datetime.now(dt.UTC)).astimezone()
    page = _Page(f"srcrn follow-up: {comparison.before_id} -> {comparison.after_id}")
    pdf, width, text = page.pdf, page.width, page.text

    text("srcrn follow-up report", 16, "B", 8)
    text(f"Earlier {comparison.before_id}, later {comparison.after_id}; {_when(created)}; "
         f"srcrn {card.srcrn_version if card else ''}", 8)  # fmt: skip
    page.notice()
    pdf.ln(2)
    picture = comparison.picture
    height = min(90.0, width * picture.shape[0] / picture.shape[1])
    top = pdf.get_y()
    pdf.image(_png(picture), x=MARGIN_MM, y=top, w=width, h=height, keep_aspect_ratio=True)
    pdf.set_y(top + height + 1)
    text("Left: the earlier image, its contour cyan, the later one's (registered) magenta. Right: green grown, "
         "red shrunk, yellow colour changed.", 7)  # fmt: skip
    pdf.ln(2)
    r = comparison.registration
    if r.reliable:
        text(f"Registration reliable: rotation {r.rotation_degrees:.1f} deg, scale x{r.scale:.3f}"
             f"{', mirrored' if r.mirrored else ''}; {r.inliers} of {r.matches} points agree.", 10, "B", 5)  # fmt: skip
        lines = [
            f"Area {_signed(comparison.area_change_percent, ' %')}"
            + (f" ({_signed(comparison.area_change_mm2, ' mm²', 2)})" if comparison.area_change_mm2 is not None else ""),
            f"Longest diameter {_signed(comparison.diameter_change_percent, ' %')}"
            + (f" ({_signed(comparison.diameter_change_mm, ' mm', 2)})" if comparison.diameter_change_mm is not None
               else " (no mm: a scale for both images is needed)"),
            f"ABCD: asymmetry {_signed(comparison.asymmetry_change, ' axes', 0)}, border "
            f"{_signed(comparison.border_change, ' segments', 0)}, colours {_signed(comparison.colours_change, '', 0)}",
            "Colours appeared: " + (", ".join(c.replace("_", " ") for c in comparison.colours_appeared) or "none")
            + "; vanished: " + (", ".join(c.replace("_", " ") for c in comparison.colours_vanished) or "none"),
        ]  # fmt: skip
        for line in lines:
            text(line)
    else:
        text("Registration unreliable: no change is measured.", 10, "B", 5)
        for problem in r.problems:
            text(f"- {problem}")
    change = comparison.probability_change
    said = f"({_signed(change, '', 3)})" if change is not None else "(each visit's own answer; not compared)"
    if comparison.probability_change_measurable is False:
        said = f"({_signed(change, '', 3)}: no measurable change, within the answers' spread under rotation)"
    text(f"P(melanoma): earlier {comparison.probability_before:.3f}, later {comparison.probability_after:.3f} {said}.")
    for warning in comparison.warnings:
        text(f"Note: {warning}", 8, "I")
    return page.footer(NOTICE)
