"""Graphs and jobs drawn as Mermaid and DOT: any module or task name, however odd, stays
a label and never becomes syntax."""

from __future__ import annotations

import re
from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._diagram import dot, job_dot, job_mermaid, mermaid


class Emit(af.Source):
    outputs: ClassVar = {"out": int}

    def start(self) -> list[int]:
        return [1]


class Keep(af.Sink):
    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        pass


class Step(af.Task):
    def run(self) -> None:
        pass


names = st.lists(
    st.text(min_size=1, max_size=12).filter(lambda name: "." not in name),
    min_size=2,
    max_size=5,
    unique=True,
)

_DOT_TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|->|[A-Za-z_][A-Za-z0-9_]*|[{}\[\];=,]')
_DOT_ESCAPE = {"n": "\n", '"': '"', "\\": "\\"}


def dot_tokens(text: str) -> list[str]:
    """DOT's tokens, every character accounted for (a stray quote would not be)."""
    tokens, at = [], 0
    while at < len(text):
        match = _DOT_TOKEN.match(text, at)
        assert match is not None, f"not DOT at {text[at : at + 20]!r}"
        if not match.group().isspace():
            tokens.append(match.group())
        at = match.end()
    return tokens


def _unquote(token: str) -> str:
    assert token.startswith('"'), token
    return re.sub(r"\\(.)", lambda m: _DOT_ESCAPE[m[1]], token[1:-1])


def dot_nodes(text: str) -> dict[str, str | None]:
    """Each node's id and label, unescaped, checking that every statement has DOT's shape
    and every edge joins declared nodes."""
    tokens = dot_tokens(text)
    assert tokens[:3] == ["digraph", tokens[1], "{"]
    assert tokens[1].startswith('"')
    assert tokens[-1] == "}"
    statements: list[list[str]] = [[]]
    for token in tokens[3:-1]:
        if token == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    assert statements.pop() == []
    nodes: dict[str, str | None] = {}
    for parts in statements:
        if parts[1:2] == ["="]:
            assert parts == ["rankdir", "=", "LR"]
        elif parts[1:2] == ["->"]:
            assert _unquote(parts[0]) in nodes
            assert _unquote(parts[2]) in nodes
        elif len(parts) == 1:
            nodes[_unquote(parts[0])] = None
        else:
            assert parts[1:4] == ["[", "label", "="], parts
            assert parts[5:] == ["]"], parts
            nodes[_unquote(parts[0])] = _unquote(parts[4])
    return nodes


_MERMAID_NODE = re.compile(r'    ([mt]\d+)\["([A-Za-z0-9 _.:,()/#;-]*)"\]')
_MERMAID_EDGE = re.compile(r'    ([mt]\d+) (-->|-\.->)(\|"[A-Za-z0-9 _.:,()/#;-]*"\|)? ([mt]\d+)')


def mermaid_labels(text: str) -> dict[str, str]:
    """Each node's label, entity codes decoded, checking every line's shape."""
    lines = text.split("\n")
    assert lines[0] == "flowchart LR"
    labels = {}
    for line in lines[1:]:
        if node := _MERMAID_NODE.fullmatch(line):
            labels[node[1]] = re.sub(r"#(\d+);", lambda m: chr(int(m[1])), node[2])
        else:
            edge = _MERMAID_EDGE.fullmatch(line)
            assert edge, line
            assert edge[1] in labels
            assert edge[4] in labels
    return labels


def _one_line(name: str) -> str:
    return name.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=200, deadline=None)
@given(names=names, graph_name=st.text(min_size=1, max_size=10))
def test_any_module_names_draw_as_labels(names: list[str], graph_name: str) -> None:
    """DOT and Mermaid text for modules with any names parse, and give the names back."""
    graph = af.Graph(graph_name)
    for name in names:
        graph.add(name, Emit if name == names[0] else Keep)
    for name in names[1:]:
        graph.link(names[0], name)
    shown = [f"{name}: {Emit.__qualname__ if name == names[0] else 'Keep'}" for name in names]
    assert list(mermaid_labels(mermaid(graph)).values()) == shown
    assert dot_nodes(dot(graph)) == {
        _one_line(name): _one_line(name) + "\n" + ("Emit" if name == names[0] else "Keep")
        for name in names
    }


@settings(max_examples=100, deadline=None)
@given(names=names, job_name=st.text(max_size=10))
def test_any_task_names_draw_as_labels(names: list[str], job_name: str) -> None:
    job = af.Job(job_name)
    for name in names:
        job.add(name, Step)
    assert list(mermaid_labels(job_mermaid(job)).values()) == names
    assert dot_nodes(job_dot(job)) == dict.fromkeys(map(_one_line, names))
