"""Webmail under Pulumi mocks, through the real program: containers, secrets, volumes, outputs."""

from __future__ import annotations

import pytest

from config import roundcube as rc
from config.model import DEFAULT_IMAGES, load_stack
from tests.components.conftest import run
from tests.components.harness import Secret, contains_secret, dev_config, unwrap

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"
WEBMAIL = "mailstack:index:Webmail"

EXPECTED = {
    "mta1": ("example1.local", 8081, "example1-local"),
    "mta2": ("example2.local", 8082, "example2-local"),
}


def env_of(reg) -> dict[str, str]:
    return dict(item.split("=", 1) for item in unwrap(reg.inputs["envs"]))


def labels_of(reg) -> dict[str, str]:
    return {item["label"]: item["value"] for item in unwrap(reg.inputs.get("labels", []))}


def uploads_of(reg) -> dict[str, dict]:
    return {u["file"]: u for u in reg.inputs["uploads"]}


def webmail_containers(program) -> dict[str, object]:
    return {
        name: reg
        for name, reg in program.containers().items()
        if labels_of(reg).get("mailstack.role") == "webmail"
    }


def model_of(config):
    raw = {k: v for k, v in config.items() if k != "passwords"}
    return load_stack("dev", raw, config.get("passwords"))


def test_dev_has_the_original_labs_webmails(dev_program):
    containers = webmail_containers(dev_program)
    assert set(containers) == {"mailstack-dev-webmail-mta1", "mailstack-dev-webmail-mta2"}
    for server, (domain, port, _slug) in EXPECTED.items():
        reg = containers[f"mailstack-dev-webmail-{server}"]
        inputs = unwrap(reg.inputs)
        assert inputs["ports"] == [{"internal": 80, "external": port, "ip": "127.0.0.1"}]
        (net,) = inputs["networksAdvanced"]
        assert net["name"] == "mailstack-dev"
        # the lab's own names: webmail1 for mta1, webmail2 for mta2 (and webmail-<server> always)
        assert net["aliases"] == [f"webmail-{server}", {"mta1": "webmail1", "mta2": "webmail2"}[server]]
        assert "ipv4Address" not in net  # dynamic range, never a server's fixed address
        assert labels_of(reg) == {
            "mailstack.stack": "dev",
            "mailstack.domain": domain,
            "mailstack.role": "webmail",
        }
        assert inputs["restart"] == "unless-stopped"
        assert inputs["wait"] is True and inputs["waitTimeout"] == 120
        # stopped with a grace period on replace and destroy (SQLite open), never killed at once
        assert inputs["stopTimeout"] == 30 and inputs["destroyGraceSeconds"] == 30
        assert reg.delete_before_replace
        hc = inputs["healthcheck"]
        assert hc["tests"] == ["CMD", "curl", "--fail", "http://localhost/?ping=ping"]
        assert (hc["interval"], hc["timeout"], hc["retries"], hc["startPeriod"]) == ("10s", "3s", 5, "30s")
        # the image is the stack's pinned Roundcube image, not the mail server's
        (image,) = [r for r in dev_program.of_type(IMAGE) if r.name.endswith("-webmail-image")]
        assert image.urn in reg.dependencies


def test_env_talks_to_its_own_server_without_secrets(dev_program):
    containers = webmail_containers(dev_program)
    for server, (domain, _port, _slug) in EXPECTED.items():
        reg = containers[f"mailstack-dev-webmail-{server}"]
        env = env_of(reg)
        assert env["ROUNDCUBEMAIL_DEFAULT_HOST"] == server
        assert env["ROUNDCUBEMAIL_SMTP_SERVER"] == server
        assert (env["ROUNDCUBEMAIL_DEFAULT_PORT"], env["ROUNDCUBEMAIL_SMTP_PORT"]) == ("143", "587")
        assert env["ROUNDCUBEMAIL_USERNAME_DOMAIN"] == domain
        assert env["ROUNDCUBEMAIL_UPLOAD_MAX_FILESIZE"] == "6M"
        assert not any("DES" in key for key in env)
        assert not contains_secret(reg.inputs["envs"])
        # the mail server comes first (the webmail logs in to it)
        server_reg = dev_program.containers()[f"mailstack-dev-{server}"]
        assert server_reg.urn in reg.dependencies


def test_des_key_is_a_secret_24_character_file(dev_program):
    containers = webmail_containers(dev_program)
    keys = {}
    for server, (domain, _port, _slug) in EXPECTED.items():
        reg = containers[f"mailstack-dev-webmail-{server}"]
        upload = uploads_of(reg)[rc.DES_KEY_PATH]
        assert isinstance(upload["content"], Secret)
        key = unwrap(upload["content"])
        assert len(key) == 24 and key.isalnum(), "exactly 24 characters, no newline"
        assert upload["permissions"] == "0444"
        keys[server] = key
        password = dev_program.named(f"{domain}-webmail-des-key")
        assert password.type == PASSWORD
        assert unwrap(password.inputs)["length"] == 24 and unwrap(password.inputs)["special"] is False
        webmail = dev_program.named(f"{domain}-webmail")
        assert password.parent == webmail.urn
        assert key not in str(unwrap(reg.inputs["envs"]))
    assert keys["mta1"] != keys["mta2"]
    # the key never reaches an output
    for value in dev_program.outputs.values():
        for key in keys.values():
            assert key not in str(unwrap(value))


def test_php_config_upload(dev_program):
    config = dev_config()
    stack = model_of(config)
    containers = webmail_containers(dev_program)
    for server, (domain, _port, _slug) in EXPECTED.items():
        upload = uploads_of(containers[f"mailstack-dev-webmail-{server}"])[
            f"{rc.CONFIG_DIR}/{rc.CONFIG_FILE}"
        ]
        assert upload["content"] == rc.render_config_php(stack, stack.domain(domain))
        assert f"mailstack webmail ({domain})" in upload["content"]


def test_sqlite_volume_kept_like_mail_data(dev_program):
    volumes = {unwrap(r.inputs["name"]): r for r in dev_program.of_type(VOLUME)}
    containers = webmail_containers(dev_program)
    for server, (domain, _port, slug) in EXPECTED.items():
        name = f"mailstack-dev-{slug}-webmail-db"
        volume = volumes[name]
        assert volume.protect and volume.retain_on_delete
        assert volume.parent == dev_program.named(f"{domain}-webmail").urn
        mounts = unwrap(containers[f"mailstack-dev-webmail-{server}"].inputs)["volumes"]
        assert mounts == [{"containerPath": "/var/roundcube/db", "volumeName": name}]


def test_protect_data_false_keeps_but_does_not_protect():
    config = dev_config()
    config["protectData"] = False
    program = run(config)
    volumes = [r for r in program.of_type(VOLUME) if unwrap(r.inputs["name"]).endswith("-webmail-db")]
    assert len(volumes) == 2
    assert all(v.retain_on_delete and not v.protect for v in volumes)


def test_components_and_children(dev_program):
    webmails = dev_program.of_type(WEBMAIL)
    assert sorted(w.name for w in webmails) == ["example1.local-webmail", "example2.local-webmail"]
    (stack,) = dev_program.of_type("mailstack:index:MailStack")
    for webmail in webmails:
        assert webmail.parent == stack.urn
        children = [r for r in dev_program.resources if r.parent == webmail.urn]
        assert sorted(r.name for r in children) == sorted(
            f"{webmail.name}-{suffix}" for suffix in ("des-key", "db", "container")
        )
    (image,) = [r for r in dev_program.of_type(IMAGE) if r.name.endswith("-webmail-image")]
    assert unwrap(image.inputs) == {"name": DEFAULT_IMAGES["webmail"], "keepLocally": True}
    assert image.parent == stack.urn


def test_outputs(dev_program):
    assert dev_program.outputs["webmails"] == {
        "example1.local": "http://127.0.0.1:8081/",
        "example2.local": "http://127.0.0.1:8082/",
    }
    domains = unwrap(dev_program.outputs["domains"])
    assert domains["example1.local"]["webmailUrl"] == "http://127.0.0.1:8081/"
    assert domains["example2.local"]["webmailUrl"] == "http://127.0.0.1:8082/"
    verify = unwrap(dev_program.outputs["verify"])
    assert [d["webmail"] for d in verify["domains"]] == [
        {"url": "http://127.0.0.1:8081/"},
        {"url": "http://127.0.0.1:8082/"},
    ]


def test_self_signed_tls_reaches_the_container():
    config = dev_config()
    config["tls"] = "self-signed"
    program = run(config)
    reg = webmail_containers(program)["mailstack-dev-webmail-mta1"]
    env = env_of(reg)
    assert env["ROUNDCUBEMAIL_DEFAULT_HOST"] == "tls://mail.example1.local"
    assert env["ROUNDCUBEMAIL_SMTP_SERVER"] == "tls://mail.example1.local"
    php = uploads_of(reg)[f"{rc.CONFIG_DIR}/{rc.CONFIG_FILE}"]["content"]
    assert "'allow_self_signed' => true" in php and "imap_conn_options" in php
    # the mail server answers to its hostname on the network, so the certificate name matches
    server = unwrap(program.containers()["mailstack-dev-mta1"].inputs)
    assert "mail.example1.local" in server["networksAdvanced"][0]["aliases"]


def test_image_override_and_bind_address():
    config = dev_config()
    config["images"] = {"webmail": "docker.io/roundcube/roundcubemail:1.6.15-apache"}
    config["domains"][1]["bindAddress"] = "0.0.0.0"
    program = run(config)
    (image,) = [r for r in program.of_type(IMAGE) if r.name.endswith("-webmail-image")]
    assert unwrap(image.inputs)["name"] == "docker.io/roundcube/roundcubemail:1.6.15-apache"
    reg = webmail_containers(program)["mailstack-dev-webmail-mta2"]
    assert unwrap(reg.inputs)["ports"][0]["ip"] == "0.0.0.0"
    assert unwrap(program.outputs["webmails"])["example2.local"] == "http://127.0.0.1:8082/"


def test_no_webmail_declares_nothing():
    config = dev_config()
    for domain in config["domains"]:
        domain.pop("webmail", None)
    program = run(config)
    assert program.of_type(WEBMAIL) == []
    assert not webmail_containers(program)
    assert "mailstack-webmail-image" not in [r.name for r in program.of_type(IMAGE)]
    assert program.outputs["webmails"] == {}
    assert all(d["webmailUrl"] is None for d in unwrap(program.outputs["domains"]).values())
    assert all(d["webmail"] is None for d in unwrap(program.outputs["verify"])["domains"])


def test_only_the_domain_with_webmail_gets_one():
    config = dev_config()
    config["domains"][1].pop("webmail")
    program = run(config)
    assert set(webmail_containers(program)) == {"mailstack-dev-webmail-mta1"}
    assert unwrap(program.outputs["webmails"]) == {"example1.local": "http://127.0.0.1:8081/"}


@pytest.mark.parametrize("tls", ["none", "self-signed"])
def test_two_runs_identical_webmail_inputs(tls):
    def snapshot():
        config = dev_config()
        config["tls"] = tls
        program = run(config)
        return sorted(
            (r.type, r.name, r.parent, repr(r.inputs), r.protect, r.retain_on_delete, r.delete_before_replace)
            for r in program.resources
            if "webmail" in r.name
        )

    first, second = snapshot(), snapshot()
    assert len(first) == 2 * 4 + 1  # per domain: component, key, volume, container; one image
    assert first == second
