"""Properties of the planner over any catalog and any set of volume capacities (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from multivolumecopy.catalog import DIR, FILE, NO_VOLUME, Catalog, Entry
from multivolumecopy.changes import classify
from multivolumecopy.reconcile import Space, cost, plan_volume, record_cost

sizes = st.lists(st.integers(min_value=0, max_value=60_000), min_size=1, max_size=60)
capacities = st.lists(st.integers(min_value=2_000, max_value=400_000), min_size=1, max_size=8)
blocks = st.sampled_from([512, 1024, 4096])


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
    ch = classify(old, new, lambda v: 1)
    moved_to = {new.paths[i] for i in ch.moved}
    got = (
        sorted([new.paths[i] for i in ch.new] + list(moved_to)),
        sorted(new.paths[i] for i in ch.changed),
        ch.unchanged,
        sorted(old.paths[j] for j in ch.deleted),
    )
    assert (got[0], got[1], got[2], got[3]) == (want[0], want[1], len(want[2]), want[3])
