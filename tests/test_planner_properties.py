"""Properties of the planner over any catalog and any set of volume capacities (hypothesis)."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from multivolumecopy.catalog import DIR, FILE, LINK, NO_VOLUME, Catalog, Entry, same_version, sort_key
from multivolumecopy.changes import classify
from multivolumecopy.fsutil import round_up
from multivolumecopy.ledger import Ledger
from multivolumecopy.reconcile import INODE_RESERVE, Space, cost, plan_volume, record_cost

sizes = st.lists(st.integers(min_value=0, max_value=60_000), min_size=1, max_size=60)
capacities = st.lists(st.integers(min_value=2_000, max_value=400_000), min_size=1, max_size=8)
blocks = st.sampled_from([512, 1024, 4096])


def carried(old, new, granularity):
    """classify, then the ledger installs the record it carried over (as a run's merge does)."""
    ch = classify(old, new, granularity)
    Ledger(new).carry(ch.volumes, ch.stale)
    return ch


def make_catalog(file_sizes: list[int]) -> Catalog:
    entries = []
    for n, size in enumerate(file_sizes):
        folder = f"dir{n % 5}"
        entries.append(Entry(f"{folder}/f{n:03d}", FILE, size, 1_000 + n, 0o644))
    entries += [Entry(f"dir{k}", DIR, 0, 1, 0o755) for k in range(min(5, len(file_sizes)))]
    return Catalog.from_entries(entries)


def fill_volumes(cat: Catalog, caps: list[int], block: int) -> dict[int, dict[str, Entry]]:
    """Plan and 'apply' every volume in turn, as a first backup does; returns what each holds."""
    held: dict[int, dict[str, Entry]] = {}
    for number, cap in enumerate(caps, start=1):
        unplaced = [i for i in range(len(cat)) if cat.volumes[i] == NO_VOLUME]
        plan = plan_volume(cat, number, {}, (), Space(free=cap, block=block), unplaced=unplaced)
        need = sum(cost(cat, i, block) + record_cost(cat.paths[i], True) for i in plan.fill)
        assert need <= cap, f"volume {number} planned over capacity: {need} > {cap}"
        assert plan.fill == unplaced[: len(plan.fill)], "a first backup takes a contiguous run"
        held[number] = {}
        for i in plan.fill:
            cat.volumes[i] = number
            held[number][cat.paths[i]] = cat.entry(i)
    return held


@settings(max_examples=200, deadline=None)
@given(sizes, capacities, blocks)
def test_no_volume_over_capacity_and_every_entry_on_at_most_one(file_sizes, caps, block):
    cat = make_catalog(file_sizes)
    held = fill_volumes(cat, caps, block)
    for i, path in enumerate(cat.paths):
        owners = [v for v, h in held.items() if path in h]
        assert owners == ([cat.volumes[i]] if cat.volumes[i] else [])


@settings(max_examples=200, deadline=None)
@given(sizes)
def test_with_room_enough_every_entry_lands_on_exactly_one_volume(file_sizes):
    cat = make_catalog(file_sizes)
    biggest = max(cost(cat, i, 4096) + record_cost(cat.paths[i], True) for i in range(len(cat)))
    held = fill_volumes(cat, [biggest] * len(cat), 4096)
    assert all(v != NO_VOLUME for v in cat.volumes)
    assert sum(len(h) for h in held.values()) == len(cat)


@settings(max_examples=200, deadline=None)
@given(sizes, capacities, blocks, st.data())
def test_a_replan_never_moves_or_rewrites_unchanged_files(file_sizes, caps, block, data):
    cat = make_catalog(file_sizes)
    held = fill_volumes(cat, caps, block)
    placed = [i for i in range(len(cat)) if cat.volumes[i] and cat.kinds[i] == ord(FILE)]
    changed = set(data.draw(st.lists(st.sampled_from(placed), unique=True))) if placed else set()
    deleted = set(data.draw(st.lists(st.sampled_from(placed), unique=True))) - changed if placed else set()
    # The next run's catalog: some files changed size, some deleted, the rest as they were.
    nxt = Catalog()
    for i in range(len(cat)):
        if i in deleted:
            continue
        e = cat.entry(i)
        nxt.append(e._replace(size=e.size + 1) if i in changed else e, cat.volumes[i])
    for number, cap in enumerate(caps, start=1):
        plan = plan_volume(nxt, number, held[number], (), Space(free=cap, block=block), unplaced=[])
        kept = {nxt.paths[i] for i in plan.keep}
        for path in held[number]:
            i = cat.index_of(path)
            assert i is not None
            if i in deleted:
                assert path in plan.purge
            elif i in changed:
                assert nxt.index_of(path) in plan.recopy
            else:
                assert path in kept, "an unchanged file must stay where it is, untouched"
                assert path not in plan.purge


names = st.lists(st.sampled_from(["a", "a b", "a-b", "a.b", "b", "é", "A"]), min_size=1, max_size=3)
trees = st.lists(st.tuples(names, st.integers(0, 3), st.integers(0, 3)), max_size=40)


def by_path(old: Catalog, new: Catalog) -> tuple[list[str], list[str], list[str], list[str]]:
    """The reference: what is new, changed, unchanged and gone, comparing path by path."""
    before = {e.path: (e, old.volumes[j]) for j, e in enumerate(old)}
    now = {e.path for e in new}
    fresh, changed, same = [], [], []
    for e in new:
        was = before.get(e.path)
        if was is None or was[1] == NO_VOLUME:
            fresh.append(e.path)
        elif (was[0].kind, was[0].size, was[0].mtime_ns) == (e.kind, e.size, e.mtime_ns):
            same.append(e.path)
        else:
            changed.append(e.path)
    gone = [p for p, (e, v) in before.items() if p not in now and v != NO_VOLUME]
    return sorted(fresh), sorted(changed), sorted(same), sorted(gone)


@settings(max_examples=300, deadline=None)
@given(trees, trees, st.booleans())
def test_comparing_two_catalogs_side_by_side_agrees_with_comparing_path_by_path(before, after, shuffle):
    def catalog(tree, volume: int) -> Catalog:
        entries = {
            "/".join(parts): Entry("/".join(parts), FILE, size, mtime, 0o644) for parts, size, mtime in tree
        }
        cat = Catalog.from_entries(entries.values())
        for i in range(len(cat)):
            cat.volumes[i] = volume if i % 3 else NO_VOLUME
        return cat

    old, new = catalog(before, 1), catalog(after, 0)
    if shuffle:  # a jobfile edited by hand: the old catalog out of index order
        old.paths.reverse()
        old.sizes.reverse()
        old.mtimes.reverse()
        old.volumes.reverse()
    want = by_path(old, new)
    ch = carried(old, new, lambda v: 1)
    moved_to = {new.paths[i] for i in ch.moved}
    got = (
        sorted([new.paths[i] for i in ch.new] + list(moved_to)),
        sorted(new.paths[i] for i in ch.changed),
        ch.unchanged,
        sorted(old.paths[j] for j in ch.deleted),
    )
    assert (got[0], got[1], got[2], got[3]) == (want[0], want[1], len(want[2]), want[3])


# -- one volume's plan, from any state of its drive ---------------------------------------------

POOL = ["a", "a/b", "a/c", "a b", "b", "b/x", "c"]
VERSIONS = ["absent", "same", "size", "mtime", "mode", "kind"]  # what the drive holds of an entry


@st.composite
def drive_states(draw):
    """A catalog (entries on volume 1, on volume 2, on none), what volume 1's drive holds of
    it (current, out of date, of another kind, or nothing), copies of deleted files, moves,
    dirty paths, and the space the drive offers."""
    paths = sorted(draw(st.sets(st.sampled_from(POOL), min_size=1)), key=sort_key)
    cat = Catalog()
    for p in paths:
        kind = draw(st.sampled_from([FILE, FILE, DIR, LINK]))
        size = draw(st.integers(0, 5_000)) if kind == FILE else 0
        target = "t" if kind == LINK else None
        cat.append(Entry(p, kind, size, 1_000, 0o644, target), draw(st.sampled_from([0, 1, 1, 2])))
    held: dict[str, Entry] = {}
    for i, p in enumerate(cat.paths):
        e = cat.entry(i)
        version = draw(st.sampled_from(VERSIONS))
        if version == "size" and e.kind == FILE:
            held[p] = e._replace(size=e.size + 1)
        elif version == "mtime" and e.kind != DIR:
            held[p] = e._replace(mtime_ns=1)
        elif version == "mode":
            held[p] = e._replace(mode=0o600)
        elif version == "kind":
            held[p] = Entry(p, DIR, 0, 1_000, 0o755) if e.kind != DIR else Entry(p, FILE, 7, 1_000, 0o644)
        elif version != "absent":
            held[p] = e
    moves = {}
    for n in range(draw(st.integers(0, 2))):
        old = f"gone{n}"
        held[old] = Entry(old, FILE, draw(st.integers(0, 5_000)), 1_000, 0o644)
        new = draw(st.sampled_from(paths))
        if new not in moves and draw(st.booleans()):
            moves[new] = old
            if draw(st.booleans()):  # the moved file's copy is current: renamed
                i = cat.index_of(new)
                assert i is not None
                held[old] = cat.entry(i)._replace(path=old)
    dirty = {p: draw(st.integers(0, 5_000)) for p in draw(st.sets(st.sampled_from(POOL + ["tmp"])))}
    space = Space(
        free=draw(st.integers(0, 40_000)),
        block=draw(st.sampled_from([512, 4096])),
        padding=draw(st.integers(0, 2_000)),
        volume_size=draw(st.none() | st.integers(0, 40_000)),
        reserve=draw(st.integers(0, 2_000)),
        inodes=draw(st.none() | st.integers(0, 30)),
    )
    here = draw(st.none() | st.sets(st.integers(0, len(cat) - 1)))
    return cat, held, dirty, space, moves, here


@settings(max_examples=300, deadline=None)
@given(drive_states())
def test_a_plan_accounts_for_everything_on_the_drive_once_and_fits_its_space(state):
    cat, held, dirty, space, moves, here = state
    comes_here = None if here is None else here.__contains__
    # The candidates are the entries on no volume meant for this one, as backup.py passes them
    # (those the drive holds included: test_a_candidate_the_drive_already_holds_is_not_copied_again).
    unplaced = [i for i in cat.indexes_on(NO_VOLUME) if here is None or i in here]
    plan = plan_volume(cat, 1, held, dirty, space, 1, unplaced, moves, comes_here)
    renamed = dict(plan.rename)
    kept = {cat.paths[i] for i in plan.keep}
    rewritten = {cat.paths[i] for i in plan.recopy}

    # Nothing is both kept and removed; a copy renamed is neither.
    assert not kept & set(plan.purge)
    assert not set(renamed) & (set(plan.purge) | kept)
    # Every copy on the drive is kept, renamed, rewritten in place or removed.
    assert set(held) <= kept | set(renamed) | rewritten | set(plan.purge)
    assert len(plan.purge) == len(set(plan.purge))
    # Each entry gets one fate here: kept, renamed to, rewritten, copied anew, or sent elsewhere.
    fates = [plan.keep, list(renamed.values()), plan.recopy, plan.fill, plan.overflow]
    assert sum(len(f) for f in fates) == len(set().union(*fates))
    assert set(plan.chmod) <= set(plan.keep)
    # Everything this volume is recorded to hold stays here or is sent elsewhere.
    assert set(cat.indexes_on(1)) <= set(plan.keep) | set(renamed.values()) | set(plan.recopy) | set(
        plan.overflow
    )
    for i in list(renamed.values()) + plan.recopy:
        assert cat.volumes[i] == 1 or i in plan.keep or cat.volumes[i] == NO_VOLUME
    # New entries form a run in index order from the first candidate the drive does not already
    # hold (one it holds is kept or rewritten, never copied a second time).
    decided = set(plan.keep) | set(plan.recopy) | set(plan.overflow) | set(renamed.values())
    fresh = [i for i in unplaced if i not in decided]
    assert plan.fill == fresh[: len(plan.fill)]

    # What is written fits the disk: its free space, plus what the removals and rewrites free,
    # less the padding, the reserve and our records.
    block = space.block
    gone_files = [e for p, e in held.items() if e.kind == FILE and p not in kept and p not in renamed]
    freed = sum(round_up(e.size, block) for e in gone_files)
    freed += sum(round_up(size, block) for p, size in dirty.items() if p not in held)
    records = sum(record_cost(cat.paths[i], False) for i in plan.keep)
    records += sum(record_cost(cat.paths[k], True) for k in renamed.values())
    written = sum(cost(cat, i, block) + record_cost(cat.paths[i], True) for i in plan.writes)
    if plan.writes:
        assert written + records <= space.free + freed - space.padding - space.reserve
    # ...and all the job keeps here fits --volume-size.
    if plan.writes and space.volume_size is not None:
        stays = plan.keep + list(renamed.values()) + plan.writes
        assert sum(cost(cat, i, block) for i in stays) <= space.volume_size
    if space.inodes is not None:
        assert len(plan.fill) <= max(0, space.inodes + len(plan.purge) - INODE_RESERVE)


# -- what changed since the last run, from any change to the sources ----------------------------

NAMES = ["a", "a/b", "a/c", "a b", "b", "b/x", "c", "d", "e/f"]
EDITS = ["none", "size", "mtime", "mode", "kind", "delete", "move"]


@st.composite
def reruns(draw):
    """The last run's catalog (entries on volumes or none, some stale) and a new scan of the
    sources after some entries changed, were deleted, moved (a new name, the same inode) or
    added."""
    paths = sorted(draw(st.sets(st.sampled_from(NAMES), min_size=1)), key=sort_key)
    old = Catalog()
    for n, p in enumerate(paths):
        kind = draw(st.sampled_from([FILE, FILE, DIR, LINK]))
        e = Entry(p, kind, draw(st.integers(0, 3)) if kind == FILE else 0, 1_000, 0o644)
        e = e._replace(target="t" if kind == LINK else None, ino=n + 1 if kind == FILE else 0)
        volume = draw(st.sampled_from([0, 1, 2]))
        old.append(e, volume)
        old.stale[n] = draw(st.sampled_from([0, 1])) if volume else 0
    entries: dict[str, Entry] = {}
    for e in old:
        i = old.index_of(e.path)
        assert i is not None
        e = e._replace(ino=old.inodes[i])
        edit = draw(st.sampled_from(EDITS))
        if edit == "move":
            to = draw(st.sampled_from(NAMES + ["m1", "m2", "m3"]))
            if to not in paths and to not in entries:
                entries[to] = e._replace(path=to)
                continue
            edit = "none"
        if edit != "delete":
            entries[e.path] = {
                "none": e,
                "size": e._replace(size=e.size + 1) if e.kind == FILE else e,
                "mtime": e._replace(mtime_ns=2_000),
                "mode": e._replace(mode=0o600),
                "kind": e._replace(kind=DIR, target=None, ino=0) if e.kind != DIR else e,
                "delete": e,
            }[edit]
    for p in draw(st.sets(st.sampled_from(NAMES + ["n1", "n2"]))):
        entries.setdefault(p, Entry(p, FILE, 1, 1_000, 0o644, ino=100 + len(entries)))
    new = Catalog.from_entries(entries.values())
    for i, e in enumerate(new):
        new.inodes[i] = entries[e.path].ino
    return old, new


@settings(max_examples=300, deadline=None)
@given(reruns(), st.sampled_from([1, 2_000_000_000]))
def test_every_entry_is_new_changed_moved_or_unchanged_and_keeps_its_volume_and_stale_mark(
    rerun, granularity
):
    old, new = rerun
    before = Catalog()  # the old catalog as it was (classify fills in the new one only)
    for e in old:
        before.append(e)
    before.volumes, before.stale, before.inodes = array("i", old.volumes), bytearray(old.stale), old.inodes
    ch = carried(old, new, lambda v: granularity)

    changed, fresh, moved, modes = set(ch.changed), set(ch.new), set(ch.moved), set(ch.modes)
    assert not (changed & fresh or changed & moved or fresh & moved or modes & (changed | fresh | moved))
    assert len(changed) + len(fresh) + len(moved) + ch.unchanged == len(new)
    now = set(new.paths)
    assert ch.deleted == [j for j in range(len(before)) if before.volumes[j] and before.paths[j] not in now]
    for i in range(len(new)):
        j = before.index_of(new.paths[i])
        if i in moved:
            was = ch.moved[i]
            assert was in ch.deleted and before.kinds[was] == new.kinds[i] == ord(FILE)
            assert (before.inodes[was], before.sizes[was], before.mtimes[was]) == (
                new.inodes[i],
                new.sizes[i],
                new.mtimes[i],
            )
            assert (new.volumes[i], new.stale[i]) == (before.volumes[was], 1)
        elif j is None or before.volumes[j] == NO_VOLUME:
            assert i in fresh and new.volumes[i] == NO_VOLUME and not new.stale[i]
        else:
            assert new.volumes[i] == before.volumes[j]
            same = same_version(*_version(before, j), *_version(new, i), granularity)
            assert (i in changed) is not same
            metadata = (new.kinds[i] != ord(LINK) and new.modes[i] != before.modes[j]) or (
                new.kinds[i] == ord(DIR) and new.mtimes[i] != before.mtimes[j]
            )
            assert (i in modes) is (same and metadata)
            # a change marks it stale (its volume holds an older version); else it keeps its mark
            assert new.stale[i] == (1 if i in changed or i in modes else before.stale[j])
    touched = {new.volumes[i] for i in range(len(new)) if new.stale[i]}
    touched |= {before.volumes[j] for j in ch.deleted}
    assert ch.volumes_touched(old) == touched - {NO_VOLUME}


def _version(cat: Catalog, i: int) -> tuple:
    return chr(cat.kinds[i]), cat.sizes[i], cat.mtimes[i], cat.targets.get(i)
