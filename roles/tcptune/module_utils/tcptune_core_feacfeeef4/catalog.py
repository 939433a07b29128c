"""The known sysctl keys: shape, unit, range, default, netns scope and kernel history.

Pure data plus lookups. It is the single source of truth for validation, `explain`, the JSON Schema, the Ansible
argument spec and the docs; nothing else restates these facts.

Ranges are what a user should be held to, which is often narrower than what the kernel's handler accepts
(the kernel takes a negative ``tcp_fin_timeout``; tcptune does not).
"""

from __future__ import annotations

from typing import Literal

from .records import Record

Shape = Literal["int", "bool", "enum", "triple", "pair", "string", "names", "portlist"]
Unit = Literal[
    "seconds", "milliseconds", "microseconds", "bytes", "pages", "count", "packets", "percent", "port", "none"
]
Scope = Literal["netns", "global"]

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


class ValueHistory(Record):
    """Values of a key that only newer kernels accept or understand.

    Kernels up to ``older_through`` do not support ``low..high``: they refuse the write (``older_effect`` None) or
    accept it with another meaning (``older_effect`` says which). ``since`` is the first release known to support
    the values; None while no released kernel is known to (kernels after ``older_through`` may or may not).
    """

    low: int
    high: int
    older_through: str
    since: str | None
    older_effect: str | None = None
    what: str = ""
    """The values in plain words, for messages ("Accurate ECN")."""


class Key(Record):
    """One sysctl key as tcptune understands it."""

    name: str
    shape: Shape
    unit: Unit
    summary: str
    scope: Scope
    default: str | None = None
    """Kernel default as the kernel prints it (normalised); None where it depends on the machine."""
    minimum: int | None = None
    """Lower bound for the value (for triples/pairs: each element)."""
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    """Allowed values for enums (as strings, e.g. "0", "1", "2"); known names for strings."""
    choice_meanings: tuple[str, ...] = ()
    """What each choice means, parallel to ``choices``."""
    open_choices: bool = False
    """For strings: ``choices`` are the usual names but others may exist (e.g. congestion-control modules)."""
    elements: tuple[str, ...] = ()
    """Names of the elements of a triple or pair, e.g. ("min", "default", "max")."""
    added: str | None = None
    """Kernel version that introduced the key, where it is newer than what any supported distro runs."""
    removed: str | None = None
    removed_reason: str | None = None
    advice: tuple[str, ...] = ()
    """Common advice and pitfalls, in plain words."""
    units_accepted: bool = False
    """Whether human units (``16MiB``, ``30s``) are accepted for this key."""
    obsolete: str | None = None
    """Kernel version from which the key is still accepted but does nothing (``tcp_fack``); unlike ``removed``,
    writing it works."""
    obsolete_reason: str | None = None
    netns_since: str | None = None
    """For a key that is per network namespace now but was host-wide before this kernel version (``optmem_max``)."""
    module: str | None = None
    """The kernel module that provides the key (the file exists only while it is loaded), e.g. nf_conntrack."""
    value_history: tuple[ValueHistory, ...] = ()

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def arity(self) -> int:
        return {"triple": 3, "pair": 2}.get(self.shape, 1)


def _k(name: str, shape: Shape, unit: Unit, scope: Scope, summary: str, **kw: object) -> Key:
    if unit in ("bytes", "seconds", "milliseconds") and "units_accepted" not in kw:
        kw["units_accepted"] = True
    return Key(name=name, shape=shape, unit=unit, scope=scope, summary=summary, **kw)  # type: ignore[arg-type]


BOOL = ("0", "1")
OFF_ON = ("disabled", "enabled")

# The entries, grouped as a tuning guide groups them. Defaults are those of current mainline kernels.
KEYS: tuple[Key, ...] = (
    # ---- FIN / TIME_WAIT handling -------------------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_fin_timeout",
        "int",
        "seconds",
        "netns",
        "How long an orphaned connection stays in FIN_WAIT2 waiting for the peer's FIN.",
        default="60",
        minimum=1,
        maximum=600,
        advice=(
            "Governs FIN_WAIT2 orphans only. TIME_WAIT lasts a fixed 60 s (TCP_TIMEWAIT_LEN) and no sysctl changes it.",
            "Values below about 10 s can cut off slow peers that are still sending their last data.",
        ),
    ),
    _k(
        "net.ipv4.tcp_tw_reuse",
        "enum",
        "none",
        "netns",
        "Whether new outgoing connections may reuse a socket in TIME_WAIT when it is safe by timestamps.",
        default="2",
        choices=("0", "1", "2"),
        choice_meanings=("never", "always for outgoing connections", "only for loopback traffic"),
        advice=(
            "Helps only outgoing connections (clients, proxies to upstreams);"
            " it does nothing for a server's accepted connections.",
            "Needs net.ipv4.tcp_timestamps enabled on both ends, because reuse is judged by timestamps.",
            "Value 2 (loopback only) arrived in Linux 4.18 and is the default since; older kernels default to 0"
            " and take any non-zero value as 1, so 2 there turns reuse on for every outgoing connection.",
            "A socket must have been in TIME_WAIT for net.ipv4.tcp_tw_reuse_delay (1 s) before it is reused.",
        ),
        value_history=(
            ValueHistory(
                2,
                2,
                older_through="4.17",
                since="4.18",
                older_effect="taken as 1: reuse for every outgoing connection, not only loopback",
                what="loopback-only reuse",
            ),
        ),
    ),
    _k(
        "net.ipv4.tcp_max_tw_buckets",
        "int",
        "count",
        "netns",
        "Most sockets this namespace keeps in TIME_WAIT; closing sockets beyond it skip TIME_WAIT entirely.",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "The kernel derives the default from the TCP hash table"
            " size (half its buckets), so it differs per machine.",
            'When it overflows the kernel logs "TCP: time wait bucket table overflow";'
            " raise it rather than lower it, since it exists only as a guard against DoS.",
        ),
    ),
    _k(
        "net.ipv4.tcp_max_orphans",
        "int",
        "count",
        "global",
        "Most TCP sockets kept after their application closed them (orphans); further orphans are reset at once.",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "Sized from memory at boot; each orphan can pin up to about 64 KiB of unswappable memory.",
            'Overflow logs "too many orphaned sockets". It is a DoS guard: raise it with memory, do not lower it.',
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    _k(
        "net.ipv4.tcp_orphan_retries",
        "int",
        "count",
        "netns",
        "Retransmissions tried for a connection the application has already closed before it is dropped.",
        default="0",
        minimum=0,
        maximum=255,
        advice=(
            "0 does not mean no retries: the kernel treats it as 8.",
            "A lower value such as 3 frees orphans of vanished clients sooner on busy web servers.",
        ),
    ),
    _k(
        "net.ipv4.tcp_tw_recycle",
        "enum",
        "none",
        "netns",
        "Fast recycling of TIME_WAIT sockets, judged by each peer's last timestamp.",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        removed="4.12",
        removed_reason="it dropped connections from clients behind NAT, and once Linux 4.10 gave TCP"
        " timestamps random offsets a peer's timestamps were no longer monotonic, so it"
        " broke for everyone; use net.ipv4.tcp_tw_reuse for outgoing connections instead",
        advice=("Delete it from old sysctl.conf files: on 4.12 and later the key does not exist and sysctl -p fails.",),
    ),
    _k(
        "net.ipv4.tcp_rfc1337",
        "bool",
        "none",
        "netns",
        "Whether sockets in TIME_WAIT ignore incoming RST segments (the RFC 1337 fix for TIME_WAIT assassination).",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=(
            "The kernel's own description is easy to misread; in the code 1 makes"
            " TIME_WAIT sockets ignore RSTs and 0 lets an RST end TIME_WAIT early.",
            "Turning it on is low-risk hardening.",
        ),
    ),
    # ---- Socket buffers and TCP memory --------------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_rmem",
        "triple",
        "bytes",
        "netns",
        "TCP receive buffer sizes: guaranteed minimum, initial size, and the ceiling for receive autotuning.",
        elements=("min", "default", "max"),
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "Typically 4096 131072 33554432 (max 32 MiB since Linux 6.16, 6 MiB"
            " before); the max is scaled down on machines with little memory.",
            "The max bounds autotuning only. A program that sets SO_RCVBUF loses autotuning"
            " and is capped by net.core.rmem_max instead, so raise both together.",
            "Size the max to the bandwidth-delay product of the longest"
            " path that matters: 10 Gbit/s x 50 ms is about 62.5 MB.",
            "The kernel checks only that each number is at least 1, not their order; tcptune warns when they"
            " are out of order and when the min is below 4096 (one page, the kernel's own default min).",
        ),
    ),
    _k(
        "net.ipv4.tcp_wmem",
        "triple",
        "bytes",
        "netns",
        "TCP send buffer sizes: guaranteed minimum, initial size, and the ceiling for send autotuning.",
        elements=("min", "default", "max"),
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "Typically 4096 16384 4194304; the max is smaller on machines with little memory.",
            "The max bounds autotuning only; programs that set SO_SNDBUF are capped by net.core.wmem_max.",
            "Big send buffers matter for long fat paths; pair them with tcp_notsent_lowat to keep latency down.",
            "The kernel checks only that each number is at least 1, not their order; tcptune warns when they"
            " are out of order and when the min is below 4096 (one page, the kernel's own default min).",
        ),
    ),
    _k(
        "net.ipv4.tcp_mem",
        "triple",
        "pages",
        "global",
        "Memory, in pages, for all TCP sockets together: no pressure"
        " below low, trimming above pressure, hard cap at high.",
        elements=("low", "pressure", "high"),
        minimum=1,
        maximum=LONG_MAX,
        units_accepted=False,
        advice=(
            "Computed at boot from RAM and counted in pages (usually 4 KiB), not bytes.",
            'Raising buffer maxima for many connections can exhaust it; watch "TCP:'
            ' out of memory" in the log and the mem figure in /proc/net/sockstat.',
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.rmem_max",
        "int",
        "bytes",
        "global",
        "Largest receive buffer a program may request with SO_RCVBUF.",
        default="4194304",
        minimum=2304,
        maximum=INT_MAX,
        advice=(
            "4 MiB since Linux 6.18; 212992 on older kernels.",
            "It does not limit TCP autotuning (tcp_rmem's max does) but"
            " caps explicit SO_RCVBUF, so raise it together with tcp_rmem.",
            "Host-wide: read-only or absent inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.wmem_max",
        "int",
        "bytes",
        "global",
        "Largest send buffer a program may request with SO_SNDBUF.",
        default="4194304",
        minimum=4608,
        maximum=INT_MAX,
        advice=(
            "4 MiB since Linux 6.18; 212992 on older kernels.",
            "It does not limit TCP autotuning (tcp_wmem's max does) but"
            " caps explicit SO_SNDBUF, so raise it together with tcp_wmem.",
            "Host-wide: read-only or absent inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.rmem_default",
        "int",
        "bytes",
        "global",
        "Initial receive buffer of sockets other than TCP (TCP starts from the middle value of tcp_rmem).",
        default="212992",
        minimum=2304,
        maximum=INT_MAX,
        advice=(
            "212992 on common 64-bit builds; the exact figure follows the size of struct sk_buff.",
            "Mostly matters for UDP receivers; raise it for bursty datagram traffic.",
            "Host-wide: read-only or absent inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.wmem_default",
        "int",
        "bytes",
        "global",
        "Initial send buffer of sockets other than TCP (TCP starts from the middle value of tcp_wmem).",
        default="212992",
        minimum=4608,
        maximum=INT_MAX,
        advice=(
            "212992 on common 64-bit builds; the exact figure follows the size of struct sk_buff.",
            "Host-wide: read-only or absent inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.optmem_max",
        "int",
        "bytes",
        "netns",
        "Per-socket allowance for ancillary memory: socket filters, option data, zerocopy completions.",
        default="131072",
        minimum=0,
        maximum=INT_MAX,
        advice=(
            "Per network namespace since Linux 6.8; older kernels"
            " have one host-wide value that containers cannot change.",
            "128 KiB on current kernels (20480 on older ones). Heavy MSG_ZEROCOPY"
            " senders may need more; ESnet suggests 1 MiB for 100G hosts.",
        ),
        netns_since="6.8",
    ),
    _k(
        "net.ipv4.tcp_moderate_rcvbuf",
        "bool",
        "none",
        "netns",
        "Whether TCP autotunes each connection's receive buffer, up to the max of tcp_rmem.",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=("Leave it on; with 0 every receive buffer stays at tcp_rmem's initial size.",),
    ),
    _k(
        "net.ipv4.tcp_adv_win_scale",
        "int",
        "none",
        "netns",
        "Share of the receive buffer counted as overhead instead of advertised window (obsolete since 6.6).",
        default="1",
        minimum=-31,
        maximum=31,
        advice=(
            "Ignored since Linux 6.6, which measures the real overhead per socket; it only matters on older kernels.",
            "On those, 1 advertises half the buffer as window and 2 three quarters.",
        ),
    ),
    _k(
        "net.ipv4.tcp_notsent_lowat",
        "int",
        "bytes",
        "netns",
        "How much unsent data a TCP socket may hold before poll() stops reporting it writable.",
        default="4294967295",
        minimum=1,
        maximum=2**32 - 1,
        advice=(
            "The default (all bits set) means no limit. 16-128 KiB keeps send queues short,"
            " which cuts latency and memory for HTTP/2 and other multiplexed streams.",
            "Sockets that set TCP_NOTSENT_LOWAT themselves ignore the sysctl.",
        ),
    ),
    _k(
        "net.ipv4.udp_rmem_min",
        "int",
        "bytes",
        "netns",
        "Receive buffer each UDP socket keeps even while UDP as a whole is under memory pressure.",
        default="4096",
        minimum=1,
        maximum=INT_MAX,
    ),
    # ---- Listen backlog and SYN handling ------------------------------------------------------------------------
    _k(
        "net.core.somaxconn",
        "int",
        "count",
        "netns",
        "Upper limit on the backlog argument of listen(); larger requests are silently cut down to it.",
        default="4096",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "It only caps: the server must also ask for a large backlog (nginx 'backlog=', HAProxy 'maxconn').",
            "The default was 128 before Linux 5.4, which is why old tuning guides raise it.",
            "Kernels before 4.1 stored the backlog in 16 bits; stay at or below 65535 if any are left.",
        ),
    ),
    _k(
        "net.ipv4.tcp_max_syn_backlog",
        "int",
        "count",
        "netns",
        "Per-listener limit on half-open connections (SYN received, handshake unfinished).",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "The default scales with the TCP hash table: at least 128, more on larger machines.",
            "Current kernels consult it only with tcp_syncookies = 0; otherwise the SYN"
            " queue is bounded by the listen() backlog, itself capped by net.core.somaxconn.",
        ),
    ),
    _k(
        "net.core.netdev_max_backlog",
        "int",
        "packets",
        "global",
        "Packets each CPU may queue from network devices before the kernel drops further ones.",
        default="1000",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "Drops are counted in the second column of /proc/net/softnet_stat;"
            " raise it when that grows, typically with 10G and faster NICs.",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    _k(
        "net.ipv4.tcp_syncookies",
        "enum",
        "none",
        "netns",
        "Whether a listener whose SYN queue is full answers with SYN cookies instead of dropping SYNs.",
        default="1",
        choices=("0", "1", "2"),
        choice_meanings=("never", "when a listener's SYN queue overflows", "always (for testing only)"),
        advice=(
            "Keep 1: it defends against SYN floods and costs nothing until a queue actually overflows.",
            'Frequent "SYN flooding" log lines under legitimate load mean the'
            " listen backlog is too small, not that cookies should be turned off.",
        ),
    ),
    _k(
        "net.ipv4.tcp_abort_on_overflow",
        "bool",
        "none",
        "netns",
        "Whether a full accept queue resets new connections instead of ignoring their final ACK.",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=(
            "Leave it off: with 0 clients retransmit and short bursts recover; 1 turns them into connection resets.",
        ),
    ),
    _k(
        "net.ipv4.tcp_synack_retries",
        "int",
        "count",
        "netns",
        "Retransmissions of the SYN-ACK for a connection being accepted.",
        default="5",
        minimum=0,
        maximum=255,
        advice=(
            "5 gives up after about 63 s (1 s first timeout, doubling);"
            " 2 or 3 frees half-open slots sooner during SYN floods.",
        ),
    ),
    _k(
        "net.ipv4.tcp_syn_retries",
        "int",
        "count",
        "netns",
        "Retransmissions of the SYN of an outgoing connection before connect() fails.",
        default="6",
        minimum=1,
        maximum=127,
        advice=(
            "connect() to a host that never answers fails after the time the exponential schedule would take"
            " (1 + 2 + ... + 2^N s from a 1 s first timeout): 6 gives about 127 s.",
            "Since Linux 6.5 the first net.ipv4.tcp_syn_linear_timeouts (default 4) retransmissions come 1 s"
            " apart, so more SYNs go out and the give-up lands on the next timer: about 131 s for 6 (10"
            " retransmissions), 19 s for 3, 7 s for 2. Lower it for clients that should fail over faster.",
        ),
    ),
    # ---- Retransmission and keepalive ---------------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_retries1",
        "int",
        "count",
        "netns",
        "Retransmissions after which TCP asks the IP layer to re-check the route; the connection stays open.",
        default="3",
        minimum=0,
        maximum=255,
        advice=("RFC 1122 asks for at least 3; there is rarely a reason to change it.",),
    ),
    _k(
        "net.ipv4.tcp_retries2",
        "int",
        "count",
        "netns",
        "Retransmissions of unacknowledged data before an established connection is given up.",
        default="15",
        minimum=1,
        maximum=255,
        advice=(
            "15 means roughly 15 minutes (924.6 s with the minimum RTO); 8 is about 100 s, the RFC 1122 minimum.",
            "Lower it to notice dead peers with unacknowledged data sooner"
            " (databases, proxies); TCP_USER_TIMEOUT does the same per socket.",
        ),
    ),
    _k(
        "net.ipv4.tcp_keepalive_time",
        "int",
        "seconds",
        "netns",
        "Idle time before the first keepalive probe, on sockets that enabled SO_KEEPALIVE.",
        default="7200",
        minimum=1,
        maximum=32767,
        advice=(
            "Only sockets with SO_KEEPALIVE are probed; the application has to switch it on.",
            "Keep it below the idle timeout of NATs, firewalls and load balancers"
            " on the path (often 300-900 s), or idle connections vanish silently.",
            "32767 is the most TCP_KEEPIDLE accepts per socket; tcptune holds the sysctl to the same bound.",
        ),
    ),
    _k(
        "net.ipv4.tcp_keepalive_intvl",
        "int",
        "seconds",
        "netns",
        "Time between keepalive probes once probing has started.",
        default="75",
        minimum=1,
        maximum=32767,
        advice=(
            "A dead peer is declared after keepalive_time + keepalive_intvl x"
            " keepalive_probes: 7200 + 75 x 9 s, about 2 h 11 min, by default.",
        ),
    ),
    _k(
        "net.ipv4.tcp_keepalive_probes",
        "int",
        "count",
        "netns",
        "Unanswered keepalive probes after which the connection is declared dead.",
        default="9",
        minimum=1,
        maximum=127,
    ),
    # ---- Congestion control and queueing ------------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_congestion_control",
        "string",
        "none",
        "netns",
        "Congestion control algorithm for new connections; accepted connections inherit the listener's.",
        choices=(
            "cubic",
            "bbr",
            "reno",
            "htcp",
            "dctcp",
            "bic",
            "vegas",
            "westwood",
            "illinois",
            "hybla",
            "highspeed",
            "scalable",
            "lp",
            "veno",
            "yeah",
            "nv",
            "cdg",
        ),
        open_choices=True,
        advice=(
            "The default comes from the kernel build (CONFIG_DEFAULT_TCP_CONG, usually cubic); reno always exists.",
            "The algorithm must be built in or loadable as module"
            " tcp_<name>; see net.ipv4.tcp_available_congestion_control.",
            "Per network namespace since Linux 4.15. BBR paces itself since 4.13; before that it needs the fq qdisc.",
            "Inside a child network namespace only names in net.ipv4.tcp_allowed_congestion_control may be"
            " chosen (EPERM otherwise); on the host a name that is not loaded makes the kernel load tcp_<name>.",
        ),
    ),
    _k(
        "net.ipv4.tcp_allowed_congestion_control",
        "names",
        "none",
        "global",
        "Congestion-control algorithms that unprivileged programs and child network namespaces may choose.",
        advice=(
            "Every name must already be available (net.ipv4.tcp_available_congestion_control); the kernel"
            " does not load modules for this list, and refuses unknown names with ENOENT.",
            "Host-wide: read-only inside a child network namespace, where it decides which"
            " tcp_congestion_control values that namespace may set.",
            "The default is reno plus the build's default algorithm; the kernel prints the names in its own"
            " order, so tcptune compares them as a set.",
        ),
    ),
    _k(
        "net.core.default_qdisc",
        "string",
        "none",
        "global",
        "Queueing discipline given to network device queues that are set up after the change.",
        default="pfifo_fast",
        choices=("pfifo_fast", "fq", "fq_codel", "cake", "fq_pie", "sfq", "pfifo", "bfifo"),
        open_choices=True,
        advice=(
            "Existing devices keep their qdisc until it is replaced with tc or the device is set up again.",
            "fq paces each flow and suits bulk senders and BBR; fq_codel"
            " (systemd's choice) curbs bufferbloat on general-purpose hosts.",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    # ---- TCP options and features -------------------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_window_scaling",
        "bool",
        "none",
        "netns",
        "RFC 7323 window scaling, needed for receive windows above 64 KiB.",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=("Never turn it off: without it no connection can have more than 64 KiB in flight.",),
    ),
    _k(
        "net.ipv4.tcp_timestamps",
        "enum",
        "none",
        "netns",
        "RFC 7323 timestamps, used for RTT measurement, PAWS and TIME_WAIT reuse.",
        default="1",
        choices=("0", "1", "2"),
        choice_meanings=("off", "on, with a random offset per peer", "on, without random offsets"),
        advice=(
            "Keep them on: tcp_tw_reuse, PAWS and accurate RTT estimates depend on them.",
            "Value 2 (Linux 4.10 and later) drops the random offset; it is rarely needed.",
        ),
    ),
    _k(
        "net.ipv4.tcp_sack",
        "bool",
        "none",
        "netns",
        "Selective acknowledgements (RFC 2018).",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=("Keep it on: without SACK, recovering from several losses in one window takes many round trips.",),
    ),
    _k(
        "net.ipv4.tcp_dsack",
        "bool",
        "none",
        "netns",
        "Duplicate SACK reports (RFC 2883), which let the sender spot needless retransmissions.",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
    ),
    _k(
        "net.ipv4.tcp_fack",
        "bool",
        "none",
        "netns",
        "Forward acknowledgement loss recovery (obsolete).",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        obsolete="4.15",
        obsolete_reason="FACK loss recovery was replaced by RACK in Linux 4.15; the kernel still accepts the key"
        " but ignores it",
        advice=("Delete it from old sysctl.conf files: writing it works but changes nothing on 4.15 and later.",),
    ),
    _k(
        "net.ipv4.tcp_fastopen",
        "int",
        "none",
        "netns",
        "TCP Fast Open (RFC 7413) as a bitmask: lets data travel in the SYN of repeat connections.",
        default="1",
        minimum=0,
        maximum=0x607,
        advice=(
            "Bits: 0x1 client, 0x2 server, 0x4 client without cookie, 0x200 server accepts data"
            " without cookie, 0x400 server on for every listener. 3 turns on client and server.",
            "Servers still set TCP_FASTOPEN on the listener unless 0x400 is"
            " set; clients must send with MSG_FASTOPEN or TCP_FASTOPEN_CONNECT.",
            "Some middleboxes drop SYNs that carry data; test the real path before relying on it.",
        ),
    ),
    _k(
        "net.ipv4.tcp_mtu_probing",
        "enum",
        "none",
        "netns",
        "Packetization-layer path MTU discovery (RFC 4821), which works without ICMP.",
        default="0",
        choices=("0", "1", "2"),
        choice_meanings=("off", "on once an ICMP black hole is detected", "always, starting from tcp_base_mss"),
        advice=(
            "1 is a safe improvement: connections stuck behind paths that"
            " drop ICMP 'fragmentation needed' recover on their own.",
            "Recommended on hosts that use jumbo frames.",
        ),
    ),
    _k(
        "net.ipv4.tcp_base_mss",
        "int",
        "bytes",
        "netns",
        "MSS that MTU probing starts from.",
        default="1024",
        minimum=48,
        maximum=65535,
        advice=("Only used with tcp_mtu_probing; 1024 suits almost every path.",),
    ),
    _k(
        "net.ipv4.tcp_slow_start_after_idle",
        "bool",
        "none",
        "netns",
        "Whether a connection idle for one retransmission timeout restarts from the initial congestion window.",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=(
            "Set 0 for long-lived connections that send in bursts (HTTP/2,"
            " RPC, database pools) so each burst need not ramp up again.",
            "1 is the cautious choice when idle connections may resume over a path whose capacity has changed.",
        ),
    ),
    _k(
        "net.ipv4.tcp_no_metrics_save",
        "bool",
        "none",
        "netns",
        "Whether TCP stops caching RTT and ssthresh from closed connections for the next one to the same host.",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=(
            "1 keeps one lossy transfer from slowing the next connection to that host; common on data transfer nodes.",
        ),
    ),
    _k(
        "net.ipv4.tcp_ecn",
        "enum",
        "none",
        "netns",
        "Explicit Congestion Notification: which variant is accepted from peers and which one is requested.",
        default="2",
        choices=("0", "1", "2", "3", "4", "5"),
        choice_meanings=(
            "off",
            "ECN for incoming and outgoing connections",
            "ECN only when an incoming connection asks for it",
            "Accurate ECN for incoming and outgoing connections",
            "Accurate ECN incoming, classic ECN outgoing",
            "Accurate ECN incoming, none outgoing",
        ),
        advice=(
            "2 is a safe default: it answers ECN requests but never asks.",
            "1 requests ECN on outgoing connections; worthwhile inside data centers whose switches mark packets.",
            "Values 3-5 (Accurate ECN) are refused (EINVAL) by current kernels up to 6.19, where the sysctl's"
            " maximum is 2; upstream enabled them for the release after 6.19.",
        ),
        value_history=(ValueHistory(3, 5, older_through="6.19", since=None, what="Accurate ECN"),),
    ),
    _k(
        "net.ipv4.tcp_ecn_fallback",
        "bool",
        "none",
        "netns",
        "Whether a connection drops back to non-ECN when ECN is seen to misbehave on the path.",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
    ),
    _k(
        "net.ipv4.tcp_low_latency",
        "bool",
        "none",
        "global",
        "Bypass of the TCP prequeue (obsolete).",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        obsolete="4.14",
        obsolete_reason="the prequeue it controlled was removed in Linux 4.14; the kernel still accepts the key"
        " but ignores it",
        advice=(
            "Host-wide: the file does not exist inside a child network namespace.",
            "Delete it from old sysctl.conf files: on 4.14 and later writing it changes nothing.",
        ),
    ),
    _k(
        "net.ipv4.tcp_autocorking",
        "bool",
        "none",
        "netns",
        "Whether small back-to-back writes are merged while earlier packets still wait in the qdisc or NIC.",
        default="1",
        choices=BOOL,
        choice_meanings=OFF_ON,
        advice=(
            "Keep it on for throughput and fewer packets; 0 can trim latency for"
            " request/response traffic made of small writes, at the cost of more packets.",
        ),
    ),
    _k(
        "net.ipv4.tcp_limit_output_bytes",
        "int",
        "bytes",
        "netns",
        "TCP Small Queues: bytes one socket may have waiting in the qdisc and the device.",
        default="4194304",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "4 MiB since Linux 6.16 (less on older kernels).",
            "Lower values cut bufferbloat and latency for competing"
            " flows; higher ones can help single very fast flows.",
        ),
    ),
    _k(
        "net.ipv4.tcp_min_snd_mss",
        "int",
        "bytes",
        "netns",
        "Smallest MSS a peer can impose; smaller advertised values are raised to it.",
        default="48",
        minimum=48,
        maximum=65535,
        advice=(
            "Added in Linux 5.2 and backported to stable kernels as part of the 2019 fix for CVE-2019-11479.",
            "Raising it (536, say) stops peers from forcing tiny segments, but breaks paths that truly need them.",
        ),
    ),
    _k(
        "net.ipv4.tcp_early_retrans",
        "enum",
        "none",
        "netns",
        "Tail loss probe, which turns many timeouts at the end of a burst into fast recovery.",
        default="3",
        choices=("0", "3", "4"),
        choice_meanings=("off", "on", "on (same as 3 on current kernels)"),
        advice=("Keep the default; it needs RACK loss detection (net.ipv4.tcp_recovery), which is always on.",),
    ),
    # ---- Local ports --------------------------------------------------------------------------------------------
    _k(
        "net.ipv4.ip_local_port_range",
        "pair",
        "port",
        "netns",
        "Ports the kernel picks from for outgoing connections and for bind() to port 0.",
        default="32768 60999",
        elements=("low", "high"),
        minimum=1,
        maximum=65535,
        advice=(
            "A wider range allows more simultaneous connections to the same destination address and port.",
            "The low end may not be below net.ipv4.ip_unprivileged_port_start (the kernel"
            " rejects it), and bounds of different parity suit the kernel's port search best.",
            "Ports of local services that fall inside the range belong in net.ipv4.ip_local_reserved_ports.",
        ),
    ),
    _k(
        "net.ipv4.ip_local_reserved_ports",
        "portlist",
        "port",
        "netns",
        "Ports that automatic port selection skips; explicit bind() to them still works.",
        default="",
        advice=(
            "Reserve the ports of local services inside ip_local_port_range"
            " so no outgoing connection takes them first.",
            "Writing replaces the whole list.",
        ),
    ),
    _k(
        "net.ipv4.ip_unprivileged_port_start",
        "int",
        "port",
        "netns",
        "First port that programs without CAP_NET_BIND_SERVICE may bind.",
        default="1024",
        minimum=0,
        maximum=65535,
        advice=(
            "Per network namespace; containers often set 0 so unprivileged servers can bind port 80.",
            "It may not exceed the low end of ip_local_port_range; the kernel refuses such a write.",
        ),
    ),
    # ---- TIME_WAIT reuse, SYN timing, timers -------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_tw_reuse_delay",
        "int",
        "milliseconds",
        "netns",
        "How long a socket must have been in TIME_WAIT before tcp_tw_reuse may give its port to a new connection.",
        default="1000",
        minimum=1,
        maximum=60000,
        added="6.14",
        advice=(
            "Only matters when net.ipv4.tcp_tw_reuse allows reuse (1, or 2 for loopback).",
            "Reuse is safe only once the peer's TCP timestamp clock has ticked (PAWS); 1000 ms suits peers"
            " whose clock ticks once a second. Go lower only if every peer ticks faster (Linux: 1 ms).",
            "Before 6.14 the delay is a fixed 1 s.",
        ),
    ),
    _k(
        "net.ipv4.tcp_syn_linear_timeouts",
        "int",
        "count",
        "netns",
        "SYN retransmissions sent 1 s apart (linear) before the usual doubling backoff starts.",
        default="4",
        minimum=0,
        maximum=127,
        added="6.5",
        advice=(
            "connect() still gives up when the doubling schedule of tcp_syn_retries would: 4 linear timeouts"
            " only send more SYNs in that time (and end on the next timer: about 131 s instead of 127 s for"
            " tcp_syn_retries = 6).",
            "0 restores the classic schedule (1, 2, 4, ... s).",
        ),
    ),
    _k(
        "net.ipv4.tcp_rto_min_us",
        "int",
        "microseconds",
        "netns",
        "Lower bound of the retransmission timeout, in microseconds.",
        default="200000",
        minimum=1,
        maximum=120000000,
        added="6.11",
        advice=(
            "200 ms by default (RFC 6298 asks for 1 s; Linux has used 200 ms for decades).",
            "Lower values (5-20 ms) shorten recovery from tail losses inside data centers with sub-millisecond"
            " RTTs; never lower it for traffic that crosses the Internet. A route's rto_min overrides it.",
        ),
    ),
    _k(
        "net.ipv4.tcp_rto_max_ms",
        "int",
        "milliseconds",
        "netns",
        "Upper bound of the retransmission timeout, in milliseconds.",
        default="120000",
        minimum=1000,
        maximum=120000,
        added="6.15",
        advice=(
            "120 s by default (TCP_RTO_MAX). Lower values make a stalled connection retry more often after"
            " long outages (mobile and satellite links), at the cost of more retransmissions.",
            "tcp_retries2 still decides when the connection is given up; the kernel computes that time from"
            " the default 120 s ceiling.",
        ),
    ),
    _k(
        "net.ipv4.tcp_shrink_window",
        "bool",
        "none",
        "netns",
        "Whether the advertised receive window may shrink to keep a socket within its memory limit.",
        default="0",
        choices=BOOL,
        choice_meanings=("never shrink the window", "shrink when needed to stay within sk_rcvbuf"),
        added="6.5",
        advice=(
            "RFC 7323 allows shrinking and RFC 1122 requires peers to cope; 1 enforces receive memory limits"
            " strictly, 0 (the default) keeps the long-standing Linux behaviour.",
            "Has an effect only with window scaling in use.",
        ),
    ),
    _k(
        "net.ipv4.tcp_pingpong_thresh",
        "int",
        "count",
        "netns",
        "Request/response exchanges after which a connection counts as interactive and delays its ACKs.",
        default="1",
        minimum=1,
        maximum=255,
        added="6.7",
        advice=(
            "With 1, one exchange is enough to start delaying ACKs to piggyback them on replies; raise it (3)"
            " if RPC-style traffic suffers from delayed ACKs.",
        ),
    ),
    # ---- Loss recovery, reordering, pacing ----------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_frto",
        "enum",
        "none",
        "netns",
        "F-RTO (RFC 5682): detects spurious retransmission timeouts and undoes their congestion response.",
        default="2",
        choices=("0", "1", "2"),
        choice_meanings=("off", "basic F-RTO", "SACK-enhanced F-RTO when the connection uses SACK"),
        advice=("Keep the default; it helps most on wireless paths whose delay spikes look like losses.",),
    ),
    _k(
        "net.ipv4.tcp_reordering",
        "int",
        "packets",
        "netns",
        "Initial reordering degree: how far out of order a packet may arrive before TCP assumes it was lost.",
        default="3",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "The kernel adapts it per connection; this is only the starting point. 3 matches RFC 5681's"
            " duplicate-ACK threshold.",
            "May not exceed net.ipv4.tcp_max_reordering (Linux 6.18 refuses such a write).",
        ),
    ),
    _k(
        "net.ipv4.tcp_max_reordering",
        "int",
        "packets",
        "netns",
        "Largest reordering degree a connection may adapt to.",
        default="300",
        minimum=1,
        maximum=INT_MAX,
        advice=("300 is conservative; raise it only for paths with heavy reordering (multipath, some bonding modes).",),
    ),
    _k(
        "net.ipv4.tcp_recovery",
        "int",
        "none",
        "netns",
        "Loss recovery features as a bitmask: 0x1 RACK loss detection, 0x2 static RACK reordering window,"
        " 0x4 no duplicate-ACK threshold fallback.",
        default="1",
        minimum=0,
        maximum=7,
        advice=("Keep 1: RACK (the default since 4.10) recovers faster than counting duplicate ACKs.",),
    ),
    _k(
        "net.ipv4.tcp_pacing_ss_ratio",
        "int",
        "percent",
        "netns",
        "Pacing rate in slow start, as a percentage of congestion window per RTT.",
        default="200",
        minimum=0,
        maximum=1000,
        advice=("Applies when pacing is in use (the fq qdisc, or BBR); 200 lets slow start double each RTT.",),
    ),
    _k(
        "net.ipv4.tcp_pacing_ca_ratio",
        "int",
        "percent",
        "netns",
        "Pacing rate in congestion avoidance, as a percentage of congestion window per RTT.",
        default="120",
        minimum=0,
        maximum=1000,
        advice=("Applies when pacing is in use (the fq qdisc, or BBR).",),
    ),
    _k(
        "net.ipv4.tcp_min_tso_segs",
        "int",
        "count",
        "netns",
        "Fewest segments a TSO frame carries, even at low pacing rates.",
        default="2",
        minimum=1,
        maximum=255,
        advice=("Larger values save CPU on fast flows but make slow, paced flows burstier.",),
    ),
    # ---- Fast Open and listener handling ------------------------------------------------------------------------
    _k(
        "net.ipv4.tcp_fastopen_blackhole_timeout_sec",
        "int",
        "seconds",
        "netns",
        "How long active TCP Fast Open stays off after a middlebox seems to drop SYNs with data (0: never off).",
        default="0",
        minimum=0,
        maximum=INT_MAX,
        advice=(
            "0 since Linux 5.14 (3600 before, when each detected black hole doubled the pause).",
            "Worth setting (e.g. 3600) on clients that use TFO across the Internet.",
        ),
    ),
    _k(
        "net.ipv4.tcp_migrate_req",
        "bool",
        "none",
        "netns",
        "Whether requests queued on a closing SO_REUSEPORT listener move to another listener of the group.",
        default="0",
        choices=BOOL,
        choice_meanings=OFF_ON,
        added="5.14",
        advice=(
            "Turn it on for servers that restart listeners (graceful reloads) so queued connections are not reset.",
        ),
    ),
    _k(
        "net.ipv4.tcp_child_ehash_entries",
        "int",
        "count",
        "netns",
        "Established-connection hash table size for network namespaces created from this one later (0: share).",
        default="0",
        minimum=0,
        maximum=16777216,
        added="6.1",
        advice=(
            "Affects only namespaces created after the write; 0 makes them share the host's table. The size is"
            " rounded up to a power of two; net.ipv4.tcp_ehash_entries shows a namespace's own (negative when"
            " shared).",
            "A private table keeps one container's connections from slowing lookups for all; each entry costs memory.",
        ),
    ),
    # ---- UDP ----------------------------------------------------------------------------------------------------
    _k(
        "net.ipv4.udp_wmem_min",
        "int",
        "bytes",
        "netns",
        "Send buffer each UDP socket keeps even while UDP as a whole is under memory pressure.",
        default="4096",
        minimum=1,
        maximum=INT_MAX,
    ),
    _k(
        "net.ipv4.udp_mem",
        "triple",
        "pages",
        "global",
        "Memory, in pages, for all UDP sockets together: no pressure below low, pressure above, hard cap at high.",
        elements=("low", "pressure", "high"),
        minimum=1,
        maximum=LONG_MAX,
        units_accepted=False,
        advice=(
            "Computed at boot from RAM, in pages (usually 4 KiB), not bytes.",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    # ---- Busy polling and packet processing ---------------------------------------------------------------------
    _k(
        "net.core.busy_poll",
        "int",
        "microseconds",
        "global",
        "How long poll() and select() busy-wait on device queues for new packets (0: off).",
        default="0",
        minimum=0,
        maximum=INT_MAX,
        advice=(
            "Trades CPU for latency: 50 us is a common start for latency-critical hosts; it needs a driver"
            " with busy-poll support (CONFIG_NET_RX_BUSY_POLL).",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.busy_read",
        "int",
        "microseconds",
        "global",
        "How long a blocking read busy-waits on the device queue for new packets (0: off; SO_BUSY_POLL overrides).",
        default="0",
        minimum=0,
        maximum=INT_MAX,
        advice=(
            "Trades CPU for latency, like busy_poll but for read() and recv().",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.netdev_budget",
        "int",
        "packets",
        "global",
        "Most packets one softirq run processes across all devices before yielding.",
        default="300",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "Raise it (600) when the third column of /proc/net/softnet_stat (time_squeeze) keeps growing.",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    _k(
        "net.core.netdev_budget_usecs",
        "int",
        "microseconds",
        "global",
        "Most time one softirq run spends processing packets before yielding.",
        minimum=1,
        maximum=INT_MAX,
        advice=(
            "The default is two timer ticks (2000000 / CONFIG_HZ: 8000 us at HZ=250), so it depends on the build.",
            "Raise it together with netdev_budget when time_squeeze grows.",
            "Host-wide: the file does not exist inside a child network namespace.",
        ),
    ),
    # ---- Connection tracking (NAT boxes, stateful firewalls) ----------------------------------------------------
    _k(
        "net.netfilter.nf_conntrack_max",
        "int",
        "count",
        "global",
        "Most connections the connection tracker holds; new ones are dropped when the table is full.",
        minimum=1,
        maximum=INT_MAX,
        module="nf_conntrack",
        advice=(
            'Full tables log "nf_conntrack: table full, dropping packet"; compare with'
            " net.netfilter.nf_conntrack_count.",
            "Sized from memory when nf_conntrack loads. Host-wide: read-only inside a child network namespace.",
            "Exists only while nf_conntrack is loaded (a firewall or NAT rule that tracks connections loads it).",
        ),
    ),
    _k(
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        "int",
        "seconds",
        "netns",
        "How long the connection tracker keeps an entry for a TCP connection in TIME_WAIT.",
        default="120",
        minimum=1,
        maximum=2147483,
        module="nf_conntrack",
        advice=(
            "Entries in TIME_WAIT still count against net.netfilter.nf_conntrack_max; on busy NAT boxes a"
            " shorter value frees table space sooner. The endpoints' own TIME_WAIT is a fixed 60 s.",
            "Exists only while nf_conntrack is loaded.",
        ),
    ),
    _k(
        "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
        "int",
        "seconds",
        "netns",
        "How long the connection tracker keeps an entry after the first FIN, waiting for the other side's.",
        default="120",
        minimum=1,
        maximum=2147483,
        module="nf_conntrack",
        advice=("Exists only while nf_conntrack is loaded.",),
    ),
    _k(
        "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        "int",
        "seconds",
        "netns",
        "How long the connection tracker keeps an entry in CLOSE_WAIT (one side closed, the other still open).",
        default="60",
        minimum=1,
        maximum=2147483,
        module="nf_conntrack",
        advice=(
            "An entry is dropped when this runs out even if the application still holds its half open; later"
            " packets of that connection are then tracked (and translated) as a new one, if at all.",
            "Exists only while nf_conntrack is loaded.",
        ),
    ),
    # ---- File descriptors ---------------------------------------------------------------------------------------
    _k(
        "fs.file-max",
        "int",
        "count",
        "global",
        "System-wide limit on open file handles, sockets included.",
        minimum=1,
        maximum=LONG_MAX,
        advice=(
            "Set at boot to about one handle per 10 KiB of memory (at least 8192), which is usually plenty.",
            "Programs run into per-process limits first (RLIMIT_NOFILE, systemd LimitNOFILE=), which fs.nr_open caps.",
            "Host-wide: containers cannot change it.",
        ),
    ),
    _k(
        "fs.nr_open",
        "int",
        "count",
        "global",
        "Highest value a process's open-file limit (RLIMIT_NOFILE) may be raised to.",
        default="1048576",
        minimum=64,
        maximum=2147483584,
        advice=(
            "Raise it before setting LimitNOFILE= or ulimit -n above 1048576, or setrlimit() fails.",
            "The kernel accepts 64 to 2147483584 on 64-bit builds.",
        ),
    ),
)


_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
_BY_SHORT: dict[str, list[Key]] = {}
for _key in KEYS:
    _BY_SHORT.setdefault(_key.short_name, []).append(_key)


def get(name: str) -> Key | None:
    """The entry for a full dotted name (or a slash path, as sysctl accepts), if tcptune knows it."""
    return _BY_NAME.get(name.replace("/", "."))


def canonical_name(name: str) -> str | None:
    """Full dotted name for a full name, a slash path or a bare name unique in the catalog; None if unknown."""
    dotted = name.replace("/", ".")
    if dotted in _BY_NAME:
        return dotted
    matches = _BY_SHORT.get(dotted, [])
    if len(matches) == 1:
        return matches[0].name
    return None


def ambiguous(name: str) -> list[str]:
    """Full names a bare name could mean, when it is not unique."""
    matches = _BY_SHORT.get(name, [])
    return [k.name for k in matches] if len(matches) > 1 else []


def suggest(name: str, limit: int = 3) -> list[str]:
    """Known names close to an unknown one, for "did you mean"."""
    import difflib  # only on the error path

    full = difflib.get_close_matches(name, list(_BY_NAME), n=limit, cutoff=0.75)
    if full:  # only those about as close as the best: a one-letter typo should not drag in unrelated keys
        best = difflib.SequenceMatcher(None, name, full[0]).ratio()
        return [m for m in full if difflib.SequenceMatcher(None, name, m).ratio() >= best - 0.05]
    short = difflib.get_close_matches(name.rsplit(".", 1)[-1], list(_BY_SHORT), n=limit, cutoff=0.7)
    return [k.name for s in short for k in _BY_SHORT[s]][:limit]


def all_keys() -> tuple[Key, ...]:
    return KEYS


# ---- What the kernel's own write path accepts (Linux 6.18) ----------------------------------------------------------
# The ranges above are policy (what a profile may ask for). These are the kernel's facts: which proc handler parses a
# write to the key and the bounds that handler enforces, taken from net/ipv4/sysctl_net_ipv4.c,
# net/core/sysctl_net_core.c and kernel/sysctl.c. Boot prediction uses them to know which writes the kernel refuses;
# the per-namespace ones are checked against the real kernel by tests/integration/test_boot_appliers_differential.py.

KernelHandler = Literal[
    "int", "jiffies", "uint", "u8", "ulong", "port_range", "port_start", "capped", "devinet", "congestion"
]


class KernelWrite(Record):
    """How a write to one key is parsed and checked by the kernel.

    ``int`` is proc_dointvec(_minmax): ``arity`` elements written one by one, so a bad element leaves the earlier
    ones written; ``jiffies`` is an int in seconds that must fit INT_MAX / HZ; ``uint``/``u8`` refuse a sign;
    ``port_range``/``port_start`` are ip_local_port_range and ip_unprivileged_port_start, checked against each
    other; ``capped`` is an int whose maximum is another key's current value (``peer``); ``devinet`` is a
    per-interface IPv4 setting (a write to ``default`` is copied to interfaces never written); ``congestion``
    takes only names this kernel (or namespace) allows.
    """

    handler: KernelHandler
    arity: int = 1
    low: int | None = None
    """The handler's minimum (extra1); None: the type's own range."""
    high: int | None = None
    peer: str | None = None
    """The key (dotted) whose current value the check reads: the other half of the port checks, the cap."""
    since: str | None = None
    """Kernel version from which this rule is known to hold, where older kernels checked less (or differently)."""


_U8 = KernelWrite("u8")
_INT = KernelWrite("int")

KERNEL_WRITES: dict[str, KernelWrite] = {
    "net.ipv4.tcp_fin_timeout": KernelWrite("jiffies"),
    "net.ipv4.tcp_tw_reuse": KernelWrite("u8", low=0, high=2),
    "net.ipv4.tcp_max_tw_buckets": _INT,
    "net.ipv4.tcp_max_orphans": _INT,
    "net.ipv4.tcp_orphan_retries": _U8,
    "net.ipv4.tcp_rfc1337": _U8,
    "net.ipv4.tcp_rmem": KernelWrite("int", arity=3, low=1),
    "net.ipv4.tcp_wmem": KernelWrite("int", arity=3, low=1),
    "net.ipv4.tcp_mem": KernelWrite("ulong", arity=3),
    # SOCK_MIN_RCVBUF / SOCK_MIN_SNDBUF on 64-bit builds (2048 + aligned sizeof(struct sk_buff), twice for send)
    "net.core.rmem_max": KernelWrite("int", low=2304),
    "net.core.rmem_default": KernelWrite("int", low=2304),
    "net.core.wmem_max": KernelWrite("int", low=4608),
    "net.core.wmem_default": KernelWrite("int", low=4608),
    "net.core.optmem_max": KernelWrite("int", low=0),
    "net.ipv4.tcp_moderate_rcvbuf": _U8,
    "net.ipv4.tcp_adv_win_scale": KernelWrite("int", low=-31, high=31),
    "net.ipv4.tcp_notsent_lowat": KernelWrite("uint"),
    "net.ipv4.udp_rmem_min": KernelWrite("int", low=1),
    "net.core.somaxconn": KernelWrite("int", low=0),
    "net.ipv4.tcp_max_syn_backlog": _INT,
    "net.ipv4.tcp_syncookies": _U8,
    "net.ipv4.tcp_abort_on_overflow": _U8,
    "net.ipv4.tcp_synack_retries": _U8,
    "net.ipv4.tcp_syn_retries": KernelWrite("u8", low=1, high=127),
    "net.ipv4.tcp_retries1": KernelWrite("u8", high=255),
    "net.ipv4.tcp_retries2": _U8,
    "net.ipv4.tcp_keepalive_time": KernelWrite("jiffies"),
    "net.ipv4.tcp_keepalive_intvl": KernelWrite("jiffies"),
    "net.ipv4.tcp_keepalive_probes": _U8,
    "net.ipv4.tcp_congestion_control": KernelWrite("congestion"),
    "net.ipv4.tcp_window_scaling": _U8,
    "net.ipv4.tcp_timestamps": _U8,
    "net.ipv4.tcp_sack": _U8,
    "net.ipv4.tcp_dsack": _U8,
    "net.ipv4.tcp_fack": _U8,
    "net.ipv4.tcp_fastopen": _INT,
    "net.ipv4.tcp_mtu_probing": _U8,
    "net.ipv4.tcp_base_mss": _INT,
    "net.ipv4.tcp_slow_start_after_idle": _U8,
    "net.ipv4.tcp_no_metrics_save": _U8,
    "net.ipv4.tcp_ecn": KernelWrite("u8", low=0, high=2),
    "net.ipv4.tcp_ecn_fallback": KernelWrite("u8", low=0, high=1),
    "net.ipv4.tcp_low_latency": _INT,
    "net.ipv4.tcp_autocorking": KernelWrite("u8", low=0, high=1),
    "net.ipv4.tcp_limit_output_bytes": _INT,
    "net.ipv4.tcp_min_snd_mss": KernelWrite("int", low=48, high=65535),
    "net.ipv4.tcp_early_retrans": KernelWrite("u8", low=0, high=4),
    "net.ipv4.ip_local_port_range": KernelWrite(
        "port_range", arity=2, low=1, high=65535, peer="net.ipv4.ip_unprivileged_port_start"
    ),
    "net.ipv4.ip_unprivileged_port_start": KernelWrite(
        "port_start", low=0, high=65535, peer="net.ipv4.ip_local_port_range"
    ),
    # Added with issue 10; bounds as Linux 6.18 enforces them (written in a fresh namespace, see
    # tests/integration/test_catalog_kernel.py).
    "net.ipv4.tcp_tw_reuse_delay": KernelWrite("uint", low=1, high=60000),
    "net.ipv4.tcp_syn_linear_timeouts": KernelWrite("u8", low=0, high=127),
    "net.ipv4.tcp_rto_min_us": KernelWrite("int", low=1),
    "net.ipv4.tcp_rto_max_ms": KernelWrite("int", low=1000, high=120000),
    "net.ipv4.tcp_shrink_window": KernelWrite("u8", low=0, high=1),
    "net.ipv4.tcp_pingpong_thresh": KernelWrite("u8", low=1),
    "net.ipv4.tcp_frto": _U8,
    "net.ipv4.tcp_reordering": KernelWrite("capped", low=1, peer="net.ipv4.tcp_max_reordering", since="6.18"),
    "net.ipv4.tcp_max_reordering": KernelWrite("int", low=1, since="6.18"),
    "net.ipv4.tcp_recovery": _U8,
    "net.ipv4.tcp_pacing_ss_ratio": KernelWrite("int", low=0, high=1000),
    "net.ipv4.tcp_pacing_ca_ratio": KernelWrite("int", low=0, high=1000),
    "net.ipv4.tcp_min_tso_segs": KernelWrite("u8", low=1),
    "net.ipv4.tcp_fastopen_blackhole_timeout_sec": KernelWrite("int", low=0),
    "net.ipv4.tcp_migrate_req": KernelWrite("u8", low=0, high=1),
    "net.ipv4.tcp_child_ehash_entries": KernelWrite("uint", low=0, high=16777216),
    "net.ipv4.udp_wmem_min": KernelWrite("int", low=1),
    "net.ipv4.udp_mem": KernelWrite("ulong", arity=3),
    "net.core.busy_poll": KernelWrite("int", low=0),
    "net.core.busy_read": KernelWrite("int", low=0),
    "net.core.netdev_budget": _INT,
    "net.core.netdev_budget_usecs": KernelWrite("int", low=0),
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": KernelWrite("jiffies"),
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": KernelWrite("jiffies"),
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": KernelWrite("jiffies"),
}
"""Per key, by full dotted name. Keys missing here (tcp_tw_recycle, ip_local_reserved_ports, default_qdisc, fs.*,
net.core.netdev_max_backlog, tcp_allowed_congestion_control, nf_conntrack_max) have a write path tcptune does not
model; what a write does to them is unknown."""

DEVINET_WRITES: dict[str, KernelWrite] = {"rp_filter": KernelWrite("devinet")}
"""net.ipv4.conf.<interface|all|default>.<name>: devinet_conf_proc (proc_dointvec, then the default->interface copy)."""


def kernel_write(path: str) -> KernelWrite | None:
    """The write rule for a key given as a /proc/sys-relative slash path (``net/ipv4/tcp_rmem``); None if unmodelled."""
    parts = path.split("/")
    if len(parts) == 5 and parts[:3] == ["net", "ipv4", "conf"]:
        return DEVINET_WRITES.get(parts[4])
    return KERNEL_WRITES.get(".".join(parts))
