import argparse
from dataclasses import dataclass

import pytest

from imgcls.cli.flags import add_option_flags
from imgcls.options import option


@dataclass
class _Opts:
    share: float = option(0.5, "fraction kept (50% keeps half)", ge=0, le=1)
    label: str = option("10%", "a default with a percent sign")


def test_help_texts_may_hold_percent_signs():
    p = argparse.ArgumentParser(prog="x")
    add_option_flags(p, _Opts)
    text = p.format_help()  # argparse %-formats help strings: an unescaped "%" would raise here
    assert "(50% keeps half)" in text and "(default: 10%)" in text
    assert p.parse_args(["--share", "0.25"]).share == 0.25


@dataclass
class _Shapes:
    out: str = option(None, "where to write", short="-o", required=True)
    json: bool = option(False, "machine-readable", cli="switch", exclusive="format")
    csv: bool = option(False, "rows", cli="switch", exclusive="format")
    side: int | None = option(None, "shorter side (default: the model's)", ge=1)


def test_switches_required_flags_and_exclusive_groups(capsys):
    p = argparse.ArgumentParser(prog="x")
    add_option_flags(p, _Shapes)
    text = " ".join(p.format_help().split())
    assert "--no-json" not in text and "machine-readable --csv" in text  # a switch has no --no- form, no default
    assert "shorter side (default: the model's)" in text and "(default: None)" not in text
    assert vars(p.parse_args(["-o", "d", "--csv"])) == {"out": "d", "json": False, "csv": True, "side": None}
    for argv, says in ((["--json"], "the following arguments are required: -o/--out"),
                       (["-o", "d", "--json", "--csv"], "argument --csv: not allowed with argument --json")):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
        assert says in capsys.readouterr().err
