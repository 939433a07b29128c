"""The collection tcptune.tuning: ansible-test sanity on its source, then the built tarball installed with
ansible-galaxy into a temporary path and used by a playbook on namespace hosts, with two tcptune roles in one play
(a generated one and the generic one): both persisted, the second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcptune.ansible import nshosts, render
from tcptune.load import load_valid

from .conftest import host_read

pytestmark = [pytest.mark.slow, pytest.mark.netns]

PROFILE = "name: web-front\nsettings:\n  net.ipv4.tcp_fin_timeout: 21\n  net.core.somaxconn: 3000\n"
PIP_SHIM = """# Stand-in for ansible-test's pip bootstrap download (that host is not reachable here): ensurepip.
import ensurepip
import sys

sys.exit(ensurepip._main(["--upgrade", "--default-pip"]))
"""


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("collection")
    (work / "web-front.yaml").write_text(PROFILE)
    spec = render.spec_from_verdict(load_valid(str(work / "web-front.yaml")))
    return render.render_collection(work / "src", [spec])


def ansible_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_ansible_test_sanity_passes(collection: Path, tmp_path: Path) -> None:
    """compile, import, validate-modules and yamllint, on Python 3.11, locally (no containers here). ansible-test
    downloads a pip bootstrap script from a host that is not reachable: a stand-in using ensurepip is put in its
    cache (in a private HOME); its requirements come from PyPI."""
    home = tmp_path / "home"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True)
    for version in ("24_2", "25_0", "25_1", "25_2"):
        (cache / f"get_pip_{version}.py").write_text(PIP_SHIM)
    proc = subprocess.run(
        [ansible_bin("ansible-test"), "sanity", "--python", "3.11", "--local"]
        + [arg for test in ("compile", "import", "validate-modules", "yamllint") for arg in ("--test", test)],
        cwd=collection,
        env={**os.environ, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@pytest.fixture(scope="module")
def fleet2() -> Iterator[nshosts.Fleet]:
    hosts = nshosts.up(2)
    try:
        yield hosts
    finally:
        assert not hosts.down()


PLAY = """\
- name: Two tcptune roles on one host
  hosts: all
  gather_facts: false
  roles:
    - role: tcptune.tuning.tcptune_web_front
    - role: tcptune.tuning.tcptune
      vars:
        tcptune_settings:
          net.ipv4.tcp_keepalive_time: 900
"""


def test_built_tarball_installs_and_two_roles_share_a_host(
    collection: Path, fleet2: nshosts.Fleet, tmp_path: Path
) -> None:
    build = subprocess.run(
        [ansible_bin("ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path / "dist")],
        cwd=collection,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (tarball,) = (tmp_path / "dist").glob("tcptune-tuning-*.tar.gz")
    install = subprocess.run(
        [ansible_bin("ansible-galaxy"), "collection", "install", str(tarball), "-p", str(tmp_path / "installed")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    inventory = fleet2.write_inventory(str(tmp_path / "inventory.yml"))
    (tmp_path / "site.yml").write_text(PLAY)
    env = {
        **os.environ,
        **fleet2.env(),
        "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "installed"),
        "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),
        "ANSIBLE_NOCOLOR": "1",
    }

    def play() -> str:
        proc = subprocess.run(
            [ansible_bin("ansible-playbook"), "-i", inventory, str(tmp_path / "site.yml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return proc.stdout

    first = play()
    assert "changed=1" in first or "changed=2" in first
    second = play()
    recap = [line for line in second.splitlines() if "ok=" in line]
    assert len(recap) == 2 and all("changed=0" in line and "failed=0" in line for line in recap), second[-2000:]
    for host in ("h1", "h2"):
        assert host_read(fleet2, host, "net.ipv4.tcp_fin_timeout") == "21"
        assert host_read(fleet2, host, "net.ipv4.tcp_keepalive_time") == "900"
        persisted = Path(fleet2.host(host).directory, "sysctl.d", "90-tcptune.conf").read_text()
        for line in ("net.ipv4.tcp_fin_timeout = 21", "net.core.somaxconn = 3000", "net.ipv4.tcp_keepalive_time = 900"):
            assert line in persisted, (host, persisted)
