"""The benchmark command works (its figures live in bench/RESULTS.md; they are not asserted here)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.support import SKIP_MISSING

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)  # every scenario once: 2-3 minutes on a quiet 2-core machine, more on a busy one
def test_the_quick_benchmark_runs_every_scenario_and_writes_results(tmp_path):
    output = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=880, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text()
    headings = re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE)
    assert headings == [str(number) for number in range(1, 16)]
    if os.environ.get(SKIP_MISSING) != "1" or shutil.which("chromium"):
        assert "Not measured" not in text  # with chromium the browser scenario runs too
    assert re.search(r"Overhead = .*\*\*ours -?\d+\.\d\d\*\*", text)  # one quick run may even come out negative
    assert re.search(r"is \d+\.\d% of the app's CPU samples \(\d+ of \d+\)", text)  # the store's profile was taken
    assert re.search(r"Machine: .+ 2 cores|Machine: .+ \d+ cores", text)


def test_the_readme_names_every_scenario_the_benchmark_runs():
    from bench.run import SCENARIOS

    assert f"`--only {','.join(SCENARIOS)}` picks scenarios" in (ROOT / "README.md").read_text()


def test_a_change_is_called_from_the_range_that_holds_its_median():
    from bench.common import Change

    fifteen = Change([n / 100 for n in range(-2, 13)])  # -2% .. +12%, median +5%
    low, high, confidence = fifteen.bounds
    assert (round(low, 2), round(high, 2), round(confidence, 3)) == (0.01, 0.09, 0.965)  # 4th and 12th of 15
    assert fifteen.verdict(0.10) == "met"
    assert fifteen.verdict(0.05) == "too close to call"
    assert fifteen.verdict(0.005) == "**not met**"
    assert fifteen.text() == "+5.0% (median of 15 rounds; +1.0% to +9.0% at 96% confidence)"
    assert Change([0.2, 0.3, 0.4]).bounds[1:] == (0.4, 0.75)  # three rounds: only the whole range, 75% sure
