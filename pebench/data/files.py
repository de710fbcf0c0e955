"""Reading the files of a dataset on disk, with one clear error per bad file.

Real downloads go wrong in a few ways: a file is missing, a file is truncated or not what
its extension says, a label has another size than its image, a label holds values outside
its label space. Every reader here turns each of those into a :class:`DataFileError` that
names the file and says what was expected, so that ``pebench run`` stops with one line
instead of a traceback from PIL or scipy, and ``pebench data check`` can sort problems by
``kind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from pebench.errors import PebenchError, first_line

ProblemKind = Literal["missing", "unreadable", "size", "content"]

# torch.utils.data re-raises an exception from a DataLoader worker in the main process as
# ``type(exc)(text)``, where the text is "Caught <Type> in DataLoader worker process N." and
# the worker's whole traceback; its last line is "<module>.<Type>: <original message>".
_WORKER_PREFIX = "Caught "


class DataFileError(PebenchError):
    """A dataset file that is missing, unreadable, of the wrong size or out of range."""

    def __init__(self, message: str, kind: ProblemKind = "unreadable",
                 path: Path | None = None) -> None:
        super().__init__(_original_message(message))
        self.kind: ProblemKind = kind
        self.path = path


def _original_message(message: str) -> str:
    """The one-line message, also when a DataLoader worker wrapped it in its traceback."""
    if not message.startswith(_WORKER_PREFIX) or "Traceback" not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    _, found, original = last.partition(f"{DataFileError.__name__}: ")
    return original if found else message


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataFileError(f"{what} '{path}' is missing.", "missing", path)


def read_split(path: Path, hint: str) -> list[str]:
    """The image ids of a split file, one per line (blank lines skipped)."""
    if not path.is_file():
        raise DataFileError(f"split file '{path}' does not exist. {hint}", "missing", path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"split file '{path}' is unreadable ({first_line(exc)}).",
                            "unreadable", path) from exc
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        raise DataFileError(f"split file '{path}' lists no image id.", "content", path)
    return ids


def read_image(path: Path) -> np.ndarray:
    """An RGB image as uint8 HxWx3 (grey or palette JPEGs are converted)."""
    from PIL import Image

    require_file(path, "image")
    try:
        with Image.open(path) as image:
            image.load()  # PIL decodes lazily; a truncated file only fails here
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFileError(f"image '{path}' is unreadable ({first_line(exc)}); re-extract it "
                            "from the dataset archive.", "unreadable", path) from exc


def read_png(path: Path, what: str, mode: Literal["index", "gray", "rgb"]) -> np.ndarray:
    """A PNG as a uint8 array.

    ``index``: the stored values of a single-channel or palette PNG (palette PNGs store class
    ids, the colours are only for display), refused for colour PNGs; ``gray``: luminance;
    ``rgb``: HxWx3.
    """
    from PIL import Image

    require_file(path, what)
    try:
        with Image.open(path) as image:
            image.load()
            if mode == "index":
                if image.mode not in ("L", "P"):
                    raise DataFileError(
                        f"{what} '{path}' is a {image.mode} image; expected a single-channel "
                        "or palette PNG of class ids.", "content", path)
                return np.asarray(image)
            return np.asarray(image.convert("L" if mode == "gray" else "RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFileError(f"{what} '{path}' is unreadable ({first_line(exc)}).",
                            "unreadable", path) from exc


def read_mat(path: Path, what: str, variable: str) -> np.ndarray:
    """One variable of a MATLAB .mat file (scipy's nested-struct layout is kept as is)."""
    import scipy.io

    require_file(path, what)
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises many types (ValueError, MatReadError, TypeError)
        raise DataFileError(f"{what} '{path}' is not a readable .mat file ({first_line(exc)}).",
                            "unreadable", path) from exc
    if variable not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "nothing"
        raise DataFileError(f"{what} '{path}' has no variable '{variable}' (it holds {found}).",
                            "content", path)
    return content[variable]


def read_npy(path: Path, what: str) -> np.ndarray:
    """A numeric .npy array (pickled object arrays are refused)."""
    require_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{what} '{path}' is not a readable .npy file ({first_line(exc)}).",
                            "unreadable", path) from exc
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise DataFileError(f"{what} '{path}' does not hold a numeric array.", "content", path)
    return array


def check_size(path: Path, what: str, array: np.ndarray,
               shape: tuple[int, int] | None) -> None:
    """Refuse a label whose height and width differ from its image's (``shape``)."""
    if shape is not None and tuple(array.shape[:2]) != tuple(shape):
        raise DataFileError(
            f"{what} '{path}' is {array.shape[0]}×{array.shape[1]} but its image is "
            f"{shape[0]}×{shape[1]} (height×width); labels must have their image's size.",
            "size", path)
