"""The public surface: everything exported exists, is documented, and nothing private leaks."""

from __future__ import annotations

import inspect

import actorflow


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ lists real attributes, each once."""
    names = actorflow.__all__
    assert len(names) == len(set(names))
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(actorflow, name), name


def test_every_export_has_a_docstring() -> None:
    """Each exported class and function says what it is for."""
    for name in actorflow.__all__:
        obj = getattr(actorflow, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = inspect.getdoc(obj)
            assert doc, f"{name} has no docstring"
            assert doc.strip(), f"{name} has an empty docstring"


def test_no_public_name_is_missing_from_all() -> None:
    """Every public, non-module attribute of the package is in __all__."""
    public = {
        name
        for name in dir(actorflow)  # lazy exports (RedisStore) included
        if not name.startswith("_") and not inspect.ismodule(getattr(actorflow, name))
    }
    assert public == set(actorflow.__all__)


def test_every_error_is_an_actorflow_error() -> None:
    """Users can catch everything actorflow raises on purpose with one class."""
    errors = [
        getattr(actorflow, name)
        for name in actorflow.__all__
        if name.endswith("Error") and inspect.isclass(getattr(actorflow, name))
    ]
    assert len(errors) >= 7
    for error in errors:
        assert issubclass(error, actorflow.ActorflowError)
