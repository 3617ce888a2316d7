"""storage.decode: every accepted format, colour mode and EXIF orientation, every refusal."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from storage.decode import DecodeLimits, ImageRejected, decode_rgb, probe_image
from tests.images import encode, gradient


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_format_decodes_to_rgb_with_true_size(fmt):
    data = encode(gradient(64, 48), fmt)
    info = probe_image(data)
    assert (info.format, info.width, info.height) == (fmt, 64, 48)
    image = decode_rgb(data)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_gif_gives_first_frame():
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    blue = Image.new("RGB", (32, 32), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue])
    pixel = decode_rgb(data).getpixel((5, 5))
    assert pixel[0] > 200 and pixel[2] < 50


def _exif_jpeg(orientation: int) -> bytes:
    # 60 wide, 40 high as stored, a red block in the stored top-left corner
    image = Image.new("RGB", (60, 40), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, quality=95)


@pytest.mark.parametrize("orientation,size,red_at", [
    (1, (60, 40), (2, 2)),
    (3, (60, 40), (57, 37)),   # rotated 180: the block goes to the bottom-right
    (6, (40, 60), (37, 2)),    # rotate 90 clockwise to view: top-left goes to top-right
    (8, (40, 60), (2, 57)),    # rotate 90 counter-clockwise: top-left goes to bottom-left
])
def test_exif_orientation_is_applied(orientation, size, red_at):
    data = _exif_jpeg(orientation)
    info = probe_image(data)
    assert (info.width, info.height) == size and info.exif_orientation == orientation
    image = decode_rgb(data)
    assert image.size == size
    r, g, b = image.getpixel(red_at)
    assert r > 200 and g < 60 and b < 60


def test_grayscale_palette_cmyk_to_rgb():
    for mode in ("L", "P", "CMYK", "1"):
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        image = decode_rgb(encode(gradient(40, 30, mode), fmt))
        assert image.mode == "RGB" and image.size == (40, 30)


def test_sixteen_bit_is_rescaled_not_clipped():
    array = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    data = encode(Image.fromarray(array), "PNG")
    rgb = np.asarray(decode_rgb(data))
    assert rgb.shape == (30, 40, 3)
    # the darkest pixel stays dark and the brightest is white: a full 8-bit range
    assert rgb[0, 0, 0] < 5 and rgb[-1, -1, 0] > 250
    assert 100 < rgb[15, 20, 0] < 160  # the middle stays mid-grey


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 10, 20))
    image = decode_rgb(encode(rgba, "PNG"))
    assert image.getpixel((15, 5)) == (255, 255, 255)
    assert image.getpixel((5, 5)) == (0, 0, 255)
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([255, 0, 0] + [0, 255, 0] * 255)
    assert decode_rgb(encode(palette, "PNG", transparency=0)).getpixel((1, 1)) == (255, 255, 255)


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"this is plain text, not an image", "not an image"),
    (encode(NOISE, "PNG")[:2000], "corrupt or truncated"),
    (encode(NOISE, "JPEG")[:1500], "corrupt or truncated"),
    (encode(Image.new("RGB", (1, 1)), "PNG"), "too small"),
])
def test_bad_bytes_are_rejected_with_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        probe_image(data)
    with pytest.raises(ImageRejected, match=reason):
        decode_rgb(data)


def test_decompression_bomb_is_refused_before_decoding():
    data = encode(Image.new("L", (4000, 4000)), "PNG")  # 16 Mpx, compresses to a few KiB
    with pytest.raises(ImageRejected, match="too large"):
        probe_image(data, DecodeLimits(max_pixels=1_000_000))
    assert probe_image(data, DecodeLimits(max_pixels=20_000_000)).width == 4000


def test_limits_are_validated():
    with pytest.raises(ValueError, match="min_side"):
        DecodeLimits(min_side=0)
