"""Stack policies called directly with ``StackValidationArgs``: compliant, each violation, missing, unknown."""

from __future__ import annotations

import pytest

from policy.mailstack_policies import data_protection, ports_and_subnets, routing, signing
from policy.mailstack_policies.resources import CONTAINER, NETWORK, VOLUME
from tests.policy.builders import (
    STRONG,
    U_ARR,
    U_STR,
    mail_files,
    mailserver,
    network,
    policy_resource,
    run,
    sha512,
    stack_args,
    two_domain_stack,
    volume,
    vpn,
    webmail,
    writer,
)

A1, A2, A3 = "172.28.4.194", "172.28.8.157", "172.28.9.10"


def _three_domain_stack(files3: dict[str, str] | None = None, mta3: dict | None = None) -> list:
    peers = {"example1.local": ("mta1", A1), "example2.local": ("mta2", A2), "example3.local": ("mta3", A3)}

    def others(domain: str) -> dict[str, tuple[str, str]]:
        return {d: v for d, v in peers.items() if d != domain}

    resources = two_domain_stack(
        files1=mail_files("example1.local", "mta1", others("example1.local")),
        files2=mail_files("example2.local", "mta2", others("example2.local")),
    )
    files3 = files3 or mail_files("example3.local", "mta3", others("example3.local"))
    mta3 = mta3 or mailserver("example3.local", "mta3", address=A3, ports={25: 4525, 587: 4587, 143: 4143})
    return [
        *resources,
        policy_resource(writer("example3.local", "mta3", files3), CONTAINER, "example3.local-config-writer"),
        policy_resource(mta3, CONTAINER, "example3.local-server"),
    ]


# --- mail-data-protected -----------------------------------------------------------------------------


def _volumes(protect: dict[str, bool], labelled: bool = True) -> list:
    return [
        policy_resource(
            volume(f"mailstack-dev-example1-local-{role}", role if labelled else None),
            VOLUME,
            f"example1.local-{role}",
            protect=protect.get(role, False),
        )
        for role in ("mail", "state", "logs", "config")
    ]


def test_mail_data_accepts_protected_volumes() -> None:
    resources = [*_volumes({"mail": True, "state": True}), *two_domain_stack()]
    assert run(data_protection.validate_mail_data_protected, stack_args(*resources)) == []


@pytest.mark.parametrize("labelled", [True, False])
def test_mail_data_reports_unprotected_mail_and_state(labelled: bool) -> None:
    resources = [*_volumes({"state": True}, labelled), *two_domain_stack()]
    found = run(data_protection.validate_mail_data_protected, stack_args(*resources))
    assert len(found) == 1
    message, urn = found[0]
    assert urn is not None and urn.endswith("::example1.local-mail")
    assert "Volume 'mailstack-dev-example1-local-mail' holds the mailboxes" in message
    assert "mailstack:protectData" in message and "pulumi state protect" in message
    if not labelled:  # found through the server's mount
        assert "'mailstack-dev-mta1'" in message


def test_mail_data_ignores_volumes_that_hold_no_mail() -> None:
    resources = [
        *_volumes({"mail": True, "state": True}),
        policy_resource(volume("other"), VOLUME, "other"),
    ]
    assert run(data_protection.validate_mail_data_protected, stack_args(*resources)) == []


def test_mail_data_missing_and_unknown() -> None:
    assert run(data_protection.validate_mail_data_protected, stack_args()) == []
    assert (
        run(data_protection.validate_mail_data_protected, stack_args(policy_resource({}, VOLUME, "v"))) == []
    )
    server = {**mailserver(), "volumes": U_ARR}
    unknown = [*_volumes({"mail": True}), policy_resource(server, CONTAINER, "s")]
    found = run(data_protection.validate_mail_data_protected, stack_args(*unknown))
    assert [u for _, u in found] == [
        "urn:pulumi:dev::mailstack::docker:index/volume:Volume::example1.local-state"
    ]
    nameless = policy_resource({"name": U_STR, "labels": U_ARR}, VOLUME, "n")
    assert run(data_protection.validate_mail_data_protected, stack_args(nameless)) == []


# --- mailserver-hostnames ----------------------------------------------------------------------------


def test_hostnames_accept_distinct_fqdns() -> None:
    assert run(routing.validate_hostnames, stack_args(*two_domain_stack())) == []
    split = mailserver("example2.local", "mta2", hostname="mail2")
    split["domainname"] = "example2.local"
    assert run(routing.validate_hostnames, stack_args(*two_domain_stack(mta2=split))) == []


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("mail2", "not a fully qualified name"),
        ("mail_2.example2.local", "not a fully qualified name"),
        ("example2.local", "is a mail domain of this stack"),
        ("example1.local", "is a mail domain of this stack"),
        ("mail.example1.local", "like 'mailstack-dev-mta1'"),
    ],
)
def test_hostnames_report_bad_names(hostname: str, expected: str) -> None:
    mta2 = mailserver("example2.local", "mta2", hostname=hostname, address=A2)
    found = run(routing.validate_hostnames, stack_args(*two_domain_stack(mta2=mta2)))
    assert len(found) == 1
    message, urn = found[0]
    assert (
        expected in message
        and f"'{hostname}'" in message
        and "'mailstack-dev-mta2' (example2.local)" in message
    )
    assert urn is not None and urn.endswith("::example2.local-server")


def test_hostnames_treat_account_domains_as_mail_domains() -> None:
    files2 = mail_files(
        "example2.local",
        "mta2",
        {"example1.local": ("mta1", A1)},
        {"user3@lists.example2.local": sha512(STRONG)},
    )
    mta1 = mailserver("example1.local", "mta1", hostname="lists.example2.local")
    found = run(routing.validate_hostnames, stack_args(*two_domain_stack(mta1=mta1, files2=files2)))
    assert len(found) == 1 and "'lists.example2.local', which is a mail domain" in found[0][0]


def test_hostnames_honour_override_hostname() -> None:
    mta2 = mailserver("example2.local", "mta2", env_values={"OVERRIDE_HOSTNAME": "mail.example1.local"})
    found = run(routing.validate_hostnames, stack_args(*two_domain_stack(mta2=mta2)))
    assert len(found) == 1 and "like 'mailstack-dev-mta1'" in found[0][0]


def test_hostnames_missing_and_unknown() -> None:
    mta2 = mailserver("example2.local", "mta2")
    del mta2["hostname"]
    found = run(routing.validate_hostnames, stack_args(*two_domain_stack(mta2=mta2)))
    assert len(found) == 1 and "has no hostname" in found[0][0]
    mta2["hostname"] = U_STR
    assert run(routing.validate_hostnames, stack_args(*two_domain_stack(mta2=mta2))) == []
    assert run(routing.validate_hostnames, stack_args()) == []


# --- mail-routing ------------------------------------------------------------------------------------


def test_routing_accepts_full_mesh() -> None:
    assert run(routing.validate_routing, stack_args(*two_domain_stack())) == []
    assert run(routing.validate_routing, stack_args(*_three_domain_stack())) == []


def test_routing_accepts_a_single_domain_without_routes() -> None:
    files = mail_files("example1.local", "mta1", {})
    resources = two_domain_stack(files1=files)[:3]
    assert run(routing.validate_routing, stack_args(*resources)) == []
    del files["postfix-transport.cf"]
    resources = two_domain_stack(files1=files)[:3]
    assert run(routing.validate_routing, stack_args(*resources)) == []


def _mta3_with_transport(transport: str) -> list:
    files3 = mail_files("example3.local", "mta3", {})
    files3["postfix-transport.cf"] = transport
    return _three_domain_stack(files3=files3)


FULL = "example1.local smtp:[mta1]:25\nexample2.local smtp:[mta2]:25\n"


@pytest.mark.parametrize(
    ("transport", "expected"),
    [
        ("example1.local smtp:[mta1]:25\n", "has no route for example2.local"),
        (FULL + "example3.local smtp:[mta3]:25\n", "routes its own domain example3.local"),
        ("example1.local smtp:[mta1]:25\nexample2.local smtp:[mta9]:25\n", "which is not the network alias"),
        ("example1.local smtp:[mta1]:25\nexample2.local smtp:[mta1]:25\n", "which serves example1.local"),
        ("example1.local smtp:[mta1]:25\nexample2.local smtp:mta2:25\n", "without brackets"),
        ("example1.local smtp:[mta1]:25\nexample2.local smtp:[mta2]:587\n", "port 587"),
        ("example1.local smtp:[mta1]:25\nexample2.local error:no route\n", "not an SMTP next hop"),
        ("example1.local smtp:[mta1]:25\nexample2.local smtp:[mta3]:25\n", "to itself"),
        ("example1.local smtp:[172.28.4.194]:25\nexample2.local smtp:[172.28.4.194]:25\n", "which serves"),
    ],
)
def test_routing_reports_bad_transport_maps(transport: str, expected: str) -> None:
    found = run(routing.validate_routing, stack_args(*_mta3_with_transport(transport)))
    assert len(found) == 1, found
    message, urn = found[0]
    assert expected in message and "'mailstack-dev-mta3'" in message
    assert urn is not None and urn.endswith("::example3.local-config-writer")


def test_routing_accepts_address_targets() -> None:
    transport = f"example1.local smtp:[{A1}]:25\nexample2.local smtp:[mta2]\n"
    assert run(routing.validate_routing, stack_args(*_mta3_with_transport(transport))) == []


def test_routing_requires_a_shared_network() -> None:
    mta3 = mailserver("example3.local", "mta3", address=A3, network="elsewhere")
    found = run(routing.validate_routing, stack_args(*_three_domain_stack(mta3=mta3)))
    pairs = {(m.split("'")[1], m.split(" to '")[1].split("'")[0]) for m, _ in found}
    assert pairs == {
        ("mailstack-dev-mta3", "mta1"),
        ("mailstack-dev-mta3", "mta2"),
        ("mailstack-dev-mta1", "mta3"),
        ("mailstack-dev-mta2", "mta3"),
    }
    assert all("which is not the network alias of a mail server on a network" in m for m, _ in found)


def test_routing_reports_missing_map_and_unused_map() -> None:
    files3 = mail_files("example3.local", "mta3", {})
    del files3["postfix-transport.cf"]
    found = run(routing.validate_routing, stack_args(*_three_domain_stack(files3=files3)))
    assert len(found) == 1 and "has no postfix-transport.cf" in found[0][0]
    files3 = mail_files(
        "example3.local", "mta3", {"example1.local": ("mta1", A1), "example2.local": ("mta2", A2)}
    )
    files3["postfix-main.cf"] = "mynetworks = cidr:/tmp/docker-mailserver/postfix-mynetworks.cidr\n"
    found = run(routing.validate_routing, stack_args(*_three_domain_stack(files3=files3)))
    assert len(found) == 1 and "does not use it (transport_maps = unset)" in found[0][0]


def test_routing_counts_alias_domains_as_owned() -> None:
    files3 = mail_files(
        "example3.local", "mta3", {"example1.local": ("mta1", A1), "example2.local": ("mta2", A2)}
    )
    files3["postfix-virtual.cf"] = "info@alias3.local user5@example3.local\n"
    found = run(routing.validate_routing, stack_args(*_three_domain_stack(files3=files3)))
    # mta1 and mta2 do not route alias3.local, which mta3 hosts.
    assert sorted(m.split("'")[1] for m, _ in found) == ["mailstack-dev-mta1", "mailstack-dev-mta2"]
    assert all("has no route for alias3.local" in m for m, _ in found)


def test_routing_missing_and_unknown() -> None:
    assert run(routing.validate_routing, stack_args()) == []
    files3 = mail_files("example3.local", "mta3", {})
    files3["postfix-transport.cf"] = U_STR
    assert run(routing.validate_routing, stack_args(*_three_domain_stack(files3=files3))) == []
    files3["postfix-main.cf"] = U_STR
    assert run(routing.validate_routing, stack_args(*_three_domain_stack(files3=files3))) == []
    mta3 = {**mailserver("example3.local", "mta3", address=A3), "networksAdvanced": U_ARR}
    assert (
        run(routing.validate_routing, stack_args(*_three_domain_stack(mta3=mta3))) != []
    )  # mta1/mta2 cannot find mta3
    unlabelled = {**mailserver("example3.local", "mta3", address=A3), "labels": U_ARR}
    assert run(routing.validate_routing, stack_args(*_three_domain_stack(mta3=unlabelled))) != []


# --- unique-host-ports-and-subnets ------------------------------------------------------------------


def test_ports_and_subnets_accept_the_lab() -> None:
    resources = [
        *two_domain_stack(),
        policy_resource(webmail(), CONTAINER, "webmail1"),
        policy_resource(webmail("mta2", 8082), CONTAINER, "webmail2"),
        policy_resource(vpn(), CONTAINER, "vpn"),
    ]
    assert run(ports_and_subnets.validate_ports_and_subnets, stack_args(*resources)) == []


@pytest.mark.parametrize(
    ("ip1", "ip2", "clash"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("0.0.0.0", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("203.0.113.10", "203.0.113.11", False),
    ],
)
def test_ports_report_the_same_host_port(ip1: str, ip2: str, clash: bool) -> None:
    mta1 = mailserver("example1.local", "mta1", ip=ip1, ports={25: 25})
    mta2 = mailserver("example2.local", "mta2", ip=ip2, ports={25: 25})
    found = run(
        ports_and_subnets.validate_ports_and_subnets, stack_args(*two_domain_stack(mta1=mta1, mta2=mta2))
    )
    if not clash:
        assert found == []
        return
    assert len(found) == 1
    message, urn = found[0]
    assert (
        f"'mailstack-dev-mta2' publishes {ip2}:25/tcp" in message
        and "'mailstack-dev-mta1' already" in message
    )
    assert urn is not None and urn.endswith("::example2.local-server")


def test_ports_tell_protocols_apart() -> None:
    udp = vpn()
    udp["ports"][0]["external"] = 2525.0
    resources = [*two_domain_stack(), policy_resource(udp, CONTAINER, "vpn")]
    assert run(ports_and_subnets.validate_ports_and_subnets, stack_args(*resources)) == []
    udp["ports"][0]["protocol"] = "tcp"
    found = run(
        ports_and_subnets.validate_ports_and_subnets,
        stack_args(*two_domain_stack(), policy_resource(udp, CONTAINER, "v")),
    )
    assert len(found) == 1 and "'mailstack-dev-vpn' publishes 0.0.0.0:2525/tcp" in found[0][0]


@pytest.mark.parametrize(
    ("vpn_props", "subnet", "expected"),
    [
        (vpn(address="172.28.200.1/24"), "172.28.0.0/16", "VPN 'mailstack-dev-vpn' uses 172.28.200.0/24"),
        (vpn(), "10.0.0.0/8", "VPN 'mailstack-dev-vpn' uses 10.13.13.0/24"),
    ],
)
def test_subnets_report_vpn_overlaps(vpn_props: dict, subnet: str, expected: str) -> None:
    resources = [
        policy_resource(network(subnet=subnet), NETWORK, "net"),
        policy_resource(vpn_props, CONTAINER, "vpn"),
    ]
    found = run(ports_and_subnets.validate_ports_and_subnets, stack_args(*resources))
    assert len(found) == 1
    assert expected in found[0][0] and f"Docker network 'mailstack-dev' ({subnet})" in found[0][0]
    assert found[0][1] is not None and found[0][1].endswith("::vpn")


def test_subnets_report_overlapping_networks_and_use_the_vpn_env() -> None:
    resources = [
        policy_resource(network(), NETWORK, "net"),
        policy_resource(network("other", "172.28.5.0/24"), NETWORK, "other"),
    ]
    found = run(ports_and_subnets.validate_ports_and_subnets, stack_args(*resources))
    assert len(found) == 1 and "Docker network 'other' uses 172.28.5.0/24" in found[0][0]
    server_mode = vpn(env_values={"INTERNAL_SUBNET": "172.28.3.0"})
    server_mode["uploads"] = []
    found = run(
        ports_and_subnets.validate_ports_and_subnets,
        stack_args(
            policy_resource(network(), NETWORK, "net"), policy_resource(server_mode, CONTAINER, "vpn")
        ),
    )
    assert len(found) == 1 and "uses 172.28.3.0/24" in found[0][0]


def test_ports_and_subnets_missing_and_unknown() -> None:
    assert run(ports_and_subnets.validate_ports_and_subnets, stack_args()) == []
    unknown_vpn = vpn(address="172.28.200.1/24")
    unknown_vpn["uploads"][0]["content"] = U_STR
    unknown_ports = {**mailserver("example2.local", "mta2"), "ports": U_ARR}
    resources = [
        policy_resource({"name": "n", "ipamConfigs": U_ARR}, NETWORK, "n"),
        policy_resource(network(), NETWORK, "net"),
        policy_resource(unknown_vpn, CONTAINER, "vpn"),
        policy_resource(mailserver(), CONTAINER, "mta1"),
        policy_resource(unknown_ports, CONTAINER, "mta2"),
        policy_resource({"name": "x", "ports": [{"internal": 25.0, "external": U_STR}]}, CONTAINER, "x"),
    ]
    assert run(ports_and_subnets.validate_ports_and_subnets, stack_args(*resources)) == []


# --- dkim-signing -------------------------------------------------------------------------------------

PROD = {"production": True}


def _signing_stack(
    conf1: str | None = "default", rspamd1: str | None = "1", key1: bool = True, unknown_conf: bool = False
) -> list:
    from config import dkim as dk

    stacks = []
    for domain, server, conf, rspamd, key in (
        ("example1.local", "mta1", conf1, rspamd1, key1),
        ("example2.local", "mta2", "default", "1", True),
    ):
        files = mail_files(domain, server, {})
        if conf is not None:
            files[dk.SIGNING_FILE] = (
                dk.render_signing_conf(domain, "mail", "/tmp/docker-mailserver")
                if conf == "default"
                else conf
            )
        if key:
            files[dk.key_file(domain, "mail")] = "-----BEGIN PRIVATE KEY-----\n..."
        w = writer(domain, server, files)
        if unknown_conf and domain == "example1.local":
            for u in w["uploads"]:
                if u["file"].endswith(dk.SIGNING_FILE):
                    u["content"] = U_STR
        env_values = {"ENABLE_RSPAMD": rspamd} if rspamd is not None else {}
        stacks += [
            policy_resource(w, CONTAINER, f"{domain}-config-writer"),
            policy_resource(mailserver(domain, server, env_values=env_values), CONTAINER, f"{domain}-server"),
        ]
    return stacks


def test_dkim_signing_accepts_servers_that_sign() -> None:
    assert run(signing.validate_dkim_signing, stack_args(*_signing_stack(), config=PROD)) == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"rspamd1": None}, "ENABLE_RSPAMD is not 1"),
        ({"rspamd1": "0"}, "ENABLE_RSPAMD is not 1"),
        ({"conf1": None}, "none of its config files is rspamd/override.d/dkim_signing.conf"),
        ({"conf1": "enabled = false;\n"}, "dkim_signing.conf switches signing off"),
        (
            {"conf1": 'domain {\n  example9.local {\n    path = "/k";\n    selector = "mail";\n  }\n}\n'},
            "names no key and selector for example1.local",
        ),
        ({"key1": False}, "is not among the files its config writer installs"),
    ],
)
def test_dkim_signing_reports_a_server_that_does_not_sign(kwargs: dict, expected: str) -> None:
    found = run(signing.validate_dkim_signing, stack_args(*_signing_stack(**kwargs), config=PROD))
    assert len(found) == 1, found
    message, urn = found[0]
    assert message.startswith(
        "Mail server 'mailstack-dev-mta1' does not DKIM-sign mail from example1.local: "
    )
    assert expected in message and urn is not None and urn.endswith("example1.local-server")


def test_dkim_signing_only_in_production_and_tolerates_unknowns() -> None:
    broken = _signing_stack(rspamd1="0")
    assert run(signing.validate_dkim_signing, stack_args(*broken, config={"production": False})) == []
    assert len(run(signing.validate_dkim_signing, stack_args(*broken))) == 1  # no config: production assumed
    unknown = _signing_stack(unknown_conf=True)
    assert run(signing.validate_dkim_signing, stack_args(*unknown, config=PROD)) == []


def test_parse_signing_conf_reads_the_generated_file() -> None:
    from config import dkim as dk

    text = dk.render_signing_conf("example.org", "mail2026", "/tmp/docker-mailserver")
    enabled, domains = signing.parse_signing_conf(text)
    assert enabled
    assert domains == {
        "example.org": {
            "path": "/tmp/docker-mailserver/rspamd/dkim/example.org.mail2026.private.pem",
            "selector": "mail2026",
        }
    }
