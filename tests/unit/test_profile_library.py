"""Claims the built-in profiles make that can be checked mechanically."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune.profile import builtin_dirs, load_profile
from tcptune.validate import validate

PROFILES = sorted(p for d in builtin_dirs() for p in d.glob("*.yaml"))
NODE_PORTS = (30000, 32767)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_a_port_range_below_the_kernel_default_names_the_services_it_overlaps(path: Path) -> None:
    """The default range starts at 32768, above the registered ports services (and NodePorts) use; a profile that
    starts lower must say so and point at ip_local_reserved_ports."""
    profile = load_profile(path)
    setting = profile.settings.get("net.ipv4.ip_local_port_range")
    ports = validate(profile).parsed.get("net.ipv4.ip_local_port_range")
    if setting is None or setting.origin != profile.name or not isinstance(ports, tuple) or ports[0] >= 32768:
        return
    text = path.read_text()
    assert "ip_local_reserved_ports" in text
    if ports[0] <= NODE_PORTS[1]:
        assert "NodePorts" in text and "NOT clear" in text


def test_fastopen_comments_do_not_claim_servers_with_client_only_bits() -> None:
    for path in PROFILES:
        for line in path.read_text().splitlines():
            if line.strip().startswith("net.ipv4.tcp_fastopen: 1"):
                assert "servers opt in" not in line, path
