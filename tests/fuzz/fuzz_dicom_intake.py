"""Coverage-guided fuzz target (atheris/libFuzzer) for the DICOM intake: any bytes are either a header the
pipeline accepts or a DuetError with a 4xx status, never another exception (which the server would answer 500).

    python tests/fuzz/fuzz_dicom_intake.py CORPUS_DIR -max_total_time=60      # libFuzzer flags pass through

`tests/unit/transformers_pre/dicom/test_intake_fuzz.py` runs it for a bounded time on a seed corpus of valid
synthetic files (uncompressed, JPEG 2000, RLE, deflated, no Part 10 header).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["transformers_pre", "pydicom"]):
    from transformers_pre.dicom.intake import read_header
    from transformers_pre.errors import DuetError
    from transformers_pre.settings import DicomSettings

# Small caps keep each input cheap; the checks are the same at any size.
CAPS = DicomSettings(max_file_bytes=1 << 20, max_rows=512, max_columns=512, max_inflated_bytes=1 << 20)


def test_one_input(data: bytes) -> None:
    try:
        header = read_header(data, 0, CAPS)
    except DuetError as error:
        if int(error.status) >= 500 or not str(error).startswith("image 0: "):
            raise AssertionError(f"intake answered {int(error.status)}: {error}") from None
        return
    assert header.rows >= 1 and header.columns >= 1 and header.frames >= 1


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
