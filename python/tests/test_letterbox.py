"""Model-sized input: frame.to_numpy(size=...) letterboxes a frame as a
detector takes it, and frame.letterbox(size) maps boxes back onto it."""

import pathlib
import tomllib

import numpy as np
import pytest

import framelink
from conftest import take

# A white box on a black 1920x1080 picture, in frame pixels (x1, y1, x2, y2).
BOX = (600, 300, 1000, 720)


def picture_with_box(width=1920, height=1080, box=BOX):
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def bright_box(hwc):
    ys, xs = np.nonzero(hwc.astype(int).sum(axis=2) > 3 * 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


@pytest.fixture
def frame():
    """A 1920x1080 frame with BOX drawn on it, as the server hands it."""
    with framelink.Server(listen="127.0.0.1:0") as server:
        with framelink.Client(server.address, name="boxes") as client:
            client.send(picture_with_box())
            f = take(server)
            assert (f.width, f.height) == (1920, 1080)
            yield f
            f.reply()


def test_a_box_is_found_where_the_letterbox_maps_it_and_maps_back(frame):
    lb = frame.letterbox(640)
    assert lb.size == (640, 640) and lb.source == (1920, 1080)
    assert lb.content == (640, 360) and lb.pad == (0, 140)
    assert lb.scale == pytest.approx(1 / 3)

    x = frame.to_numpy(size=640)
    assert x.shape == (640, 640, 3) and x.dtype == np.uint8
    found = bright_box(x)
    expected = np.array(BOX, float) * lb.scale + [lb.pad[0], lb.pad[1]] * 2
    assert np.abs(found - expected).max() <= 1.0, (found, expected)
    # The padding is Ultralytics' grey, above and below the picture.
    assert (x[:140] == 114).all() and (x[500:] == 114).all()

    # Boxes as a detector gives them (float32, a score and a class after
    # the corners) come back in frame pixels, the other columns untouched.
    detections = np.array([[*found, 0.9, 3.0]], np.float32)
    mapped = lb.to_frame(detections)
    assert mapped.shape == (1, 6)
    assert np.abs(mapped[0, :4] - BOX).max() <= 1 / lb.scale, mapped
    assert list(mapped[0, 4:]) == pytest.approx([0.9, 3.0])
    # One box alone, and a box past the edge kept inside the frame.
    assert lb.to_frame(list(found)).shape == (4,)
    assert list(lb.to_frame([-50, 0, 700, 700])) == [0, 0, 1920, 1080]
    with pytest.raises(ValueError):
        lb.to_frame([[1, 2, 3]])


def test_chw_float32_is_the_hwc_picture_channels_first_scaled_to_one(frame):
    hwc = frame.to_numpy(size=(320, 256), rgb=True)
    chw = frame.to_numpy(size=(320, 256), rgb=True, layout="chw", dtype="float32")
    assert chw.shape == (3, 256, 320) and chw.dtype == np.float32
    assert np.allclose(chw, hwc.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert chw.flags["C_CONTIGUOUS"], "ready for a model's input as it is"
    assert np.array_equal(frame.to_numpy(size=(320, 256), rgb=True, layout="chw"), hwc.transpose(2, 0, 1))
    # The whole frame can be laid out too.
    whole = frame.to_numpy(dtype="float32")
    assert whole.shape == (1080, 1920, 3) and 0.0 <= whole.min() and whole.max() <= 1.0


def test_the_pad_colour_is_in_the_arrays_channel_order(frame):
    bgr = frame.to_numpy(size=640, pad=(255, 0, 0))
    assert list(bgr[0, 0]) == [255, 0, 0]
    rgb = frame.to_numpy(size=640, pad=(255, 0, 0), rgb=True)
    assert list(rgb[0, 0]) == [255, 0, 0]
    # The same colour either way: the picture's pixels are swapped, not the pad.
    assert np.array_equal(bgr[200:400, 100:500], rgb[200:400, 100:500, ::-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": (640, 100_000)},
        {"size": (-1, 640)},
        {"layout": "nchw"},
        {"dtype": "float16"},
    ],
)
def test_a_bad_argument_is_a_value_error_naming_it(frame, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        frame.to_numpy(**kwargs)


def test_the_version_is_the_crates():
    cargo = pathlib.Path(__file__).parents[2] / "Cargo.toml"
    assert framelink.__version__ == tomllib.loads(cargo.read_text())["package"]["version"]
