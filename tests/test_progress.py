"""Progress displays: a tqdm bar where bars redraw in place, a few whole lines elsewhere (a log file, CI)."""
from __future__ import annotations

import io

from imgcls.progress import Lines, Off, clock, show_progress, track
from tests.conftest import make_tiny_folder, run_cli


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    out = Terminal()
    bar = show_progress(10, desc="epoch 1/3", stream=out)
    assert isinstance(bar, tqdm)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert "\r" in out.getvalue() and "epoch 1/3" in out.getvalue()


def test_a_log_file_gets_a_line_at_each_quarter_of_a_long_pass():
    out = io.StringIO()
    assert isinstance(show_progress(10, desc="x", stream=out), Lines)
    bar = Lines(1000, desc="caching train features", stream=out, min_seconds=0)
    bar.set_postfix(loss="0.812", img_s="412")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    assert [line.split(" [")[0] for line in text.splitlines()] == [
        "caching train features: 25% 250/1,000", "caching train features: 50% 500/1,000",
        "caching train features: 75% 750/1,000"]
    assert text.splitlines()[0].endswith("] loss 0.812 img/s 412")


def test_a_resumed_pass_counts_from_where_it_is_and_bytes_read_as_sizes():
    out = io.StringIO()
    bar = Lines(100, desc="epoch 2/5", initial=60, stream=out, min_seconds=0)
    for _ in range(40):
        bar.update(1)
    assert [line.split(" [")[0] for line in out.getvalue().splitlines()] == ["epoch 2/5: 75% 75/100"]
    out = io.StringIO()
    bar = Lines(40_000_000, desc="resnet18.pth", unit="B", stream=out, min_seconds=0)
    bar.update(30_000_000)  # one big chunk crosses three marks: one line
    assert out.getvalue().startswith("resnet18.pth: 75% 30 MB of 40 MB")
    assert len(out.getvalue().splitlines()) == 1


def test_a_short_pass_an_unknown_length_and_no_progress_print_nothing():
    out = io.StringIO()
    for bar in (show_progress(8, desc="epoch 1/1", stream=out),  # over long before the 10 s of a long pass
                Lines(None, desc="download", stream=out, min_seconds=0)):
        for _ in range(8):
            bar.update(1)
        bar.close()
    assert out.getvalue() == ""
    assert isinstance(show_progress(8, desc="x", enabled=False, stream=Terminal()), Off)


def test_durations_read_as_a_clock():
    assert (clock(0.4), clock(125), clock(3725)) == ("0m00s", "2m05s", "1h02m05s")


def test_track_yields_every_item():
    out = io.StringIO()
    assert list(track(range(5), total=5, desc="evaluating", stream=out)) == [0, 1, 2, 3, 4]
    assert list(track(iter("ab"), total=None, desc="evaluating", enabled=False)) == ["a", "b"]


def test_a_cli_run_writes_whole_lines_to_a_captured_stderr(tmp_path, capsys):
    data = make_tiny_folder(tmp_path / "data")
    assert run_cli(["train", data, "--model", "lenet5", "--input-size", "32", "--batch-size", 8, "--workers", 0,
                    "--val-fraction", 0.25, "--epochs", 2, "--no-tensorboard", "--out-dir", tmp_path / "runs"]) == 0
    assert run_cli(["eval", tmp_path / "runs" / "exp1" / "best.ckpt", data, "--workers", 0,
                    "-o", tmp_path / "eval"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert sum(line.startswith("epoch ") for line in err.splitlines()) == 2  # one line per epoch
