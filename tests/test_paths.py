import os
import stat

import pytest

from imgcls.paths import write_atomic, write_text_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "report.txt"
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second ü\n")
    assert target.read_text(encoding="utf-8") == "second ü\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "curves.png"
    target.write_bytes(b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_written_files_get_the_usual_permissions_not_a_private_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_process_alive_tells_a_running_process_from_one_that_is_gone():
    from imgcls.paths import process_alive

    assert process_alive(os.getpid())
    assert not process_alive(2**22 + 7)  # above Linux's largest pid: never a process


def test_remove_stale_temps_removes_only_what_a_dead_writer_left(tmp_path):
    from imgcls.paths import remove_stale_temps, temp_prefix

    dead = tmp_path / ".a.onnx.b.onnx.4194311.fp32.x1y2.tmp"  # the name holds the suffix twice; pid above Linux's max
    alive = tmp_path / f"{temp_prefix(tmp_path / 'a.onnx.b.onnx')}fp32.abcd.tmp"
    others = [tmp_path / "notes.tmp", tmp_path / ".a.ckpt.4194311.x1y2.tmp", tmp_path / "a.onnx"]
    for p in (dead, alive, *others):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path, ".onnx") == [dead]
    assert alive.exists() and all(p.exists() for p in others)
