"""Blast radius of configuration changes (issue: Live changes), measured on the real program under mocks.

The same comparison ``make bench`` prints: account, password, quota and alias edits must touch no mail
server container and no volume; adding a domain creates only the new server.
"""

from __future__ import annotations

import pytest

from tests.components.harness import Program, Registration
from tools import blast

ACCOUNT_EDITS = ["add user", "change password", "change quota", "add alias", "add a user with DKIM on"]
KEY = "tls:index/privateKey:PrivateKey"


@pytest.fixture(scope="module")
def radius() -> dict[str, blast.BlastRadius]:
    return {kind: blast.blast_radius(kind) for kind in blast.CHANGES}


@pytest.mark.parametrize("kind", ACCOUNT_EDITS)
def test_account_edits_touch_no_server_and_no_volume(radius, kind):
    r = radius[kind]
    assert r.count("mailserver", "replace", "update", "create", "delete") == 0, r.changes
    assert r.count("volume", "replace", "update", "create", "delete") == 0, r.changes
    # exactly one config writer runs: the one of the edited domain
    writers = [c for c in r.changes if c.role == "config-writer"]
    assert [c.action for c in writers] == ["replace"] and "example1.local" in writers[0].urn
    # ...and its gate takes the new checked revision, an in-place update
    gates = [c for c in r.changes if c.role == "config-gate"]
    assert [(c.action, c.name) for c in gates] == [("update", "example1.local-config-gate")]
    assert {c.role for c in r.changes} == {"config-writer", "config-gate"}


def test_add_domain_creates_only_the_new_server(radius):
    r = radius["add domain"]
    assert r.count("mailserver", "replace", "update", "delete") == 0, r.changes
    created = [c for c in r.changes if c.role == "mailserver" and c.action == "create"]
    assert len(created) == 1 and "example3.local" in created[0].urn
    assert r.count("volume", "replace", "delete", "update") == 0
    # the existing servers' routes change through their config writers
    rerun = {
        c.urn.rsplit("::", 1)[1] for c in r.changes if c.role == "config-writer" and c.action == "replace"
    }
    assert rerun == {"example1.local-config-writer", "example2.local-config-writer"}


def test_remove_domain_keeps_the_others_and_retains_data(radius):
    r = radius["remove domain"]
    assert r.count("mailserver", "replace") == 0
    assert [c.urn.rsplit("::", 1)[1] for c in r.changes if c.role == "mailserver"] == [
        "example2.local-server"
    ]


def test_start_only_changes_replace_servers_but_never_volumes(radius):
    for kind in ("change a main.cf setting", "bump the mail server image"):
        r = radius[kind]
        assert r.count("mailserver", "replace") == 2, (kind, r.changes)
        assert r.count("volume", "replace", "update", "delete", "create") == 0


def test_unknown_resource_type_is_an_error():
    def program(inputs):
        reg = Registration(
            "docker:index/unknown:Unknown", "x", "urn:x", "", True, False, False, False, [], inputs
        )
        return Program(resources=[reg])

    assert blast.diff(program({"a": 1}), program({"a": 1})).changes == []
    with pytest.raises(KeyError, match="UPDATABLE_IN_PLACE"):
        blast.diff(program({"a": 1}), program({"a": 2}))


def test_in_place_properties_do_not_count_as_replacement():
    before = blast.run(blast.dev_config())
    after = blast.run(blast.dev_config())
    server = next(r for r in after.resources if r.name == "example1.local-server")
    server.inputs = {**server.inputs, "restart": "always"}
    (change,) = blast.diff(before, after).changes
    assert change.action == "update" and change.properties == ("restart",)
    server.inputs = {**server.inputs, "hostname": "mx.example1.local"}
    (change,) = blast.diff(before, after).changes
    assert change.action == "replace"


def _one(typ, inputs):
    return Program(resources=[Registration(typ, "x", "urn:x", "", True, False, False, False, [], inputs)])


def test_a_changed_stash_input_is_an_update_never_a_replacement():
    (change,) = blast.diff(
        _one("pulumi:index:Stash", {"input": "a"}), _one("pulumi:index:Stash", {"input": "b"})
    ).changes
    assert change.action == "update" and change.properties == ("input",)


@pytest.mark.parametrize(
    ("typ", "prop", "action"),
    [
        # not ForceNew at v4.5.0, applied by the container update
        ("docker:index/container:Container", "deviceReadBps", "update"),
        ("docker:index/container:Container", "deviceWriteIops", "update"),
        # ForceNew at v4.5.0
        ("docker:index/container:Container", "stopTimeout", "replace"),
        # the build block holds the ForceNew, defaulted dockerfile: every build change replaces
        ("docker:index/remoteImage:RemoteImage", "build", "replace"),
        ("docker:index/remoteImage:RemoteImage", "keepLocally", "update"),
        ("docker:index/volume:Volume", "labels", "replace"),
    ],
)
def test_replace_on_change_follows_the_v4_5_0_schemas(typ, prop, action):
    (change,) = blast.diff(_one(typ, {prop: 1}), _one(typ, {prop: 2})).changes
    assert change.action == action


def test_turning_dkim_on_replaces_each_server_once_and_creates_one_key_each(radius):
    r = radius["turn DKIM on"]
    replaced = [c for c in r.changes if c.role == "mailserver"]
    assert {c.action for c in replaced} == {"replace"} and len(replaced) == 2
    assert all(c.properties == ("envs",) for c in replaced)  # ENABLE_RSPAMD is read at start only
    keys = [c for c in r.changes if c.type == KEY]
    assert sorted(c.name for c in keys) == ["example1.local-dkim-mail", "example2.local-dkim-mail"]
    assert {c.action for c in keys} == {"create"}
    assert r.count("volume", "replace", "update", "delete", "create") == 0


def test_adding_a_selector_only_creates_its_keys(radius):
    r = radius["add a selector"]
    assert [(c.type, c.name, c.action) for c in r.changes] == [
        (KEY, "example1.local-dkim-mail2026", "create"),
        (KEY, "example2.local-dkim-mail2026", "create"),
    ]


def test_switching_the_signing_selector_reruns_the_writers_only(radius):
    r = radius["switch the signing selector"]
    assert r.count("mailserver", "replace", "update", "create", "delete") == 0
    assert {(c.role, c.action) for c in r.changes} == {
        ("config-writer", "replace"),
        ("config-gate", "update"),
    }
    assert not [c for c in r.changes if c.type == KEY]  # no key is replaced: the published ones stay
