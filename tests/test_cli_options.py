import argparse
from dataclasses import dataclass

from imgcls.cli import add_option_flags
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
