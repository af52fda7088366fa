"""Metadata in the pure stages: what the merge takes for a change of owner or attributes, and
what a volume's plan does about it (tables, no drive)."""

from __future__ import annotations

from multivolumecopy.catalog import DIR, FILE, LINK, Catalog, Entry
from multivolumecopy.changes import classify
from multivolumecopy.metadata import UNKNOWN_ID, decode, digest, encode
from multivolumecopy.reconcile import Space, plan_volume

ACL = encode([("system.posix_acl_access", b"\x02\x00\x00\x00"), ("user.tag", b"blue")])


def catalog(uid: int = 1000, xattrs=ACL, known: bool = True) -> Catalog:
    cat = Catalog()
    cat.append(Entry("d", DIR, 0, 5, 0o2775, uid=uid, gid=uid, xattrs=xattrs), 1)
    cat.append(Entry("d/f", FILE, 10, 7, 0o644, uid=uid, gid=100), 1)
    cat.append(Entry("d/l", LINK, 0, 7, 0o777, "f", uid=uid, gid=100), 1)
    cat.xattrs_known = known
    return cat


def scanned(**kw) -> Catalog:
    new = catalog(**kw)
    new.volumes = type(new.volumes)("i", [0] * len(new))
    return new


def test_attributes_are_a_canonical_text_that_round_trips():
    pairs = [("user.b", b"\x00\xff"), ("system.posix_acl_default", b"\x02\x00")]
    assert decode(encode(pairs)) == sorted(pairs)
    assert encode(list(reversed(pairs))) == encode(pairs)
    assert encode([]) is None and decode(None) == []


def test_a_chown_or_a_setfattr_alone_is_a_metadata_change_not_a_copy():
    old = catalog()
    for new, which in [
        (scanned(uid=1001), [0, 1, 2]),  # chown of everything, the symlink's own owner too
        (scanned(xattrs=None), [0]),  # setfattr -x / setfacl -b on the folder
    ]:
        ch = classify(old, new, lambda v: 1)
        assert ch.modes == which and ch.changed == [] and ch.new == []
        assert [ch.stale[i] for i in range(3)] == [1 if i in which else 0 for i in range(3)]


def test_owners_and_attributes_unknown_to_an_older_jobfile_are_no_change():
    """A jobfile of version 2 knows no owner nor attribute: the first run of this version
    must not mark every entry stale (it would ask for every drive)."""
    old = catalog(uid=UNKNOWN_ID, xattrs=None, known=False)
    ch = classify(old, scanned(), lambda v: 1)
    assert ch.modes == [] and not any(ch.stale) and ch.unchanged == 3
    # --no-owner now, owners recorded before: no change either.
    ch = classify(catalog(), scanned(uid=UNKNOWN_ID), lambda v: 1)
    assert ch.modes == []


def test_a_drive_copy_lacking_the_metadata_is_planned_for_it_and_one_of_unknown_metadata_is_left():
    cat = catalog()
    space = Space(free=10**9, block=4096)
    held = {e.path: e._replace(meta=digest(999, 999, None)) for e in cat}
    assert plan_volume(cat, 1, held, (), space).chmod == [0, 1, 2]
    current = {e.path: e for e in cat}  # Catalog.entry carries its digest
    assert plan_volume(cat, 1, current, (), space).chmod == []
    unknown = {e.path: e._replace(meta=0) for e in cat}  # a manifest of version 1
    assert plan_volume(cat, 1, unknown, (), space).chmod == []
    cat.stale[1] = 1  # ... unless the entry changed since: then it gets them
    assert plan_volume(cat, 1, unknown, (), space).chmod == [1]
