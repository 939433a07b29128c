"""Property: no text, however broken, makes loading or validating a profile raise anything but ProfileError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcptune import catalog
from tcptune.errors import ProfileError
from tcptune.profile import load_profile
from tcptune.validate import validate

KEYS = [k.name for k in catalog.all_keys()] + ["tcp_fin_timeout", "../x", "net.ipv4.nope", "a b"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30)
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
documents = st.dictionaries(
    st.sampled_from(["name", "description", "extends", "settings", "bogus"]),
    st.one_of(scalars, st.dictionaries(st.sampled_from(KEYS), values, max_size=6), st.lists(scalars, max_size=3)),
    max_size=5,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass") if False else path.write_bytes(
            text.encode("utf-8", errors="replace")
        )
        try:
            verdict = validate(load_profile(path))
        except ProfileError as exc:
            assert exc.diagnostics
            return
        for diagnostic in verdict.diagnostics:
            assert "\n" not in str(diagnostic.location)


@FUZZ
@given(st.text(max_size=300))
def test_random_text_never_crashes(text: str) -> None:
    check(text)


@FUZZ
@given(documents)
def test_random_profile_shapes_never_crash(document: dict[str, object]) -> None:
    check(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "[",
                "]",
                ":",
                "-",
                " ",
                "\n",
                "&a",
                "*a",
                "!!str",
                "'",
                '"',
                "#",
                "settings",
                "tcp_rmem",
                "1",
                "?",
                "|",
                ">",
                "\t",
                "%YAML 1.2",
            ]
        ),
        max_size=60,
    )
)
def test_yaml_punctuation_soup_never_crashes(tokens: list[str]) -> None:
    check("".join(tokens))
