"""The hostile-input corpus (tests/hostile_corpus.py): every case runs its verb in a child process and
must end in one error line and exit status 2 — no signal, no traceback, no file left, no code run, no
hang, under 2 GB of memory. The children run two at a time, once per session, each forked from a server that has
imported edgeseg already (``run_corpus(fork=True)``: ~1.5 min on 2 cores for ~160 cases, against ~5.5 min for fresh
interpreters, which benchmarks/hostile_report.py still uses)."""
import pytest
from hostile_corpus import CASES, RSS_LIMIT_BYTES, run_corpus


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return {r.case: r for r in run_corpus(tmp_path_factory.mktemp("hostile"), fork=True)}


def test_case_names_are_unique():
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_refused_in_one_line(case, results):
    result = results[case.name]
    assert result.returncode >= 0 and not result.timed_out, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.max_rss_bytes < RSS_LIMIT_BYTES
    assert result.problems(case) == [], result.stderr
