"""Blast radius with the HTTPS edge: a new domain reaches the running edge through its writer only, and a
renewed certificate changes nothing Pulumi manages."""

from __future__ import annotations

import pytest

from tools import blast


@pytest.fixture(scope="module", name="radius")
def radius_fixture() -> dict[str, blast.BlastRadius]:
    kinds = (
        "add a domain with the edge",
        "add a domain on a new public address (edge)",
        "certificate renewed",
    )
    return {kind: blast.blast_radius(kind) for kind in kinds}


def _names(r: blast.BlastRadius, role: str, action: str) -> list[str]:
    return sorted(c.name for c in r.changes if c.role == role and c.action == action)


def test_adding_a_domain_restarts_no_server_and_not_the_edge(radius):
    r = radius["add a domain with the edge"]
    row = r.row()
    assert (row["servers replaced"], row["edge containers replaced"], row["servers created"]) == (0, 0, 1)
    assert r.count("edge", "replace", "update", "delete", "create") == 0
    assert _names(r, "edge-config-writer", "replace") == ["edge-config-writer"]
    assert _names(r, "certificate-wait", "create") == ["example.com-certificate-wait"]
    assert r.count("certificate-wait", "replace", "update", "delete") == 0
    assert _names(r, "webmail", "create") == ["example.com-webmail-container"]
    assert r.count("webmail", "replace", "update", "delete") == 0
    assert r.count("volume", "replace", "update", "delete") == 0


def test_a_domain_on_an_address_the_edge_does_not_serve_yet_replaces_the_edge_only(radius):
    r = radius["add a domain on a new public address (edge)"]
    edge = [c for c in r.changes if c.role == "edge"]
    assert [(c.name, c.action, c.properties) for c in edge] == [("edge-container", "replace", ("ports",))]
    assert r.row()["servers replaced"] == 0
    assert r.count("volume", "replace", "update", "delete") == 0  # the certificates stay


def test_a_renewed_certificate_replaces_nothing(radius):
    r = radius["certificate renewed"]
    assert r.changes == []
    assert r.row()["servers replaced"] == 0 and r.row()["edge containers replaced"] == 0
