"""QR decoders for camera frames and image files: zxing-cpp (default) or pyzbar.

Both are restricted to QR codes.  zxing-cpp is the default: on 640x480
frames it is several times faster than pyzbar and decodes rotated, blurred,
noisy and small labels that pyzbar misses (``scripts/bench_kiosk.py``,
``docs/performance.md``).  pyzbar needs the system library ``libzbar0``.
Each vendor library is imported only when its decoder is built, so a
missing one fails with a config error naming it, and only if it is chosen.

The zxing decoder retries a frame only when its first pass *saw* a QR
symbol and could not decode it (zxing-cpp ``return_errors``): first a 3x3
box mean (sensor noise), then a 2x bilinear upscale (small or blurred
modules).  A frame with nothing QR-like in it, most frames at an idle kiosk,
costs one pass.  pyzbar has no such signal (ZBar reports decoded symbols
only), so it is left as it is.

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


def smooth3(image: np.ndarray) -> np.ndarray:
    """Return the 3x3 box mean of a gray uint8 image (edges replicated)."""
    # a mean over 9 pixels cuts independent sensor noise to a third; QR modules of
    # 3 px and more survive it, and it costs about a millisecond at 640x480
    padded = np.pad(image, 1, mode="edge").astype(np.uint16)
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    total = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    return ((total + 4) // 9).astype(np.uint8)


def upscale2(image: np.ndarray) -> np.ndarray:
    """Return a gray uint8 image at twice the width and height (bilinear, pixel centres)."""
    # each output pixel is 3/4 of its nearest input pixel and 1/4 of the next one,
    # per axis; integer sums on slices, no float image and no fancy indexing
    padded = np.pad(image, 1, mode="edge").astype(np.uint16)
    height, width = image.shape
    rows = np.empty((2 * height, width + 2), np.uint16)
    rows[0::2] = 3 * padded[1:-1] + padded[:-2]
    rows[1::2] = 3 * padded[1:-1] + padded[2:]
    out = np.empty((2 * height, 2 * width), np.uint16)
    out[:, 0::2] = 3 * rows[:, 1:-1] + rows[:, :-2]
    out[:, 1::2] = 3 * rows[:, 1:-1] + rows[:, 2:]
    return ((out + 8) >> 4).astype(np.uint8)


class ZxingDecoder:
    """zxing-cpp: fast, robust to rotation, blur, noise and small codes; releases the GIL.

    ``decode`` reads the frame once.  Only when that pass found no payload but
    zxing-cpp reported a QR symbol it could not decode does it retry, with the
    steps of ``RETRY_STEPS`` in order until one yields a payload.  ``stats``
    counts frames, retried frames and frames the retry recovered.
    """

    name = "zxing"
    #: (name, transform), cheapest first; each is one more zxing pass on the transformed frame
    RETRY_STEPS = (("smooth", smooth3), ("upscale", upscale2))
    #: frames larger than this (pixels) skip "upscale": 4x the pixels of a big image costs too much
    UPSCALE_MAX_PX = 1280 * 960

    def __init__(self, retry: bool = True) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise HardwareConfigError(
                f"decoder 'zxing' needs the zxing-cpp package: {exc}"
            ) from exc
        self._read = zxingcpp.read_barcodes
        # the QR family: its Micro QR / rMQR attempts on a damaged QR are reported too, and
        # any failed attempt is the "a symbol is here" signal that triggers the retry
        self._formats = zxingcpp.BarcodeFormat.QRCode
        self._retry = retry
        self.stats = {"frames": 0, "retried": 0, "recovered": 0}

    def decode(self, image: np.ndarray) -> list[str]:
        """Return the QR payloads in ``image``; retry as the class says if a symbol failed."""
        self.stats["frames"] += 1
        found = self._pass(image, return_errors=True)
        payloads = _valid_texts(found)
        if payloads or not found or not self._retry:
            return payloads
        self.stats["retried"] += 1
        gray = to_gray(image)
        for step_name, transform in self.RETRY_STEPS:
            if step_name == "upscale" and gray.size > self.UPSCALE_MAX_PX:
                continue
            payloads = _valid_texts(self._pass(transform(gray)))
            if payloads:
                self.stats["recovered"] += 1
                return payloads
        return []

    def _pass(self, image: np.ndarray, return_errors: bool = False) -> list:
        # try_invert=False: labels are printed dark on light (backend.registry.labels), and
        # the inverted pass doubled the time of a frame without a label (docs/performance.md)
        return self._read(
            image, formats=self._formats, try_invert=False, return_errors=return_errors
        )


def _valid_texts(found) -> list[str]:
    """Return the texts of the barcodes that decoded (error-free and non-empty)."""
    return [barcode.text for barcode in found if barcode.valid and barcode.text]


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
        return [
            found.data.decode("utf-8", "replace")
            for found in self._decode(image, symbols=self._symbols)
        ]


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
