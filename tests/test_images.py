from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from indexer.errors import ImageError
from indexer.images import content_id, discover, open_image, prepare, read_source


def _save(path: Path, img: Image.Image, **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def test_discover_walks_folders_recursively_in_order_and_filters_by_extension(
    tmp_path: Path,
) -> None:
    img = Image.new("RGB", (8, 8))
    for rel in ("b/2.PNG", "b/1.jpg", "a/deep/3.webp", "a/x.txt", "c.gif", "d.tiff"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            path.write_text("x")
        else:
            img.save(path)
    found = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert found == ["c.gif", "d.tiff", "a/deep/3.webp", "b/1.jpg", "b/2.PNG"]


def test_discover_survives_a_symlink_loop(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "1.png", Image.new("RGB", (8, 8)))
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert [p.name for p in discover([tmp_path])] == ["1.png"]


def test_discover_names_each_file_once_when_paths_overlap(tmp_path: Path) -> None:
    """A watcher hands over a changed file with the folder it lies in; a user may name a
    folder twice. Each file is still found once."""
    for rel in ("a/1.png", "a/b/2.png", "c/3.png"):
        _save(tmp_path / rel, Image.new("RGB", (8, 8)))
    a = tmp_path / "a"
    paths = [a / "b" / "2.png", a, a / "b", a, tmp_path / "c", a / "1.png"]
    found = [p.relative_to(tmp_path).as_posix() for p in discover(paths)]
    assert sorted(found) == ["a/1.png", "a/b/2.png", "c/3.png"]


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        list(discover([tmp_path / "nope"]))


def test_content_id_ignores_the_path(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.png", Image.new("RGB", (8, 8), "red"))
    b = tmp_path / "sub" / "b.png"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    assert read_source(a).id == read_source(b).id == content_id(a.read_bytes())


def test_prepare_downscales_to_jpeg(tmp_path: Path) -> None:
    src = _save(tmp_path / "big.png", Image.new("RGB", (2000, 1000), "blue"))
    prepared = prepare(read_source(src), max_side=512)
    with Image.open(io.BytesIO(prepared.jpeg)) as img:
        assert img.format == "JPEG" and img.size == (512, 256)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (400, 200), "white")
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    src = _save(tmp_path / "rotated.jpg", img, exif=exif.tobytes())
    assert open_image(read_source(src).data, 1000).size == (200, 400)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("CMYK", (40, 30), (0, 255, 255, 0)),
        lambda: Image.new("I;16", (40, 30), 60000),
        lambda: Image.new("LA", (40, 30), (10, 128)),
        lambda: Image.new("RGBA", (40, 30), (255, 0, 0, 0)),
    ],
    ids=["cmyk", "16-bit", "grey-alpha", "transparent"],
)
def test_unusual_modes_become_rgb(tmp_path: Path, make: Callable[[], Image.Image]) -> None:
    img = make()
    fmt = "TIFF" if img.mode == "CMYK" else "PNG"
    src = _save(tmp_path / f"x.{fmt.lower()}", img, format=fmt)
    out = open_image(read_source(src).data, 100)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_transparent_pixels_become_white_and_16_bit_keeps_its_level(tmp_path: Path) -> None:
    clear = _save(tmp_path / "clear.png", Image.new("RGBA", (4, 4), (255, 0, 0, 0)))
    assert open_image(read_source(clear).data, 10).getpixel((0, 0)) == (255, 255, 255)
    deep = _save(tmp_path / "deep.png", Image.new("I;16", (4, 4), 32768))
    assert open_image(read_source(deep).data, 10).getpixel((0, 0)) == (128, 128, 128)


def test_palette_with_transparency_and_animated_gif(tmp_path: Path) -> None:
    pal = Image.new("P", (10, 10), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 0
    assert open_image(read_source(_save(tmp_path / "p.png", pal)).data, 10).mode == "RGB"

    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "blue", "green")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    first = open_image(read_source(gif).data, 10).getpixel((5, 5))
    assert isinstance(first, tuple) and first[0] > 200 and first[2] < 50  # the first frame, red


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not a recognised image format"),
    ],
)
def test_unusable_files(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=reason):
        open_image(read_source(path).data, 100)


def test_truncated_jpeg(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.jpg", Image.effect_noise((300, 300), 60).convert("RGB"))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        open_image(read_source(cut).data, 1000)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = _save(tmp_path / "bomb.png", Image.new("1", (30000, 30000)), optimize=True)
    with pytest.raises(ImageError, match=r"decompression bomb|too large"):
        open_image(read_source(bomb).data, 768)


def test_a_container_whose_header_understates_its_pixels_is_refused_undecoded() -> None:
    """An ICNS file states 1024x1024 and decodes its embedded PNG at whatever size that
    has: here 4000x4000 (an attacker's 657 KB file decoded 169 megapixels)."""
    import struct

    png = io.BytesIO()
    Image.new("RGB", (4000, 4000), (200, 10, 10)).save(png, "PNG")
    body = b"ic10" + struct.pack(">I", 8 + len(png.getvalue())) + png.getvalue()
    icns = b"icns" + struct.pack(">I", 8 + len(body)) + body
    assert Image.open(io.BytesIO(icns)).size == (1024, 1024)  # what the header claims
    with pytest.raises(ImageError, match="not a recognised image format"):
        open_image(icns, 768, max_pixels=2_000_000)


def test_vanished_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        read_source(tmp_path / "gone.jpg")
    locked = _save(tmp_path / "locked.png", Image.new("RGB", (4, 4)))
    locked.chmod(0)
    try:
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        with pytest.raises(ImageError, match="cannot read"):
            read_source(locked)
    finally:
        locked.chmod(0o644)
