"""A fileserver's metadata beyond modes and times: owner and group, POSIX ACLs, extended
attributes.  Read from the sources by the scan, compared by the change detection, set on the
drives by the copy (and by a metadata-only update), and set again by ``--restore``.

ACLs are the ``system.posix_acl_access`` and ``system.posix_acl_default`` attributes, kept
as their raw values like any other attribute (``os.getxattr``/``os.setxattr``: no library).
An entry's attributes travel as one canonical text (:func:`encode`): the sorted (name, value)
pairs, values in base64; equal texts mean equal attributes.  What a drive was given is
recorded there as a short digest (:func:`digest`) of owner, group and that text.

Setting them follows an order: owner first (a ``chown`` clears set-user-ID, set-group-ID and
``security.capability``), then the attributes (an access ACL sets the group bits of the mode),
then the mode.  Nothing here follows a symlink: a symlink's own owner and attributes are set
(Linux refuses ``user.*`` on symlinks: left out quietly).  What the target refuses (a drive
that keeps no owners, a user without root) is told in the returned flags, not raised.
"""

from __future__ import annotations

import base64
import errno
import grp
import hashlib
import json
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

UNKNOWN_ID = 0xFFFFFFFF  # (uid_t)-1: never a real id; "not recorded" (--no-owner, older jobfiles)
ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
ACLS = (ACL_ACCESS, ACL_DEFAULT)

# What could not be kept on a target, as flags (a copy worker's outcome carries them).
LOST_OWNER = 1
LOST_ACLS = 2
LOST_XATTRS = 4
# Refusals that mean "this filesystem, or this user, cannot have that": never a drive failure.
# (E2BIG, ERANGE, ENOSPC: too many attributes, or too large, for this drive's filesystem.)
REFUSED = (
    errno.EPERM,
    errno.EACCES,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.ENOSYS,
    errno.EINVAL,
    errno.E2BIG,
    errno.ERANGE,
    errno.ENOSPC,
)


@dataclass(frozen=True)
class Keep:
    """What a job keeps besides data, modes and times: ``--no-owner``, ``--no-acls`` and
    ``--no-xattrs`` turn these off."""

    owner: bool = True
    acls: bool = True
    xattrs: bool = True

    @property
    def any_attributes(self) -> bool:
        """Whether any extended attribute is read at all (ACLs are attributes too)."""
        return self.acls or self.xattrs

    def wants(self, name: str) -> bool:
        """Whether the attribute ``name`` is kept."""
        return self.acls if name in ACLS else self.xattrs


KEEP_ALL = Keep()

Target = Union[int, str]  # an open descriptor, or a path (never followed if a symlink)


def encode(pairs: list[tuple[str, bytes]]) -> Optional[str]:
    """The canonical text of some attributes (None for none): sorted by name, values in base64."""
    if not pairs:
        return None
    rows = [[name, base64.b64encode(value).decode("ascii")] for name, value in sorted(pairs)]
    return json.dumps(rows, separators=(",", ":"))


def decode(text: Optional[str]) -> list[tuple[str, bytes]]:
    """The (name, value) pairs of :func:`encode`'s text."""
    if not text:
        return []
    return [(str(name), base64.b64decode(value)) for name, value in json.loads(text)]


def digest(uid: int, gid: int, xattrs: Optional[str]) -> int:
    """A short digest of what is kept of an entry's metadata (0: nothing is, or it is not known):
    what a drive's record says the drive's copy was given."""
    if uid == UNKNOWN_ID and gid == UNKNOWN_ID and not xattrs:
        return 0
    h = hashlib.blake2b(f"{uid}:{gid}:{xattrs or ''}".encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(h.digest(), "big") or 1


def read(path: Target, keep: Keep = KEEP_ALL) -> Optional[str]:
    """The attributes of ``path`` (not followed if a symlink) that ``keep`` keeps, as the
    canonical text; None when it has none, or the filesystem has no attributes."""
    if not keep.any_attributes:
        return None
    try:
        names = _list(path)
    except OSError:
        return None  # no attributes on this filesystem (or the entry is gone: the copy says so)
    if not names:
        return None
    pairs = []
    for name in names:
        if not keep.wants(name):
            continue
        try:
            pairs.append((name, _get(path, name)))
        except OSError:
            continue  # removed since it was listed, or not readable by this user
    return encode(pairs)


def apply(
    target: Target,
    uid: int,
    gid: int,
    xattrs: Optional[str],
    mode: Optional[int],
    keep: Keep = KEEP_ALL,
    is_link: bool = False,
) -> int:
    """Give ``target`` (a descriptor, or a path never followed) this owner, these attributes
    exactly (those it has and should not are removed, among the kinds ``keep`` keeps), then
    ``mode`` (None: leave the mode; symlinks have none).  Returns the :data:`LOST_OWNER`...
    flags of what the target refused; other errors are raised."""
    lost = 0
    if keep.owner and (uid != UNKNOWN_ID or gid != UNKNOWN_ID):
        ids = (uid if uid != UNKNOWN_ID else -1, gid if gid != UNKNOWN_ID else -1)
        try:
            if isinstance(target, int):
                os.fchown(target, *ids)
            else:
                os.chown(target, *ids, follow_symlinks=False)
        except OSError as err:
            if err.errno not in REFUSED:
                raise
            lost |= LOST_OWNER
    if keep.any_attributes:
        lost |= _set_attributes(target, decode(xattrs), keep, is_link)
    if mode is not None and not is_link:
        try:
            if isinstance(target, int):
                os.fchmod(target, mode & 0o7777)
            else:
                _chmod_unfollowed(target, mode & 0o7777)
        except OSError as err:
            if err.errno not in REFUSED:
                raise  # a drive that keeps no modes says so; the mode is in the records
    return lost


def _chmod_unfollowed(path: str, mode: int) -> None:
    try:
        os.chmod(path, mode, follow_symlinks=False)
    except NotImplementedError:  # a platform without fchmodat(AT_SYMLINK_NOFOLLOW)
        os.chmod(path, mode)


def _set_attributes(target: Target, wanted: list[tuple[str, bytes]], keep: Keep, is_link: bool) -> int:
    lost = 0
    try:
        there = set(_list(target))
    except OSError as err:
        if err.errno not in REFUSED:
            raise
        if not wanted:
            return 0
        there = set()
    want = dict(wanted)
    for name in there - set(want):
        if keep.wants(name):
            try:
                _remove(target, name)
            except OSError as err:
                if err.errno not in REFUSED + (errno.ENODATA,):
                    raise
    for name, value in wanted:
        if not keep.wants(name):
            continue
        if is_link and name.startswith("user."):
            continue  # Linux allows user.* attributes on files and folders only
        try:
            if name not in there or _get(target, name) != value:
                _set(target, name, value)
        except OSError as err:
            if err.errno not in REFUSED + (errno.ENODATA,):
                raise
            lost |= LOST_ACLS if name in ACLS else LOST_XATTRS
    return lost


# The attribute calls on a descriptor, or on a path never followed.


def _list(target: Target) -> list[str]:
    if isinstance(target, int):
        return os.listxattr(target)
    return os.listxattr(target, follow_symlinks=False)


def _get(target: Target, name: str) -> bytes:
    if isinstance(target, int):
        return os.getxattr(target, name)
    return os.getxattr(target, name, follow_symlinks=False)


def _set(target: Target, name: str, value: bytes) -> None:
    if isinstance(target, int):
        os.setxattr(target, name, value)
    else:
        os.setxattr(target, name, value, follow_symlinks=False)


def _remove(target: Target, name: str) -> None:
    if isinstance(target, int):
        os.removexattr(target, name)
    else:
        os.removexattr(target, name, follow_symlinks=False)


def lost_text(lost: int) -> str:
    """What the flags say could not be kept, for a person: "owners, ACLs"."""
    said = []
    if lost & LOST_OWNER:
        said.append("owners and groups")
    if lost & LOST_ACLS:
        said.append("ACLs")
    if lost & LOST_XATTRS:
        said.append("extended attributes")
    return ", ".join(said)


def owner_names(uids: Iterable[int], gids: Iterable[int]) -> dict[str, dict[str, str]]:
    """The names of these user and group ids on this machine (ids without a name left out), for
    a restore on another machine: ``{"users": {"1000": "alice"}, "groups": {...}}``."""
    users, groups = {}, {}
    for uid in set(uids) - {UNKNOWN_ID}:
        try:
            users[str(uid)] = pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
    for gid in set(gids) - {UNKNOWN_ID}:
        try:
            groups[str(gid)] = grp.getgrgid(gid).gr_name
        except KeyError:
            pass
    return {"users": users, "groups": groups}


class IdMap:
    """How ``--restore`` turns recorded ids into this machine's: by the names recorded with
    them (as tar and rsync do), or as they are with ``--numeric-ids`` and for an id that had no
    name, or whose name this machine does not know."""

    def __init__(self, owners: dict[str, dict[str, str]], numeric: bool):
        self.users: dict[int, int] = {}
        self.groups: dict[int, int] = {}
        if numeric:
            return
        for rec, name in owners.get("users", {}).items():
            try:
                self.users[int(rec)] = pwd.getpwnam(name).pw_uid
            except (KeyError, ValueError):
                pass
        for rec, name in owners.get("groups", {}).items():
            try:
                self.groups[int(rec)] = grp.getgrnam(name).gr_gid
            except (KeyError, ValueError):
                pass

    def uid(self, uid: int) -> int:
        """This machine's id of the recorded user ``uid``."""
        return self.users.get(uid, uid)

    def gid(self, gid: int) -> int:
        """This machine's id of the recorded group ``gid``."""
        return self.groups.get(gid, gid)
