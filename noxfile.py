"""Developer sessions: ``nox`` runs tests, lint, typecheck, examples and the docs build."""

from __future__ import annotations

import shutil

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "examples", "docs"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, with coverage (the README's test command)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".", "mypy")
    session.run("mypy", "--strict", "actorflow")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example as a user would."""
    session.install("-e", ".")
    session.run("python", "examples/sensor_pipeline.py")
    session.run("python", "examples/ticker.py", "--count", "3")
    session.run("python", "examples/progressive_stats.py")
    session.run("python", "examples/interactive_threshold.py")
    session.run("python", "examples/encode_job.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly: any warning, a broken reference included,
    fails. The old build is removed first, since Sphinx does not repeat the warnings of
    pages it does not read again."""
    session.install("-e", ".[docs]")
    shutil.rmtree("docs/_build", ignore_errors=True)
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The pipeline benchmark against raw trio and asyncio.Queue."""
    session.install("-e", ".")
    session.run("python", "benchmarks/bench_pipeline.py", *session.posargs)
