"""SunSpec discovery over real Modbus TCP on 127.0.0.1: base addresses, L=65 common models and
broken chains."""

from __future__ import annotations

import pytest

from drivers.modbus.transport import ModbusTcpTransport, TransportError
from drivers.sim.register_server import RegisterServer
from drivers.sunspec import SUNSPEC_PROFILE_NAMES, SunSpecError, discover, install_image, standard_layout
from drivers.sunspec.discovery import MAX_MODELS, SunSpecMap
from drivers.sunspec.layout import standard_profile
from tests.drivers.support import free_port, run

SUNS = [0x5375, 0x6E53]
VENDOR_MODEL = 64001
"""A vendor model id with no bundled definition (any length is accepted)."""


async def _discover(server: RegisterServer) -> SunSpecMap:
    transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
    try:
        return await discover(transport, 1)
    finally:
        transport.close()


async def _discover_image(image: dict[int, list[int]]) -> SunSpecMap:
    async with RegisterServer(standard_profile("sunspec_meter")) as server:
        for address, words in image.items():
            server.set_registers("holding", address, words)
        return await _discover(server)


@pytest.mark.parametrize("name", SUNSPEC_PROFILE_NAMES)
@pytest.mark.parametrize(("base", "common_length"), [(40000, 66), (0, 66), (50000, 66), (40000, 65), (0, 65)])
def test_discovery_finds_the_simulator_chain(name: str, base: int, common_length: int) -> None:
    async def main() -> None:
        async with RegisterServer(standard_profile(name, base, common_length)) as server:
            install_image(server, name, base, common_length)
            smap = await _discover(server)
        want = standard_layout(name, base, common_length)
        assert smap.base == base
        assert smap.models == want.models
        assert smap.common == {"Mn": "EMS Simulator", "Md": name, "SN": "SIM-0001"}
        assert dict(smap.scale_factors) == dict(want.scale_factors)

    run(main())


def test_common_model_of_65_registers_shifts_the_following_models() -> None:
    async def main() -> None:
        async with RegisterServer(standard_profile("sunspec_inverter", 40000, 65)) as server:
            install_image(server, "sunspec_inverter", 40000, 65)
            smap = await _discover(server)
        assert [(m.id, m.address, m.length) for m in smap.models[:2]] == [(1, 40002, 65), (103, 40069, 50)]

    run(main())


def test_exception_answers_move_on_to_the_next_base() -> None:
    """A Modbus exception answer at one base is not fatal: every base is probed and named."""

    async def main() -> None:
        async with RegisterServer(standard_profile("sunspec_meter")) as server:
            server.faults.exception_code = 2
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                with pytest.raises(SunSpecError) as err:
                    await discover(transport, 1)
            finally:
                transport.close()
        text = str(err.value)
        assert "no SunSpec marker" in text
        for base in ("40000", "0", "50000"):
            assert f"{base}: read holding {base}+2 unit 1: modbus exception 2 (illegal data address)" in text

    run(main())


def test_no_marker_names_every_base_and_value() -> None:
    with pytest.raises(SunSpecError, match=r"40000: got 0x0000 0x0000; 0: got 0x0000 0x0000; 50000: got"):
        run(_discover_image({}))


def _chain(*models: list[int]) -> list[int]:
    words = list(SUNS)
    for m in models:
        words += m
    return words


def test_bad_length_below_the_mandatory_points() -> None:
    image = {40000: _chain([1, 66] + [0] * 66, [103, 7] + [0] * 7, [0xFFFF, 0])}
    with pytest.raises(SunSpecError, match=r"model 103 at 40070: bad length L=7"):
        run(_discover_image(image))


def test_zero_length() -> None:
    image = {40000: _chain([VENDOR_MODEL, 0], [0xFFFF, 0])}
    with pytest.raises(SunSpecError, match=r"model 64001 at 40002: bad length L=0"):
        run(_discover_image(image))


def test_repeating_model_with_a_partial_module() -> None:
    image = {40000: _chain([160, 8 + 15] + [0] * 23, [0xFFFF, 0])}
    with pytest.raises(SunSpecError, match=r"model 160 at 40002: bad length L=23, not 8 \+ n × 20"):
        run(_discover_image(image))


def test_missing_end_marker() -> None:
    image = {40000: _chain([1, 66] + [0] * 66)}
    with pytest.raises(SunSpecError, match=r"model id 0 at 40070 \(L=0\): no end marker 0xFFFF"):
        run(_discover_image(image))


def test_length_running_past_65535() -> None:
    image = {50000: _chain([VENDOR_MODEL, 15600])}
    with pytest.raises(SunSpecError, match=r"model 64001 at 50002: length L=15600 runs past register 65535"):
        run(_discover_image(image))


def test_endless_chain_is_cut_off() -> None:
    """A device that answers the same short model at every address never reaches 0xFFFF."""
    image = {40000: _chain(*([[VENDOR_MODEL, 1, 0]] * (MAX_MODELS + 5)))}
    with pytest.raises(SunSpecError, match=rf"more than {MAX_MODELS} models, the chain does not end"):
        run(_discover_image(image))


def test_dead_port_is_a_transport_error() -> None:
    async def main() -> None:
        transport = ModbusTcpTransport("127.0.0.1", free_port(), timeout_s=0.5)
        try:
            with pytest.raises(TransportError, match=r"SunSpec probe at 40000: cannot connect"):
                await discover(transport, 1)
        finally:
            transport.close()

    run(main())


class FailingAbove(RegisterServer):
    """Answers "server device failure" for reads at or above ``fail_from``."""

    fail_from = 65536

    def _answer(self, unit: int, pdu: bytes) -> bytes:
        if pdu[0] == 3 and int.from_bytes(pdu[1:3], "big") >= self.fail_from:
            return bytes([0x83, 4])
        return super()._answer(unit, pdu)


def test_device_failing_mid_walk_is_a_transport_error() -> None:
    async def main() -> None:
        async with FailingAbove(standard_profile("sunspec_meter")) as server:
            install_image(server, "sunspec_meter")
            server.fail_from = 40070
            with pytest.raises(TransportError, match=r"SunSpec model header at 40070: .*modbus exception 4"):
                await _discover(server)

    run(main())


# -- end marker without its length register, against an independent raw-socket peer ---------------


def _ascii_words(text: str, count: int) -> list[int]:
    data = text.encode().ljust(2 * count, b"\0")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * count, 2)]


COMMON_AT = 40002
END_AT = COMMON_AT + 2 + 66
PEER_IMAGE = {40000: SUNS, COMMON_AT: [1, 66, *_ascii_words("Peer Maker", 16), *([0] * 50)], END_AT: [0xFFFF]}


def _peer_value(unit: int, address: int) -> int:
    for start, words in PEER_IMAGE.items():
        if start <= address < start + len(words):
            return words[address - start]
    return 0


@pytest.mark.parametrize("end", ["exception", "short reply"])
def test_end_marker_without_length_register_ends_the_chain(end: str) -> None:
    from tests.drivers.raw_peers import GatewayPeer

    async def main() -> None:
        async with GatewayPeer(answering={1}) as peer:
            peer.value = _peer_value
            if end == "exception":  # 0xFFFF is the last register the device has
                peer.exception_at[(1, END_AT, 2)] = 2
            else:  # the device answers the ID alone, whatever count is asked
                peer.registers[(1, END_AT)] = [0xFFFF]
            transport = ModbusTcpTransport("127.0.0.1", peer.port, timeout_s=1.0)
            try:
                smap = await discover(transport, 1)
            finally:
                transport.close()
        assert [(m.id, m.address, m.length) for m in smap.models] == [(1, COMMON_AT, 66)]
        assert smap.common["Mn"] == "Peer Maker"
        assert smap.end_address == END_AT

    run(main())


def test_exception_after_a_model_that_is_not_the_end_marker_still_fails() -> None:
    from tests.drivers.raw_peers import GatewayPeer

    async def main() -> None:
        async with GatewayPeer(answering={1}) as peer:
            image = dict(PEER_IMAGE)
            image[END_AT] = [103]  # a model id, then nothing readable
            peer.value = lambda unit, address: next(
                (w[address - a] for a, w in image.items() if a <= address < a + len(w)), 0)
            peer.exception_at[(1, END_AT, 2)] = 2
            transport = ModbusTcpTransport("127.0.0.1", peer.port, timeout_s=1.0)
            try:
                with pytest.raises(TransportError, match=f"model header at {END_AT}: .* modbus exception 2"):
                    await discover(transport, 1)
            finally:
                transport.close()

    run(main())
