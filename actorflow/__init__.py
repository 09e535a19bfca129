"""actorflow: an actor runtime for dataflow programs, built on trio.

Every module of a graph runs as an actor with a bounded mailbox inside a trio nursery;
links are bounded, so a slow consumer slows its producer instead of growing memory.
"""

import importlib as _importlib
import typing as _typing

from ._version import __version__ as __version__

if _typing.TYPE_CHECKING:
    from ._actor import DeadLetter as DeadLetter
    from ._data import Data as Data
    from ._data import decode as decode
    from ._data import encode as encode
    from ._endpoints import Inlet as Inlet
    from ._endpoints import Outlet as Outlet
    from ._endpoints import OutletReader as OutletReader
    from ._endpoints import Variable as Variable
    from ._exceptions import ActorflowError as ActorflowError
    from ._exceptions import ChangeError as ChangeError
    from ._exceptions import CleanupError as CleanupError
    from ._exceptions import EscalationError as EscalationError
    from ._exceptions import GraphError as GraphError
    from ._exceptions import GraphFileError as GraphFileError
    from ._exceptions import GraphProblem as GraphProblem
    from ._exceptions import InitializationError as InitializationError
    from ._exceptions import LifecycleError as LifecycleError
    from ._exceptions import RegistryError as RegistryError
    from ._exceptions import RunError as RunError
    from ._exceptions import SerializationError as SerializationError
    from ._exceptions import ServeError as ServeError
    from ._exceptions import StoreError as StoreError
    from ._exceptions import ValidationError as ValidationError
    from ._graph import Graph as Graph
    from ._graphfile import load_graph as load_graph
    from ._graphfile import load_job as load_job
    from ._heartbeat import HttpReporter as HttpReporter
    from ._heartbeat import Reporter as Reporter
    from ._job import Job as Job
    from ._job import JobResult as JobResult
    from ._job import Task as Task
    from ._job import TaskResult as TaskResult
    from ._job import TaskState as TaskState
    from ._logging import configure_logging as configure_logging
    from ._module import Many as Many
    from ._module import Module as Module
    from ._module import ModuleKind as ModuleKind
    from ._module import Processor as Processor
    from ._module import Sink as Sink
    from ._module import Source as Source
    from ._module import Tag as Tag
    from ._ports import Port as Port
    from ._progressive import Progressive as Progressive
    from ._progressive import Step as Step
    from ._progressive import StepState as StepState
    from ._redis import RedisStore as RedisStore
    from ._registry import Registry as Registry
    from ._registry import RegistryEntry as RegistryEntry
    from ._settings import Settings as Settings
    from ._specs import AutoShutdown as AutoShutdown
    from ._specs import Backoff as Backoff
    from ._specs import ChildSpec as ChildSpec
    from ._specs import CopyPolicy as CopyPolicy
    from ._specs import LinkSpec as LinkSpec
    from ._specs import ModuleSpec as ModuleSpec
    from ._specs import Overflow as Overflow
    from ._specs import Remote as Remote
    from ._specs import RestartType as RestartType
    from ._specs import Strategy as Strategy
    from ._specs import SupervisorSpec as SupervisorSpec
    from ._status import ActorState as ActorState
    from ._status import ActorStatus as ActorStatus
    from ._status import DropReason as DropReason
    from ._status import EndReason as EndReason
    from ._status import LinkStatus as LinkStatus
    from ._status import SystemState as SystemState
    from ._status import SystemStatus as SystemStatus
    from ._store import MemoryStore as MemoryStore
    from ._store import ModuleData as ModuleData
    from ._store import SQLiteStore as SQLiteStore
    from ._store import Store as Store
    from ._supervisor import ChildInfo as ChildInfo
    from ._supervisor import Supervisor as Supervisor
    from ._system import System as System
    from ._system import open_system as open_system
    from ._system import run as run

_EXPORTS = {
    "DeadLetter": "._actor",
    "Data": "._data",
    "decode": "._data",
    "encode": "._data",
    "Inlet": "._endpoints",
    "Outlet": "._endpoints",
    "OutletReader": "._endpoints",
    "Variable": "._endpoints",
    "ActorflowError": "._exceptions",
    "ChangeError": "._exceptions",
    "CleanupError": "._exceptions",
    "EscalationError": "._exceptions",
    "GraphError": "._exceptions",
    "GraphFileError": "._exceptions",
    "GraphProblem": "._exceptions",
    "InitializationError": "._exceptions",
    "LifecycleError": "._exceptions",
    "RegistryError": "._exceptions",
    "RunError": "._exceptions",
    "SerializationError": "._exceptions",
    "ServeError": "._exceptions",
    "StoreError": "._exceptions",
    "ValidationError": "._exceptions",
    "Graph": "._graph",
    "load_graph": "._graphfile",
    "load_job": "._graphfile",
    "HttpReporter": "._heartbeat",
    "Reporter": "._heartbeat",
    "Job": "._job",
    "JobResult": "._job",
    "Task": "._job",
    "TaskResult": "._job",
    "TaskState": "._job",
    "configure_logging": "._logging",
    "Many": "._module",
    "Module": "._module",
    "ModuleKind": "._module",
    "Processor": "._module",
    "Sink": "._module",
    "Source": "._module",
    "Tag": "._module",
    "Port": "._ports",
    "Progressive": "._progressive",
    "Step": "._progressive",
    "StepState": "._progressive",
    "Registry": "._registry",
    "RegistryEntry": "._registry",
    "Settings": "._settings",
    "AutoShutdown": "._specs",
    "Backoff": "._specs",
    "ChildSpec": "._specs",
    "CopyPolicy": "._specs",
    "LinkSpec": "._specs",
    "ModuleSpec": "._specs",
    "Overflow": "._specs",
    "Remote": "._specs",
    "RestartType": "._specs",
    "Strategy": "._specs",
    "SupervisorSpec": "._specs",
    "ActorState": "._status",
    "ActorStatus": "._status",
    "DropReason": "._status",
    "EndReason": "._status",
    "LinkStatus": "._status",
    "SystemState": "._status",
    "SystemStatus": "._status",
    "MemoryStore": "._store",
    "ModuleData": "._store",
    "SQLiteStore": "._store",
    "Store": "._store",
    "ChildInfo": "._supervisor",
    "Supervisor": "._supervisor",
    "System": "._system",
    "open_system": "._system",
    "run": "._system",
    "RedisStore": "._redis",
}
"""Where each export lives. Its room is imported on first use, so ``import actorflow``
costs next to nothing (the command line takes its signals before the heavy imports,
and a program pays only for what it uses; the Redis backend only when asked for)."""


def __getattr__(name: str) -> _typing.Any:
    room = _EXPORTS.get(name)
    if room is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(room, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ActorState",
    "ActorStatus",
    "ActorflowError",
    "AutoShutdown",
    "Backoff",
    "ChangeError",
    "ChildInfo",
    "ChildSpec",
    "CleanupError",
    "CopyPolicy",
    "Data",
    "DeadLetter",
    "DropReason",
    "EndReason",
    "EscalationError",
    "Graph",
    "GraphError",
    "GraphFileError",
    "GraphProblem",
    "HttpReporter",
    "InitializationError",
    "Inlet",
    "Job",
    "JobResult",
    "LifecycleError",
    "LinkSpec",
    "LinkStatus",
    "Many",
    "MemoryStore",
    "Module",
    "ModuleData",
    "ModuleKind",
    "ModuleSpec",
    "Outlet",
    "OutletReader",
    "Overflow",
    "Port",
    "Processor",
    "Progressive",
    "RedisStore",
    "Registry",
    "RegistryEntry",
    "RegistryError",
    "Remote",
    "Reporter",
    "RestartType",
    "RunError",
    "SQLiteStore",
    "SerializationError",
    "ServeError",
    "Settings",
    "Sink",
    "Source",
    "Step",
    "StepState",
    "Store",
    "StoreError",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "System",
    "SystemState",
    "SystemStatus",
    "Tag",
    "Task",
    "TaskResult",
    "TaskState",
    "ValidationError",
    "Variable",
    "configure_logging",
    "decode",
    "encode",
    "load_graph",
    "load_job",
    "open_system",
    "run",
]
