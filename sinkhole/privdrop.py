"""Dropping root once port 53 is bound, for a daemon started as root outside systemd.

Binding port 53 needs root or CAP_NET_BIND_SERVICE. Under systemd, sinkhole.service already runs
the daemon as a dynamic user holding only that capability, so there is nothing to drop. Started
as root any other way (by hand, another init, a container), the daemon binds its listeners and
then becomes an unprivileged user for good, so a bug in the packet path is never a root
compromise. Keeping root is not an option: a failed drop raises `PrivilegeError` and the daemon
must exit.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from dataclasses import dataclass

from sinkhole.errors import SinkholeError

log = logging.getLogger(__name__)

# A dedicated system user first (`useradd --system --no-create-home sinkhole`); `nobody` is the
# last resort, since every other daemon that falls back to it shares its files with us.
DEFAULT_USERS = ("sinkhole", "nobody")


class PrivilegeError(SinkholeError):
    """Running as root and unable to become the unprivileged user; the daemon must not go on."""


@dataclass(frozen=True)
class Target:
    """The identity to drop to, resolved before anything is changed."""

    user: str
    uid: int
    gid: int


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
    if pw.pw_uid == 0 or gid == 0:
        raise PrivilegeError(f"user {pw.pw_name!r} (uid {pw.pw_uid}, gid {gid}) is root; "
                             "pick an unprivileged user")
    if user is None and pw.pw_name != DEFAULT_USERS[0]:
        log.warning("no %r user; dropping to %r (create a system user %r to own the state)",
                    DEFAULT_USERS[0], pw.pw_name, DEFAULT_USERS[0])
    return Target(pw.pw_name, pw.pw_uid, gid)


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


def own_state_dir(path: str | os.PathLike[str], user: str | None = None,
                  group: str | None = None, *, target: Target | None = None) -> int:
    """Give the state directory (SQLite store, list checkouts) to the user we will drop to.

    Call it as root, after the store is opened and before `drop_privileges()`: files root
    created (a fresh database, its WAL) must stay writable by the daemon afterwards. Creates the
    directory (mode 0700) when missing. Walks with directory fds and never follows symlinks, so
    a link planted in the directory cannot make root chown a file elsewhere. Returns how many
    entries changed owner; 0 and no change at all when no drop will happen.
    """
    if not should_drop():
        return 0
    target = target or resolve_target(user, group)
    os.makedirs(path, mode=0o700, exist_ok=True)
    top = os.path.realpath(path)  # the configured path is trusted; only its contents are not
    changed = _chown_if_needed(top, None, target)
    for _dir, dirnames, filenames, dirfd in os.fwalk(top):
        for name in (*dirnames, *filenames):
            changed += _chown_if_needed(name, dirfd, target)
    return changed


def _chown_if_needed(name: str | os.PathLike[str], dirfd: int | None, target: Target) -> int:
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if (st.st_uid, st.st_gid) == (target.uid, target.gid):
        return 0
    os.chown(name, target.uid, target.gid, dir_fd=dirfd, follow_symlinks=False)
    return 1


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
        # Supplementary groups first (root's would survive the uid change), then the gid while
        # we may still change it, then real, effective and saved uid together.
        os.setgroups([])
        os.setresgid(target.gid, target.gid, target.gid)
        os.setresuid(target.uid, target.uid, target.uid)
    except OSError as err:
        raise PrivilegeError(f"cannot switch to user {target.user!r}: {err}") from err
    _verify(target)
    log.info("dropped root privileges: running as %s (uid %d, gid %d)", target.user, target.uid,
             target.gid, extra={"event": "privileges_dropped", "user": target.user})
    return target.user


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
