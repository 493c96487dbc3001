"""The decoder layer and scan_files, on QR images generated with qrcode."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import qrcode
import qrcode.constants
from PIL import Image, ImageFilter

from hardware import HardwareConfigError
from hardware.decode import (
    Decoder,
    ImageReadError,
    PyzbarDecoder,
    ZxingDecoder,
    get_decoder,
    load_image,
    scan_files,
    smooth3,
    to_gray,
    upscale2,
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
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_px, border=4
    )
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
    frame = np.pad(
        np.asarray(zxingcpp.write_barcode_to_image(ean, scale=4)), 40, constant_values=255
    )
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


# -- the zxing retry: only for a frame where a QR symbol was seen and not decoded ----------

#: a fixed payload as long as a real signed label (124 characters, QR version 7): frames are
#: generated from it and a seeded RNG, so every run decodes the very same pixels
FIXED_PAYLOAD = "SP1.greenfield." + "".join(
    "ABCDEFGHJKMNPQRSTVWXYZ0123456789"[i * 7 % 32] for i in range(109)
)


def camera_frame(
    payload: str | None,
    module_px: float,
    blur_px: float,
    noise_sd: float,
    seed: int,
    angle: float = 10.0,
) -> np.ndarray:
    """Return a 640x480 frame: a grey-ink label (or none) on a grey scene, blurred, with sensor noise."""
    scene = Image.new("F", (640, 480), 120)
    if payload is not None:
        modules = np.asarray(qr_image(payload, box_px=1), dtype=np.float32)
        label = Image.fromarray(np.where(modules < 128, 40, 200).astype(np.float32), mode="F")
        size = round(label.width * module_px)
        label = label.resize((size, size), Image.BILINEAR)
        label = label.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=120)
        scene.paste(label, ((640 - label.width) // 2, (480 - label.height) // 2))
    scene = Image.fromarray(np.asarray(scene).round().astype(np.uint8), mode="L")
    if blur_px:
        scene = scene.filter(ImageFilter.GaussianBlur(blur_px))
    noisy = np.asarray(scene) + np.random.default_rng(seed).normal(0, noise_sd, (480, 640))
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def counted(decoder: ZxingDecoder) -> list:
    """Wrap the decoder's zxing-cpp call; return the list that records each call's image shape."""
    calls = []
    real = decoder._read

    def read(image, **options):
        calls.append(image.shape)
        return real(image, **options)

    decoder._read = read
    return calls


def first_pass(frame: np.ndarray) -> list:
    """Return what zxing-cpp's first pass reports, failed symbols included."""
    import zxingcpp

    return zxingcpp.read_barcodes(
        frame, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False, return_errors=True
    )


def test_retry_smooths_a_noisy_frame_the_first_pass_misses():
    frame = camera_frame(FIXED_PAYLOAD, module_px=4.0, blur_px=0, noise_sd=35, seed=0)
    # the premise: one pass sees a QR symbol but cannot decode it
    assert first_pass(frame) and not any(found.valid for found in first_pass(frame))
    assert ZxingDecoder(retry=False).decode(frame) == []
    decoder = ZxingDecoder()
    calls = counted(decoder)
    assert decoder.decode(frame) == [FIXED_PAYLOAD]
    assert calls == [(480, 640), (480, 640)]  # the first pass, then the smoothed frame
    assert decoder.stats == {"frames": 1, "retried": 1, "recovered": 1}


def test_retry_upscales_a_blurred_frame_that_smoothing_does_not_fix():
    frame = camera_frame(FIXED_PAYLOAD, module_px=4.0, blur_px=1.6, noise_sd=3, seed=0)
    assert ZxingDecoder(retry=False).decode(frame) == []
    decoder = ZxingDecoder()
    calls = counted(decoder)
    assert decoder.decode(frame) == [FIXED_PAYLOAD]
    assert calls == [(480, 640), (480, 640), (960, 1280)]  # first pass, smoothed, upscaled
    assert decoder.stats == {"frames": 1, "retried": 1, "recovered": 1}


@pytest.mark.parametrize("noise_sd", [3, 45])
def test_a_frame_without_a_label_does_not_pay_the_retry(noise_sd):
    frame = camera_frame(None, module_px=4.0, blur_px=0, noise_sd=noise_sd, seed=1)
    decoder = ZxingDecoder()
    calls = counted(decoder)
    assert decoder.decode(frame) == []
    assert calls == [(480, 640)]
    assert decoder.stats == {"frames": 1, "retried": 0, "recovered": 0}


def test_a_readable_frame_is_read_in_one_pass():
    frame = camera_frame(FIXED_PAYLOAD, module_px=4.0, blur_px=0, noise_sd=3, seed=2, angle=33)
    decoder = ZxingDecoder()
    calls = counted(decoder)
    assert decoder.decode(frame) == [FIXED_PAYLOAD]
    assert len(calls) == 1 and decoder.stats["retried"] == 0


def failing_reader(calls: list):
    """Return a stand-in for zxing-cpp that sees a symbol on the first call and never decodes it."""
    broken = SimpleNamespace(valid=False, text="garbled")

    def read(image, **options):
        calls.append((image.shape, options.get("return_errors", False)))
        return [broken]  # what reaches the caller is up to the decoder: it must drop this

    return read


def test_the_ladder_gives_up_cleanly_and_never_returns_a_failed_symbol():
    decoder = ZxingDecoder()
    calls = []
    decoder._read = failing_reader(calls)
    assert decoder.decode(np.full((480, 640), 128, np.uint8)) == []
    # first pass with errors reported; then each retry step once, on valid symbols only
    assert calls == [((480, 640), True), ((480, 640), False), ((960, 1280), False)]
    assert decoder.stats == {"frames": 1, "retried": 1, "recovered": 0}


def test_large_frames_skip_the_upscale():
    decoder = ZxingDecoder()
    calls = []
    decoder._read = failing_reader(calls)
    assert decoder.decode(np.full((1080, 1920), 128, np.uint8)) == []
    assert [shape for shape, _ in calls] == [(1080, 1920), (1080, 1920)]


def test_the_retry_can_be_turned_off():
    decoder = ZxingDecoder(retry=False)
    calls = []
    decoder._read = failing_reader(calls)
    assert decoder.decode(np.full((480, 640), 128, np.uint8)) == []
    assert len(calls) == 1 and decoder.stats["retried"] == 0


def test_smooth3_is_a_3x3_box_mean():
    flat = np.full((5, 7), 200, np.uint8)
    assert np.array_equal(smooth3(flat), flat)
    impulse = np.zeros((5, 5), np.uint8)
    impulse[2, 2] = 255
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 1:4] = 28  # 255 / 9, rounded
    assert np.array_equal(smooth3(impulse), expected)
    noisy = np.random.default_rng(3).normal(128, 20, (200, 200)).clip(0, 255).astype(np.uint8)
    assert smooth3(noisy).std() < noisy.std() / 2.5  # independent noise: sd / 3 in theory


def test_upscale2_doubles_the_size_bilinearly():
    row = np.array([[0, 160]], np.uint8)
    assert np.array_equal(upscale2(row), np.array([[0, 40, 120, 160], [0, 40, 120, 160]], np.uint8))
    white = np.full((3, 4), 255, np.uint8)
    assert np.array_equal(upscale2(white), np.full((6, 8), 255, np.uint8))  # no overflow, no drift
    assert upscale2(np.zeros((480, 640), np.uint8)).shape == (960, 1280)
