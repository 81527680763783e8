"""Tests for pixelbert_jax.data.images on real files written with Pillow."""

import io
import itertools
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from pixelbert_jax.data import images

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
PRIMES = (2, 3, 5, 7, 11, 13, 37, 53, 97, 101, 211, 499, 1009)


def _save(path: pathlib.Path, image: Image.Image, **kwargs) -> pathlib.Path:
  image.save(path, **kwargs)
  return path


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def _assert_colour(pixel, expected, tolerance=0):
  np.testing.assert_allclose(np.asarray(pixel, np.int32), expected, atol=tolerance)


# Decoding: every mode comes out as upright uint8 RGB.


def test_rgb_png_round_trips_exactly(tmp_path):
  pixels = _noise(13, 7)
  path = _save(tmp_path / "rgb.png", Image.fromarray(pixels))
  decoded = images.load_image(path)
  assert decoded.dtype == np.uint8 and decoded.shape == (13, 7, 3)
  np.testing.assert_array_equal(decoded, pixels)


def test_grayscale_becomes_equal_channels(tmp_path):
  grey = np.arange(5 * 11, dtype=np.uint8).reshape(5, 11) * 4
  decoded = images.load_image(_save(tmp_path / "l.png", Image.fromarray(grey, "L")))
  assert decoded.shape == (5, 11, 3)
  for channel in range(3):
    np.testing.assert_array_equal(decoded[:, :, channel], grey)


def test_palette_image_uses_palette_colours(tmp_path):
  image = Image.new("P", (6, 4))
  image.putpalette(list(RED + GREEN + BLUE) + [0] * (256 - 3) * 3)
  image.paste(1, (3, 0, 6, 4))  # right half green
  decoded = images.load_image(_save(tmp_path / "p.png", image))
  _assert_colour(decoded[0, 0], RED)
  _assert_colour(decoded[3, 5], GREEN)


def test_palette_transparency_is_composited_on_neutral_background(tmp_path):
  image = Image.new("P", (4, 4))
  image.putpalette(list(RED + GREEN) + [0] * 254 * 3)
  image.paste(1, (2, 0, 4, 4))
  decoded = images.load_image(_save(tmp_path / "pt.png", image, transparency=0))
  _assert_colour(decoded[0, 0], images.NEUTRAL_BACKGROUND)
  _assert_colour(decoded[0, 3], GREEN)


def test_cmyk_jpeg_colours_are_right(tmp_path):
  rgb = np.zeros((16, 48, 3), np.uint8)
  rgb[:, :16], rgb[:, 16:32], rgb[:, 32:] = RED, GREEN, BLUE
  cmyk = Image.fromarray(rgb).convert("CMYK")
  path = _save(tmp_path / "cmyk.jpg", cmyk, quality=95)
  assert Image.open(path).mode == "CMYK"
  decoded = images.load_image(path)
  _assert_colour(decoded[8, 8], RED, tolerance=12)
  _assert_colour(decoded[8, 24], GREEN, tolerance=12)
  _assert_colour(decoded[8, 40], BLUE, tolerance=12)


def test_rgba_is_composited_not_black(tmp_path):
  rgba = np.zeros((4, 6, 4), np.uint8)
  rgba[:, :2] = (255, 0, 0, 255)   # opaque red
  rgba[:, 2:4] = (0, 0, 0, 0)      # fully transparent "black"
  rgba[:, 4:] = (0, 0, 255, 128)   # half-transparent blue
  decoded = images.load_image(_save(tmp_path / "rgba.png", Image.fromarray(rgba)))
  _assert_colour(decoded[0, 0], RED)
  _assert_colour(decoded[0, 2], images.NEUTRAL_BACKGROUND)
  half_blue = [round(c * 127 / 255) for c in images.NEUTRAL_BACKGROUND]
  half_blue[2] += 128
  _assert_colour(decoded[0, 5], half_blue, tolerance=2)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
  deep = np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]], np.uint16)
  path = _save(tmp_path / "deep.png", Image.fromarray(deep))
  assert Image.open(path).mode in ("I;16", "I")
  decoded = images.load_image(path)
  np.testing.assert_array_equal(decoded[:, :, 0], np.rint(deep / 257.0))
  np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])


def test_exif_orientation_6_comes_out_upright(tmp_path):
  # Stored landscape 60 wide × 40 high, red top-left quadrant, blue elsewhere.
  stored = np.zeros((40, 60, 3), np.uint8)
  stored[:] = BLUE
  stored[:20, :30] = RED
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90° clockwise to display"
  path = _save(tmp_path / "rot.jpg", Image.fromarray(stored), exif=exif, quality=95)
  decoded = images.load_image(path)
  assert decoded.shape == (60, 40, 3)
  # A clockwise quarter turn carries the stored top-left corner to the top-right.
  _assert_colour(decoded[5, 35], RED, tolerance=30)
  _assert_colour(decoded[5, 5], BLUE, tolerance=30)
  _assert_colour(decoded[55, 35], BLUE, tolerance=30)


def test_decode_image_from_bytes_matches_load_image(tmp_path):
  path = _save(tmp_path / "a.png", Image.fromarray(_noise(5, 3)))
  np.testing.assert_array_equal(images.decode_image(path.read_bytes()),
                                images.load_image(str(path)))


# Bad files: each is an ImageError with its own reason.


def _reason(call, *args, **kwargs) -> str:
  with pytest.raises(images.ImageError) as info:
    call(*args, **kwargs)
  assert info.value.reason in str(info.value)
  return info.value.reason


def test_missing_file(tmp_path):
  path = tmp_path / "nope.jpg"
  assert _reason(images.load_image, path) == "missing"
  with pytest.raises(images.ImageError, match="nope.jpg"):
    images.load_image(path)


def test_zero_byte_file_is_empty(tmp_path):
  path = tmp_path / "empty.jpg"
  path.write_bytes(b"")
  assert _reason(images.load_image, path) == "empty"


def test_random_bytes_are_undecodable(tmp_path):
  path = tmp_path / "noise.jpg"
  path.write_bytes(np.random.default_rng(1).bytes(5000))
  assert _reason(images.load_image, path) == "undecodable"


@pytest.mark.parametrize("suffix,fmt", [("jpg", "JPEG"), ("png", "PNG")])
def test_truncated_file_is_an_error_not_half_grey(tmp_path, suffix, fmt):
  buffer = io.BytesIO()
  Image.fromarray(_noise(128, 128)).save(buffer, fmt)
  path = tmp_path / f"cut.{suffix}"
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  assert _reason(images.load_image, path) == "truncated"


def _png_claiming_size(path: pathlib.Path, width: int, height: int) -> pathlib.Path:
  """A small PNG written by Pillow whose IHDR then claims width × height."""
  buffer = io.BytesIO()
  Image.new("RGB", (3, 2)).save(buffer, "PNG")
  data = bytearray(buffer.getvalue())
  # Signature (8) + chunk length (4); the IHDR chunk type and data span 12:29.
  data[16:24] = struct.pack(">II", width, height)
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  path.write_bytes(bytes(data))
  return path


def test_decompression_bomb_header_is_too_large(tmp_path):
  path = _png_claiming_size(tmp_path / "bomb.png", 100_000, 100_000)
  assert _reason(images.load_image, path) == "too_large"


def test_max_pixels_is_checked_from_the_header(tmp_path):
  # 50_000 × 1_000 pixels would need 150 MB to decode; the header check refuses first.
  path = _png_claiming_size(tmp_path / "wide.png", 50_000, 1_000)
  assert _reason(images.load_image, path, max_pixels=1_000_000) == "too_large"


def test_too_small(tmp_path):
  path = _save(tmp_path / "tiny.png", Image.new("RGB", (1, 5)))
  assert images.load_image(path).shape == (5, 1, 3)
  assert _reason(images.load_image, path, min_side=2) == "too_small"


def test_image_error_is_a_value_error():
  assert issubclass(images.ImageError, ValueError)
  with pytest.raises(ValueError):
    images.decode_image(b"", name="x.jpg")


# Geometry.


@pytest.mark.parametrize("height,width", list(itertools.product(PRIMES, PRIMES)))
def test_resized_size_rule(height, width):
  short_side, long_max = 53, 97
  new_h, new_w = images.resized_size(height, width, short_side, long_max)
  assert min(new_h, new_w) <= short_side and max(new_h, new_w) <= long_max
  assert min(new_h, new_w) == short_side or max(new_h, new_w) == long_max
  assert new_h >= 1 and new_w >= 1
  # Both sides scale by one factor, up to rounding (and the floor of one pixel).
  scale = min(short_side / min(height, width), long_max / max(height, width))
  for side, new_side in ((height, new_h), (width, new_w)):
    assert abs(new_side - side * scale) <= 0.5 or new_side == 1


def test_resized_size_examples():
  assert images.resized_size(37, 101, 53, 97) == (36, 97)  # long side limits
  assert images.resized_size(101, 53, 53, 211) == (101, 53)  # already there
  assert images.resized_size(7, 11, 53, 97) == (53, 83)  # upscaled
  assert images.resized_size(1, 1009, 800, 1333) == (1, 1333)  # never 0


def test_resize_short_side_shape_dtype_and_antialiasing():
  checker = (np.indices((400, 600)).sum(axis=0) % 2 * 255).astype(np.uint8)
  image = np.repeat(checker[:, :, None], 3, axis=2)
  small = images.resize_short_side(image, 50, 1000)
  assert small.shape == (50, 75, 3) and small.dtype == np.uint8
  # Antialiased shrinking averages the 1-pixel checkerboard to grey; subsampling
  # would leave black and white.
  assert np.abs(small[2:-2, 2:-2].astype(np.int32) - 127).max() <= 3


def test_make_buckets_paper_sizes():
  buckets = images.make_buckets(800, 1333)
  assert buckets == [(832, 832), (832, 1088), (1088, 832), (832, 1344), (1344, 832)]


@pytest.mark.parametrize("multiple", [1, 8, 64])
def test_every_resized_image_fits_a_bucket(multiple):
  short_side, long_max = 53, 97
  buckets = images.make_buckets(short_side, long_max, multiple=multiple)
  assert all(h % multiple == 0 and w % multiple == 0 for h, w in buckets)
  assert len(buckets) <= len(images.DEFAULT_ASPECT_RATIOS) + 2  # + the extremes
  for height, width in itertools.product(PRIMES, PRIMES):
    new_h, new_w = images.resized_size(height, width, short_side, long_max)
    bucket = images.choose_bucket(new_h, new_w, buckets)
    assert new_h <= bucket[0] and new_w <= bucket[1]
    smaller = [b for b in buckets if b[0] * b[1] < bucket[0] * bucket[1]]
    assert not any(new_h <= h and new_w <= w for h, w in smaller)


def test_choose_bucket_picks_the_smallest_that_fits():
  buckets = [(64, 64), (64, 128), (128, 64)]
  assert images.choose_bucket(53, 59, buckets) == (64, 64)
  assert images.choose_bucket(61, 67, buckets) == (64, 128)
  assert images.choose_bucket(67, 61, buckets) == (128, 64)


def test_image_larger_than_every_bucket_is_shrunk_into_the_best_one():
  buckets = [(64, 64), (64, 128), (128, 64)]
  bucket = images.choose_bucket(97, 211, buckets)
  assert bucket == (64, 128)
  fitted = images.fit_size(97, 211, bucket)
  assert fitted == (58, 128)
  image, bucket = images.fit_to_buckets(_noise(97, 211), 97, 211, buckets)
  assert image.shape == (58, 128, 3) and bucket == (64, 128)


def test_fit_to_buckets_end_to_end():
  buckets = images.make_buckets(53, 97, multiple=8)
  image, bucket = images.fit_to_buckets(_noise(37, 101), 53, 97, buckets)
  assert image.shape == (36, 97, 3) and bucket == (56, 104)


def test_pad_to_bucket_keeps_dtype_and_refuses_overflow():
  padded, true_size = images.pad_to_bucket(_noise(3, 5), (7, 11), fill=9)
  assert padded.dtype == np.uint8 and true_size == (3, 5)
  assert (padded[3:] == 9).all()
  with pytest.raises(ValueError):
    images.pad_to_bucket(_noise(13, 5), (7, 11))
