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


@pytest.mark.parametrize("name, shown", [
    ("a\x1b[31mred.jpg", "a\\x1b[31mred.jpg"),  # ESC: would recolour a terminal
    ("two\nlines.jpg", "two\\x0alines.jpg"),  # a newline: would forge a line of a report
    ("tab\there\x7f\x9b.jpg", "tab\\x09here\\x7f\\x9b.jpg"),  # TAB, DEL, C1 CSI
    (os.fsdecode(b"bad\xff\x1b.jpg"), "bad\\xff\\x1b.jpg"),
])
def test_safe_name_escapes_control_characters(name, shown):
    assert safe_name(name) == shown and safe_name(shown) == shown
