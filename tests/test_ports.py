"""Port declarations: the linking type rule, normalisation and type descriptions."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Optional, Protocol, Union

import pytest

import actorflow as af
from actorflow._ports import Port, describe_type, is_compatible, normalize_ports


class Animal:
    """A base class for the subclass rules."""


class Dog(Animal):
    """A subclass of :class:`Animal`."""


class Cat(Animal):
    """Another subclass of :class:`Animal`."""


class Shape(Protocol):
    """A protocol that is not runtime-checkable, so ``issubclass`` refuses it."""

    sides: int


class Outer:
    """Holds a nested class, to check qualified names."""

    class Inner:
        """A nested class."""


class DogSource(af.Source):
    """Produces dogs."""

    outputs: ClassVar = {"out": Dog}


class AnimalSink(af.Sink):
    """Consumes any animal."""

    inputs: ClassVar = {"in": Animal}


# -- is_compatible -----------------------------------------------------------------------


def test_equal_types_are_compatible() -> None:
    """A type flows into a port of exactly the same type."""
    assert is_compatible(int, int)
    assert is_compatible(Dog, Dog)
    assert is_compatible(list[int], list[int])


def test_subclass_flows_into_its_base_class() -> None:
    """A subclass is accepted where its base class is expected."""
    assert is_compatible(Dog, Animal)
    assert is_compatible(bool, int)


def test_base_class_is_refused_where_a_subclass_is_expected() -> None:
    """A base class is not accepted where one of its subclasses is expected."""
    assert not is_compatible(Animal, Dog)
    assert not is_compatible(int, bool)


def test_sibling_classes_are_incompatible() -> None:
    """Two subclasses of one base do not flow into each other."""
    assert not is_compatible(Dog, Cat)
    assert not is_compatible(int, str)


@pytest.mark.parametrize("produced", [int, Dog, list[int], int | None, Any, object])
@pytest.mark.parametrize("accepted", [object, Any])
def test_anything_flows_into_object_or_any(produced: Any, accepted: Any) -> None:
    """A port typed ``object`` or ``Any`` accepts every produced type."""
    assert is_compatible(produced, accepted)


@pytest.mark.parametrize("accepted", [int, Dog, list[str], int | None, Shape])
def test_any_flows_into_anything(accepted: Any) -> None:
    """A producer typed ``Any`` opted out of checks, so any port accepts it."""
    assert is_compatible(Any, accepted)


def test_object_does_not_flow_into_a_narrower_type() -> None:
    """Unlike ``Any``, a producer typed ``object`` is refused by a narrower port."""
    assert not is_compatible(object, int)


def test_member_flows_into_a_union_that_contains_it() -> None:
    """A type is accepted by a union when it is compatible with one of its members."""
    assert is_compatible(int, int | str)
    assert is_compatible(Dog, Union[int, Animal])  # noqa: UP007
    assert is_compatible(type(None), Optional[int])  # noqa: UP045


def test_type_outside_a_union_is_refused() -> None:
    """A type compatible with no member of the accepted union is refused."""
    assert not is_compatible(float, int | str)
    assert not is_compatible(Animal, Dog | Cat)


def test_produced_union_needs_every_member_accepted() -> None:
    """A produced union flows only if each of its members is accepted."""
    assert is_compatible(Dog | Cat, Animal)
    assert is_compatible(int | str, str | int | None)
    assert not is_compatible(int | None, int)
    assert not is_compatible(Dog | int, Animal)


def test_typing_union_and_pipe_union_behave_alike() -> None:
    """``typing.Union``/``Optional`` and the ``X | Y`` syntax follow the same rule."""
    assert is_compatible(Optional[int], int | None)  # noqa: UP045
    assert is_compatible(int | None, Union[int, None])  # noqa: UP007


def test_parameterised_generic_flows_into_its_bare_origin() -> None:
    """``list[int]`` is accepted by a port typed plain ``list``."""
    assert is_compatible(list[int], list)
    assert is_compatible(dict[str, int], dict)


def test_generics_with_different_arguments_are_refused() -> None:
    """``list[int]`` is not accepted by a port typed ``list[str]``."""
    assert not is_compatible(list[int], list[str])
    assert not is_compatible(dict[str, int], dict[str, str])


def test_bare_origin_is_refused_by_a_parameterised_port() -> None:
    """A plain ``list`` producer is refused by a ``list[int]`` port, which wants more."""
    assert not is_compatible(list, list[int])


def test_generic_flows_into_an_abstract_base_with_the_same_arguments() -> None:
    """Origins compare by subclassing, so ``dict[str, int]`` flows into ``Mapping[str, int]``."""
    assert is_compatible(dict[str, int], Mapping[str, int])
    assert is_compatible(list[int], Sequence)
    assert is_compatible(typing.List[int], list[int])  # noqa: UP006


def test_non_class_types_are_compatible_only_when_equal() -> None:
    """Types that are not classes, such as ``Literal``, match only themselves."""
    assert is_compatible(typing.Literal["a"], typing.Literal["a"])
    assert not is_compatible(typing.Literal["a"], str)


def test_protocol_that_refuses_issubclass_is_incompatible_instead_of_raising() -> None:
    """A non-runtime-checkable Protocol port refuses other types rather than raising."""
    assert not is_compatible(int, Shape)
    assert is_compatible(Shape, Shape)


# -- normalize_ports ---------------------------------------------------------------------


def test_normalize_ports_wraps_bare_types_in_port() -> None:
    """A bare type becomes a required ``Port`` of that type."""
    ports = normalize_ports({"in": int, "extra": list[str]}, "module 'm'")
    assert ports == {"in": Port(int), "extra": Port(list[str])}
    assert ports["in"].required


def test_normalize_ports_keeps_port_instances_as_they_are() -> None:
    """A ``Port`` is kept with its type, ``required`` flag and doc."""
    port = Port(int, required=False, doc="counts")
    assert normalize_ports({"in": port}, "module 'm'")["in"] is port


def test_normalize_ports_keeps_declaration_order() -> None:
    """Ports come back in the order they were declared."""
    assert list(normalize_ports({"b": int, "a": str, "c": object}, "m")) == ["b", "a", "c"]


def test_normalize_ports_accepts_an_empty_declaration() -> None:
    """A module without ports of one direction gets an empty mapping."""
    assert normalize_ports({}, "module 'm'") == {}


@pytest.mark.parametrize("name", ["a.b", ".", "", 1, None, ("in",)])
def test_normalize_ports_rejects_bad_names_naming_the_owner(name: Any) -> None:
    """A dotted, empty or non-string port name raises a TypeError naming owner and name."""
    with pytest.raises(TypeError, match=r"module 'owner'") as caught:
        normalize_ports({name: int}, "module 'owner'")
    assert repr(name) in str(caught.value)


def test_port_defaults_to_a_required_object_port() -> None:
    """``Port()`` accepts anything, is required and has no doc."""
    assert Port() == Port(object, required=True, doc="")


def test_module_ports_normalise_from_class_declarations() -> None:
    """A module class's ``outputs``/``inputs`` normalise to typed ports."""
    assert normalize_ports(DogSource.outputs, "src") == {"out": Port(Dog)}
    assert normalize_ports(AnimalSink.inputs, "sink") == {"in": Port(Animal)}
    assert is_compatible(
        normalize_ports(DogSource.outputs, "src")["out"].type,
        normalize_ports(AnimalSink.inputs, "sink")["in"].type,
    )


# -- describe_type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "expected"),
    [
        (int, "int"),
        (object, "object"),
        (Dog, "Dog"),
        (Outer.Inner, "Outer.Inner"),
        (list[int], "list[int]"),
        (dict[str, int], "dict[str, int]"),
        (int | None, "int | None"),
        (Optional[int], "Optional[int]"),  # noqa: UP045
        (Any, "Any"),
        (typing.List[int], "List[int]"),  # noqa: UP006
    ],
)
def test_describe_type_gives_short_readable_names(tp: Any, expected: str) -> None:
    """Classes show their qualified name and typing constructs lose the ``typing.`` prefix."""
    assert describe_type(tp) == expected
