"""Seeded generator of sysctl.d trees that exercise every behaviour the boot appliers and the kernel disagree on.

A tree is a directory laid out like a root file system: etc/sysctl.d, run/sysctl.d, usr/local/lib/sysctl.d,
usr/lib/sysctl.d (lib -> usr/lib, as on Debian) and etc/sysctl.conf. Symlinks only point inside those places (or to
/dev/null, or to a path that exists nowhere), so they resolve the same inside the tree and inside the namespace
the real appliers run in. ``.sysctl.conf.bind`` records, for the harness, what /etc/sysctl.conf resolves to.

Every tree records the classes it covers, so the test can count unknown predictions per class.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")

CLASSES = (
    "glob",
    "glob-exclusion",
    "explicit-beats-glob",
    "sysctl.conf",
    "99-sysctl.conf-link",
    "base0-number",
    "plus-sign",
    "trailing-text",
    "inline-comment",
    "empty-value",
    "nbsp",
    "latin1-nbsp",
    "form-feed",
    "vertical-tab",
    "lone-cr",
    "crlf",
    "nul-byte",
    "hidden-file",
    "dash-space",
    "double-dash",
    "ignore-errors",
    "leading-slash",
    "trailing-separator",
    "double-separator",
    "slash-form",
    "absolute-symlink",
    "relative-symlink",
    "dangling-symlink",
    "symlink-loop",
    "dev-null-mask",
    "same-name-shadow",
    "directory-named-conf",
    "duplicate-key",
    "refused-value",
    "vector",
    "port-range",
    "interface-default-copy",
    "global-read-only",
    "missing-key",
    "no-final-newline",
    "not-an-assignment",
    "procps-glob-file-name",
)

GLOBS = (
    "net.ipv4.tcp_keepalive_*",
    "net.ipv4.conf.*.rp_filter",
    "net/ipv4/conf/*/rp_filter",
    "net.ipv4.conf.[ad]*.rp_filter",
    "net.ipv4.conf.[!l]*.rp_filter",
    "net.ipv4.tcp_[rw]mem",
    "net.ipv4.tcp_?mem",
    "net.ipv4.tcp_syn*_retries",
    "net.ipv4.tcp_fin_timeou?",
    "net.ipv4.tcp_retries[12]",
    "net.core.somax*",
    "net.ipv4.tcp_keepalive_{time,in*}",
)

GLOBAL_KEYS = (
    "kernel/pid_max",
    "vm/swappiness",
    "fs/file-max",
    "net/core/rmem_max",
    "net/core/netdev_max_backlog",
    "net/ipv4/tcp_mem",
    "kernel/tcptune_no_such_key",
    "net/ipv4/tcp_tw_recycle",
)

READ_ONLY_IN_NETNS = ("kernel/pid_max", "vm/swappiness", "fs/file-max", "net/core/rmem_max")

INTERFACE_KEYS = ("net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter", "net/ipv4/conf/lo/rp_filter")

NBSP = "\u00a0".encode()
WORDS = ("net", "tune", "local", "vendor", "base", "zz", "admin", "space name", "x")


@dataclass
class Rule:
    """Just enough about a key to make interesting values (taken from the catalog by the test)."""

    handler: str
    arity: int = 1
    low: int | None = None
    high: int | None = None


@dataclass
class Tree:
    root: Path
    classes: set[str] = field(default_factory=set)


class Generator:
    def __init__(self, rng: random.Random, keys: dict[str, Rule]) -> None:
        self.rng = rng
        self.keys = keys  # slash path -> rule, every key a line may name
        self.explicit: set[str] = set()
        self.globbed: set[str] = set()

    # ---- values -------------------------------------------------------------------------------------------------

    def number(self, rule: Rule) -> int:
        low = rule.low if rule.low is not None else (0 if rule.handler in ("u8", "uint", "ulong") else -(2**31))
        high = rule.high
        if high is None:
            high = {"u8": 255, "uint": 2**32 - 1, "ulong": 2**63}.get(rule.handler, 2**31 - 1)
        menu = [low, low - 1, high, high + 1, 0, 1, -1, self.rng.randint(low, min(high, low + 300))]
        menu += [self.rng.randint(low, high), 2**31 - 1, 2**31, 2**32, 2**64]
        if rule.handler == "jiffies":
            menu += [2147483, 2147484, 8589934, 8589935, 21474836, 21474837, 3000000]
        return self.rng.choice(menu)

    def spell(self, n: int, classes: set[str]) -> bytes:
        r = self.rng.random()
        if r < 0.62 or n < 0:
            text = str(n)
        elif r < 0.70:
            classes.add("base0-number")
            text = "0" + format(n, "o")
        elif r < 0.78:
            classes.add("base0-number")
            text = self.rng.choice(["0x", "0X"]) + format(n, self.rng.choice(["x", "X"]))
        elif r < 0.83:
            classes.add("plus-sign")
            text = "+" + str(n)
        elif r < 0.88:
            classes.add("base0-number")
            text = "0" * self.rng.randint(1, 20) + str(n)
        elif r < 0.92:
            classes.add("base0-number")
            text = self.rng.choice(["09", "08", "0x", "0xg", "-0", "00", "0b1"])
        else:
            text = str(n) + self.rng.choice(["", "0", "00"])
        return text.encode()

    def decorate(self, value: bytes, classes: set[str]) -> bytes:
        r = self.rng.random()
        if r < 0.55:
            return value
        choices: list[tuple[str, bytes, bytes]] = [
            ("inline-comment", b"", b" # was " + value),
            ("inline-comment", b"", b"#note"),
            ("inline-comment", b"", b" ; old"),
            ("inline-comment", b"", b";x"),
            ("trailing-text", b"", b"abc"),
            ("trailing-text", b"", b" abc"),
            ("trailing-text", b"", b"\tmore"),
            ("nbsp", NBSP, b""),
            ("nbsp", b"", NBSP),
            ("latin1-nbsp", b"\xa0", b""),
            ("latin1-nbsp", b"", b"\xa0"),
            ("form-feed", b"\f", b""),
            ("form-feed", b"", b"\f"),
            ("vertical-tab", b"\v", b""),
            ("vertical-tab", b"", b"\v"),
            ("trailing-text", b"", b"  "),
            ("trailing-text", b"", b" = 5"),
        ]
        name, before, after = self.rng.choice(choices)
        classes.add(name)
        return before + value + after

    def value(self, path: str, classes: set[str]) -> bytes:
        rule = self.keys[path]
        if self.rng.random() < 0.05:
            classes.add("empty-value")
            return self.rng.choice([b"", b" ", b"\t"])
        if self.rng.random() < 0.04:
            classes.add("refused-value")
            return self.rng.choice([b"abc", b"-", b"yes", b"1.5", b"1e3"])
        if rule.handler == "port_range":
            classes.add("port-range")
            low = self.rng.choice([1, 1023, 1024, 2000, 32768, 40000, 60999, 65535, 0, 65536])
            high = self.rng.choice([1024, 32768, 40001, 60999, 65535, 65536, low, low + 1])
            parts = [low, high][: self.rng.choice([1, 2, 2, 2, 2])]
            sep = self.rng.choice([b" ", b"\t", b"  "])
            return self.decorate(sep.join(self.spell(p, classes) for p in parts), classes)
        if rule.handler == "port_start":
            classes.add("port-range")
            start = self.rng.choice([0, 1024, 2000, 32768, 40000, 65535, 70000])
            return self.decorate(self.spell(start, classes), classes)
        if rule.arity > 1:
            classes.add("vector")
            n = self.rng.choice([rule.arity, rule.arity, rule.arity, 1, rule.arity - 1, rule.arity + 1])
            elements = [self.rng.choice([4096, 8192, 87380, 131072, 6291456, 16777216, 1, 0]) for _ in range(n)]
            if self.rng.random() < 0.2:
                elements[self.rng.randrange(n)] = self.number(rule)
            sep = self.rng.choice([b" ", b"\t", b"  ", b" \t", b","])
            return self.decorate(sep.join(self.spell(e, classes) for e in elements), classes)
        if rule.handler == "devinet":
            classes.add("interface-default-copy")
            return self.decorate(self.spell(self.rng.choice([0, 1, 2, 5, -1, 2**31]), classes), classes)
        return self.decorate(self.spell(self.number(rule), classes), classes)

    # ---- keys and lines -----------------------------------------------------------------------------------------

    def key(self, path: str, classes: set[str]) -> bytes:
        dotted = path.replace(".", "\0").replace("/", ".").replace("\0", "/")
        r = self.rng.random()
        if r < 0.72:
            return dotted.encode()
        if r < 0.80:
            classes.add("slash-form")
            return path.encode()
        if r < 0.85:
            classes.add("leading-slash")
            return ("/" + self.rng.choice([dotted, path])).encode()
        if r < 0.90:
            classes.add("trailing-separator")
            return (dotted + ".").encode() if self.rng.random() < 0.5 else (path + "/").encode()
        if r < 0.95:
            classes.add("double-separator")
            doubled = dotted.replace(".", "..", 1) if self.rng.random() < 0.5 else path.replace("/", "//")
            return doubled.encode()
        return dotted.upper().encode() if self.rng.random() < 0.3 else (dotted + " x").encode()

    def line(self, classes: set[str], paths: list[str]) -> bytes:
        r = self.rng.random()
        if r < 0.05:
            return self.rng.choice([b"# net.ipv4.tcp_fin_timeout = 5", b"; comment", b"   # indented", b"", b"   "])
        if r < 0.08:
            classes.add("not-an-assignment")
            return self.rng.choice([b"net.ipv4.tcp_fin_timeout 30", b"garbage", b"x", b"=", b"= 5"])
        if r < 0.12:
            classes.add("glob-exclusion")
            return b"-" + self.key(self.rng.choice(paths), classes)
        if r < 0.25:
            classes.add("glob")
            pattern = self.rng.choice(GLOBS)
            matched = [p for p in self.keys if _matches(pattern, p)]
            if not matched:
                return pattern.encode() + b" = 1"
            self.globbed.update(matched)
            value = self.value(self.rng.choice(matched), classes)
            return self.prefix(classes) + pattern.encode() + self.separator() + value
        path = self.rng.choice(paths)
        if path in GLOBAL_KEYS:
            classes.add("global-read-only" if path in READ_ONLY_IN_NETNS else "missing-key")
        self.explicit.add(path)
        return self.prefix(classes) + self.key(path, classes) + self.separator() + self.value(path, classes)

    def prefix(self, classes: set[str]) -> bytes:
        r = self.rng.random()
        if r < 0.80:
            return b""
        choices = [
            ("ignore-errors", b"-"),
            ("dash-space", b"- "),
            ("double-dash", b"--"),
            ("vertical-tab", b"\v"),
            ("form-feed", b"\f"),
            ("trailing-text", b"  \t"),
        ]
        name, text = self.rng.choice(choices)
        classes.add(name)
        return text

    def separator(self) -> bytes:
        return self.rng.choice([b" = ", b"=", b" =", b"= ", b"\t=\t", b" = "])

    def file_text(self, classes: set[str], paths: list[str]) -> bytes:
        lines = [self.line(classes, paths) for _ in range(self.rng.randint(0, 9))]
        if self.rng.random() < 0.15 and lines:
            classes.add("duplicate-key")
            lines.append(lines[self.rng.randrange(len(lines))])
        out = b""
        for i, text in enumerate(lines):
            end = b"\n"
            r = self.rng.random()
            if r < 0.06:
                classes.add("lone-cr")
                end = b"\r"
            elif r < 0.12:
                classes.add("crlf")
                end = b"\r\n"
            elif r < 0.14:
                classes.add("nul-byte")
                end = b"\0" + self.line(classes, paths) + b"\n"
            if i == len(lines) - 1 and self.rng.random() < 0.2:
                classes.add("no-final-newline")
                end = b""
            out += text + end
        return out

    # ---- trees --------------------------------------------------------------------------------------------------

    def tree(self, root: Path) -> Tree:
        tree = Tree(root)
        rng = self.rng
        classes = tree.classes
        for directory in DIRS:
            if directory in ("/etc/sysctl.d", "/usr/lib/sysctl.d") or rng.random() < 0.7:
                (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (root / "lib").symlink_to("usr/lib")
        paths = self.focus()
        self.explicit, self.globbed = set(), set()
        names = [f"{rng.randint(0, 99):02d}-{rng.choice(WORDS)}.conf" for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.3:
            names.append(names[0])  # the same name in another directory: the earlier directory wins
        written: list[str] = []
        for name in names:
            directory = rng.choice([d for d in DIRS if (root / d.lstrip("/")).is_dir()])
            if rng.random() < 0.08:
                classes.add("hidden-file")
                name = "." + name if rng.random() < 0.8 else ".conf"
            if rng.random() < 0.01:
                classes.add("procps-glob-file-name")
                name = "[ab]" + name
            target = root / directory.lstrip("/") / name
            if target.exists():
                continue
            if any(f.endswith("/" + name) for f in written):
                classes.add("same-name-shadow")
            target.write_bytes(self.file_text(classes, paths))
            written.append(f"{directory}/{name}")
        self.links(root, written, classes)
        self.sysctl_conf(root, written, classes, paths)
        if self.explicit & self.globbed:
            classes.add("explicit-beats-glob")
        return tree

    def focus(self) -> list[str]:
        """A handful of keys per tree, so that files collide on the same keys often."""
        keys = sorted(self.keys)
        chosen = self.rng.sample(keys, k=min(len(keys), self.rng.randint(2, 7)))
        return chosen

    def links(self, root: Path, written: list[str], classes: set[str]) -> None:
        rng = self.rng
        for _ in range(rng.randint(0, 3)):
            directory = rng.choice([d for d in DIRS if (root / d.lstrip("/")).is_dir()])
            name = f"{rng.randint(0, 99):02d}-{rng.choice(WORDS)}.conf"
            link = root / directory.lstrip("/") / name
            if os.path.lexists(link):
                continue
            kind = rng.choice(["devnull", "absolute", "relative", "dangling", "loop", "directory", "dir-named"])
            if kind == "devnull":
                classes.add("dev-null-mask")
                shadowed = [f for f in written if f.rsplit("/", 1)[1] != name]
                if shadowed and rng.random() < 0.7:
                    victim = rng.choice(shadowed).rsplit("/", 1)
                    link = root / rng.choice([d for d in DIRS if (root / d.lstrip("/")).is_dir()]).lstrip("/")
                    link = link / victim[1]
                    if os.path.lexists(link):
                        continue
                link.symlink_to("/dev/null")
            elif kind == "absolute" and written:
                classes.add("absolute-symlink")
                link.symlink_to(rng.choice(written))
            elif kind == "relative" and written:
                classes.add("relative-symlink")
                target = rng.choice(written)
                link.symlink_to(os.path.relpath(target, directory))
            elif kind == "dangling":
                classes.add("dangling-symlink")
                link.symlink_to("/nonexistent-tt4/" + name)
            elif kind == "loop":
                classes.add("symlink-loop")
                other = link.with_name("loop-" + name)
                if os.path.lexists(other):
                    continue
                link.symlink_to(other.name)
                other.symlink_to(link.name)
            elif kind == "directory":
                classes.add("directory-named-conf")
                link.symlink_to("/usr/lib/sysctl.d")
            elif kind == "dir-named":
                classes.add("directory-named-conf")
                link.mkdir()

    def sysctl_conf(self, root: Path, written: list[str], classes: set[str], paths: list[str]) -> None:
        rng = self.rng
        conf = root / "etc/sysctl.conf"
        bind = root / ".sysctl.conf.bind"
        r = rng.random()
        regular = [f for f in written if f.startswith("/usr/lib/sysctl.d/") and (root / f.lstrip("/")).is_file()]
        if r < 0.55:
            classes.add("sysctl.conf")
            conf.write_bytes(self.file_text(classes, paths))
            bind.symlink_to(conf)
        elif r < 0.65:
            classes.add("sysctl.conf")
            classes.add("dev-null-mask")
            conf.symlink_to("/dev/null")
            bind.symlink_to("/dev/null")
        elif r < 0.75 and regular:
            classes.add("sysctl.conf")
            classes.add("absolute-symlink")
            target = rng.choice(regular)
            conf.symlink_to(target)
            bind.symlink_to(root / target.lstrip("/"))
        if rng.random() < 0.5:
            link = root / "etc/sysctl.d/99-sysctl.conf"
            if not os.path.lexists(link):
                classes.add("99-sysctl.conf-link")
                link.symlink_to("../sysctl.conf")


def _matches(pattern: str, path: str) -> bool:
    """Whether a generated glob names this key (dotted patterns swap to slashes; braces are taken literally)."""
    import fnmatch

    slash = pattern if "/" in pattern else pattern.replace(".", "/")
    parts, pieces = path.split("/"), slash.split("/")
    return len(parts) == len(pieces) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pieces))
