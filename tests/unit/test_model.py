"""The stack model and its validation: every bad input gets a message naming the item and the fix."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address

import pytest

from config.errors import ConfigError
from config.model import load_stack, static_address
from tests.unit.conftest import DEV_RAW, make_domains, make_production


def problems_of(raw, passwords=None, stack="dev") -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_stack(stack, raw, passwords)
    return err.value.problems


def one_problem(raw, passwords=None, stack="dev") -> str:
    found = problems_of(raw, passwords, stack)
    assert len(found) == 1, found
    return found[0]


def test_dev_stack_model(dev_raw):
    cfg = load_stack("dev", dev_raw, {"user1@example1.local": "password123"})
    assert [d.domain for d in cfg.domains] == ["example1.local", "example2.local"]
    mta1 = cfg.domain("example1.local")
    assert mta1.server == "mta1"
    assert mta1.hostname == "mail.example1.local"
    assert dict(mta1.ports) == {"smtp": 2525, "submission": 2587, "imap": 2143}
    assert [(u.address, u.quota) for u in mta1.users] == [
        ("user1@example1.local", "1G"),
        ("user2@example1.local", "2G"),
    ]
    assert mta1.bind_address == "127.0.0.1"
    assert cfg.postfix == (("queue_run_delay", "300s"),)
    assert cfg.protect_data is True
    assert cfg.images["mailserver"].endswith(":15.1.0")
    assert cfg.explicit_passwords == frozenset({"user1@example1.local"})
    assert cfg.message_size_limit == 10240000 and cfg.mailbox_size_limit == 0


def test_fixed_addresses_do_not_move_when_domains_change(dev_raw):
    cfg = load_stack("dev", dev_raw)
    before = {d.domain: d.address for d in cfg.domains}
    grown = copy.deepcopy(dev_raw)
    grown["domains"] += make_domains(3)
    after = {d.domain: d.address for d in load_stack("dev", grown).domains}
    shrunk = copy.deepcopy(dev_raw)
    shrunk["domains"] = shrunk["domains"][1:]
    alone = {d.domain: d.address for d in load_stack("dev", shrunk).domains}
    assert after["example1.local"] == before["example1.local"]
    assert after["example2.local"] == before["example2.local"] == alone["example2.local"]
    pool = load_stack("dev", dev_raw).network
    for address in before.values():
        assert address in pool.subnet and address not in pool.dynamic_range


def test_pinned_address_is_used(dev_raw):
    dev_raw["domains"][0]["address"] = "172.28.9.9"
    assert load_stack("dev", dev_raw).domains[0].address == IPv4Address("172.28.9.9")
    dev_raw["domains"][0]["address"] = "172.28.0.9"
    assert "outside the fixed-address pool" in one_problem(dev_raw)


def test_address_collision_asks_to_pin(dev_raw):
    cfg = load_stack("dev", dev_raw)
    dev_raw["domains"][1]["address"] = str(static_address("example1.local", cfg.network))
    msg = one_problem(dev_raw)
    assert "domains[1] (example2.local).address" in msg and "pin another, free address" in msg
    assert "where mailstack:domains[0] (example1.local) sits" in msg


@pytest.mark.parametrize(
    ("mutate", "where", "fix"),
    [
        (lambda r: r.pop("domains"), "mailstack:domains", "add at least one"),
        (lambda r: r.__setitem__("domains", []), "mailstack:domains", "add at least one"),
        (lambda r: r["domains"][0].__setitem__("domain", "Example..local"), "domains[0].domain", "lowercase"),
        (lambda r: r["domains"][0].__setitem__("domain", "localhost"), "domains[0].domain", "two labels"),
        (lambda r: r["domains"][0]["users"][0].__setitem__("name", "User 1"), "users[0].name", "lowercase"),
        (lambda r: r["domains"][1].__setitem__("domain", "example1.local"), "duplicate domain", "already"),
        (
            lambda r: r["domains"][1].__setitem__("server", "mta1"),
            "domains[1] (example2.local).server",
            "unique",
        ),
        (lambda r: r["domains"][1]["users"].append({"name": "user3"}), "users[2].name", "duplicate user"),
        (lambda r: r["domains"][1]["ports"].__setitem__("imap", 2143), "ports.imap", "already used by"),
        (
            lambda r: r["domains"][0].__setitem__("hostname", "example2.local"),
            "hostname",
            "mail.example1.local",
        ),
        (lambda r: r["domains"][1].__setitem__("hostname", "mail.example1.local"), "hostname", "loops back"),
        (lambda r: r["domains"][0].__setitem__("hostname", "mail"), "hostname", "fully qualified"),
        (lambda r: r["domains"][0]["users"][0].__setitem__("quota", "100"), "users[0].quota", "bare number"),
        (lambda r: r["domains"][0]["users"][0].__setitem__("quota", "1GB"), "users[0].quota", "unit"),
        (
            lambda r: r["domains"][0].__setitem__("aliases", {"info": ["nobody@example1.local"]}),
            "aliases.info",
            "unknown",
        ),
        (
            lambda r: r["domains"][0].__setitem__("aliases", {"user1": ["user2@example1.local"]}),
            "aliases.user1",
            "already a user",
        ),
        (
            lambda r: r["domains"][0].__setitem__("prots", {}),
            "domains[0] (example1.local).prots",
            "did you mean",
        ),
        (lambda r: r["domains"][0]["users"][0].__setitem__("qouta", "1G"), "users[0].qouta", "unknown key"),
        (lambda r: r["domains"][0].__setitem__("users", []), "users", "refuses to start without an account"),
        (lambda r: r["domains"][0]["ports"].pop("smtp"), "ports.smtp", "is missing"),
        (lambda r: r["domains"][0]["ports"].__setitem__("smtp", 70000), "ports.smtp", "between 1 and 65535"),
        (
            lambda r: r.__setitem__("postfix", {"message_size_limit": "1"}),
            "postfix.message_size_limit",
            "mailstack:messageSizeLimit",
        ),
        (
            lambda r: r.__setitem__("postfix", {"queue_run_dealy": "1s"}),
            "postfix.queue_run_dealy",
            "queue_run_delay",
        ),
        (lambda r: r.__setitem__("postfix", {"transport_maps": "x"}), "postfix.transport_maps", "mailstack"),
        (lambda r: r.__setitem__("bindAddress", "localhost"), "mailstack:bindAddress", "IPv4 address"),
        (
            lambda r: r.__setitem__("images", {"mailserver": "mailserver/docker-mailserver:latest"}),
            "images.mailserver",
            "pin",
        ),
        (
            lambda r: r.__setitem__("images", {"mailserver": "mailserver/docker-mailserver"}),
            "images.mailserver",
            "no tag",
        ),
        (
            lambda r: r.__setitem__("images", {"webmail": "roundcube/roundcubemail:1.6.x-apache"}),
            "images.webmail",
            "wildcard",
        ),
        (
            lambda r: r.__setitem__("images", {"mailserver": "mailserver/docker-mailserver:15"}),
            "images.mailserver",
            "every release of its 15 line",
        ),
        (lambda r: r.__setitem__("network", {"subnet": "172.28.0.1/16"}), "network.subnet", "host bits"),
        (lambda r: r.__setitem__("tls", "starttls"), "mailstack:tls", "one of"),
        (lambda r: r.__setitem__("domian", []), "mailstack:domian", "unknown configuration key"),
        (lambda r: r.__setitem__("mailboxSizeLimit", 1000), "mailboxSizeLimit", "at least"),
    ],
)
def test_bad_input_names_item_and_fix(dev_raw, mutate, where, fix):
    mutate(dev_raw)
    found = problems_of(dev_raw)
    assert any(where in p and fix in p for p in found), found


def test_all_problems_reported_at_once(dev_raw):
    dev_raw["domains"][0]["users"][0]["quota"] = "100"
    dev_raw["domains"][1]["server"] = "mta1"
    dev_raw["postfix"] = {"queue_run_dealy": "1s"}
    assert len(problems_of(dev_raw)) == 3


def test_password_for_unknown_address(dev_raw):
    msg = one_problem(dev_raw, {"user9@example1.local": "x" * 20})
    assert "mailstack:passwords.user9@example1.local" in msg and "pulumi config rm" in msg


@pytest.mark.parametrize(
    ("password", "fix"), [("password123", "well-known"), ("short-pw", "shorter than 12")]
)
def test_production_refuses_weak_passwords(dev_raw, password, fix):
    make_production(dev_raw)
    msg = one_problem(dev_raw, {"user1@example1.local": password})
    assert "mailstack:passwords.user1@example1.local" in msg and fix in msg
    assert "password123" not in msg.replace("mailstack:passwords", "")  # the value is never echoed
    dev_raw["production"] = False
    load_stack("dev", dev_raw, {"user1@example1.local": password})


def test_production_accepts_strong_password(dev_raw):
    make_production(dev_raw)
    cfg = load_stack("prod", dev_raw, {"user1@example1.local": "correct horse battery staple"})
    assert cfg.production


def test_per_server_bind_address_allows_same_port(dev_raw):
    dev_raw["domains"][0]["bindAddress"] = "192.0.2.10"
    dev_raw["domains"][1]["bindAddress"] = "192.0.2.11"
    dev_raw["domains"][1]["ports"]["smtp"] = 2525
    cfg = load_stack("dev", dev_raw)
    assert cfg.domains[1].bind_address == "192.0.2.11"
    dev_raw["domains"][1]["bindAddress"] = "0.0.0.0"
    assert "already used by" in one_problem(dev_raw)


def test_stack_default_network_and_names():
    raw = copy.deepcopy(DEV_RAW)
    raw.pop("network")
    cfg = load_stack("Staging", raw)
    assert cfg.stack == "staging" and cfg.network.name == "mailstack-staging"
    assert cfg.prefix() == "mailstack-staging"


def test_webmail_port_collisions_are_reported(dev_raw):
    dev_raw["domains"][0]["webmail"] = {"port": 3143}  # mta2's IMAP port
    msg = one_problem(dev_raw)
    assert (
        "domains[0] (example1.local).webmail.port" in msg or "domains[1] (example2.local).ports.imap" in msg
    )
    assert "3143/tcp is already used" in msg
    dev_raw["domains"][0]["webmail"] = {"port": 8081}
    dev_raw["domains"][1]["webmail"] = {"port": 8081}
    assert "domains[1] (example2.local).webmail.port: host port 8081/tcp is already used" in one_problem(
        dev_raw
    )


def test_vpn_port_is_udp_and_checked_against_the_stack(dev_raw):
    dev_raw["vpn"] = {"enabled": True, "endpoint": "localhost", "peers": ["peer1"], "port": 2525}
    cfg = load_stack("dev", dev_raw)  # 2525/udp does not collide with mta1's 2525/tcp
    assert cfg.vpn is not None and cfg.vpn.port == 2525
    dev_raw["domains"][0]["webmail"] = {"port": 8081}
    dev_raw["vpn"]["subnet"] = "172.28.5.0/24"  # inside the mail network
    msg = one_problem(dev_raw)
    assert "mailstack:vpn.subnet" in msg and "overlaps" in msg


def test_webmail_alias_is_parsed(dev_raw):
    dev_raw["domains"][0]["webmail"] = {"port": 8081, "alias": "webmail1"}
    assert load_stack("dev", dev_raw).domains[0].webmail.alias == "webmail1"
    dev_raw["domains"][0]["webmail"] = {"port": 8081}
    assert load_stack("dev", dev_raw).domains[0].webmail.alias is None


@pytest.mark.parametrize(
    ("alias", "taken_by"),
    [
        ("mta2", "the server of example2.local"),
        ("mail.example2.local", None),  # not a valid short alias at all
        ("webmail-mta2", "the webmail of example2.local"),
        ("vpn", "the VPN"),
    ],
)
def test_webmail_alias_must_be_unique_across_the_stack(dev_raw, alias, taken_by):
    dev_raw["domains"][0]["webmail"] = {"port": 8081, "alias": alias}
    dev_raw["domains"][1]["webmail"] = {"port": 8082, "alias": "webmail2"}
    dev_raw["vpn"] = {"enabled": True, "endpoint": "localhost", "peers": ["peer1"]}
    msg = one_problem(dev_raw)
    assert msg.startswith("mailstack:domains[0] (example1.local).webmail.alias: ")
    if taken_by is None:
        assert "invalid network alias" in msg
    else:
        assert f"network alias {alias} is already used by {taken_by}" in msg


def test_webmail_alias_of_the_second_domain_is_reported_where_it_is(dev_raw):
    dev_raw["domains"][0]["webmail"] = {"port": 8081, "alias": "webmail"}
    dev_raw["domains"][1]["webmail"] = {"port": 8082, "alias": "webmail"}
    msg = one_problem(dev_raw)
    assert msg.startswith("mailstack:domains[1] (example2.local).webmail.alias: network alias webmail")
