"""Dropping root once port 53 is bound, for a daemon started as root outside systemd.

Binding port 53 needs root or CAP_NET_BIND_SERVICE. Under systemd, sinkhole.service already runs
the daemon as a dynamic user holding only that capability, so there is nothing to drop and
nothing to chown. Started as root any other way (by hand, another init, a container), the daemon
binds its listeners and then becomes an unprivileged user for good, so a bug in the packet path
is never a root compromise. Keeping root is not an option: a failed drop raises
`PrivilegeError` and the daemon must exit.

Root touches as little as it can on the way. It changes the owner only of what it created
itself: the database file, its -wal/-shm/-journal, and the folders it had to make for them
(`StorePlan`). A configured `storage.path` sits in a folder that may hold anything (/tmp, or
/etc/sinkhole with the config and the API token), so that folder and its other files are never
handed over. And since lists, lease files and secrets are re-read long after the drop, the
daemon proves at start that the unprivileged user can read them (`check_access`), instead of
finding out at the first reload.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import pwd
import select
import signal
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sinkhole.errors import SinkholeError, StartupError
from sinkhole.lists.loader import ListLoadError, list_files

if TYPE_CHECKING:
    from sinkhole.config import Config

log = logging.getLogger(__name__)

# A dedicated system user first (`useradd --system --no-create-home sinkhole`); `nobody` is the
# last resort, since every other daemon that falls back to it shares its files with us.
DEFAULT_USERS = ("sinkhole", "nobody")
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")   # every file SQLite keeps next to the database
PROBE_TIMEOUT = 10.0    # a hung NFS mount must not hang the start for ever
_MISSING = (errno.ENOENT, errno.ENOTDIR)   # the part that reads the file reports these itself


class PrivilegeError(SinkholeError):
    """Running as root and unable to become the unprivileged user; the daemon must not go on."""


class AccessError(StartupError):
    """The user we drop to could not use a file the daemon needs later (exit code 2)."""


@dataclass(frozen=True)
class Target:
    """The identity to drop to, resolved before anything is changed."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()   # supplementary: a group that may read the leases counts


def under_systemd() -> bool:
    """True when started by systemd, whose unit (not this code) decides the identity."""
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("NOTIFY_SOCKET"))


def should_drop() -> bool:
    """Root, and no service manager that already chose an unprivileged identity for us."""
    return os.geteuid() == 0 and not under_systemd()


def resolve_target(user: str | None = None, group: str | None = None) -> Target:
    """Look up `user` (default: 'sinkhole', else 'nobody') and its primary group or `group`.

    Raises PrivilegeError when a name does not exist, or when it would leave us as root.
    """
    pw = _lookup_user(user)
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"group {group!r} does not exist; create it or pick "
                                 "another") from None
    groups = tuple(os.getgrouplist(pw.pw_name, gid))
    if pw.pw_uid == 0 or gid == 0 or 0 in groups:
        raise PrivilegeError(f"user {pw.pw_name!r} (uid {pw.pw_uid}, gid {gid}, groups "
                             f"{groups}) is root; pick an unprivileged user")
    if user is None and pw.pw_name != DEFAULT_USERS[0]:
        log.warning("no %r user; dropping to %r (create a system user %r to own the state)",
                    DEFAULT_USERS[0], pw.pw_name, DEFAULT_USERS[0])
    return Target(pw.pw_name, pw.pw_uid, gid, groups)


def _lookup_user(user: str | None) -> pwd.struct_passwd:
    names = (user,) if user is not None else DEFAULT_USERS
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    hint = "useradd --system --no-create-home --shell /usr/sbin/nologin sinkhole"
    raise PrivilegeError(f"user {' or '.join(repr(n) for n in names)} does not exist; "
                         f"create it ({hint}) or run under systemd")


# --- the store: what root creates, it hands over; nothing else ------------------------------

@dataclass
class StorePlan:
    """Which parts of the store existed before root opened it: only the others change owner.

    `scan()` and `make()` before the store opens, `hand_over()` after. A file that existed
    keeps its owner (`check_access` then says whether the user can write it); a folder that
    existed is never touched, whatever else it holds.
    """

    db: str
    existed: frozenset[str]                   # the DB_SUFFIXES already on disk
    made: list[tuple[str, int, int]] = field(default_factory=list)   # (path, dev, inode)
    folders: tuple[str, ...] = ()             # more folders the daemon writes in (feeds/)

    @classmethod
    def scan(cls, path: str) -> StorePlan:
        """What is on disk now; changes nothing. Refuses a link: root would write through it."""
        db = os.path.abspath(path)
        existed = set()
        for suffix in DB_SUFFIXES:
            try:
                st = os.lstat(db + suffix)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISLNK(st.st_mode):
                raise AccessError(f"storage.path: {db + suffix} is a symbolic link; root does "
                                  "not open or chown through links: point storage.path at the "
                                  "real file")
            existed.add(suffix)
        return cls(db, frozenset(existed))

    def make(self) -> None:
        """Create, as root, the missing folders (0700) and the database file (0600: hits name
        clients). O_EXCL|O_NOFOLLOW: a link planted in a shared folder (/tmp) is not followed."""
        self.made += _make_dirs(os.path.dirname(self.db))
        for folder in self.folders:
            self.made += _make_dirs(folder)
        if "" in self.existed:
            return
        try:
            fd = os.open(self.db, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise AccessError(f"storage.path: cannot create {self.db}: {err.strerror}") from None
        st = os.fstat(fd)
        os.close(fd)
        self.made.append((self.db, st.st_dev, st.st_ino))

    def hand_over(self, target: Target) -> list[str]:
        """Give `target` what root created; returns the paths that changed owner.

        Opens each with O_NOFOLLOW and changes the inode it opened, only when it is the one
        root made (same inode), or a new SQLite file that root owns with a single link: a link
        or a file someone else planted meanwhile keeps its owner.
        """
        made = {path: (dev, ino) for path, dev, ino in self.made}
        changed = []
        for path in [*made, *(self.db + s for s in DB_SUFFIXES if s and s not in self.existed)]:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ELOOP):   # gone, or now a link
                    continue
                raise
            try:
                st = os.fstat(fd)
                ours = made.get(path) == (st.st_dev, st.st_ino) or (
                    stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == 0)
                if ours and (st.st_uid, st.st_gid) != (target.uid, target.gid):
                    os.fchown(fd, target.uid, target.gid)
                    changed.append(path)
            finally:
                os.close(fd)
        return changed

    def writes(self, *, existed: bool = False) -> list[Need]:
        """The database files on disk now (or only those that were there before root came):
        the user must be able to write each of them."""
        names = [self.db + s for s in DB_SUFFIXES if (s in self.existed if existed
                                                       else os.path.lexists(self.db + s))]
        return [Need("write", name, "storage.path") for name in names]


def _make_dirs(directory: str) -> list[tuple[str, int, int]]:
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    made = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue     # made by someone else meanwhile: not ours to hand over
        except OSError as err:
            raise AccessError(f"storage.path: cannot create {path}: {err.strerror}") from None
        st = os.lstat(path)
        made.append((path, st.st_dev, st.st_ino))
    return made


# --- what the user must still reach after the drop ------------------------------------------

@dataclass(frozen=True)
class Need:
    """One path the daemon uses after the drop: `how` is read, list (file or folder) or write."""

    how: str
    path: str
    what: str     # the config key, for the message


def needs(config: Config, config_path: str | None) -> list[Need]:
    """Everything read again after start: the config, lists, lease files, secrets."""
    out = [Need("read", config_path, "the config file")] if config_path else []
    from sinkhole.lists.manager import is_shipped
    out += [Need("list", b.path, f"blocklists[{i}] ({b.name})")   # not a feed (url), not a
            for i, b in enumerate(config.blocklists)              # list shipped in the package
            if b.path and not is_shipped(b.path)]                 # (read once, at start)
    out += [Need("list", a.path, f"allowlists[{i}]") for i, a in enumerate(config.allowlists)]
    for i, b in enumerate(config.blocklists):     # a feed re-reads these at every refresh
        for key in ("headers_file", "ca_file"):
            if getattr(b, key, None):
                out.append(Need("read", getattr(b, key), f"blocklists[{i}].{key}"))
    out += [Need("read", p, f"clients.leases[{i}]") for i, p in enumerate(config.clients.leases)]
    if config.api.token_file:
        out.append(Need("read", config.api.token_file, "api.token_file"))
    out += [Need("read", s.secret_file, f"alerts.sinks[{i}].secret_file")
            for i, s in enumerate(config.alerts.sinks) if s.secret_file]
    return out


def check_access(target: Target, wanted: Sequence[Need]) -> None:
    """Raise AccessError naming every need `target` cannot meet, with how to fix it.

    Asks the kernel, not the mode bits: a forked child becomes `target` exactly as the drop
    will (groups included) and opens each path, so ACLs, group membership, unreachable parent
    folders and read-only mounts all count. A missing file is left to the part that reads it.
    """
    failed = _probe(target, wanted) if wanted else []
    if not failed:
        return
    group = _group_name(target.gid)
    reads = [f"{path} ({wanted[i].what}: {why})" for i, path, why in failed
             if wanted[i].how != "write"]
    writes = [f"{path} ({wanted[i].what}: {why})" for i, path, why in failed
              if wanted[i].how == "write"]
    cannot = " and ".join([*(["cannot read " + "; ".join(reads)] if reads else []),
                           *(["cannot write " + "; ".join(writes)] if writes else [])])
    fixes = []
    if reads:
        fixes.append(f"let it read them (e.g. chgrp {group} FILE; chmod g+r FILE, and g+rx on "
                     "its folders)")
    if writes:
        fixes.append(f"give it the database (chown {target.user}:{group} FILE, and the "
                     "folder holding it if it cannot enter it), or point storage.path into a new "
                     f"folder it can reach (the daemon creates it for {target.user!r})")
    if target.user != DEFAULT_USERS[0]:
        fixes.append(f"create a {DEFAULT_USERS[0]!r} system user that can")
    fixes.append("run it from the systemd unit (systemd/sinkhole.service)")
    raise AccessError(f"running as root, the daemon drops to user {target.user!r}, which "
                      f"{cannot}. Fix: {', or '.join(fixes)}")


def _probe(target: Target, wanted: Sequence[Need]) -> list[tuple[int, str, str]]:
    """(index into wanted, path, reason) for each path the child, as `target`, could not use."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: system calls only, then _exit, never back into the event loop
        code = 1
        try:
            os.close(rfd)
            _become(target)
            data = "".join(json.dumps([i, path, reason]) + "\n" for i, need in enumerate(wanted)
                           for path, reason in _failures(need)).encode()
            while data:
                data = data[os.write(wfd, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        out = _read_all(rfd, pid)
    finally:
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise PrivilegeError(f"could not check file access as user {target.user!r}: the "
                             "checking process failed")
    return [tuple(json.loads(line)) for line in out.splitlines()]  # type: ignore[misc]


def _read_all(fd: int, pid: int) -> bytes:
    chunks, deadline = [], time.monotonic() + PROBE_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            raise PrivilegeError(f"checking file access took over {PROBE_TIMEOUT:g} s (a hung "
                                 "mount?)")
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _failures(need: Need) -> Iterator[tuple[str, str]]:
    """(path, why) for what `need` names that cannot be used; runs in the child, as the user.

    A list folder is walked as the list loader walks it, so each of its files is opened too.
    """
    try:
        files = list_files(need.path) if need.how == "list" else [need.path]
    except ListLoadError as err:   # missing or empty: the list manager reports that itself
        if isinstance(err.__cause__, OSError) and (why := _reason(err.__cause__)):
            yield need.path, why
        return
    if need.how == "folder":   # files are created in it (the feed cache)
        if os.path.isdir(need.path) and not os.access(need.path, os.W_OK | os.X_OK):
            yield need.path, "cannot create files in this folder"
        return
    flags = os.O_RDWR if need.how == "write" else os.O_RDONLY
    for file in files:
        try:
            os.close(os.open(file, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC))
        except OSError as err:
            if why := _reason(err):
                yield str(file), why


def _reason(err: OSError) -> str | None:
    return None if err.errno in _MISSING else (err.strerror or str(err))


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# --- the sequence serve() runs ---------------------------------------------------------------

@dataclass(frozen=True)
class RootStart:
    """Started as root outside systemd: `prepare()` before the daemon starts, `hand_over()`
    once it has opened its store (also when it failed to start: a retry must find the store
    the user's), then `drop()` before it serves."""

    target: Target
    plan: StorePlan

    @classmethod
    def prepare(cls, config: Config, config_path: str | None) -> RootStart | None:
        """None when no drop will happen (not root, or systemd chose the identity)."""
        if not should_drop():
            return None
        target = resolve_target()   # once: hand-over, check and drop agree, one warning at most
        plan = StorePlan.scan(config.storage.path)
        extra = []
        if any(getattr(b, "url", "") for b in config.blocklists):
            # Feeds keep their last good download beside the store, written after the drop.
            feeds = os.path.join(os.path.dirname(plan.db), "feeds")
            plan = replace(plan, folders=(feeds,))
            extra.append(Need("folder", feeds, "the feed cache beside storage.path"))
        # Before creating or binding anything: what is read after the drop, and a database
        # that was already there (root does not hand it over).
        check_access(target, [*needs(config, config_path), *plan.writes(existed=True), *extra])
        plan.make()
        return cls(target, plan)

    def hand_over(self) -> None:
        changed = self.plan.hand_over(self.target)
        log.debug("gave %s to %s", ", ".join(changed) or "nothing", self.target.user)

    def drop(self) -> str | None:
        """Prove the user can reach the store (e.g. not under /root), then drop for good."""
        check_access(self.target, self.plan.writes())
        return drop_privileges(target=self.target)


# --- the drop itself --------------------------------------------------------------------------

def drop_privileges(user: str | None = None, group: str | None = None, *,
                    target: Target | None = None) -> str | None:
    """Become `user` for good when running as root outside systemd; return its name.

    Returns None (and changes nothing) when not root or under systemd. Call it after every
    privileged bind and before READY: the bound sockets stay usable, nothing else needs root.
    """
    if not should_drop():
        return None
    target = target or resolve_target(user, group)
    try:
        _become(target)
    except OSError as err:
        raise PrivilegeError(f"cannot switch to user {target.user!r}: {err}") from err
    _verify(target)
    log.info("dropped root privileges: running as %s (uid %d, gid %d)", target.user, target.uid,
             target.gid, extra={"event": "privileges_dropped", "user": target.user})
    return target.user


def _become(target: Target) -> None:
    # Groups first (root's would survive the uid change): the user's own, as login would give
    # them, so a group allowed to read the lease files counts. Then the gid while we may still
    # change it, then real, effective and saved uid together.
    os.setgroups(list(target.groups))
    os.setresgid(target.gid, target.gid, target.gid)
    os.setresuid(target.uid, target.uid, target.uid)


def _verify(target: Target) -> None:
    """Prove the drop is irreversible: the ids are ours and root cannot be regained."""
    ids = (os.getresuid(), os.getresgid(), os.getgroups())
    expected = ((target.uid,) * 3, (target.gid,) * 3)
    if ids[:2] != expected or any(g == 0 for g in ids[2]):
        raise PrivilegeError(f"privilege drop incomplete: uids/gids/groups are {ids}")
    for regain in (os.setuid, os.setgid):
        try:
            regain(0)
        except PermissionError:
            continue
        raise PrivilegeError(f"{regain.__name__}(0) succeeded after dropping to {target.user!r}")
