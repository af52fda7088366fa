from __future__ import annotations

import pytest

from multivolumecopy.errors import UsageError
from multivolumecopy.sizes import format_size, parse_size


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("512", 512),
        ("1K", 1024),
        ("500M", 500 * 1024**2),
        ("4G", 4 * 1024**3),
        ("2TB", 2 * 10**12),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("10 mb", 10**7),
    ],
)
def test_sizes_parse(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["5Q", "", "M", "-1G", "1..5G"])
def test_bad_sizes_say_what_a_size_looks_like(text):
    with pytest.raises(UsageError, match="is not a size; write a number"):
        parse_size(text, "--device-padding")


def test_format_size():
    assert format_size(1536) == "1.5 KiB"
    assert format_size(12) == "12 B"
