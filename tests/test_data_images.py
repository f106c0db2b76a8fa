"""read_image: every kind of image file becomes float [3, H, W] in 0..1; 16-bit images are scaled
by their bit depth, not clipped; JPEG EXIF orientation is applied; a bad file is named."""
import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_edu.data.images import read_image


def gradient16():
    """A 16-bit grayscale ``[3, 61]`` gradient, 0..60000 in steps of 1000."""
    return np.arange(0, 60001, 1000, dtype=np.uint16)[None].repeat(3, axis=0)


def test_16_bit_grayscale_png_is_scaled_by_its_bit_depth(tmp_path):
    pixels = gradient16()
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 3, 61) and image.dtype == torch.float32
    expected = torch.from_numpy(pixels.astype(np.float32) / 65535)
    for channel in image:
        torch.testing.assert_close(channel, expected, atol=1e-6, rtol=0)
    assert image.max() < 0.92  # 60000 / 65535, not clipped to white


def test_32_bit_integer_image_within_16_bits_is_scaled_and_beyond_is_refused(tmp_path):
    Image.fromarray(gradient16().astype(np.int32), mode="I").save(tmp_path / "deep.tif")
    torch.testing.assert_close(read_image(tmp_path / "deep.tif")[0, 1, -1], torch.tensor(60000 / 65535))
    Image.fromarray(np.full((2, 2), 70000, np.int32), mode="I").save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"wide\.tif.*0\.\.65535.*70000"):
        read_image(tmp_path / "wide.tif")


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 51, (51, 51, 51)),
        ("LA", (51, 7), (51, 51, 51)),
        ("RGB", (10, 20, 30), (10, 20, 30)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),  # alpha dropped, colour kept as stored
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_8_bit_modes_become_rgb(tmp_path, mode, value, expected):
    path = tmp_path / ("image.tif" if mode == "CMYK" else "image.png")
    Image.new(mode, (5, 4), value).save(path)
    image = read_image(path)
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32
    assert torch.equal(image[:, 2, 3], torch.tensor(expected, dtype=torch.float32) / 255)


def test_palette_image_becomes_rgb(tmp_path):
    Image.new("RGB", (4, 4), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    assert torch.equal(read_image(tmp_path / "palette.png")[:, 1, 1], torch.tensor([200.0, 100, 50]) / 255)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((10, 20, 3), np.uint8)  # 10 rows, 20 columns: wider than tall
    stored[:5, :10] = 255  # the stored top-left quarter is white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "rotated.jpg")
    assert image.shape == (3, 20, 10)  # displayed taller than wide
    assert image[:, :8, 6:].mean() > 0.9 and image[:, 12:, :4].mean() < 0.1  # white now top-right


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_unreadable_file_is_named(tmp_path, content):
    path = tmp_path / "broken.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(path)
    png = path.read_bytes()
    path.write_bytes(png[: len(png) // 2] if content == "truncated" else content)
    with pytest.raises(ValueError, match=r"cannot read image file .*broken\.png"):
        read_image(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.png"):
        read_image(tmp_path / "nothing.png")
