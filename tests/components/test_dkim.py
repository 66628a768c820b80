"""DKIM under mocks: one key per (domain, selector), secret wherever it appears, installed for Rspamd."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives import serialization

from config import dkim as dk
from tests.components.conftest import run
from tests.components.harness import Program, Secret, dev_config, prod_config, unwrap

KEY = "tls:index/privateKey:PrivateKey"


def _walk(value, secret=False):
    """Yield (string, under a secret marker) for every string in a registration's inputs or an output."""
    if isinstance(value, Secret):
        yield from _walk(value.value, True)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v, secret)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, secret)
    elif isinstance(value, str):
        yield value, secret


def writer_of(program: Program, server: str):
    (writer,) = [
        r for name, r in program.containers().items() if name.startswith(f"mailstack-prod-{server}-config-")
    ]
    return writer


def test_one_rsa_2048_key_per_domain_and_selector(prod_program):
    keys = prod_program.of_type(KEY)
    assert sorted(k.name for k in keys) == ["example.net-dkim-mail", "example.org-dkim-mail"]
    for k in keys:
        assert unwrap(k.inputs) == {"algorithm": "RSA", "rsaBits": 2048}
        assert k.ignore_changes == ["rsaBits"]  # a published key never changes with keySize
        parent = next(r for r in prod_program.resources if r.urn == k.parent)
        assert parent.type == "mailstack:index:DkimKeys" and parent.name == k.name.rsplit("-", 1)[0]


def test_private_key_is_secret_wherever_it_appears(prod_program):
    plain = [
        (r.name, text[:40])
        for r in prod_program.resources
        for text, secret in _walk(r.inputs)
        if "PRIVATE KEY" in text and not secret
    ]
    assert plain == []
    outputs = [text for text, secret in _walk(prod_program.outputs) if "PRIVATE KEY" in text and not secret]
    assert outputs == []
    # and it does appear: in the writer's upload, marked secret
    writer = writer_of(prod_program, "mx1")
    key_uploads = [u for u in writer.inputs["uploads"] if "rspamd/dkim/" in unwrap(u)["file"]]
    assert len(key_uploads) == 1 and isinstance(key_uploads[0]["content"], Secret)
    assert "BEGIN PRIVATE KEY" in key_uploads[0]["content"].value  # PKCS#8, as Rspamd and OpenSSL 3 write


def test_writer_installs_the_signing_key_before_the_config_that_names_it(prod_program):
    writer = unwrap(writer_of(prod_program, "mx1").inputs)
    uploads = {u["file"].removeprefix("/mailstack/staging/"): u for u in writer["uploads"]}
    key = dk.key_file("example.org", "mail")
    assert uploads[key]["permissions"] == "0640"
    assert 'selector = "mail";' in uploads[dk.SIGNING_FILE]["content"]
    assert f'path = "/tmp/docker-mailserver/{key}";' in uploads[dk.SIGNING_FILE]["content"]
    assert uploads[dk.CONTROLLER_FILE]["content"].endswith('bind_socket = "127.0.0.1:11334";\n')
    order = writer["command"]
    assert order.index(key) < order.index(dk.SIGNING_FILE) and order[-1] == "postfix-accounts.cf"


def test_servers_sign_and_say_the_egress_name(prod_program):
    server = unwrap(prod_program.containers()["mailstack-prod-mx2"].inputs)
    env = dict(e.split("=", 1) for e in server["envs"])
    assert env["ENABLE_RSPAMD"] == "1" and env["ENABLE_RSPAMD_REDIS"] == "0" and env["RSPAMD_LEARN"] == "0"
    assert {p["internal"] for p in server["ports"]} == {25, 587, 143}  # no Rspamd web UI port
    writer = unwrap(writer_of(prod_program, "mx2").inputs)
    (main_cf,) = [u["content"] for u in writer["uploads"] if u["file"].endswith("postfix-main.cf")]
    assert "smtp_helo_name = mail.example.org\n" in main_cf  # the shared egress's PTR name


def test_dns_output_publishes_the_installed_key(prod_program):
    records = unwrap(prod_program.outputs["dns"])
    assert not isinstance(prod_program.outputs["dns"], Secret)
    (txt,) = [r for r in records["example.org"] if r["name"] == "mail._domainkey.example.org"]
    writer = unwrap(writer_of(prod_program, "mx1").inputs)
    (pem,) = [u["content"] for u in writer["uploads"] if "rspamd/dkim/" in u["file"]]
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert "".join(txt["value"]) == dk.txt_value(public.decode())
    assert all(len(s.encode()) <= 255 for s in txt["value"])


def test_prod_runs_twice_identically():
    first, second = run(prod_config(), stack="prod"), run(prod_config(), stack="prod")
    snap = sorted((r.type, r.name, repr(r.inputs)) for r in first.resources)
    assert snap == sorted((r.type, r.name, repr(r.inputs)) for r in second.resources)
    assert any(r.type == KEY for r in first.resources)
    assert repr(first.outputs) == repr(second.outputs)


def test_dev_lab_is_unchanged_without_dkim(dev_program):
    assert dev_program.of_type(KEY) == [] and dev_program.of_type("mailstack:index:DkimKeys") == []
    for name, reg in dev_program.containers().items():
        inputs = unwrap(reg.inputs)
        assert not any(e.startswith("ENABLE_RSPAMD") for e in inputs.get("envs") or []), name
        for upload in inputs.get("uploads") or []:
            assert "rspamd/" not in upload["file"]
            assert "smtp_helo_name" not in upload["content"]
    assert not [n for n in dev_program.containers() if "egress" in n]


def test_rotation_publishes_both_selectors_and_signs_with_the_chosen_one():
    config = prod_config()
    config["dkim"] = {"selectors": ["mail", "mail2026"], "sign": "mail2026"}
    program = run(config, stack="prod")
    names = [r["name"] for r in unwrap(program.outputs["dns"])["example.org"] if "_domainkey" in r["name"]]
    assert names == ["mail._domainkey.example.org", "mail2026._domainkey.example.org"]
    writer = unwrap(writer_of(program, "mx1").inputs)
    installed = [u["file"] for u in writer["uploads"] if "rspamd/dkim/" in u["file"]]
    assert installed == [f"/mailstack/staging/{dk.key_file('example.org', 'mail2026')}"]


def test_per_domain_egress_gets_its_own_network_with_gw_priority():
    config = prod_config()
    config["domains"][1]["egress"] = {"address": "203.0.113.11", "name": "mail.example.net"}
    program = run(config, stack="prod")
    (net,) = [r for r in program.of_type("docker:index/network:Network") if "egress" in r.name]
    assert unwrap(net.inputs)["options"] == {"com.docker.network.host_ipv4": "203.0.113.11"}
    assert unwrap(net.inputs)["name"] == "mailstack-prod-example-net-egress"
    server = unwrap(program.containers()["mailstack-prod-mx2"].inputs)
    attached = {n["name"]: n.get("gwPriority", 0) for n in server["networksAdvanced"]}
    assert attached == {"mailstack-prod": 0, "mailstack-prod-example-net-egress": 10}
    assert len(unwrap(program.containers()["mailstack-prod-mx1"].inputs)["networksAdvanced"]) == 1
    spf = [r for r in unwrap(program.outputs["dns"])["example.net"] if r["name"] == "example.net"]
    assert ["v=spf1 ip4:203.0.113.11 -all"] in [r["value"] for r in spf]


@pytest.mark.parametrize("bad", [{"enabled": False}, {"keySize": 1024}, {"sign": "other"}])
def test_bad_dkim_fails_before_any_resource(bad):
    import pulumi

    config = copy.deepcopy(prod_config())
    config["dkim"] = bad
    with pytest.raises(pulumi.RunError) as err:
        run(config, stack="prod")
    assert "mailstack:dkim." in str(err.value)
    assert err.value.program.resources == []


def test_lab_can_sign_too():
    config = dev_config()
    config["dkim"] = {"enabled": True}
    program = run(config)
    assert len(program.of_type(KEY)) == 2
