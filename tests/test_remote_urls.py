"""A Redis URL the client cannot use is refused where settings and links are validated
(`actorflow validate` included: one line naming the file and key, exit 2), not at run
time with the client's bare ValueError; a database the server refuses is a run-time
error naming the URL, its password hidden."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from redis_server import RedisServer
from test_remote import Keep, Numbers, unique

import actorflow as af

CHECKOUT = Path(__file__).resolve().parent.parent

BAD = [
    ("redis://127.0.0.1:99999/0", "its port is not one from 1 to 65535"),
    ("redis://127.0.0.1:0/0", "its port is not one from 1 to 65535"),
    ("redis://127.0.0.1:6379/0?db=x", "its option db='x' is not a whole number"),
    ("redis://127.0.0.1:6379/x", "its database 'x' is not a number"),
    ("redis://127.0.0.1:6379/0?dbb=1", "its option 'dbb' is not one of"),
    ("redis://127.0.0.1:6379/0?connect_timeout=soon", "is not a number"),
    ("redis://:secret@127.0.0.1:6379/0?noreply=perhaps", "is not true or false"),
]


@pytest.mark.parametrize(("url", "said"), BAD)
def test_a_bad_redis_url_is_refused_by_settings_and_links(url: str, said: str) -> None:
    for make in (lambda: af.Settings(remote_url=url), lambda: af.Remote(url=url)):
        with pytest.raises(ValueError, match=r"is no Redis URL") as refused:
            make()
        assert said in str(refused.value)
        assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://h",
        "rediss://u:p@h:6380/3?ssl_cert_reqs=none&client_name=x",
        "unix:///tmp/redis.sock?db=2",
        "redis://h:6379/0?stream_timeout=1.5&noreply=false&max_connections=4",
    ],
)
def test_good_redis_urls_pass(url: str) -> None:
    assert af.Remote(url=url).url == url


@given(port=st.integers(min_value=0, max_value=200_000))
def test_only_ports_from_1_to_65535_pass(port: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    if 1 <= port <= 65535:
        assert af.Remote(url=url).url == url
    else:
        with pytest.raises(ValueError, match="its port is not one from 1 to 65535"):
            af.Remote(url=url)


def test_validate_refuses_a_bad_url_in_a_line_naming_the_key_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "graph.toml").write_text(
        textwrap.dedent(
            """
            [graph]
            name = "g"
            [settings]
            remote_url = "redis://127.0.0.1:99999/0"
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "validate", "graph.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(CHECKOUT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "graph.toml" in done.stderr
    lines = [line for line in done.stderr.splitlines() if "99999" in line]
    assert len(lines) == 1  # one line, naming the key (the file has no modules either)
    assert "[settings] key 'remote_url'" in lines[0]
    assert "its port is not one from 1 to 65535" in lines[0]


async def test_a_database_the_server_refuses_names_the_url(redis_server: RedisServer) -> None:
    url = redis_server.url.rsplit("/", 1)[0].replace("redis://", "redis://:secret@") + "/99"
    graph = af.Graph(name=unique("db99"))
    graph.add("numbers", Numbers, count=3)
    graph.add("keep", Keep, into=[])
    graph.link("numbers", "keep", remote=af.Remote(url=url))
    with trio.fail_after(20), pytest.raises(af.RunError) as failed:
        async with af.open_system(graph, only={"numbers"}):
            pass
    message = str(failed.value)
    assert "refused the link's first command" in message
    assert "/99" in message
    assert "secret" not in message
