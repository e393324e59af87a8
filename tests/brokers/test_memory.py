"""The memory broker passes the conformance check every broker must pass."""

from __future__ import annotations

import pytest

from rooms.brokers import Hub, MemoryBroker, broker_from_url
from rooms.exceptions import BrokerError
from rooms.testing import check_broker

pytestmark = pytest.mark.anyio


async def test_the_memory_broker_conforms() -> None:
    hub = Hub()  # brokers on one hub behave like processes on one Redis
    await check_broker(lambda: MemoryBroker(hub=hub))
    assert hub.channels == {}  # every subscription cleaned up after itself


async def test_a_full_subscriber_drops_and_counts_instead_of_blocking_the_publisher() -> None:
    async with MemoryBroker(hub=Hub(), buffer=2) as broker, broker.subscribe("c") as messages:
        for n in range(5):
            await broker.publish("c", str(n).encode())
        assert broker.dropped == 3
        assert [await messages.__anext__(), await messages.__anext__()] == [b"0", b"1"]


async def test_a_closed_broker_says_so() -> None:
    broker = MemoryBroker(hub=Hub())
    with pytest.raises(BrokerError, match="expected an open broker"):
        await broker.publish("c", b"x")


def test_brokers_are_chosen_by_url() -> None:
    assert isinstance(broker_from_url("memory://"), MemoryBroker)
    with pytest.raises(ValueError, match="expected a broker URL"):
        broker_from_url("carrier-pigeon://coop")


class LossyBroker(MemoryBroker):
    """Loses every third message: the conformance check must notice."""

    count = 0

    async def publish(self, channel: str, message: bytes) -> None:
        LossyBroker.count += 1
        if LossyBroker.count % 3:
            await super().publish(channel, message)


async def test_the_conformance_check_catches_a_broker_that_loses_messages() -> None:
    hub = Hub()
    with pytest.raises(AssertionError, match="gets every message"):
        await check_broker(lambda: LossyBroker(hub=hub), timeout=0.2)
