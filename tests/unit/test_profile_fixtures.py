"""Data-driven: every bad fixture names the exact diagnostic it must produce.

First line: ``# expect: LINE:COL: text``, ``# expect: text`` (no position) or ``# expect: @other.yaml:LINE:COL: text``
(reported in another file of the extends chain).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune import profile
from tcptune.errors import ProfileError
from tcptune.profile import load_profile
from tcptune.validate import validate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "profiles"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
GOOD = sorted((FIXTURES / "good").glob("*.yaml"))


LOADERS = {"libyaml": profile._Loader, "pure-python": profile._StrictLoader}


@pytest.fixture(params=sorted(LOADERS), autouse=True)
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both parsers must report the same problems at the same places."""
    monkeypatch.setattr(profile, "_Loader", LOADERS[request.param])


def diagnostics_for(path: Path) -> list[str]:
    try:
        return [str(d) for d in validate(load_profile(path)).diagnostics]
    except ProfileError as exc:
        return [str(d) for d in exc.diagnostics]


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    assert first.startswith("# expect: "), f"{path.name} lacks an '# expect:' line"
    expect = first.removeprefix("# expect: ")
    if expect.startswith("@"):  # the problem is reported in another file of the chain
        other, _, rest = expect[1:].partition(":")
        return f"{path.parent / other}:{rest}"
    return f"{path}:{expect}" if expect[0].isdigit() else f"{path}: {expect}"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_profile_reports_exact_location_and_message(path: Path) -> None:
    found = diagnostics_for(path)
    expected = expectation(path)
    assert any(line.startswith(expected) for line in found), f"expected {expected!r} in {found}"


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good_profile_has_no_errors(path: Path) -> None:
    verdict = validate(load_profile(path))
    assert verdict.ok, [str(d) for d in verdict.errors]
