"""The architecture of DESIGN §1-§2, held: imports point down the layers, cycles stay inside
one package, privates inside their package, and the public face is documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import rooms
from tests.architecture import cycles, package_of, private_uses, read, upward

GRAPH = read(Path(rooms.__file__).parent)


def test_no_import_cycle_spans_more_than_one_package() -> None:
    spanning = [c for c in cycles(GRAPH) if len({package_of(m, GRAPH) for m in c}) > 1]
    assert spanning == []


def test_no_import_points_up_the_layers() -> None:
    # A lower layer reaches up only through a callback or a Protocol it defines itself.
    assert upward(GRAPH) == []


def test_private_members_stay_in_their_package() -> None:
    assert private_uses(GRAPH) == []


def test_recovery_is_reached_from_the_delivery_the_connect_and_the_server_only() -> None:
    users = {
        module
        for module in GRAPH.modules
        if not module.startswith("rooms.recovery")
        and any(b.startswith("rooms.recovery") for b in GRAPH.edges(module))
    }
    # The public face, the delivery's log call, Namespace.connect's attempt, the server
    # opening the store, and an emitter logging its own broadcasts. (The cluster's take-over
    # request reaches the opened store's Resume through server.resume, in rooms.local.)
    assert users == {"rooms", "rooms.delivery", "rooms.namespace", "rooms.server", "rooms.emitter"}


def test_the_public_face_exports_no_internals_and_documents_what_it_exports() -> None:
    assert {"Node", "Session"}.isdisjoint(rooms.__all__)
    undocumented = []
    for name in rooms.__all__:
        obj = getattr(rooms, name)
        if not inspect.isclass(obj):
            continue
        if not inspect.getdoc(obj):
            undocumented.append(name)
        for attr, value in vars(obj).items():
            function = value.fget if isinstance(value, property) else value
            if attr.startswith("_") or not (inspect.isfunction(function) or callable(function)):
                continue
            if not inspect.getdoc(function):
                undocumented.append(f"{name}.{attr}")
    assert undocumented == []
