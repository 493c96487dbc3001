"""QR decoders for camera frames and image files: zxing-cpp (default) or pyzbar.

Both are restricted to QR codes.  zxing-cpp is the default: on 640x480
frames it is several times faster than pyzbar and decodes rotated, blurred,
noisy and small labels that pyzbar misses (``scripts/bench_kiosk.py``,
``docs/performance.md``).  pyzbar needs the system library ``libzbar0``.
Each vendor library is imported only when its decoder is built, so a
missing one fails with a config error naming it, and only if it is chosen.

``scan_files`` backs ``kiosk scan-image FILE...``, the field check.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from hardware import HardwareConfigError, HardwareError

DEFAULT_DECODER = "zxing"


class ImageReadError(HardwareError):
    """An image file that cannot be read (missing, not an image)."""


@runtime_checkable
class Decoder(Protocol):
    """Decodes the QR codes in one grayscale image."""

    name: str

    def decode(self, image: np.ndarray) -> list[str]:
        """Return the payloads of the QR codes found in ``image`` (may be empty)."""
        ...


class ZxingDecoder:
    """zxing-cpp: fast, robust to rotation, blur, noise and small codes; releases the GIL."""

    name = "zxing"

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise HardwareConfigError(f"decoder 'zxing' needs the zxing-cpp package: {exc}") from exc
        self._read = zxingcpp.read_barcodes
        self._formats = zxingcpp.BarcodeFormat.QRCode

    def decode(self, image: np.ndarray) -> list[str]:
        """Return the QR payloads in ``image``."""
        return [found.text for found in self._read(image, formats=self._formats) if found.text]


class PyzbarDecoder:
    """pyzbar (ZBar): kept as the alternative; needs libzbar0, QR only."""

    name = "pyzbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar
        except (ImportError, OSError) as exc:  # OSError: libzbar0 is not installed
            raise HardwareConfigError(
                f"decoder 'pyzbar' needs pyzbar and the libzbar0 system library: {exc}"
            ) from exc
        self._decode = pyzbar.decode
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, image: np.ndarray) -> list[str]:
        """Return the QR payloads in ``image``."""
        # payloads are ASCII by design; a non-ASCII one would be mis-read as Shift-JIS
        return [found.data.decode("utf-8", "replace") for found in self._decode(image, symbols=self._symbols)]


DECODERS: dict[str, type] = {"zxing": ZxingDecoder, "pyzbar": PyzbarDecoder}


def get_decoder(name: str = DEFAULT_DECODER) -> Decoder:
    """Return a decoder by config name ("zxing" or "pyzbar")."""
    try:
        cls = DECODERS[name]
    except (KeyError, TypeError):
        raise HardwareConfigError(
            f"decoder: {name!r} is not one of {', '.join(DECODERS)}"
        ) from None
    return cls()


def to_gray(image) -> np.ndarray:
    """Return ``image`` (PIL image, or a gray/BGR/BGRA array) as a contiguous uint8 gray array."""
    if not isinstance(image, np.ndarray):
        image = np.asarray(image.convert("L"))
    if image.ndim == 3:
        # BGR(A) as OpenCV delivers it; ITU-R BT.601 luma weights
        blue, green, red = (image[..., i].astype(np.float32) for i in range(3))
        image = (0.114 * blue + 0.587 * green + 0.299 * red).round().astype(np.uint8)
    if image.ndim != 2:
        raise ValueError(f"expected an image, got an array of shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.uint8)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a gray array; raise ImageReadError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return to_gray(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(f"{os.fspath(path)}: cannot read image: {exc}") from exc


def scan_files(
    paths: Iterable[str | os.PathLike], decoder: str | Decoder = DEFAULT_DECODER
) -> list[tuple[str, str]]:
    """Decode each image file; return (path, first payload or "") per file, in order."""
    chosen = get_decoder(decoder) if isinstance(decoder, str) else decoder
    results = []
    for path in paths:
        payloads = chosen.decode(load_image(path))
        results.append((os.fspath(path), payloads[0] if payloads else ""))
    return results
