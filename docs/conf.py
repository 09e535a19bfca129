"""Sphinx configuration of the documentation site: MyST Markdown, furo, autodoc.

Build it strictly, as CI does (``nox -s docs``)::

    sphinx-build -W --keep-going -n -b html docs docs/_build/html

No intersphinx: the build must not fetch anything, so references to types of other
projects (trio, structlog, attrs, the standard library) are not links and are listed in
``nitpick_ignore_regex`` below; everything of actorflow's own must resolve.
"""

from __future__ import annotations

import enum
import re
import sys
from pathlib import Path
from typing import Any

import attrs
from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout, whatever else is installed

import actorflow  # noqa: E402
import actorflow.aio  # noqa: E402

project = "actorflow"
author = "The actorflow developers"
copyright = "the actorflow developers"
release = actorflow.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

html_theme = "furo"
html_title = f"actorflow {release}"

# -- MyST --------------------------------------------------------------------------------
# Headings get GitHub-style anchors, so `[...](logging.md#reading-logs-with-actorflow-logs)`
# works on GitHub and in the built site alike.
myst_heading_anchors = 3

# -- autodoc and napoleon (Google-style docstrings) ---------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become fields of the class, not entries of their own, so an
# attribute that also has its own docstring is not described twice.
napoleon_use_ivar = True

# -- strict references ----------------------------------------------------------------
nitpicky = True
_EXTERNAL = (
    # other projects: their inventories would need the network
    "attrs",
    "outcome",
    "structlog",
    "trio",
    # the standard library, for the same reason
    "asyncio",
    "_asyncio",  # asyncio.Future's real module
    "collections",
    "contextlib",
    "datetime",
    "enum",
    "pathlib",
    "random",
    "sqlite3",
    "types",
    "typing",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{'|'.join(_EXTERNAL)})(?:\..+)?"),
    # Internal types that public signatures mention but actorflow does not export:
    # Graph.supervision_of returns a Supervision, and a Supervisor's children are Workers.
    (r"py:class", r"actorflow\._specs\.Supervision"),
    (r"py:class", r"(?:actorflow\._supervisor\.)?Worker"),
    # An OutletReader is made by System.receive from the outlet's private queue.
    (r"py:class", r"actorflow\._endpoints\._OutletChannel"),
    # OpenTelemetry's, named by open_system and run (its inventory needs the network).
    (r"py:class", r"(?:opentelemetry\.trace\.)?TracerProvider"),
]


def _public_target(target: str) -> str | None:
    """The public name a reference means, when Sphinx cannot find it as written.

    ``actorflow._graph.Graph`` (how autodoc writes a type hint) is documented as
    ``actorflow.Graph`` (or ``actorflow.aio.AioSystem``), and a bare ``System.stop`` in a
    docstring of a private module means ``actorflow.System.stop``.
    """
    match = re.fullmatch(r"(?:actorflow\._\w+\.)?(\w+)((?:\.\w+)*)", target)
    if match is None:
        return None
    name, rest = match.groups()
    if name in actorflow.__all__:
        return f"actorflow.{name}{rest}"
    if name in actorflow.aio.__all__:
        return f"actorflow.aio.{name}{rest}"
    return None


def _resolve_private_paths(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    """Resolve references to private module paths through the public names."""
    if node.get("refdomain") != "py":
        return None
    public = _public_target(node["reftarget"])
    if public is None:
        return None
    resolved: nodes.reference | None = env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
    )
    return resolved


def _parameters(signature: str) -> list[str]:
    """The parameters of ``"(a: int = 1, b: dict[str, int] = {})"``, split at top-level
    commas only."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in signature[1:-1]:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _clean_class_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Show a class signature as users call it.

    Private attrs fields (``Graph._modules``, every field of ``AioSystem``) are left out:
    users never pass them, and a class with nothing else to pass shows no signature.
    Enums and protocols show none either (``CopyPolicy(value)`` is not how one is used),
    and attrs' ``NOTHING`` (a default made by a factory) shows as ``...``.
    """
    if what not in ("class", "exception") or not signature or not isinstance(obj, type):
        return None
    if issubclass(obj, enum.Enum) or getattr(obj, "_is_protocol", False):
        return ("", return_annotation)
    private: set[str] = set()
    if attrs.has(obj):
        private = {field.alias for field in attrs.fields(obj) if field.name.startswith("_")}
    parameters = [
        parameter
        for parameter in _parameters(signature)
        if re.split(r"[:=\s]", parameter.lstrip("*"))[0] not in private
    ]
    shown = f"({', '.join(parameters)})" if parameters else ""
    return (re.sub(r"=( ?)NOTHING\b", r"=\1...", shown), return_annotation)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", _resolve_private_paths)
    app.connect("autodoc-process-signature", _clean_class_signature)
    return {"parallel_read_safe": True}
