"""The outcome lab's scenarios: each problem from issue 11 recreated in throwaway namespaces, diagnosed with
``tcptune status``/``recommend``, fixed by applying the recommended profile (or running ``release``), and measured
again with the same workload. tests/integration/test_outcomes_netns.py asserts the direction and size of each
effect; bench/outcomes runs them all, adds tuned's profiles for comparison, and prints the table.

Each function returns an ``Outcome``: one metric per configuration ("defaults": the kernel's defaults plus the
scenario's condition; "tcptune": after following tcptune's recommendation; tuned's profiles when given), plus what
tcptune recommended and the raw measurements.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.lab import tuned as tuned_profiles
from tests.lab.hosts import Host, Lab, link, wait_until

DEFAULTS, TCPTUNE = "defaults", "tcptune"
TUNED_LATENCY, TUNED_THROUGHPUT = "tuned network-latency", "tuned network-throughput"
COLUMNS = (DEFAULTS, TCPTUNE, TUNED_LATENCY, TUNED_THROUGHPUT)

Log = Callable[[str], None]


def quiet(_text: str) -> None:
    pass


def stderr_log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    scenario: str
    metric: str
    values: dict[str, Any] = field(default_factory=dict)
    """Column -> the metric (a number, or a short text)."""
    recommendation: dict[str, Any] = field(default_factory=dict)
    """What tcptune recommended: suggested keys, finding ids, commands."""
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Recommended:
    data: dict[str, Any]
    profile: str | None
    """The written profile (None when nothing was suggested)."""

    @property
    def suggested(self) -> dict[str, str]:
        return dict(self.data["suggested"])

    def finding(self, finding_id: str) -> dict[str, Any] | None:
        return next((f for f in self.data["findings"] if f["id"] == finding_id), None)

    def summary(self) -> dict[str, Any]:
        return {
            "suggested": self.suggested,
            "findings": [f["id"] for f in self.data["findings"]],
            "commands": [c for f in self.data["findings"] for c in f.get("commands", [])],
            "window": self.data.get("counter_window"),
        }


def recommend(host: Host, *args: str, name: str = "recommended") -> Recommended:
    """``tcptune recommend`` in ``host``, writing its suggestions as a profile that extends an empty one."""
    path = host.box.dir / f"{name}.yaml"
    data = host.tcptune_json(
        "recommend", *args, "--write", str(path), "--force", "--base", str(host.empty_profile), "--no-owners"
    )
    return Recommended(data, str(path) if data.get("written") else None)


def tuned_settings(root: Any, host: Host, profile: str) -> dict[str, str]:
    return tuned_profiles.resolve(tuned_profiles.read_profile(root, profile), lambda key: _maybe(host, key))


def _maybe(host: Host, key: str) -> str | None:
    try:
        return host.get(key)
    except Exception:  # a key this namespace lacks
        return None


def _apply_tuned(hosts: list[Host], root: Any, profile: str, outcome: Outcome) -> None:
    skipped: dict[str, str] = {}
    for host in hosts:
        skipped.update(host.apply_sysctls(tuned_settings(root, host, profile)))
    if skipped:
        outcome.details.setdefault("tuned_skipped", {})[profile] = skipped


# ---- 1. ephemeral port exhaustion -----------------------------------------------------------------------------------

CLIENT, SERVER = "10.77.0.1", "10.77.0.2"
NARROW_RANGE = "40000 40199"  # 200 ports: the scenario's condition


def _client_server(lab: Lab) -> tuple[Host, Host]:
    client, server = lab.host("client"), lab.host("server")
    link(client, server, CLIENT, SERVER)
    client.set("net.ipv4.ip_local_port_range", NARROW_RANGE)
    server.spawn("sink", SERVER, "8080", ready=True)
    return client, server


def _churn(client: Host, rate: float, seconds: float) -> dict[str, Any]:
    return client.spawn("churn", SERVER, "8080", "--rate", str(rate), "--seconds", str(seconds)).result()


def _failures_per_second(result: dict[str, Any]) -> float:
    return round(result["eaddrnotavail"] / result["seconds"], 1)


def port_exhaustion(
    rate: float,
    *,
    seconds: float = 4.0,
    sample: float = 2.0,
    tuned: Any = None,
    contrast: bool = False,
    log: Log = quiet,
) -> Outcome:
    """A client making ``rate`` short connections a second to one server address and port over a veth link,
    closing first, with 200 local ports. Kernel default tcp_tw_reuse = 2 reuses TIME_WAIT on loopback only, so
    over a real link every closed connection holds its port for 60 s."""
    outcome = Outcome(
        f"1. port exhaustion, {rate:g} conn/s",
        "connect() EADDRNOTAVAIL failures/s (200 ports)",
    )
    with Lab() as lab:
        client, _server = _client_server(lab)
        log(f"port exhaustion at {rate:g}/s: before, with recommend --sample {sample:g} during the load")
        load = client.spawn("churn", SERVER, "8080", "--rate", str(rate), "--seconds", str(seconds))
        time.sleep(min(1.0, seconds / 4))
        found = recommend(client, "--sample", str(sample))
        before = load.result()
        outcome.recommendation = found.summary()
        outcome.details["before"] = before
        outcome.values[DEFAULTS] = _failures_per_second(before)
        if found.profile:
            client.apply(found.profile)
            log(f"applied {found.suggested}; the same load again")
            load = client.spawn("churn", SERVER, "8080", "--rate", str(rate), "--seconds", str(seconds))
            time.sleep(min(1.0, seconds / 4))
            again = recommend(client, "--sample", str(sample), name="again")
            after = load.result()
            outcome.details["after"] = after
            outcome.values[TCPTUNE] = _failures_per_second(after)
            outcome.details["second_recommendation"] = again.summary()
    if contrast:
        with Lab() as lab:
            client, _server = _client_server(lab)
            client.set("net.ipv4.tcp_tw_reuse", "1")
            log(f"contrast: tcp_tw_reuse = 1 alone, 200 ports, {rate:g}/s")
            alone = _churn(client, rate, seconds)
            outcome.details["reuse_alone"] = alone
            outcome.values["tcp_tw_reuse=1 alone"] = _failures_per_second(alone)
    for profile in tuned_profiles.PROFILES if tuned else ():
        with Lab() as lab:
            client, server = _client_server(lab)
            _apply_tuned([client, server], tuned, profile, outcome)
            log(f"tuned {profile}")
            outcome.values[f"tuned {profile}"] = _failures_per_second(_churn(client, rate, seconds))
    return outcome


# ---- 2. FIN_WAIT2 orphans -------------------------------------------------------------------------------------------

WEB, PEER = "10.78.0.2", "10.78.0.1"


def _fin_wait2_count(host: Host, port: int) -> int:
    data = host.tcptune_json("status", "--port", str(port), "--top", "50")
    return sum(row["states"].get("FIN_WAIT2", 0) for row in data["by_port"] if row["port"] == port)


def fin_wait2_orphans(
    *, count: int = 200, tuned: Any = None, wait_for_all: bool = False, poll: float = 1.0, log: Log = quiet
) -> Outcome:
    """A server that closes its connections behind peers that never close: its sockets wait in FIN_WAIT2 as
    orphans for tcp_fin_timeout. Lifetimes are measured by polling ``tcptune status`` until a batch is gone."""
    outcome = Outcome("2. FIN_WAIT2 orphans", f"lifetime of {count} orphans (s, polled with status)")
    with Lab() as lab:
        pairs: dict[str, tuple[Host, Host]] = {}
        for column in (DEFAULTS, *(f"tuned {p}" for p in tuned_profiles.PROFILES if tuned)):
            web, peer = lab.host("web"), lab.host("peer")
            link(web, peer, WEB, PEER)
            if column != DEFAULTS:
                _apply_tuned([web, peer], tuned, column.removeprefix("tuned "), outcome)
            web.spawn("closer", WEB, "8081", ready=True)
            pairs[column] = (web, peer)
        web, peer = pairs[DEFAULTS]
        web.spawn("closer", WEB, "8082", ready=True)
        batches: dict[str, tuple[Host, int, float]] = {}
        for column, (host, other) in pairs.items():
            other.spawn("hold", WEB, "8081", "--count", str(count), ready=True)
            batches[column] = (host, 8081, time.monotonic())
        log(f"FIN_WAIT2: {count} orphans per configuration; recommend on the web server")
        found = recommend(web)
        outcome.recommendation = found.summary()
        outcome.details["orphans_seen_by_status"] = _fin_wait2_count(web, 8081)
        if found.profile:
            web.apply(found.profile)
            peer.spawn("hold", WEB, "8082", "--count", str(count), ready=True)
            batches[TCPTUNE] = (web, 8082, time.monotonic())
        gone: dict[str, float] = {}
        left_at_tcptune_end: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for column, (host, port, started) in batches.items():
                if column not in gone and _fin_wait2_count(host, port) == 0:
                    gone[column] = round(time.monotonic() - started, 1)
                    log(f"{column}: gone after {gone[column]} s")
                    if column == TCPTUNE:
                        left_at_tcptune_end = {c: _fin_wait2_count(h, p) for c, (h, p, _s) in batches.items()}
            if len(gone) == len(batches) or (not wait_for_all and TCPTUNE in gone):
                break
            time.sleep(poll)
        outcome.details["left_when_tcptune_batch_was_gone"] = left_at_tcptune_end
        for column in batches:
            outcome.values[column] = gone.get(column, f">{round(time.monotonic() - batches[column][2])}")
    return outcome


# ---- 3. CLOSE_WAIT leak ----------------------------------------------------------------------------------------------


def _close_wait_count(host: Host, port: int) -> int:
    data = host.tcptune_json("status", "--port", str(port), "--top", "50")
    return sum(row["states"].get("CLOSE_WAIT", 0) for row in data["by_port"] if row["port"] == port)


APP, CLIENTS = "10.79.0.2", "10.79.0.1"


def _app_and_clients(lab: Lab) -> tuple[Host, Host]:
    app, clients = lab.host("app"), lab.host("clients")
    link(app, clients, APP, CLIENTS)
    return app, clients


def close_wait_leak(*, count: int = 150, tuned: Any = None, log: Log = quiet) -> Outcome:
    """An application that never closes the connections its peers (in another namespace) close: CLOSE_WAIT piles
    up, held by it."""
    outcome = Outcome("3. CLOSE_WAIT leak", f"CLOSE_WAIT sockets left of {count}, app still running")
    port = "8083"
    with Lab() as lab:
        host, clients = _app_and_clients(lab)
        app = host.spawn("leaky", APP, port, ready=True)
        clients.spawn("connect-close", APP, port, "--count", str(count)).result()
        wait_until(lambda: _close_wait_count(host, int(port)) >= count, 10)
        log("CLOSE_WAIT: recommend names the process; release as it says")
        data = host.tcptune_json("recommend", "--min-sockets", "100")
        finding = next((f for f in data["findings"] if f["id"] == "close-wait"), None)
        outcome.recommendation = {
            "suggested": data["suggested"],
            "findings": [f["id"] for f in data["findings"]],
            "commands": finding["commands"] if finding else [],
            "owners": finding["owners"] if finding else [],
        }
        outcome.details["app"] = app.info
        outcome.details["app_sees_before"] = app.ask("check")
        outcome.values[DEFAULTS] = _close_wait_count(host, int(port))
        if finding and finding["commands"]:
            command = finding["commands"][0].split()[1:]  # drop "tcptune"
            released = host.tcptune(*command, "--format", "json")
            outcome.details["release_exit"] = released.returncode
            report = json.loads(released.stdout)
            outcome.details["release"] = {k: report[k] for k in ("matched", "outcomes", "remaining", "dry_run")}
            outcome.values[TCPTUNE] = _close_wait_count(host, int(port))
            outcome.details["app_sees"] = app.ask("check")
    for profile in tuned_profiles.PROFILES if tuned else ():
        with Lab() as lab:
            host, clients = _app_and_clients(lab)
            _apply_tuned([host, clients], tuned, profile, outcome)
            host.spawn("leaky", APP, port, ready=True)
            clients.spawn("connect-close", APP, port, "--count", str(count)).result()
            time.sleep(2)
            outcome.values[f"tuned {profile}"] = _close_wait_count(host, int(port))
    return outcome


# ---- 4. accept-queue overflow ----------------------------------------------------------------------------------------

BURST = ("--count", "600", "--bursts", "3", "--gap", "1.0", "--wait", "0.8")
LISTENER, BURSTER = "10.80.0.2", "10.80.0.1"


def _server_and_clients(lab: Lab) -> tuple[Host, Host]:
    server, clients = lab.host("server"), lab.host("clients")
    link(server, clients, LISTENER, BURSTER)
    return server, clients


def _bursts(host: Host, clients: Host) -> tuple[float, dict[str, Any]]:
    """ListenOverflows per second while three bounded SYN bursts hit the slow acceptor."""
    before = host.counters()
    started = time.monotonic()
    result = clients.spawn("burst", LISTENER, "8084", *BURST).result()
    elapsed = time.monotonic() - started
    overflows = host.counters()["TcpExt.ListenOverflows"] - before["TcpExt.ListenOverflows"]
    return round(overflows / elapsed, 1), {**result, "ListenOverflows": overflows, "seconds": round(elapsed, 2)}


def _bursts_with_recommend(host: Host, clients: Host, sample: float) -> tuple[float, dict[str, Any], Recommended]:
    before = host.counters()
    started = time.monotonic()
    load = clients.spawn("burst", LISTENER, "8084", *BURST)
    time.sleep(0.1)
    found = recommend(host, "--sample", str(sample))
    result = load.result()
    elapsed = time.monotonic() - started
    overflows = host.counters()["TcpExt.ListenOverflows"] - before["TcpExt.ListenOverflows"]
    measured = {**result, "ListenOverflows": overflows, "seconds": round(elapsed, 2)}
    return round(overflows / elapsed, 1), measured, found


def accept_overflow(
    *, case: str, sample: float = 2.5, tuned: Any = None, check_ratchet: bool = True, log: Log = quiet
) -> Outcome:
    """A slow acceptor (100 accept()s a second) under three bursts of 600 SYNs.

    case "somaxconn": the application asks for listen(4096) on a host whose somaxconn is 128 (the default before
    Linux 5.4): somaxconn is the limit. case "backlog": somaxconn is 4096 but the application asks for
    listen(64): only a larger application backlog helps, and tcptune must not raise somaxconn.
    """
    somaxconn, backlog, fixed_backlog = ("128", "4096", "4096") if case == "somaxconn" else (None, "64", "4096")
    title = "somaxconn 128 caps listen(4096)" if case == "somaxconn" else "listen(64) is the limit"
    outcome = Outcome(f"4. accept queue: {title}", "ListenOverflows/s, 3 bursts of 600 SYNs")
    with Lab() as lab:
        host, clients = _server_and_clients(lab)
        if somaxconn:
            host.set("net.core.somaxconn", somaxconn)
        app = host.spawn("acceptor", LISTENER, "8084", "--backlog", backlog, ready=True)
        log(f"accept overflow ({case}): before, with recommend --sample {sample:g} during the bursts")
        rate, measured, found = _bursts_with_recommend(host, clients, sample)
        outcome.values[DEFAULTS] = rate
        outcome.details["before"] = measured
        outcome.recommendation = found.summary()
        finding = found.finding("listen-overflows")
        outcome.details["listen_finding"] = finding
        if found.profile:
            host.apply(found.profile)
        app.stop()  # the fix takes a restart: a backlog is fixed when the socket starts listening
        host.spawn("acceptor", LISTENER, "8084", "--backlog", fixed_backlog, ready=True)
        log(f"applied {found.suggested or 'nothing'}; application restarted with listen({fixed_backlog})")
        outcome.values[TCPTUNE], outcome.details["after"] = _bursts(host, clients)
        if check_ratchet:
            _rate, _measured, again = _bursts_with_recommend(host, clients, sample)
            outcome.details["second_recommendation"] = again.summary()
            # without --sample: the counters since the apply (recorded in its generation), not since boot
            since = recommend(host, name="since-apply")
            outcome.details["since_apply_recommendation"] = since.summary()
    for profile in tuned_profiles.PROFILES if tuned else ():
        with Lab() as lab:
            host, clients = _server_and_clients(lab)
            if somaxconn:
                host.set("net.core.somaxconn", somaxconn)
            _apply_tuned([host, clients], tuned, profile, outcome)
            host.spawn("acceptor", LISTENER, "8084", "--backlog", backlog, ready=True)
            outcome.values[f"tuned {profile}"], _measured = _bursts(host, clients)
    return outcome


# ---- 5. TIME_WAIT bucket overflow ------------------------------------------------------------------------------------

LOW_TW_BUCKETS = "200"


def _tw_churn(host: Host, rate: float, seconds: float) -> tuple[float, dict[str, Any]]:
    before = host.counters()
    result = host.spawn("churn", "127.0.0.1", "8085", "--rate", str(rate), "--seconds", str(seconds)).result()
    overflows = host.counters()["TcpExt.TCPTimeWaitOverflow"] - before["TcpExt.TCPTimeWaitOverflow"]
    return round(overflows / result["seconds"], 1), {**result, "TCPTimeWaitOverflow": overflows}


def time_wait_overflow(
    *, rate: float = 300, seconds: float = 5.0, sample: float = 2.0, tuned: Any = None, log: Log = quiet
) -> Outcome:
    """Short connections on loopback with tcp_max_tw_buckets lowered to 200 (a host "hardened" against TIME_WAIT):
    the table fills and closing connections skip TIME_WAIT."""
    outcome = Outcome("5. TIME_WAIT buckets full (200)", f"TCPTimeWaitOverflow/s at {rate:g} conn/s")
    with Lab() as lab:
        host = lab.host("host")
        host.set("net.ipv4.tcp_max_tw_buckets", LOW_TW_BUCKETS)
        host.spawn("sink", "127.0.0.1", "8085", ready=True)
        log(f"TIME_WAIT overflow at {rate:g}/s: before, with recommend --sample {sample:g} during the load")
        before_counters = host.counters()
        load = host.spawn("churn", "127.0.0.1", "8085", "--rate", str(rate), "--seconds", str(seconds))
        time.sleep(min(1.0, seconds / 4))
        found = recommend(host, "--sample", str(sample))
        result = load.result()
        overflows = host.counters()["TcpExt.TCPTimeWaitOverflow"] - before_counters["TcpExt.TCPTimeWaitOverflow"]
        outcome.values[DEFAULTS] = round(overflows / result["seconds"], 1)
        outcome.details["before"] = {**result, "TCPTimeWaitOverflow": overflows}
        outcome.recommendation = found.summary()
        if found.profile:
            host.apply(found.profile)
            log(f"applied {found.suggested}; the same load again")
            outcome.values[TCPTUNE], outcome.details["after"] = _tw_churn(host, rate, seconds)
    for profile in tuned_profiles.PROFILES if tuned else ():
        with Lab() as lab:
            host = lab.host("host")
            host.set("net.ipv4.tcp_max_tw_buckets", LOW_TW_BUCKETS)
            _apply_tuned([host], tuned, profile, outcome)
            host.spawn("sink", "127.0.0.1", "8085", ready=True)
            outcome.values[f"tuned {profile}"], _measured = _tw_churn(host, rate, seconds)
    return outcome


# ---- 6. buffers on a long path ---------------------------------------------------------------------------------------

SENDER, RECEIVER = "10.99.0.1", "10.99.0.2"
HIGH_BANDWIDTH = "high-bandwidth-10g"


def _buffers_of(profile: str) -> dict[str, str]:
    """tcp_rmem and tcp_wmem as a built-in profile resolves them (``tcptune show``)."""
    import subprocess

    from tests.integration.kernel_sandbox import tcptune_executable

    shown = json.loads(
        subprocess.run(
            [tcptune_executable(), "show", profile, "--format", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    settings = shown["settings"]
    return {key: str(settings[key]["value"]) for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")}


def _bulk(lab: Lab, delay: float, seconds: float, setup: Callable[[Host, Host], None]) -> dict[str, Any]:
    sender, receiver = lab.host("sender"), lab.host("receiver")
    lab.delay_line(sender, receiver, SENDER, RECEIVER, delay)
    setup(sender, receiver)
    sink = receiver.spawn("bulk-recv", "5001", ready=True)
    sent = sender.spawn("bulk-send", RECEIVER, "5001", "--seconds", str(seconds)).result()
    received = sink.result()
    return {
        "mb_per_s": round(received["bytes"] / received["seconds"] / 1e6, 1),
        "rtt_ms": sent["rtt_ms"],
        "sent": sent,
        "received": received,
    }


def long_path(*, delay: float = 0.1, seconds: float = 5.0, tuned: Any = None, log: Log = quiet) -> Outcome:
    """Bulk throughput over a 2 x ``delay`` RTT path built from a TUN delay line (this kernel has no netem):
    default buffers vs high-bandwidth-10g's tcp_rmem/tcp_wmem."""
    outcome = Outcome(f"6. long path, RTT {2000 * delay:g} ms", "bulk throughput MB/s (TUN delay line)")
    buffers = _buffers_of(HIGH_BANDWIDTH)
    outcome.recommendation = {"profile": HIGH_BANDWIDTH, "suggested": buffers}

    def defaults(_sender: Host, _receiver: Host) -> None:
        pass

    def high_bandwidth(sender: Host, receiver: Host) -> None:
        for host in (sender, receiver):
            path = host.box.dir / "buffers.yaml"
            path.write_text(
                "name: buffers\nextends: ./lab-empty.yaml\nsettings:\n"
                + "".join(f'  {key}: "{value}"\n' for key, value in buffers.items())
            )
            host.apply(str(path))

    runs: list[tuple[str, Callable[[Host, Host], None]]] = [(DEFAULTS, defaults), (TCPTUNE, high_bandwidth)]
    for profile in tuned_profiles.PROFILES if tuned else ():

        def with_tuned(sender: Host, receiver: Host, profile: str = profile) -> None:
            _apply_tuned([sender, receiver], tuned, profile, outcome)

        runs.append((f"tuned {profile}", with_tuned))
    for column, setup in runs:
        log(f"long path: {column}")
        with Lab() as lab:
            measured = _bulk(lab, delay, seconds, setup)
        outcome.values[column] = measured["mb_per_s"]
        outcome.details[column] = measured
    return outcome
