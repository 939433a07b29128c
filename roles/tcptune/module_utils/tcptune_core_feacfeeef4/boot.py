"""What the next boot will set: sysctl.d trees read the way each boot applier reads them, and what the kernel keeps.

Two appliers are modelled from their source, byte for byte:

* **systemd-sysctl 252** (``src/sysctl/sysctl.c``, ``src/basic/conf-files.c``, ``read_line_full``): ``*.conf``
  from /etc, /run, /usr/local/lib, /usr/lib ``sysctl.d`` (hidden files skipped; for equal names the earlier
  directory wins; applied in file-name order). It never reads /etc/sysctl.conf itself, only through a link such as
  Debian's ``99-sysctl.conf -> ../sysctl.conf``. Lines end at LF, CR or NUL; only space, tab, CR and LF are
  stripped. Keys are normalised (dots and slashes swap if a dot comes first, ``//`` and ``.`` components collapse,
  one leading ``/`` is dropped); a later assignment replaces an earlier one, so each key is written **once**, with
  its last value; an explicit key is never written by a glob, whatever the order; a value equal to the current one
  is not written at all.
* **procps-ng 4.0.2** ``sysctl --system`` (``src/sysctl.c``): the same directories plus /lib/sysctl.d, hidden
  files included, then /etc/sysctl.conf last when it is a regular file. Lines end at LF only; C ``isspace`` is
  stripped (so also form feed and vertical tab); the key is used as written (``- key`` keeps its space and so names
  no key). **Every** assignment is written in reading order, so a refused value leaves the previous one in place.

Each write then goes through the kernel model (``kernel_write``), which knows how the kernel parses a value and
which values it refuses. Whatever cannot be told exactly comes out as ``unknown`` with its reason.

Assumptions, true at boot and in a fresh network namespace: nothing has written a per-interface IPv4 setting
(``net.ipv4.conf.<if>.*``) before the applier runs, and the applier runs in the C or a UTF-8 locale. Keys of real
interfaces other than ``lo`` are unknown: the interface may appear after the applier ran (udev then re-runs
systemd-sysctl for it). systemd-sysctl.service also reads the ``sysctl.extra`` credential when the boot passes one
(kernel command line, SMBIOS): that cannot be seen from the file system.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from typing import Literal

from . import catalog, kernel_write
from .catalog import kernel_write as kernel_write_rule
from .kernel_write import KernelFacts, State, Unknown
from .kernelfacts import HOST_ONLY_PROBE
from .persist import UnsafeFile, read_bounded
from .records import Record

ApplierName = Literal["systemd", "procps", "busybox", "none", "unknown"]
"""``none``: nothing applies sysctl.d at boot (decided: a masked unit, an init without one); ``unknown``: which
program would cannot be told (an image without /sbin/init)."""
Status = Literal["ok", "partial", "rejected", "not-set", "unknown"]

SYSTEMD_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")
"""CONF_PATHS("sysctl.d") as Debian 12 builds systemd 252 (split-usr off: no /lib/sysctl.d)."""
PROCPS_DIRS = (*SYSTEMD_DIRS, "/lib/sysctl.d")
PROCPS_CONF = "/etc/sysctl.conf"

_SYSTEMD_LONG_LINE_MAX = 1024 * 1024
_MAX_FILE_BYTES = 16 * 1024 * 1024
_MAX_SYMLINKS = 40
_SD_WHITESPACE = b" \t\n\r"
_C_SPACE = b" \t\n\v\f\r"
_GLOB_CHARS = re.compile(rb"[*?\[]")
_PROCPS_FILE_GLOB = re.compile(rb"[*?\[{\\]")


# ---- public values ---------------------------------------------------------------------------------------------------


class Applier(Record):
    """The program that applies sysctl.d at boot, its version where it could be read, and how that was decided."""

    name: ApplierName
    version: str | None = None
    how: str = ""

    def describe(self) -> str:
        label = {"systemd": "systemd-sysctl", "procps": "procps sysctl --system"}.get(self.name, self.name)
        return f"{label} {self.version}" if self.version else label


class KernelView(Record):
    """What the model needs to know about the kernel the files will meet.

    ``names``: every sysctl file, as a /proc/sys-relative slash path (``net/ipv4/tcp_rmem``), so globs can be
    expanded and missing keys recognised; None means "not known": keys tcptune has a write rule for are assumed to
    exist and globs cannot be expanded. ``read_only``: files that exist but refuse writes (mode 0444, a read-only
    mount). ``initial``: values before the applier runs, as /proc/sys shows them (slash path -> text); for a boot
    these are the kernel's defaults, not today's live values (which already carry the last boot's settings).
    """

    names: frozenset[str] | ProcNames | None = None
    read_only: Container[str] = frozenset()
    initial: Mapping[str, str] = {}
    facts: KernelFacts = KernelFacts()


class Assignment(Record):
    """One line of a sysctl.d file as the applier understood it. ``via`` names the glob that reached a key."""

    key: str
    value: str | None
    file: str
    line: int
    ignore_errors: bool = False
    via: str | None = None

    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Prediction(Record):
    """What one key will hold after the applier ran at boot.

    ``ok``: ``value`` was set by ``source``. ``partial``: the kernel refused ``source`` after storing its leading
    elements. ``rejected``: assignments exist but none took effect; the key keeps its earlier value (``value`` if
    known). ``not-set``: no file sets it. ``unknown``: cannot be told exactly (``reason``); ``value`` is None.
    ``overridden``: every other assignment that aimed at the key, in reading order; ``refused``: writes the kernel
    refused, with the kernel's reason.
    """

    key: str
    status: Status
    value: str | None
    source: Assignment | None = None
    overridden: tuple[Assignment, ...] = ()
    refused: tuple[tuple[Assignment, str], ...] = ()
    reason: str = ""


# ---- the tree under a root, resolved as if it were / -----------------------------------------------------------------


class _Tree:
    """Paths inside ``root``; absolute symlinks resolve inside it, never on the machine running tcptune.

    ``excluded``: configuration files (paths as the applier names them) treated as absent; ``present``: files
    treated as if they existed (only in directory listings).
    """

    def __init__(self, root: str, excluded: Collection[str] = (), present: Collection[str] = ()) -> None:
        self.root = os.fsencode(root).rstrip(b"/")
        self.excluded = frozenset(excluded)
        self.present = frozenset(present)

    def resolve(self, path: bytes) -> tuple[Literal["ok", "missing", "loop", "null", "error"], bytes]:
        """('ok', host path) for an existing file or directory, else why not; ('null', ...) for /dev/null.

        An unreadable directory on the way gives 'error' (the model cannot see what the applier would).
        """
        todo = [part for part in path.split(b"/") if part]
        done: list[bytes] = []
        links = 0
        while todo:
            part = todo.pop(0)
            if part == b".":
                continue
            if part == b"..":
                if done:
                    done.pop()
                continue
            candidate = self._host([*done, part])
            if [*done, part, *todo] == [b"dev", b"null"]:
                return "null", candidate  # at boot the null device, whatever the image holds there (or not)
            try:
                info = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                return "missing", candidate
            except OSError:
                return "error", candidate
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    return "loop", candidate
                target = os.readlink(candidate)
                if target.startswith(b"/"):
                    done = []
                todo = [p for p in target.split(b"/") if p] + todo
                continue
            if todo and not stat.S_ISDIR(info.st_mode):
                return "missing", candidate
            done.append(part)
        return "ok", self._host(done)

    def _host(self, parts: list[bytes]) -> bytes:
        return self.root + b"/" + b"/".join(parts)

    def list_dir(self, path: str) -> list[bytes] | None:
        """Entry names of a directory ([] if there is none); None if it exists but cannot be read."""
        kind, host = self.resolve(os.fsencode(path))
        assumed = [os.fsencode(p.rsplit("/", 1)[1]) for p in self.present if p.rsplit("/", 1)[0] == path]
        if kind == "error":
            return None
        if kind != "ok" or not os.path.isdir(host):
            return assumed
        try:
            names = os.listdir(host)
        except OSError:
            return None
        return names + [name for name in assumed if name not in names]


class _FileText(Record):
    data: bytes | None
    """The bytes the applier reads (empty for /dev/null); None if it reads nothing (missing, a directory)."""
    unknown: str | None = None


def _read(tree: _Tree, path: str) -> _FileText:
    """The file the applier opens at ``path``: regular files are read up to a bound, never a FIFO or a device."""
    kind, host = tree.resolve(os.fsencode(path))
    if kind == "null":
        return _FileText(b"")
    if kind == "error":
        return _FileText(None, f"{path}: cannot be read by tcptune")
    if kind != "ok":
        return _FileText(None)
    try:
        data = read_bounded(host, follow=True, limit=_MAX_FILE_BYTES)
    except UnsafeFile as exc:
        if exc.mode is None:
            return _FileText(None, f"{path} is larger than {_MAX_FILE_BYTES} bytes")
        if stat.S_ISDIR(exc.mode):
            return _FileText(None)
        return _FileText(None, f"{path} is not a regular file (the applier would block on it or read a device)")
    except OSError as exc:
        return _FileText(None, f"{path}: {exc.strerror}")
    if data is None:  # gone since it was resolved
        return _FileText(None, f"{path}: No such file or directory")
    return _FileText(data)


# ---- what each applier reads, line by line --------------------------------------------------------------------------


class _Line:
    """One parsed assignment before it reaches the kernel: raw key and value bytes, as the applier holds them.

    ``key`` is what the applier uses: the normalised key (systemd) or the key as written (procps); ``written`` the
    key as it stands in the file (after the applier's own stripping). Mutable (a repeated line may set ``ignore``),
    and a plain class: dataclasses generate code at import, on the start-up path of ``diff``.
    """

    __slots__ = ("file", "ignore", "key", "line", "value", "written")

    def __init__(self, key: bytes, value: bytes | None, ignore: bool, file: str, line: int, written: bytes) -> None:
        self.key, self.value, self.ignore, self.file, self.line, self.written = key, value, ignore, file, line, written

    def public(self, via: str | None = None) -> Assignment:
        value = None if self.value is None else _text(self.value)
        return Assignment(_text(self.written), value, self.file, self.line, self.ignore, via)


def _text(raw: bytes) -> str:
    """Bytes for display: UTF-8 where valid, anything unprintable (NBSP, form feed, bad bytes) escaped."""
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _config_files(tree: _Tree, dirs: tuple[str, ...], wanted: Callable[[bytes], bool]) -> tuple[list[str], str | None]:
    """Wanted names across ``dirs`` (for equal names the earlier directory wins), sorted by name as strcmp sorts."""
    chosen: dict[bytes, str] = {}
    for directory in dirs:
        names = tree.list_dir(directory)
        if names is None:
            return [], f"{directory} cannot be read by tcptune"
        for name in names:
            path = f"{directory}/{os.fsdecode(name)}"
            if wanted(name) and name not in chosen and path not in tree.excluded:
                chosen[name] = path
    return [chosen[name] for name in sorted(chosen)], None


def _systemd_wants(name: bytes) -> bool:
    """conf_files_list with suffix ".conf"; FOREACH_DIRENT skips hidden files (and backups, which never end so)."""
    return name.endswith(b".conf") and not name.startswith(b".")


def _procps_wants(name: bytes) -> bool:
    """PreloadSystem: at least five characters ending in ".conf" (so ".conf" and ".hidden.conf" count)."""
    return len(name) >= 5 and name.endswith(b".conf")


def _procps_files(tree: _Tree) -> tuple[list[str], str | None]:
    files, unknown = _config_files(tree, PROCPS_DIRS, _procps_wants)
    globbed = [file for file in files if _PROCPS_FILE_GLOB.search(os.fsencode(file.rsplit("/", 1)[1]))]
    if globbed and not unknown:
        unknown = (
            f"procps expands file names as globs, and {globbed[0]!r} has glob characters"
            " (which files it then reads, and in which order, is not modelled)"
        )
    kind, host = tree.resolve(PROCPS_CONF.encode())
    # stat() and S_ISREG: a link to /dev/null does not count
    if kind == "ok" and os.path.isfile(host) and PROCPS_CONF not in tree.excluded:
        files.append(PROCPS_CONF)
    return files, unknown


def _systemd_lines(data: bytes) -> tuple[list[bytes], bool]:
    """read_line_full: LF, CR and NUL end a line; CR LF, LF CR (and either followed by NUL) end it once.

    Also returns whether a line over LONG_LINE_MAX stopped the reading (systemd then drops the rest of the file).
    """
    lines: list[bytes] = []
    pos = 0
    end = len(data)
    while pos < end:
        start = pos
        while pos < end and data[pos] not in b"\n\r\0":
            pos += 1
        if pos - start >= _SYSTEMD_LONG_LINE_MAX:
            return lines, True
        lines.append(data[start:pos])
        seen: set[int] = set()
        while pos < end and data[pos] in b"\n\r\0" and data[pos] not in seen:
            seen.add(data[pos])
            pos += 1
            if data[pos - 1] == 0:
                break
    return lines, False


def _systemd_line(raw: bytes, file: str, number: int) -> _Line | None:
    """One line as systemd-sysctl parses it; None for blank lines, comments and lines that assign nothing."""
    text = raw.strip(_SD_WHITESPACE)
    if not text or text[:1] in b"#;":
        return None
    ignore = False
    equals = text.find(b"=")
    value: bytes | None
    if equals >= 0:
        key = text[:equals]
        value = text[equals + 1 :].strip(_SD_WHITESPACE)
        if key.startswith(b"-"):
            ignore = True
            key = key[1:]
    elif text.startswith(b"-"):
        key, value = text[1:], None
    else:
        return None  # "Line is not an assignment, ignoring"
    key = key.strip(_SD_WHITESPACE)
    return _Line(_sd_normalize(key), value, ignore, file, number, key)


def _systemd_parse(data: bytes, file: str) -> tuple[list[_Line], str | None]:
    lines, overlong = _systemd_lines(data)
    parsed = [line for n, raw in enumerate(lines, start=1) if (line := _systemd_line(raw, file, n)) is not None]
    unknown = None
    if overlong:
        unknown = f"{file} has a line over 1 MiB, where systemd-sysctl stops reading the file"
    return parsed, unknown


def _sd_normalize(key: bytes) -> bytes:
    """sysctl_normalize: swap '.'/'/' if a dot comes first, path_simplify, drop one leading slash."""
    first = re.search(rb"[/.]", key)
    if first and key[first.start()] == ord("."):
        head, tail = key[: first.start()], key[first.start() :]
        key = head + tail.translate(bytes.maketrans(b"./", b"/."))
    key = _path_simplify(key)
    if key.startswith(b"/") and len(key) > 1:
        key = key[1:]
    return key


def _path_simplify(path: bytes) -> bytes:
    if not path:
        return path
    absolute = path.startswith(b"/")
    parts = [part for part in path.split(b"/") if part not in (b"", b".")]
    if not parts:
        return b"/" if absolute else b"."
    return (b"/" if absolute else b"") + b"/".join(parts)


def _procps_lines(data: bytes) -> list[tuple[int, bytes]]:
    """getline(): LF ends a line; lines shorter than 2 bytes (newline included) are skipped; C strings end at NUL."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    number = 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        end = len(data) if newline < 0 else newline + 1
        number += 1
        raw = data[pos:end]
        pos = end
        if len(raw) < 2:
            continue
        out.append((number, raw.split(b"\0", 1)[0]))
    return out


def _procps_parse(data: bytes, file: str) -> list[tuple[_Line, bool]]:
    """(line, is_glob_exclusion) per setting, as parse_setting_line builds them."""
    parsed: list[tuple[_Line, bool]] = []
    for number, raw in _procps_lines(data):
        key = raw.lstrip(_C_SPACE)
        if len(key) < 2 or key[:1] in b"#;":
            continue
        equals = key.find(b"=")
        if equals < 0:
            if key.startswith(b"-"):
                name = key[1:].rstrip(_C_SPACE)
                parsed.append((_Line(name, None, False, file, number, name), True))
            continue  # "invalid syntax, continuing..."
        ignore = key.startswith(b"-")
        name = key[1:equals] if ignore else key[:equals]
        value = key[equals + 1 :].strip(_C_SPACE)
        name = name.rstrip(_C_SPACE)
        parsed.append((_Line(name, value, ignore, file, number, name), False))
    return parsed


def _procps_path(key: bytes) -> bytes:
    """setting_new: one more leading '-' is dropped, then slashdot() swaps '.'/'/' if a dot comes first."""
    if key.startswith(b"-"):
        key = key[1:]
    first = re.search(rb"[/.]", key)
    if first and key[first.start()] == ord("."):
        head, tail = key[: first.start()], key[first.start() :]
        key = head + tail.translate(bytes.maketrans(b"./", b"/."))
    return key


# ---- the kernel the writes land in -----------------------------------------------------------------------------------


class _Track:
    """Everything that happened to one key during the run."""

    __slots__ = ("aimed", "missing", "partial", "refused", "source")

    def __init__(self) -> None:
        self.aimed: list[Assignment] = []
        self.source: Assignment | None = None
        self.partial = False
        self.refused: list[tuple[Assignment, str]] = []
        self.missing: str | None = None


class _Kernel:
    """Writes applied in order to a model of the kernel's state, with the checks and side effects the kernel has."""

    def __init__(self, view: KernelView) -> None:
        self.view = view
        self.state: dict[str, State] = {}
        self.tracks: dict[str, _Track] = {}
        self.unexpanded: list[tuple[bytes, str, frozenset[str]]] = []
        """Globs that could not be expanded, why, and the keys they would skip (explicitly set ones)."""
        self.interface_written: dict[str, bool | None] = {}
        """devinet state bits: per net/ipv4/conf/<if>/<name>, whether it was written (None: cannot tell)."""

    def exists(self, path: str) -> bool | None:
        if self.view.names is not None:
            return path in self.view.names
        return True if kernel_write_rule(path) is not None else None

    def current(self, path: str) -> State:
        if path in self.state:
            return self.state[path]
        rule = kernel_write_rule(path)
        if path in self.view.initial:
            shown = self.view.initial[path]
            return kernel_write.parse_shown(rule, shown) if rule is not None else shown
        return Unknown("its value before boot is not known")

    def track(self, path: str) -> _Track:
        return self.tracks.setdefault(path, _Track())

    def mark_unknown(self, path: str, reason: str, assignment: Assignment) -> None:
        self.track(path).aimed.append(assignment)
        self.state[path] = Unknown(reason)

    def write(self, path: str, value: bytes, assignment: Assignment, skip_if_unchanged: bool) -> None:
        """One write(2) of ``value`` plus newline to /proc/sys/<path> (path already resolved and normalised)."""
        track = self.track(path)
        track.aimed.append(assignment)
        exists = self.exists(path)
        if exists is None:
            self.state[path] = Unknown("tcptune does not know whether this kernel has the key")
            return
        if not exists:
            track.missing = "no such key in this kernel"
            track.refused.append((assignment, "no such key"))
            return
        if path in self.view.read_only:
            track.refused.append((assignment, "read-only here"))
            return
        rule = kernel_write_rule(path)
        if rule is None:
            self.state[path] = Unknown("tcptune does not model how this kernel parses writes to the key")
            return
        current = self.current(path)
        unsure = False  # whether the write happens at all cannot be told: nor then its devinet side effects
        if skip_if_unchanged:
            if isinstance(current, Unknown):
                if rule.handler == "devinet":
                    self._devinet_unsure(path, "systemd skips a write equal to the current value, which is not known")
                    unsure = True
            elif value.decode("latin-1") == kernel_write.show(current):
                return  # WRITE_STRING_FILE_SUPPRESS_REDUNDANT_VIRTUAL: nothing is written at all
        peer = self.current(_slash(rule.peer)) if rule.peer else None
        outcome = kernel_write.write(rule, current, value + b"\n", self.view.facts, peer)
        self.state[path] = outcome.value
        if outcome.accepted is True:
            track.source, track.partial = assignment, False
        elif outcome.accepted is False:
            track.refused.append((assignment, outcome.reason))
            if outcome.partial:
                track.source, track.partial = assignment, True
        if rule.handler == "devinet" and not unsure:
            self._devinet_written(path, assignment)

    def _devinet_written(self, path: str, assignment: Assignment) -> None:
        """devinet_conf_proc, on any write (even a refused one): mark it written; from default, copy to the rest."""
        self.interface_written[path] = True
        _, _, _, interface, name = path.split("/")
        if interface != "default":
            return
        for other in self._interfaces(name):
            if self.interface_written.get(other) is True:
                continue
            target = self.track(other)
            if self.interface_written.get(other) is None and other in self.interface_written:
                self.state[other] = Unknown("whether the default value was copied to it is not known")
                continue
            self.state[other] = self.current(path)
            target.source = assignment._replace(via="net.ipv4.conf.default (copied by the kernel)")
            target.partial = False

    def _devinet_unsure(self, path: str, reason: str) -> None:
        _, _, _, interface, name = path.split("/")
        if self.interface_written.get(path) is not True:
            self.interface_written[path] = None
        if interface == "default":
            for other in self._interfaces(name):
                if self.interface_written.get(other) is not True:
                    self.interface_written[other] = None
                    self.state[other] = Unknown(reason)
                    self.track(other)

    def _listing(self) -> frozenset[str] | None:
        names = self.view.names
        return names.listing() if isinstance(names, ProcNames) else names

    def _interfaces(self, name: str) -> list[str]:
        """net/ipv4/conf/<if>/<name> for every real interface (not all/default) this kernel has."""
        names = self._listing() or frozenset()
        found = []
        for candidate in names:
            parts = candidate.split("/")
            if len(parts) == 5 and parts[:3] == ["net", "ipv4", "conf"] and parts[4] == name:
                found.extend([candidate] if parts[3] not in ("all", "default") else [])
        return sorted(found)

    def glob(self, pattern: bytes, component_order: bool) -> list[str] | None:
        """Leaf keys matching a glob (per path component, as glob(3) matches); None if it cannot be expanded."""
        names = self._listing()
        if names is None or not _glob_supported(pattern):
            return None
        parts = pattern.split(b"/")
        hits = []
        for name in names:
            candidate = os.fsencode(name).split(b"/")
            if len(candidate) == len(parts) and all(_component_matches(c, p) for c, p in zip(candidate, parts)):
                hits.append(name)
        if component_order:
            return sorted(hits, key=lambda n: [os.fsencode(p) for p in n.split("/")])
        return sorted(hits, key=os.fsencode)


def _glob_supported(pattern: bytes) -> bool:
    """Patterns whose glob(3) meaning Python's fnmatch reproduces exactly (no escapes, no [^..] or [:class:])."""
    return not any(token in pattern for token in (b"\\", b"[^", b"[:", b"[=", b"[."))


def _component_matches(name: bytes, pattern: bytes) -> bool:
    if name.startswith(b".") and not pattern.startswith(b"."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


# ---- the two appliers ------------------------------------------------------------------------------------------------


def _run_systemd(tree: _Tree, kernel: _Kernel, dirs: tuple[str, ...]) -> str | None:
    """systemd-sysctl: parse every file into one ordered map (key -> last value), then write each entry once."""
    options: dict[bytes, _Line] = {}
    replaced: list[_Line] = []
    files, unknown = _config_files(tree, dirs, _systemd_wants)
    if unknown:
        return unknown
    for file in files:
        text = _read(tree, file)
        if text.unknown:
            return text.unknown
        if text.data is None:
            continue
        lines, unknown = _systemd_parse(text.data, file)
        if unknown:
            return unknown
        for line in lines:
            existing = options.get(line.key)
            if existing is not None and existing.value == line.value:
                existing.ignore = existing.ignore or line.ignore
                replaced.append(line)
                continue
            if existing is not None:
                replaced.append(existing)
                del options[line.key]  # "Overwriting earlier assignment": the new one goes to the end
            options[line.key] = line
    for line in replaced:  # never written, but the user should see what they lost to
        path = _sd_write_path(line.key)
        if line.value is not None and path is not None and not _GLOB_CHARS.search(line.key):
            kernel.track(path).aimed.append(line.public())
    explicit = frozenset(os.fsdecode(key) for key in options)
    for key, line in options.items():
        if line.value is None:
            continue  # a "-key" line only keeps globs off the key
        if _GLOB_CHARS.search(key):
            matches: list[str] | None = []
            for alternative in _brace_alternatives(key):  # systemd globs with GLOB_BRACE
                found = kernel.glob(alternative, component_order=True)
                matches = None if found is None or matches is None else matches + found
            if matches is None:
                kernel.unexpanded.append((key, "which keys the glob reaches is not known", explicit))
                continue
            for path in matches:
                if path not in explicit:  # "Not setting %s (explicit setting exists)", "-key" lines included
                    kernel.write(path, line.value, line.public(via=_text(key)), skip_if_unchanged=True)
            continue
        path = _sd_write_path(key)
        if path is not None:
            kernel.write(path, line.value, line.public(), skip_if_unchanged=True)
    return None


def _brace_alternatives(pattern: bytes) -> list[bytes]:
    """glibc GLOB_BRACE: the first balanced {a,b} group expanded (recursively); an unterminated one is literal."""
    start = pattern.find(b"{")
    if start < 0:
        return [pattern]
    alternatives: list[bytes] = []
    depth, begin = 0, start + 1
    for i in range(start + 1, len(pattern)):
        char = pattern[i : i + 1]
        if char == b"}" and depth == 0:
            alternatives.append(pattern[begin:i])
            head, tail = pattern[:start], pattern[i + 1 :]
            return [out for alt in alternatives for out in _brace_alternatives(head + alt + tail)]
        if char == b"," and depth == 0:
            alternatives.append(pattern[begin:i])
            begin = i + 1
        elif char == b"{":
            depth += 1
        elif char == b"}":
            depth -= 1
    return [pattern]


def _sd_write_path(key: bytes) -> str | None:
    """sysctl_write: /proc/sys/<key> simplified; None where it writes nothing (".." refused, the directory itself)."""
    if b".." in key.split(b"/"):
        return None
    simplified = _path_simplify(b"/proc/sys/" + key)
    if not simplified.startswith(b"/proc/sys/"):
        return None
    return os.fsdecode(simplified[len(b"/proc/sys/") :])


def _run_procps(tree: _Tree, kernel: _Kernel) -> str | None:
    """sysctl --system: collect every line of every file (sysctl.conf last), then write them all in that order."""
    files, unknown = _procps_files(tree)
    if unknown:
        return unknown
    nodes: list[tuple[_Line, bytes, bool]] = []
    for file in files:
        text = _read(tree, file)
        if text.unknown:
            return text.unknown
        if text.data is None:
            continue
        for line, exclude in _procps_parse(text.data, file):
            nodes.append((line, _procps_path(line.key), exclude))
    literal = frozenset(os.fsdecode(path) for _, path, _ in nodes)
    for line, path, exclude in nodes:
        if exclude:
            continue
        assert line.value is not None
        if _GLOB_CHARS.search(path):
            matches = None if (b"//" in path or b"/./" in path) else kernel.glob(path, component_order=False)
            if matches is None:
                kernel.unexpanded.append((path, "which keys the glob reaches is not known", literal))
                continue
            for match in matches:
                if match not in literal:  # settinglist_findpath: "override or exclude"
                    kernel.write(match, line.value, line.public(via=_text(line.key)), skip_if_unchanged=False)
            continue
        target = _procps_target(path)
        if isinstance(target, Unknown):
            kernel.mark_unknown(os.path.normpath(os.fsdecode(path)), target.reason, line.public())
        elif target is not None:
            kernel.write(target, line.value, line.public(), skip_if_unchanged=False)
    return None


def _procps_target(path: bytes) -> str | Unknown | None:
    """The key a literal /proc/sys-relative path names, as stat() and open() resolve it; None if no file."""
    parts = path.split(b"/")
    if b".." in parts:
        return Unknown("a '..' in the key: written only if every directory before it exists (not modelled)")
    if parts[-1] in (b"", b"."):
        return None  # stat("<file>/") and stat("<file>/.") fail with ENOTDIR; a directory is not written either
    kept = [part for part in parts if part not in (b"", b".")]
    if not kept:
        return None
    return os.fsdecode(b"/".join(kept))


def _dotted(path: str) -> str:
    """A slash path in sysctl's dotted form (dots inside a component, like VLAN names, become slashes)."""
    return path.translate(str.maketrans("/.", "./"))


# ---- entry points ---------------------------------------------------------------------------------------------------


class ConfLine(Record):
    """One line of a sysctl.d file as systemd-sysctl reads it (for ``tcptune import``)."""

    number: int
    text: bytes
    """The line without its end, stripped as systemd strips it."""
    assignment: Assignment | None
    """None for blank lines, comments and lines that assign nothing."""
    path: str | None = None
    """The key normalised as systemd-sysctl writes it: a /proc/sys-relative slash path."""
    value: bytes | None = None
    """The value's bytes as systemd-sysctl writes them (``assignment.value`` is the same, made printable)."""


def read_conf(data: bytes, file: str) -> tuple[list[ConfLine], bool]:
    """Every line of one sysctl.d file, with the assignment systemd-sysctl 252 reads from it; also whether a line
    over 1 MiB made systemd stop reading (the lines after it are not returned)."""
    lines, overlong = _systemd_lines(data)
    result = []
    for number, raw in enumerate(lines, start=1):
        line = _systemd_line(raw, file, number)
        if line is None:
            result.append(ConfLine(number, raw.strip(_SD_WHITESPACE), None))
        else:
            stripped = raw.strip(_SD_WHITESPACE)
            result.append(ConfLine(number, stripped, line.public(), os.fsdecode(line.key), line.value))
    return result, overlong


def predict(
    root: str = "/",
    keys: Iterable[str] | None = None,
    applier: Applier | ApplierName = "systemd",
    kernel: KernelView | None = None,
    exclude: Collection[str] = (),
) -> dict[str, Prediction]:
    """What each key will hold after ``applier`` applies the sysctl.d tree under ``root`` at boot.

    ``keys``: dotted (``net.ipv4.tcp_rmem``) or slash names; None: every key the tree assigns. The result is keyed
    by the names given (dotted names when ``keys`` is None). ``exclude``: configuration files, named as the applier
    names them (``/etc/sysctl.d/90-tcptune.conf``), treated as absent (a baseline: what the others set).
    """
    view = kernel or KernelView()
    name = applier.name if isinstance(applier, Applier) else applier
    wanted = None if keys is None else {key: _slash(key) for key in keys}
    sim = _Kernel(view)
    tree = _Tree(root, exclude)
    everything_unknown: str | None = None
    if name == "systemd":
        everything_unknown = _run_systemd(tree, sim, SYSTEMD_DIRS)
    elif name == "procps":
        everything_unknown = _run_procps(tree, sim)
    elif name == "busybox":
        everything_unknown = "busybox sysctl is not modelled"
    elif name == "unknown":
        how = applier.how if isinstance(applier, Applier) and applier.how else "not detected"
        everything_unknown = f"which program applies sysctl.d at boot is not known ({how})"
    if wanted is None:
        wanted = {_dotted(path): path for path in sim.tracks}
    return {key: _conclude(sim, path, key, everything_unknown) for key, path in wanted.items()}


def files_read(root: str, applier: Applier | ApplierName, assume: Collection[str] = ()) -> list[str] | None:
    """The configuration files ``applier`` reads at boot, in order, named as it names them (inside ``root``);
    [] when nothing applies sysctl.d, None when it cannot be told (an unreadable directory, an unmodelled applier).
    ``assume``: files to count as existing (whether tcptune's file would be read once written)."""
    name = applier.name if isinstance(applier, Applier) else applier
    tree = _Tree(root, present=assume)
    if name == "systemd":
        files, unknown = _config_files(tree, SYSTEMD_DIRS, _systemd_wants)
    elif name == "procps":
        files, unknown = _procps_files(tree)
    elif name == "none":
        return []
    else:
        return None
    return None if unknown else files


def catalog_defaults() -> dict[str, str]:
    """Each key's value before any applier ran, where the catalog knows it (slash path -> text): the kernel's
    default where it does not depend on the machine. Checked against fresh namespaces by the catalog's kernel test
    and, as ``diff`` uses it, by the boot differential test."""
    return {entry.name.replace(".", "/"): entry.default for entry in catalog.KEYS if entry.default is not None}


MAX_PROC_NAMES = 100_000
"""Most /proc/sys files ``kernel_view`` lists; beyond (thousands of interfaces) globs are left unknown."""


def kernel_view(proc_root: str = "/proc/sys", *, limit: int = MAX_PROC_NAMES) -> KernelView:
    """The kernel a boot will meet, as far as this machine can tell: which keys exist and which refuse writes (from
    ``proc_root``, looked up as the prediction asks: ``ProcNames``), and each key's value before the applier runs:
    the catalog's default where it does not depend on the machine, otherwise unknown (today's live values carry
    the last boot's settings).

    Inside a child network namespace the boot's own namespace (the host's) is not visible: host-wide keys are
    absent or read-only here. Then which keys exist is not claimed (``names`` None: globs are unknown).
    """
    initial = catalog_defaults()
    host_only = os.path.join(proc_root, *HOST_ONLY_PROBE.split("."))
    if os.path.isdir(os.path.join(proc_root, "net", "ipv4")) and not os.path.lexists(host_only):
        return KernelView(None, frozenset(), initial)
    names = ProcNames(proc_root, limit)
    return KernelView(names, names.read_only, initial)


class ProcNames:
    """The sysctl files of a /proc/sys tree (slash paths), looked up one by one as the prediction asks, and listed
    (a bounded walk) only when a glob or an interface default must be expanded: a walk of thousands of files
    costs more than the whole prediction."""

    def __init__(self, proc_root: str, limit: int = MAX_PROC_NAMES) -> None:
        self.proc_root = proc_root
        self.limit = limit
        self._modes: dict[str, int | None] = {}
        self._listing: frozenset[str] | None = None
        self._listed = False
        self.read_only = _ReadOnly(self)

    def mode(self, path: str) -> int | None:
        """The file's mode; None if there is none (or the path leaves the tree)."""
        if path not in self._modes:
            parts = path.split("/")
            if not path or path.startswith("/") or ".." in parts:
                self._modes[path] = None
            else:
                try:
                    self._modes[path] = os.lstat(os.path.join(self.proc_root, path)).st_mode
                except OSError:
                    self._modes[path] = None
        return self._modes[path]

    def __contains__(self, path: object) -> bool:
        mode = self.mode(path) if isinstance(path, str) else None
        return mode is not None and stat.S_ISREG(mode)

    def listing(self) -> frozenset[str] | None:
        """Every file, or None when the tree cannot be read or holds more than ``limit`` (thousands of interfaces)."""
        if not self._listed:
            self._listed = True
            self._listing = self._walk()
        return self._listing

    def _walk(self) -> frozenset[str] | None:
        found: list[str] = []
        todo = [""]
        while todo:
            relative = todo.pop()
            try:
                entries = list(os.scandir(os.path.join(self.proc_root, relative) if relative else self.proc_root))
            except OSError:
                return None  # part of the tree cannot be seen: claim nothing
            prefix = f"{relative}/" if relative else ""
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)  # the directory entry's type: no stat(2)
                except OSError:
                    continue  # vanished meanwhile (an interface going away)
                (todo if is_dir else found).append(prefix + entry.name)
            if len(found) > self.limit:
                return None
        return frozenset(found)


class _ReadOnly:
    """Files of a ``ProcNames`` tree that refuse writes (no write bit in their mode)."""

    def __init__(self, names: ProcNames) -> None:
        self.names = names

    def __contains__(self, path: object) -> bool:
        mode = self.names.mode(path) if isinstance(path, str) else None
        return mode is not None and stat.S_ISREG(mode) and not mode & 0o222


def _slash(key: str) -> str:
    key = key.strip()
    if "/" in key:
        return key.strip("/")
    return key.replace(".", "/")


def _conclude(sim: _Kernel, path: str, key: str, everything_unknown: str | None) -> Prediction:
    if everything_unknown:
        return Prediction(key, "unknown", None, reason=everything_unknown)
    parts = path.split("/")
    interface = len(parts) == 5 and parts[:2] == ["net", "ipv4"] and parts[2] in ("conf", "neigh")
    if interface and parts[3] not in ("all", "default", "lo"):
        reason = "a per-interface key: at boot the interface may appear only after the applier ran"
        return Prediction(key, "unknown", None, reason=f"{reason} (udev then re-runs systemd-sysctl for it)")
    for pattern, reason, explicit in sim.unexpanded:
        if path not in explicit and _could_match(pattern, path):
            return Prediction(key, "unknown", None, reason=f"glob {_text(pattern)}: {reason}")
    track = sim.tracks.get(path)
    if sim.exists(path) is False:
        others = tuple(track.aimed) if track else ()
        if track and track.refused:
            return Prediction(key, "rejected", None, None, others, tuple(track.refused), "no such key in this kernel")
        return Prediction(key, "not-set", None, None, others, (), "no such key in this kernel")
    state = sim.state.get(path)
    if state is None:
        state = sim.current(path)
    value = None if isinstance(state, Unknown) else kernel_write.show(state)
    if track is None:
        return Prediction(key, "not-set", value, reason="no file sets it")
    others = tuple(a for a in track.aimed if a is not track.source)
    refused = tuple(track.refused)
    if track.missing and track.source is None:
        return Prediction(key, "rejected", None, None, others, refused, track.missing)
    if isinstance(state, Unknown):
        return Prediction(key, "unknown", None, track.source, others, refused, state.reason)
    if track.source is None and not refused:
        return Prediction(key, "not-set", value, None, others, (), "no assignment reached the kernel")
    if track.source is None:
        reason = "every write was refused; the key keeps its earlier value"
        return Prediction(key, "rejected", value, None, others, refused, reason)
    status: Status = "partial" if track.partial else "ok"
    reason = refused[-1][1] if track.partial and refused else ""
    return Prediction(key, status, value, track.source, others, refused, reason)


def _could_match(pattern: bytes, path: str) -> bool:
    """Whether an unexpanded glob might reach the key: by component count, anything in braces counting as '*'."""
    pieces = re.sub(rb"\{[^/]*\}", b"*", pattern.strip(b"/")).split(b"/")
    parts = os.fsencode(path).split(b"/")
    pieces = [piece.replace(b"\\", b"") for piece in pieces]
    return len(parts) == len(pieces) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pieces))


# ---- which applier runs at boot -------------------------------------------------------------------------------------

_UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
_SYSTEMD_SYSCTL = ("/lib/systemd/systemd-sysctl", "/usr/lib/systemd/systemd-sysctl")
_SYSCTL_BINARIES = ("/usr/sbin/sysctl", "/sbin/sysctl", "/usr/bin/sysctl", "/bin/sysctl")
_MAX_SCAN_BYTES = 64 * 1024 * 1024


def detect_applier(root: str = "/", proc: str = "/proc") -> Applier:
    """Which program applies sysctl.d at boot on this machine (``root`` "/") or in the image under ``root``.

    Reads only: PID 1 (on the running machine), systemd units, init scripts, the dpkg database and the binaries
    themselves (for a version string). Nothing is executed.
    """
    tree = _Tree(root)
    running = os.path.realpath(root) == "/"
    init = _init_system(tree, proc if running else None)
    if init.startswith("systemd"):
        units = [d + "/systemd-sysctl.service" for d in _UNIT_DIRS]
        unit = next((path for path in units if _kind(tree, path)), "")
        binary = next((path for path in _SYSTEMD_SYSCTL if _kind(tree, path) == "file"), None)
        if unit and _kind(tree, unit) == "null":
            return Applier("none", None, f"{init}, but systemd-sysctl.service is masked ({unit} -> /dev/null)")
        if unit and binary:
            if running and not os.access(os.path.join(proc, "sys/net"), os.W_OK):
                why = "skips it: /proc/sys/net is read-only here (ConditionPathIsReadWrite=/proc/sys/net/)"
                return Applier("none", None, f"{init} has systemd-sysctl.service but {why}")
            return Applier("systemd", _systemd_version(tree), f"{init} starts {unit} ({binary})")
        return Applier("none", None, f"{init}, and no systemd-sysctl.service with its binary")
    if init.startswith("sysvinit") or init.startswith("openrc"):
        script = next((s for s in ("/etc/init.d/procps", "/etc/init.d/sysctl") if _kind(tree, s) == "file"), None)
        sysctl = next((path for path in _SYSCTL_BINARIES if _kind(tree, path) == "file"), None)
        flavour = _sysctl_flavour(tree, sysctl) if sysctl else None
        if script and flavour:
            name, version = flavour
            return Applier(name, version, f"{init} runs {script} ({sysctl})")
        return Applier("none", None, f"{init}, and no init script that applies sysctl.d")
    if init == _NO_INIT:
        return Applier("unknown", None, f"{init}: pass --boot-applier")
    return Applier("none", None, init)


_NO_INIT = "no /sbin/init in the image"


def _kind(tree: _Tree, path: str) -> str:
    """'file', 'dir', 'null' (a link to /dev/null), or '' for nothing, resolved inside the tree."""
    kind, host = tree.resolve(os.fsencode(path))
    if kind == "null":
        return "null"
    if kind != "ok":
        return ""
    return "dir" if os.path.isdir(host) else "file"


def _init_system(tree: _Tree, proc: str | None) -> str:
    """A short description of PID 1 (running machine) or of what /sbin/init starts (an image)."""
    if proc is not None:
        try:
            with open(os.path.join(proc, "1/comm")) as handle:
                comm = handle.read().strip()
        except OSError:
            comm = ""
        if comm == "systemd":
            return "systemd (PID 1)"
        if comm == "init" and _kind(tree, "/sbin/openrc") == "file":
            return "openrc (PID 1 is init)"
        if comm == "init":
            return "sysvinit (PID 1 is init)"
        image = _init_system(tree, None)
        return f"PID 1 is {comm or 'unreadable'}, which applies no sysctl.d files (the image's init: {image})"
    kind, host = tree.resolve(b"/sbin/init")
    if kind != "ok":
        return _NO_INIT
    if host.endswith(b"/systemd"):
        return "systemd (/sbin/init)"
    if _kind(tree, "/sbin/openrc") == "file":
        return "openrc (/sbin/init)"
    if _binary_mentions(host, rb"INIT_VERSION|sysvinit"):
        return "sysvinit (/sbin/init)"
    return f"/sbin/init is {os.fsdecode(host[len(tree.root) :])}, which applies no sysctl.d files"


def _sysctl_flavour(tree: _Tree, path: str) -> tuple[ApplierName, str | None] | None:
    kind, host = tree.resolve(os.fsencode(path))
    if kind != "ok":
        return None
    if host.endswith(b"/busybox") or _binary_mentions(host, rb"BusyBox v"):
        found = _binary_search(host, rb"BusyBox v(\d+\.\d+(?:\.\d+)?)")
        return "busybox", found
    found = _binary_search(host, rb"procps-ng (\d+\.\d+(?:\.\d+)?)")
    package = _dpkg_version(tree, "procps")
    return "procps", _version(found, package)


def _systemd_version(tree: _Tree) -> str | None:
    found = None
    for directory in ("/usr/lib/systemd", "/lib/systemd", "/usr/lib64/systemd", "/usr/lib/x86_64-linux-gnu/systemd"):
        for name in tree.list_dir(directory) or []:
            match = re.fullmatch(rb"libsystemd-shared-(\d+)(?:\.\d+)*\.so", name)
            if match:
                found = match.group(1).decode()
    return _version(found, _dpkg_version(tree, "systemd"))


def _version(upstream: str | None, package: str | None) -> str | None:
    if upstream and package:
        return f"{upstream} ({package})"
    return upstream or package


def _dpkg_version(tree: _Tree, package: str) -> str | None:
    """The installed version of a Debian package, from /var/lib/dpkg/status (None without dpkg)."""
    text = _read(tree, "/var/lib/dpkg/status")
    if text.data is None:
        return None
    header = re.search(rb"(?:^|\n)Package: " + re.escape(package.encode()) + rb"\n", text.data)
    if header is None:
        return None
    end = text.data.find(b"\n\n", header.end())
    stanza = text.data[header.start() : end if end >= 0 else len(text.data)]
    if not re.search(rb"^Status: .* installed$", stanza, re.M):
        return None
    found = re.search(rb"^Version: (\S+)$", stanza, re.M)
    return found.group(1).decode() if found else None


def _binary_mentions(host: bytes, pattern: bytes) -> bool:
    return _binary_search(host, pattern, group=0) is not None


def _binary_search(host: bytes, pattern: bytes, group: int = 1) -> str | None:
    try:
        with open(host, "rb") as handle:
            data = handle.read(_MAX_SCAN_BYTES)
    except OSError:
        return None
    found = re.search(pattern, data)
    return found.group(group).decode("latin-1") if found else None
