"""The decoder layer and scan_files, on QR images generated with qrcode."""

from __future__ import annotations

import numpy as np
import pytest
import qrcode
import qrcode.constants
from PIL import Image

from hardware import HardwareConfigError
from hardware.decode import (
    Decoder,
    ImageReadError,
    PyzbarDecoder,
    ZxingDecoder,
    get_decoder,
    load_image,
    scan_files,
    to_gray,
)
from protocol.labels import (
    LabelClaims,
    encode_label,
    generate_private_key,
    verify_label,
)

DECODERS = ["zxing", "pyzbar"]


@pytest.fixture(scope="module")
def community_key():
    return generate_private_key()


@pytest.fixture(scope="module")
def label_payload(community_key):
    return encode_label(community_key, LabelClaims("greenfield", "H-0042", "7K2M9QX4TB"))


def qr_image(payload: str, box_px: int = 6) -> Image.Image:
    """Return a QR of ``payload`` the way labels are printed (ECC M, quiet zone)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_px, border=4)
    code.add_data(payload.encode("ascii"))
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image().convert("L")


def in_scene(label: Image.Image, angle: float = 0.0, size=(640, 480)) -> Image.Image:
    """Paste ``label`` (rotated by ``angle``) on a grey 640x480 scene, like a camera frame."""
    scene = Image.new("L", size, 120)
    rotated = label.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=120)
    scene.paste(rotated, ((size[0] - rotated.width) // 2, (size[1] - rotated.height) // 2))
    return scene


@pytest.mark.parametrize("decoder", DECODERS)
def test_scan_files_decodes_a_signed_label(tmp_path, decoder, label_payload, community_key):
    path = tmp_path / "label.png"
    qr_image(label_payload).save(path)
    [(name, payload)] = scan_files([path], decoder=decoder)
    assert name == str(path)
    assert payload == label_payload
    # the payload survives the camera path byte for byte: its signature still verifies
    assert verify_label(payload, community_key.public_key()).household == "H-0042"


@pytest.mark.parametrize("decoder", DECODERS)
def test_scan_files_keeps_order_and_reports_empty_payloads(tmp_path, decoder, label_payload):
    paths = [tmp_path / "a.png", tmp_path / "blank.png", tmp_path / "c.jpg"]
    qr_image("SP1-FIRST").save(paths[0])
    Image.new("L", (320, 240), 200).save(paths[1])
    in_scene(qr_image(label_payload, box_px=4)).save(paths[2], quality=90)
    assert scan_files([str(p) for p in paths], decoder=decoder) == [
        (str(paths[0]), "SP1-FIRST"),
        (str(paths[1]), ""),
        (str(paths[2]), label_payload),
    ]


def test_zxing_reads_a_rotated_label_in_a_camera_sized_frame(tmp_path, label_payload):
    path = tmp_path / "rotated.png"
    in_scene(qr_image(label_payload, box_px=4), angle=33).save(path)
    assert scan_files([path]) == [(str(path), label_payload)]


def test_default_decoder_is_zxing(tmp_path):
    assert isinstance(get_decoder(), ZxingDecoder)
    assert isinstance(get_decoder("pyzbar"), PyzbarDecoder)


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoders_fit_the_protocol_and_read_only_qr(decoder):
    chosen = get_decoder(decoder)
    assert isinstance(chosen, Decoder)
    assert chosen.name == decoder
    import zxingcpp

    ean = zxingcpp.create_barcode("4006381333931", zxingcpp.BarcodeFormat.EAN13)
    frame = np.pad(np.asarray(zxingcpp.write_barcode_to_image(ean, scale=4)), 40, constant_values=255)
    assert [found.text for found in zxingcpp.read_barcodes(frame)] == ["4006381333931"]
    assert chosen.decode(frame) == []  # a readable EAN-13 in view is not a label


def test_unknown_decoder_is_a_config_error():
    with pytest.raises(HardwareConfigError, match="decoder"):
        get_decoder("tesseract")


def test_unreadable_files_raise_with_the_path(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageReadError, match="missing.png"):
        scan_files([missing])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="junk.png"):
        load_image(junk)


def test_to_gray_accepts_pil_gray_bgr_and_bgra(label_payload):
    image = qr_image(label_payload)
    gray = to_gray(image)
    assert gray.dtype == np.uint8 and gray.ndim == 2
    bgr = np.stack([gray, gray, gray], axis=-1)
    bgra = np.concatenate([bgr, np.full(gray.shape + (1,), 255, np.uint8)], axis=-1)
    assert np.array_equal(to_gray(bgr), gray)
    assert np.array_equal(to_gray(bgra), gray)
    assert np.array_equal(to_gray(image.convert("RGB")), gray)
    assert get_decoder().decode(to_gray(bgr)) == [label_payload]
    with pytest.raises(ValueError):
        to_gray(np.zeros((2, 2, 2, 2), np.uint8))
