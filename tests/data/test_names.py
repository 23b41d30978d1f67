import os

import pytest

from imgcls.data import safe_name


@pytest.mark.parametrize("name, shown", [
    ("roses/1.jpg", "roses/1.jpg"),
    ("rosés/1.jpg", "rosés/1.jpg"),  # valid UTF-8 stays as it is
    (os.fsdecode(b"bad\xff.jpg"), "bad\\xff.jpg"),  # a Linux name that is not UTF-8
    ("lone\ud800", "lone\\ud800"),  # a surrogate no file name decoding makes (a hand-edited JSON)
])
def test_safe_name_is_printable_utf8(name, shown):
    assert safe_name(name) == shown
    assert safe_name(name).encode("utf-8")  # never raises
    assert safe_name(safe_name(name)) == shown  # idempotent
