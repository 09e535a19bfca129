"""Bad input at the edges (graph files, the registry, CLI paths, the codec) gives one
clear error naming the culprit: never a crash, a stray builtin error or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import msgpack
import pytest
import trio
from redis_server import RedisServer

import actorflow as af
from actorflow._cli import main
from actorflow._data import MAX_DEPTH, decode, encode


class Readings(af.Source):
    outputs: ClassVar = {"out": float}

    def __init__(self, count: int = 1) -> None:
        self.count = count

    def start(self) -> list[float]:
        return [0.0] * self.count


class Store(af.Sink):
    inputs: ClassVar = {"in": float}

    def consume(self, data: float) -> None:
        pass


REGISTRY = af.Registry(
    {
        "readings": af.RegistryEntry("readings", f"{__name__}:Readings", "test"),
        "store": af.RegistryEntry("store", f"{__name__}:Store", "test"),
    }
)

GOOD = """
[graph]
name = "plant"
[modules.readings]
module = "readings"
[modules.store]
module = "store"
[[links]]
from = "readings"
to = "store"
buffer = 8
"""


def problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plant.toml"
    path.write_text(text)
    with pytest.raises(af.GraphFileError) as caught:
        af.load_graph(path, REGISTRY)
    message = str(caught.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("graph = 5\n" + GOOD.replace('[graph]\nname = "plant"', ""), "[graph]: expected a table"),
        ("settings = 1\n" + GOOD, "[settings]: expected a table"),
        ('links = "x"\n' + GOOD.split("[[links]]")[0], "links: expected an array of tables"),
        ("links = [1, 2]\n" + GOOD.split("[[links]]")[0], "[[links]] #1: expected a table"),
        ("supervisor = 3\n" + GOOD, "[supervisor]: expected a table"),
        (
            GOOD.replace('name = "plant"', "name = 7"),
            "[graph] key 'name': expected a non-empty string",
        ),
        (
            GOOD.replace('name = "plant"', 'name = ""'),
            "[graph] key 'name': expected a non-empty string, got ''",
        ),
        (GOOD.replace('module = "store"', "module = 3"), "[modules.store] key 'module'"),
        (GOOD.replace('to = "store"', "to = 3"), "[[links]] #1 key 'to'"),
        (GOOD.replace("buffer = 8", 'buffer = "x"'), "[[links]] #1 (readings -> store)"),
        (GOOD + "[settings]\nquantum = 'x'\n", "[settings] key 'quantum'"),
        (
            GOOD + "[settings]\nremote_url = 5\n",
            "key 'remote_url': remote_url must be a redis://",
        ),
        (
            GOOD + "[modules.store.supervise]\nrestart = 5\n",
            "[modules.store] key 'supervise'",
        ),
        (GOOD.replace("[[links]]", 'supervise = "x"\n[[links]]'), "key 'supervise'"),
        ("x = " + "[" * 3000 + "]" * 3000 + "\n" + GOOD, "nested too deeply"),
        ("\xff\xfe", "not valid TOML"),
        ("", "a graph needs at least one module table"),
    ],
)
def test_a_graph_file_of_the_wrong_shape_is_one_graph_file_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in problems(tmp_path, text)


def test_invalid_utf8_and_a_directory_are_graph_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(af.GraphFileError, match="not UTF-8"):
        af.load_graph(path, REGISTRY)
    with pytest.raises(af.GraphFileError, match="cannot read it"):
        af.load_job(tmp_path, REGISTRY)


def test_a_huge_value_is_quoted_in_short(tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    message = problems(tmp_path, GOOD.replace("buffer = 8", f'buffer = "{huge}"'))
    assert len(message) < 2000
    message = problems(tmp_path, GOOD.replace("[[links]]", f'shared = "{huge}"\n[[links]]'))
    assert len(message) < 2000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("buffer = 8", "bufer = 8"), "did you mean 'buffer'?"),
        (GOOD + "[settings]\nquantom = 1\n", "did you mean 'quantum'?"),
        (GOOD.replace('module = "store"', 'module = "stor"'), "did you mean 'store'?"),
        (GOOD.replace('module = "store"', 'modul = "store"'), "did you mean 'module'?"),
        (GOOD + "[setings]\nquantum = 1\n", "did you mean 'settings'?"),
        (
            GOOD.replace("[modules.readings]\n", "[modules.readings]\nconfig = {cuont = 1}\n"),
            "did you mean 'count'?",
        ),
        (GOOD.replace('to = "store"', 'to = "stor"'), "did you mean 'store'?"),
        (GOOD.replace('to = "store"', 'to = "store.inn"'), "did you mean 'in'?"),
        (GOOD.replace('from = "readings"', 'from = "readings.ot"'), "did you mean 'out'?"),
        (GOOD + "[modules.store.supervise]\nrestrat = 'permanent'\n", "did you mean 'restart'?"),
        (GOOD + "[supervisor]\nstrategi = 'one_for_all'\n", "did you mean 'strategy'?"),
        (GOOD.replace("buffer = 8", 'copy = "dep"'), "got 'dep' (did you mean 'deep'?)"),
        (GOOD.replace("buffer = 8", 'overflow = "drop_olest"'), "(did you mean 'drop_oldest'?)"),
        (
            GOOD + "[modules.store.supervise]\nrestart = 'temporay'\n",
            "(did you mean 'temporary'?)",
        ),
        (GOOD + "[supervisor]\nstrategy = 'one_for_al'\n", "(did you mean 'one_for_all'?)"),
    ],
)
def test_misspelt_keys_and_names_get_a_close_match(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in problems(tmp_path, text)


@pytest.mark.parametrize(
    "body",
    [
        "def broken(:\n",
        "raise RuntimeError('boom at import')\n",
        "import no_such_module_anywhere\n",
        "raise SystemExit(3)\n",
        "Thing = 5\n",
        "",
    ],
)
def test_a_module_whose_import_fails_is_a_registry_error_with_its_cause(
    tmp_path: Path, body: str
) -> None:
    (tmp_path / "broken_mod_x.py").write_text(body)
    registry = af.Registry(
        {"thing": af.RegistryEntry("thing", "broken_mod_x:Thing", "test")}, paths=(tmp_path,)
    )
    sys.modules.pop("broken_mod_x", None)
    try:
        with pytest.raises(af.RegistryError, match="'thing'") as caught:
            registry.load("thing")
        if body and body != "Thing = 5\n":
            assert caught.value.__cause__ is not None
        assert registry.problem("thing") is not None
    finally:
        sys.modules.pop("broken_mod_x", None)


def test_modules_marks_entries_that_do_not_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_mod_y.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [tool.actorflow.modules]
            bad = "broken_mod_y:Thing"
            good = "{__name__}:Store"
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent))
    assert main(["modules"]) == 0
    out = capsys.readouterr().out
    assert "does not import: " in out
    assert "boom" in out
    good = next(line for line in out.splitlines() if line.startswith("good"))
    assert "does not import" not in good
    sys.modules.pop("broken_mod_y", None)


def test_a_bad_pyproject_shape_is_a_registry_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("tool = 5\n")
    with pytest.raises(af.RegistryError, match=r"\[tool.actorflow\]"):
        af.Registry.discover(tmp_path / "pyproject.toml")


def test_a_pyproject_key_of_100_000_parts_is_one_registry_error_at_once(tmp_path: Path) -> None:
    """tomllib is quadratic in a dotted key's parts: such a key is refused before it parses."""
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.actorflow.modules]\n" + ".".join(["a"] * 100_000) + ' = "m:C"\n')
    started = time.perf_counter()
    with pytest.raises(af.RegistryError, match="line 2: a dotted key of more than 100") as caught:
        af.Registry.discover(path)
    assert time.perf_counter() - started < 2
    assert str(path) in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    return code, capsys.readouterr().err


def test_every_path_mistake_is_one_line_naming_the_path_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    regular = tmp_path / "file"
    regular.write_text("")
    graph = tmp_path / "plant.toml"
    graph.write_text(GOOD)
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.actorflow.modules]\nreadings = "{__name__}:Readings"\nstore = "{__name__}:Store"\n'
    )
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent))
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as file:
        file.truncate(200 * 1024 * 1024)  # sparse: a 200 MB graph file costs no disk
    for argv, path in [
        (["run", str(tmp_path)], str(tmp_path)),
        (["validate", str(regular / "x.toml")], str(regular / "x.toml")),
        (["graph", str(tmp_path / "missing.toml")], "missing.toml"),
        (["logs", str(tmp_path)], str(tmp_path)),
        (["run", str(graph), "--log", str(tmp_path)], str(tmp_path)),
        (["run", str(graph), "--log", str(regular / "x.log")], str(regular / "x.log")),
        (["run", str(graph), "--log", str(tmp_path / "no" / "x.log")], "x.log"),
        (["run", str(graph), "--log", str(tmp_path / "ok.log"), "--log-level", "loud"], "loud"),
        (["run", str(graph), "--log", "/dev/full"], "/dev/full"),  # opens, takes no write
        (["run", str(graph), "--log-level", "nonsense"], "--log-level: unknown log level"),
        (["run", str(graph), "--log-level", "debg"], "(did you mean 'debug'?)"),
        (["run", str(graph), "--log", ""], "--log '': not a valid path"),
        (["run", str(graph), "--only", ""], "--only '': names no module"),
        (["run", str(graph), "--only", ",,", "--only", " "], "--only ',,, ': names no module"),
        (["validate", "/dev/zero"], "/dev/zero"),  # endless: not a regular file
        (["run", "/dev/stdin"], "/dev/stdin"),
        (["logs", "/dev/zero"], "/dev/zero"),
        (["validate", str(fifo)], str(fifo)),
        (["run", str(graph), "--log", str(fifo)], "a pipe that nobody reads"),
        (["validate", str(huge)], str(huge)),
    ]:
        code, err = run_cli(argv, capsys)
        assert code == 2, argv
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert path in err


def test_deeply_nested_tuples_are_refused_not_a_crash() -> None:
    """200 nested tuples (936 bytes) used to overflow the C stack in the decoder."""
    payload = b"\x01"
    for _ in range(200):
        payload = msgpack.packb(msgpack.ExtType(1, b"\x91" + payload))
    code = f"from actorflow._data import decode\ndecode({payload!r})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1  # a Python error, not a signal
    assert "SerializationError" in result.stderr
    assert "nested too deeply" in result.stderr
    value: object = 1
    for _ in range(200):
        value = (value,)
    with pytest.raises(af.SerializationError, match="nested too deeply"):
        encode(value)


def test_the_depth_limit_is_the_same_both_ways() -> None:
    value: object = 1
    for _ in range(MAX_DEPTH):
        value = (value,)
    assert decode(encode(value)) == value


def test_deep_lists_and_huge_integers_are_serialization_errors() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(af.SerializationError, match="nested too deeply"):
        encode({"a": deep})
    with pytest.raises(af.SerializationError, match=r"value\['a'\]\[1\].*4300 digits"):
        encode({"a": [1, 10**5000]})
    assert decode(encode(-(2**200))) == -(2**200)
    with pytest.raises(af.SerializationError):
        decode(msgpack.packb(msgpack.ExtType(6, b"1_0")))
    with pytest.raises(af.SerializationError):
        decode(msgpack.packb(msgpack.ExtType(5, b"\x93\x01\x02\x03")))


async def test_deeply_nested_tuples_from_redis_are_dropped_not_a_crash(
    redis_server: RedisServer,
) -> None:
    """The 936 bytes that segfaulted a consumer are one undecodable entry, counted."""
    from actorflow._redis import connect
    from tests.test_remote import pair, stream_length, unique

    payload = b"\x01"
    for _ in range(200):
        payload = msgpack.packb(msgpack.ExtType(1, b"\x91" + payload))
    name = unique("deep")
    stream = f"actorflow:{name}:numbers.out>keep.in"
    async with connect(redis_server.url) as client:
        await client.xadd(stream, {b"p": payload})
    got: list[af.Data] = []
    with trio.fail_after(20):
        async with af.open_system(pair(name, 3, redis_server.url, got)) as system:
            pass
    assert [d.fields["n"] for d in got] == [0, 1, 2]
    inbound = system.status().links["numbers.out -> keep.in (from the stream)"]
    assert inbound.dropped == {"undecodable": 1}
    assert await stream_length(redis_server.url, stream) == 0


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    """``actorflow modules | head -0``: the closed pipe ends the command quietly."""
    lines = "".join(f'm{n} = "pkg.mod:C{n}"\n' for n in range(2000))
    (tmp_path / "pyproject.toml").write_text(f"[tool.actorflow.modules]\n{lines}")
    command = [sys.executable, "-m", "actorflow", "modules"]
    with subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        err = process.stderr.read().decode()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "BrokenPipe" not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("buffer = 8", "buffer = 8\nworkers = 100000000"), "workers must be"),
        (GOOD.replace("buffer = 8", "buffer = 9223372036854775807"), "buffer must be"),
        (GOOD + "[settings]\nquantum = 1e-320\n", "quantum must be seconds"),
        (GOOD + "[settings]\ncleanup_timeout = inf\n", "cleanup_timeout must be seconds"),
        (GOOD + "[settings]\nmax_batch = 9223372036854775807\n", "max_batch must be"),
        (GOOD + "[supervisor]\nperiod = 1e-320\n", "period must be seconds"),
        (GOOD + "[supervisor]\nbackoff = {min = inf}\n", "min must be seconds"),
        (GOOD + "[supervisor]\nbackoff = {max = nan}\n", "max must be seconds"),
        (GOOD + "[supervisor]\nmax_restarts = 9223372036854775807\n", "max_restarts must be"),
    ],
)
def test_absurd_but_well_typed_numbers_are_refused_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A number of the right type but beyond any sensible range (a run that would never
    end, a denormal period) is a graph-file error naming the key, never accepted."""
    assert expected in problems(tmp_path, text)


def test_a_backoff_table_in_a_graph_file_is_a_backoff_or_an_error_naming_its_key(
    tmp_path: Path,
) -> None:
    """A ``backoff`` table is converted, not stored as a dict that fails at restart."""
    path = tmp_path / "plant.toml"
    path.write_text(GOOD + "[supervisor]\nbackoff = {min = 0.5, max = 2}\n")
    graph, _ = af.load_graph(path, REGISTRY)
    assert graph.root.backoff == af.Backoff(min=0.5, max=2)
    assert "did you mean 'jitter'?" in problems(
        tmp_path, GOOD + "[supervisor]\nbackoff = {jiter = 0.5}\n"
    )
    assert "backoff must be" in problems(tmp_path, GOOD + "[supervisor]\nbackoff = 3\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("buffer = 8", 'feedback = "yes"'), "feedback must be True or False"),
        (GOOD.replace("buffer = 8", 'latest_only = "no"'), "latest_only must be True or False"),
        (
            GOOD.replace(
                'module = "store"', 'module = "store"\nsupervise = { significant = "no" }'
            ),
            "significant must be True or False",
        ),
        (GOOD + "[settings]\nremote_url = 5\n", "remote_url must be a redis://"),
        (GOOD + '[settings]\nremote_url = "http://:pw@x"\n', "remote_url must be a redis://"),
        (
            GOOD.replace("buffer = 8", 'remote = { url = "redis://h/0", stream = 5 }'),
            "stream must be a non-empty string",
        ),
    ],
)
def test_truthy_strings_and_wrong_typed_urls_are_refused_not_taken(
    tmp_path: Path, text: str, expected: str
) -> None:
    """ "no" is not true; a URL that is not a Redis URL is refused at load, its password
    never shown."""
    message = problems(tmp_path, text)
    assert expected in message
    assert "pw" not in message
