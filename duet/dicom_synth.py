"""`duet dicom synth`: write synthetic mammography studies (`duet/synthetic_dicom.py`) to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from models.seed_spaces import Namespace

from .progress import progress_bar
from .synthetic_dicom import DEFAULT_OUT, SYNTAXES, VIEWS, VOIS, synth_image, write_study

dicom_app = typer.Typer(
    help="Synthetic mammography DICOM (no patient data: synthetic patients, phantom images).",
    no_args_is_help=True,
)


@dicom_app.callback()
def dicom_group() -> None:
    """Synthetic mammography DICOM (a group, so `synth` stays a sub-command wherever the app is mounted)."""


@dicom_app.command("synth")
def synth_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (with several studies, one sub-folder each).")
    ] = DEFAULT_OUT,
    studies: Annotated[int, typer.Option(min=1, help="Number of studies.")] = 1,
    images: Annotated[
        int, typer.Option(min=1, max=4, help="Images per study (L CC, R CC, L MLO, R MLO).")
    ] = 4,
    rows: Annotated[int, typer.Option(min=16, help="Rows of each image (stored pixels).")] = 4096,
    columns: Annotated[int, typer.Option(min=16, help="Columns of each image (stored pixels).")] = 3328,
    bits: Annotated[
        int | None,
        typer.Option(help="BitsStored: 12, 14 or 16 (default 12); JPEG Baseline is 8-bit only (its "
                     "default)."),
    ] = None,
    photometric: Annotated[str, typer.Option(help="MONOCHROME2 or MONOCHROME1.")] = "MONOCHROME2",
    voi: Annotated[str, typer.Option(help=f"VOI: {', '.join(VOIS)}.")] = "window",
    syntax: Annotated[str, typer.Option(help=f"Transfer syntax: {', '.join(SYNTAXES)}.")] = "explicit",
    seed: Annotated[int, typer.Option(help="Seed of the first study; study k uses seed + k.")] = 0,
    lesions: Annotated[
        int | None, typer.Option(min=0, max=3, help="Lesions per image (default: drawn, 0-3).")
    ] = None,
    degraded: Annotated[
        bool | None,
        typer.Option("--degraded/--diagnostic",
                     help="Force non-diagnostic or diagnostic images (default: drawn)."),
    ] = None,
    held_out: Annotated[
        bool,
        typer.Option("--held-out/--test-set",
                     help="Seed phantoms in the held-out evaluation namespace, not the test namespace."),
    ] = False,
) -> None:
    """Write synthetic MG studies and a `truth.json` per study (boxes in stored pixels).

    One study goes straight into OUT (`0_LCC.dcm` ... `truth.json`); several go into `OUT/study_<seed>/`.
    """
    console = Console()
    try:
        with progress_bar(console) as progress:
            task = progress.add_task("synthesising", total=studies * images)
            for number in range(studies):
                study = []
                for index, (side, view) in enumerate(VIEWS[:images]):
                    study.append(synth_image(
                        seed + number, index=index, laterality=side, view=view, rows=rows, columns=columns,
                        bits=bits, photometric=photometric, voi=voi, syntax=syntax, n_lesions=lesions,
                        degraded=degraded, namespace=Namespace.HELD_OUT if held_out else Namespace.TEST,
                    ))
                    progress.advance(task)
                write_study(study, out if studies == 1 else out / f"study_{seed + number:05d}")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    console.print(f"wrote {studies} studies of {images} images to {out}")


if __name__ == "__main__":
    dicom_app()
