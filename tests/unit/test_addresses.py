"""Fixed server addresses from the stack's memory: nothing moves, the pool fills, no memory = the old hash."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import memory as mem
from config.addresses import Request, allocate, hash_slot
from config.errors import ConfigError
from config.model import NetworkConfig, load_stack, static_address
from tests.unit.conftest import DEV_RAW

POOL = (100, 109)  # ten addresses


def req(name: str, pinned: int | None = None) -> Request:
    return Request(f"server:{name}", name, f"domains ({name})", IPv4Address(pinned) if pinned else None)


def colliding_names(first: int, last: int, count: int) -> list[str]:
    """``count`` names that hash to the same slot of the pool."""
    by_slot: dict[int, list[str]] = {}
    for i in range(10_000):
        name = f"d{i}.example"
        names = by_slot.setdefault(hash_slot(name, first, last), [])
        names.append(name)
        if len(names) == count:
            return names
    raise AssertionError("no collision found")


def test_without_memory_every_free_hash_slot_is_used_as_before():
    names = [f"d{i}.example" for i in range(3)]
    slots = {hash_slot(n, *POOL) for n in names}
    assert len(slots) == 3  # these three do not collide
    addresses, problems = allocate([req(n) for n in names], POOL, None)
    assert problems == []
    assert {k: int(v) for k, v in addresses.items()} == {f"server:{n}": hash_slot(n, *POOL) for n in names}


def test_static_address_is_the_hash_slot_of_the_pool():
    net = NetworkConfig("n", IPv4Network("172.28.0.0/16"))
    assert int(static_address("example1.local", net)) == hash_slot("example1.local", *net.static_pool())


@pytest.mark.parametrize("remembered", [None, {}])
def test_a_collision_takes_the_next_free_address_in_configuration_order(remembered):
    a, b, c = colliding_names(*POOL, 3)
    addresses, problems = allocate([req(c), req(b), req(a)], POOL, remembered)
    assert problems == []
    slot = hash_slot(a, *POOL)
    expected = [slot + i if slot + i <= POOL[1] else POOL[0] + slot + i - POOL[1] - 1 for i in range(3)]
    assert [int(addresses[f"server:{n}"]) for n in (c, b, a)] == expected


def test_the_search_wraps_around_the_end_of_the_pool():
    names = colliding_names(*POOL, 2)
    slot = hash_slot(names[0], *POOL)
    # fill every address from the slot to the end of the pool with pinned servers
    pins = [req(f"pin{i}.example", a) for i, a in enumerate(range(slot, POOL[1] + 1))]
    addresses, problems = allocate([*pins, req(names[0])], POOL, {})
    assert problems == [] and int(addresses[f"server:{names[0]}"]) == POOL[0]


def test_remembered_addresses_are_kept_even_away_from_the_hash_slot():
    remembered = {"server:a.example": IPv4Address(107)}
    addresses, problems = allocate([req("a.example"), req("b.example")], POOL, remembered)
    assert problems == [] and addresses["server:a.example"] == IPv4Address(107)


def test_remembered_address_outside_the_pool_is_ignored():
    addresses, _ = allocate([req("a.example")], POOL, {"server:a.example": IPv4Address(5)})
    assert int(addresses["server:a.example"]) == hash_slot("a.example", *POOL)


def test_a_tampered_memory_naming_one_address_twice_keeps_one_and_moves_the_other():
    remembered = {"server:a.example": IPv4Address(103), "server:b.example": IPv4Address(103)}
    addresses, problems = allocate([req("a.example"), req("b.example")], POOL, remembered)
    assert problems == []
    assert addresses["server:a.example"] == IPv4Address(103) and addresses["server:b.example"] != IPv4Address(
        103
    )


def test_pins_win_and_two_pins_on_one_address_are_a_problem():
    _, problems = allocate([req("a.example", 104), req("b.example", 104)], POOL, {})
    assert problems == [
        (
            "domains (b.example).address",
            "fixed address 0.0.0.104 is also pinned by domains (a.example): pin a free address on one of them",
        )
    ]


def test_a_pin_on_a_remembered_address_is_a_problem_not_a_move():
    remembered = {"server:a.example": IPv4Address(105)}
    _, problems = allocate([req("a.example"), req("b.example", 105)], POOL, remembered)
    ((where, message),) = problems
    assert where == "domains (b.example).address"
    assert "where domains (a.example) sits" in message and "pin another, free address" in message


def test_without_memory_a_pin_on_another_servers_hash_slot_is_a_problem():
    slot = hash_slot("a.example", *POOL)
    _, problems = allocate([req("a.example"), req("b.example", slot)], POOL, None)
    assert len(problems) == 1 and "where domains (a.example) sits" in problems[0][1]
    # with a memory that does not know a.example yet (a new domain), the pin wins and a.example moves on
    _, problems = allocate([req("a.example"), req("b.example", slot)], POOL, {})
    assert problems == []


def test_exactly_the_pool_size_fits_and_one_more_is_a_problem():
    names = [f"d{i}.example" for i in range(POOL[1] - POOL[0] + 1)]
    addresses, problems = allocate([req(n) for n in names], POOL, {})
    assert problems == [] and len(set(addresses.values())) == len(names)
    _, problems = allocate([req(n) for n in [*names, "one-more.example"]], POOL, {})
    ((where, message),) = problems
    assert where == "mailstack:network.subnet" and "11 containers" in message and "holds only 10" in message


# --- the memory's own format ----------------------------------------------------------------------


def test_memory_round_trips_through_json():
    value = mem.render(
        {"server:b.example": IPv4Address("10.0.0.9"), "server:a.example": IPv4Address("10.0.0.8")}
    )
    assert list(value["addresses"]) == ["server:a.example", "server:b.example"]  # sorted: stable bytes
    back = mem.parse(json.loads(json.dumps(value)))
    assert back.found and back.notes == ()
    assert back.addresses == {
        "server:a.example": IPv4Address("10.0.0.8"),
        "server:b.example": IPv4Address("10.0.0.9"),
    }


@pytest.mark.parametrize(
    ("raw", "found", "note"),
    [
        (None, False, None),
        ("garbage", False, "not JSON"),
        ("[1, 2]", False, "not an object"),
        (42, False, "not an object"),
        ({"schema": 2, "addresses": {}}, False, "layout version 2"),
        ({"addresses": {}}, False, "layout version None"),
        ({"schema": 1, "addresses": []}, True, "no usable addresses"),
        ({"schema": 1, "addresses": {"server:a": "not-an-ip"}}, True, "invalid address for 'server:a'"),
    ],
)
def test_unusable_memory_is_ignored_with_a_note(raw, found, note):
    parsed = mem.parse(raw)
    assert parsed.found is found and parsed.addresses == {}
    assert (parsed.notes == ()) if note is None else (note in parsed.notes[0])


# --- through the model: random histories of added and removed domains -------------------------------

SUBNET = "172.31.7.0/26"  # a static pool of 31 addresses
NAMES = [f"m{i}.example" for i in range(45)]


def _raw(names: list[str]) -> dict:
    raw = copy.deepcopy(DEV_RAW)
    raw["network"] = {"name": "mailstack-prop", "subnet": SUBNET}
    raw["domains"] = [
        {
            "domain": name,
            "server": f"s{NAMES.index(name)}",
            "ports": {
                "smtp": 20000 + 3 * NAMES.index(name),
                "submission": 20001 + 3 * NAMES.index(name),
                "imap": 20002 + 3 * NAMES.index(name),
            },
            "users": [{"name": "u"}],
        }
        for name in names
    ]
    return raw


POOL_SIZE = (lambda p: p[1] - p[0] + 1)(NetworkConfig("n", IPv4Network(SUBNET)).static_pool())


ADD = st.integers(0, 9).map(lambda n: n < 8)  # mostly additions, so that the pool fills up


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(ADD, st.sampled_from(NAMES)), min_size=1, max_size=90))
def test_no_server_ever_moves_and_every_stack_up_to_the_pool_size_deploys(history):
    assert POOL_SIZE == 31
    current: list[str] = []
    largest = 0
    memory_output = None  # a first deployment
    previous: dict[str, IPv4Address] = {}
    for add, name in history:
        if add and name not in current and len(current) < POOL_SIZE:
            current.append(name)
        elif not add and name in current:
            current.remove(name)
        else:
            continue
        if not current:
            continue
        cfg = load_stack("dev", _raw(current), memory=mem.parse(memory_output))  # never a ConfigError
        addresses = {d.domain: d.address for d in cfg.domains}
        assert len(set(addresses.values())) == len(addresses)
        first, last = cfg.network.static_pool()
        assert all(first <= int(a) <= last for a in addresses.values())
        moved = {n for n in addresses if n in previous and previous[n] != addresses[n]}
        assert moved == set()
        previous = addresses
        largest = max(largest, len(current))
        # the completed update exports the memory; the engine hands it back as JSON
        memory_output = json.loads(
            json.dumps(mem.render({mem.server_key(n): a for n, a in addresses.items()}))
        )


def test_a_full_pool_in_the_model_fails_with_the_subnet_named():
    with pytest.raises(ConfigError) as err:
        load_stack("dev", _raw(NAMES[: POOL_SIZE + 1]))
    assert "mailstack:network.subnet" in str(err.value) and f"holds only {POOL_SIZE}" in str(err.value)


def test_upgrading_a_stack_without_memory_moves_nothing(dev_raw):
    """A stack deployed before the memory: its servers sit at their hash slots, and stay there."""
    cfg = load_stack("dev", dev_raw)
    assert [d.address for d in cfg.domains] == [static_address(d.domain, cfg.network) for d in cfg.domains]
