"""Text and set_info fields as they may be shown: secrets hidden, in time linear in the
text (a module's 100 KB error is redacted several times per failure)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow._reportable import MAX_TASK, fields, task_text
from actorflow._urls import (
    HIDDEN,
    is_secret_name,
    redact_data,
    redact_text,
    redact_url,
    secrets_of,
)

_SECRETS = st.text(
    st.characters(codec="ascii", categories=("L", "N"), include_characters="-_.~!$*+,"),
    min_size=6,
    max_size=40,
).filter(lambda s: s.strip("*") == s)


def test_set_info_fields_show_no_secret_whatever_carries_it() -> None:
    """A URL's password, a value under a secret-looking key and a ``token=`` said in
    text are all hidden; the rest (the user, the host, plain fields) is kept."""
    shown = fields(
        {
            "dsn": "postgres://bob:INFOPW2@db/x",
            "api_key": "INFOPW3",
            "note": "token=INFOPW4",
            "nested": [{"password": "INFOPW5", "frame": 3}],
            "frames": 10,
        }
    )
    assert "INFOPW" not in repr(shown)
    assert shown["dsn"] == f"postgres://bob:{HIDDEN}@db/x"
    assert shown["api_key"] == HIDDEN
    assert shown["note"] == f"token={HIDDEN}"
    assert shown["nested"] == [{"password": HIDDEN, "frame": 3}]
    assert shown["frames"] == 10


def test_a_task_quoting_a_url_hides_its_password_even_when_cut() -> None:
    assert task_text("connect redis://bob:INFOPW1@db/0") == f"connect redis://bob:{HIDDEN}@db/0"
    long = "x" * (MAX_TASK - 10) + " redis://bob:INFOPW1@db/0"
    shown = task_text(long)
    assert len(shown) == MAX_TASK
    assert "INFO" not in shown


def test_secret_looking_names() -> None:
    for name in ("token", "api_key", "X-Amz-Signature", "db.password", "PASS", "apikey"):
        assert is_secret_name(name), name
    for name in ("monkey", "keys", "author", "bypass", "note", "dsn", "sigma"):
        assert not is_secret_name(name), name


def test_a_secret_said_plainly_is_hidden_and_a_lookalike_kept() -> None:
    said = "api_key=1 token=2&x-amz-signature=3 monkey=4 KEY=5 a.pass=6 mykey=8 a=b=token=9"
    assert redact_text(said) == (
        "api_key=*** token=***&x-amz-signature=*** monkey=4 KEY=*** a.pass=*** mykey=8 "
        "a=b=token=***"
    )


@settings(max_examples=60, deadline=None)
@given(
    unit=st.sampled_from(["a=b ", "k=v&", "x:y@", "d=", "://u:", "token", "日本🚀 ", "= "]),
    secret=_SECRETS,
)
def test_redacting_100_kb_is_quick_and_leaks_nothing(unit: str, secret: str) -> None:
    """The patterns never backtrack over a long word: 100 KB of any repeated shape
    costs milliseconds (it was 19 ms to seconds), and secrets around it are hidden."""
    text = f"redis://u:{secret}@db/0 " + unit * (100_000 // len(unit)) + f" ?token={secret}"
    started = time.perf_counter()
    shown = redact_text(text)
    assert time.perf_counter() - started < 0.25
    assert secret not in shown


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=30),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["token", "api_key", "note", "x"]), inner, max_size=4
            )
        ),
        max_leaves=20,
    ),
    _SECRETS,
)
def test_any_fields_hide_a_secret_under_a_secret_key(value: Any, secret: str) -> None:
    shown = redact_data({"wrapper": value, "password": secret, "url": f"http://u:{secret}@h/"})
    assert secret not in repr((shown["password"], shown["url"]))
    assert all(
        item == HIDDEN for key, item in _items(shown["wrapper"]) if key != "note" and key != "x"
    )
    assert redact_data(shown) == shown  # hiding twice changes nothing more


def _items(value: Any) -> list[tuple[str, Any]]:
    """Every (key, value) of a secret-looking key in nested data whose value is set."""
    found: list[tuple[str, Any]] = []
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            found += [(k, v) for k, v in current.items() if is_secret_name(k) and v is not None]
            stack += current.values()
        elif isinstance(current, list):
            stack += current
    return found


@pytest.mark.parametrize(
    "name", ["api_key", "access_token", "apikey", "sig", "auth", "X-Amz-Signature"]
)
def test_a_url_hides_every_query_value_whose_name_says_secret(name: str) -> None:
    """A reporter URL is redacted by the same rule as text: the names that say secret are
    one list, not a shorter second one for URLs."""
    url = f"http://admin:pw9@host:9/hb?{name}=VALUE7&page=2&monkey=1"
    shown = redact_url(url)
    assert "VALUE7" not in shown
    assert "pw9" not in shown
    assert "page=2" in shown
    assert "monkey=1" in shown
    assert "VALUE7" in secrets_of(url)
