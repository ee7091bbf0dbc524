"""The ``srcrn`` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from srcrn.console import console
from srcrn.errors import SrcrnError

app = typer.Typer(
    name="srcrn",
    help="Two-stage melanoma detection: SRCRN lesion segmentation + ResNet-50 classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_error(error: Exception) -> None:
    # One line, never wrapped and never parsed as markup: paths may hold brackets.
    console.print(Text("error: ", style="bold red") + Text(str(error)), soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every SrcrnError becomes one red line and exit status 2."""
    try:
        app(args=argv, standalone_mode=True)
    except SrcrnError as error:
        _print_error(error)
        sys.exit(2)


@app.command()
def prepare(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    out: Annotated[Path, typer.Option("--out", help="cache folder to write (reused when inputs are unchanged)")],
    size: Annotated[int, typer.Option("--size", help="side of the square images in the cache")] = 128,
    workers: Annotated[Optional[int], typer.Option(help="decoding processes (default: all cores)")] = None,
    require_masks: Annotated[bool, typer.Option(help="refuse images without a mask")] = False,
    require_labels: Annotated[bool, typer.Option(help="refuse images without a label")] = False,
) -> None:
    """Decode every image once at reduced scale into a memory-mapped cache for training."""
    from srcrn.data.cache import prepare as prepare_cache
    from srcrn.data.isic import IsicDataset

    if not 16 <= size <= 4096:
        raise SrcrnError(f"--size {size}: choose a side between 16 and 4096 pixels")
    dataset = IsicDataset.from_dir(data, require_masks=require_masks, require_labels=require_labels)
    if not dataset.has_masks:
        with_masks = sum(s.mask_path is not None for s in dataset)
        console.print(f"note: {with_masks} of {len(dataset)} images have masks; masks are not cached")
    prepared = prepare_cache(dataset, size, out, workers=workers)
    console.print(f"prepared {len(prepared.ids)} images at {size}x{size} in {prepared.folder}")


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    out: Annotated[Path, typer.Option("--out", help="folder to write split.csv and split.json into")],
    method: Annotated[str, typer.Option("--method", help="paper | official | random")] = "paper",
    seed: Annotated[int, typer.Option(help="seed of the random split")] = 0,
) -> None:
    """Write the train/validation split that training would use."""
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import make_split

    chosen = make_split(IsicDataset.from_dir(data), method, seed=seed)
    for note in chosen.notes:
        console.print(f"note: {note}", soft_wrap=True)
    path = chosen.save(out)
    console.print(f"{chosen.method} split: {len(chosen.train)} train, {len(chosen.val)} val -> {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo's outputs")] = Path("demo-out"),
) -> None:
    """Run the pipeline offline on the embedded real sample (40 ISIC 2017 images)."""
    from srcrn.data.cache import prepare as prepare_cache
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import make_split
    from srcrn.sample import sample_dir

    dataset = IsicDataset.from_dir(sample_dir(), require_masks=True, require_labels=True)
    console.print(f"sample: {len(dataset)} ISIC 2017 images from {sample_dir()} (see ATTRIBUTION.md there)")
    prepared = prepare_cache(dataset, 128, out / "cache")
    chosen = make_split(dataset, "paper", seed=0)
    for note in chosen.notes:
        console.print(f"note: {note}", soft_wrap=True)
    chosen.save(out)
    table = Table(title="demo: data stage")
    for column in ("subset", "images", "melanoma", "lesion area (mean % of image)"):
        table.add_column(column)
    for name, ids in (("train", chosen.train), ("val", chosen.val)):
        rows = prepared.positions(ids)
        area = float(prepared.masks[rows].mean()) * 100
        table.add_row(name, str(len(ids)), str(int(prepared.melanoma[rows].sum())), f"{area:.1f}")
    console.print(table)
    console.print(f"cache: {prepared.folder}  split: {out / 'split.csv'}")


if __name__ == "__main__":
    main()
