"""imgcls.runtime.keep_freed_memory: freed step memory is reused instead of page-faulted in again;
return_freed_memory: what malloc holds freed goes back to the kernel."""
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
# what `imgcls train` has imported when it calls keep_freed_memory; with torch alone the heap still grows by
# each 48 MB block through the first churns (new pages) instead of reusing the freed ones
import imgcls.engine.fit
from imgcls.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False

def churn():  # what a training step does with its activations: allocate, touch, free
    for _ in range(4):
        x = torch.empty(48 << 20, dtype=torch.uint8)
        x.fill_(1)
        del x

churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_keep_freed_memory_stops_the_page_faults_of_reallocation():
    applied, faults_on = _faults("on")
    if applied != "True":
        pytest.skip("not glibc: keep_freed_memory does not apply here")
    _, faults_off = _faults("off")
    assert faults_on < 500 and faults_on < faults_off  # 4 x 48 MB: ~49k faults with 4 kB pages, by default


def test_only_the_command_line_calls_it():
    """It changes the whole process: never on import, never inside library functions."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "imgcls"
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None))
                            == "keep_freed_memory" for n in ast.walk(ast.parse(p.read_text()))))
    assert callers == ["cli/commands.py"]


TRIM_PROBE = """
import re
from pathlib import Path
from imgcls.runtime import return_freed_memory

def rss_mb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

blocks = [bytearray(64_000) for _ in range(3000)]  # 192 MB in heap chunks, below malloc's mmap threshold
keep = bytearray(64_000)  # allocated last: the heap cannot shrink from its top by itself
del blocks
freed = rss_mb()
applied = return_freed_memory()
print(applied, freed - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_return_freed_memory_hands_freed_heap_back():
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True)
    applied, returned_mb = out.stdout.split()
    if applied != "True":
        pytest.skip("not glibc: return_freed_memory does not apply here")
    assert float(returned_mb) > 150  # of the 192 MB freed, held by malloc until trimmed
