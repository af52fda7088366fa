"""Hand-made mutations of the I/O paths, and the test that must catch each.

mutmut mutates the pure planner modules (see docs/CONTRIBUTING.rst); the code that writes to
drives is checked this way instead: each mutation below breaks one guarantee on purpose, in a
copy of the tree, and the named test must then fail.  A mutation that survives is a guarantee
no test guards.

    python tests/mutations.py            # all (as root: most tests need loop devices)
    python tests/mutations.py purge-rmtree sync-before-commit

Exit 0 when every mutation was caught.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Union

REPO = Path(__file__).resolve().parent.parent


class Mutation(NamedTuple):
    name: str
    file: str
    old: Union[str, tuple[str, ...]]  # one change, or several made together in the same file
    new: Union[str, tuple[str, ...]]
    test: str  # a pytest node id (or -k expression after "::-k ")


MUTATIONS = [
    Mutation(
        "purge-rmtree",  # a folder the job purges is removed with what is in it
        "multivolumecopy/writer.py",
        "                os.rmdir(drive.path(drive.on_drive(path) or path))",
        '                __import__("shutil").rmtree(drive.path(drive.on_drive(path) or path))',
        "tests/test_always_equal.py::test_a_foreign_file_in_a_purged_folder_is_kept",
    ),
    Mutation(
        "sync-before-commit",  # the manifest is committed before the drive's data is synced
        "multivolumecopy/drive.py",
        "        self.check_present()\n        self._guard(self._synced)\n        state = self.state",
        "        self.check_present()\n        state = self.state",
        "tests/test_always_equal.py::test_the_drive_is_synced_before_its_manifest_is_committed",
    ),
    Mutation(
        "jobfile-in-place",  # the jobfile is rewritten in place: a kill leaves it half written
        "multivolumecopy/fsutil.py",
        '    tmp = os.path.join(directory, f"{os.path.basename(path)}{TMP_MARK}{os.getpid()}")',
        "    tmp = path",
        "tests/test_always_equal.py::test_the_jobfile_is_replaced_atomically",
    ),
    Mutation(
        "settle-keeps-missing",  # an entry its drive does not hold stays recorded there, as saved
        "multivolumecopy/ledger.py",
        "        self.unplace(missing)\n",
        "",
        # (in a whole run the plan copies what the drive lacks and the writer gives up a copy
        # that failed, so only the ledger's own test sees settle's rule alone)
        "tests/test_ledger.py::test_an_entry_recorded_on_a_volume_whose_drive_lacks_it_is_on_no_volume_and_unsaved",
    ),
    Mutation(
        "full-rewrites-kept",  # rewrites a full drive could not take keep their old copies there
        "multivolumecopy/writer.py",
        "            if i not in ctx.vanished and (not full or self.current(i)):",
        "            if i not in ctx.vanished:",
        "tests/test_always_equal.py::test_a_rewrite_that_meets_a_full_drive_goes_to_the_next_drive_and_its_old_copy_goes",
    ),
    Mutation(
        "unsaved-not-counted",  # a run ends without listing what is on no drive
        "multivolumecopy/backup.py",
        "for i in cat.unsaved() if i not in ctx.vanished",
        "for i in [] if i not in ctx.vanished",
        "tests/test_faults.py::test_an_unreadable_file_is_reported_and_skipped_and_the_next_run_copies_it",
    ),
    Mutation(
        "write-through-symlink",  # a foreign symlink where a folder goes is written through
        "multivolumecopy/writer.py",
        "        blocker = self.places.blocker(stored)\n",
        "        blocker = None\n",
        "tests/test_always_equal.py::test_a_foreign_symlink_where_a_folder_goes_is_never_followed",
    ),
    Mutation(
        "bare-mount-point",  # a job of drives takes the empty mount point for a drive
        "multivolumecopy/identify.py",
        "    if is_mount_point(output) or not any(",
        "    if True or not any(",
        "tests/test_always_equal.py::test_no_drive_mounted_at_the_bay_stops_and_writes_nothing_there",
    ),
    Mutation(
        "move-by-inode",  # a move is trusted by inode, size and time, not confirmed by content
        "multivolumecopy/writer.py",
        "                or held.sha256 != sha256_of(os.path.join(ctx.job.root, cat.paths[k]))\n",
        "",
        "tests/test_always_equal.py::test_a_move_with_new_content_but_the_same_inode_size_and_mtime_is_copied",
    ),
    Mutation(
        "overwrite-foreign",  # a file not ours in the way is written over
        "multivolumecopy/reconcile.py",
        "    if place.ours or not place.occupied or (is_folder and place.folder_there):",
        "    if True:",
        "tests/test_real_drives.py::test_foreign_files_on_a_drive_survive_and_cp_seeded_files_are_adopted",
    ),
    Mutation(
        "group-committed-twice",  # a staged folder committed again after an interrupt
        "multivolumecopy/copier/worker.py",
        "                group = None  # committed once",
        "                pass  # committed once",
        "tests/test_copier.py::test_an_interrupt_inside_a_staged_folder_moves_it_into_place_once_with_what_is_done",
    ),
    Mutation(
        "staged-parents",  # an entry staged below a folder the batch does not hold
        "multivolumecopy/copier/worker.py",
        "            make_parents(group.path, name)\n",
        "",
        "tests/test_always_equal.py::test_new_files_in_folders_a_drive_does_not_have_yet_are_backed_up",
    ),
    Mutation(
        "labelled-open-volume",  # a blank drive takes the place of a labelled unfinished volume
        "multivolumecopy/identify.py",
        "        if opened.labelled or job.catalog.volumes.count(run.open_volume):",
        "        if job.catalog.volumes.count(run.open_volume):",
        "tests/test_cli.py::test_a_crash_after_a_new_drive_was_labelled_needs_that_drive_not_a_blank_one",
    ),
    Mutation(
        "kept-unhashed",  # files with no recorded hash stay so
        "multivolumecopy/writer.py",
        "        again += self.hash_kept()",
        "        again += []",
        "tests/test_always_equal.py::test_files_without_a_hash_are_hashed_by_the_next_run_that_hashes",
    ),
    Mutation(
        "type-change-in-place",  # a folder that became a file is written over, not removed first
        "multivolumecopy/reconcile.py",
        "            plan.purge.append(path)  # another kind now: removed first, then written anew",
        "            pass",
        "tests/test_always_equal.py::test_a_folder_that_became_a_file_is_backed_up",
    ),
    Mutation(
        "symlink-time-ignored",  # a re-made symlink with a new time is the same version
        "multivolumecopy/catalog.py",
        "        return target == other_target and mtimes_equal(mtime_ns, other_mtime_ns, granularity)",
        "        return target == other_target",
        "tests/test_always_equal.py::test_a_symlink_remade_with_the_same_target_and_a_new_time_is_updated",
    ),
    Mutation(
        "case-folders-merged",  # Photos/ and photos/ share one folder on a drive that ignores case
        "multivolumecopy/drivenames.py",
        "        return stored if self.caps.case_sensitive else stored.casefold()",
        "        return stored",
        "tests/test_always_equal.py::test_folders_differing_only_in_case_on_exfat_verify_and_restore",
    ),
    Mutation(
        "verified-when-failed",  # a scrub that found damage records the volume as verified
        "multivolumecopy/verify.py",
        "    if whole and report.ok:",
        "    if whole:",
        "tests/test_verify_restore.py::-k failed_scrub_records_no_verification",
    ),
    Mutation(
        "old-copy-accepted",  # a drive whose volume id the jobfile knows as another drive is used
        "multivolumecopy/identify.py",
        "    if known is not None and known.uuid != label.volume_uuid:",
        "    if False:",
        "tests/test_identify.py::test_a_drive_whose_volume_id_the_jobfile_knows_as_another_drive_is_refused_as_an_old_copy",
    ),
    Mutation(
        "label-before-record",  # a blank drive is labelled before the jobfile records its volume
        "multivolumecopy/identify.py",
        "    save()  # before the label: a crash in between leaves a volume with no files\n",
        "",
        "tests/test_identify.py::test_a_blank_drive_becomes_the_next_volume_and_is_labelled_between_two_saves",
    ),
    Mutation(
        "removal-unjournalled",  # files are removed before the journal makes them ours-unknown
        "multivolumecopy/writer.py",
        "        drive.intent(paths)\n        removed: list[str] = []",
        "        removed: list[str] = []",
        "tests/test_sequences.py::test_a_file_removed_then_killed_before_the_removal_was_recorded_is_copied_when_it_comes_back",
    ),
    Mutation(
        "rename-unjournalled",  # a rename's old path is not made dirty first, nor dropped if gone
        "multivolumecopy/writer.py",
        (
            "drive.intent([cat.paths[k] for _, k in plan.rename] + [old for old, _ in plan.rename])",
            "the file is copied\n                again.append(k)\n                unconfirmed.append(old)\n",
        ),
        (
            "drive.intent([cat.paths[k] for _, k in plan.rename])",
            "the file is copied\n                again.append(k)\n",
        ),
        "tests/test_sequences.py::test_a_moved_file_killed_right_after_its_rename_on_the_drive_is_not_listed_at_its_old_path",
    ),
    Mutation(
        "syncfs-error-hidden",  # a sync that failed falls back to sync(), which says nothing
        "multivolumecopy/fsutil.py",
        "        if err != errno.ENOSYS:\n            raise OSError(err, os.strerror(err), path)\n",
        "",
        "tests/test_faults.py::test_a_drive_that_loses_writes_after_the_page_cache_took_them_is_never_reported_synced",
    ),
    Mutation(
        "sync-through-fresh-descriptor",  # the commit's sync opens a descriptor of its own
        "multivolumecopy/drive.py",
        "        if self._sync is not None:\n            self._sync.sync()\n"
        "        else:\n            syncfs(self.root)",
        "        syncfs(self.root)",
        "tests/test_faults.py::test_a_commit_hears_of_a_lost_write_that_another_sync_heard_of_first",
    ),
    Mutation(
        "journalled-change-unseen",  # a visit that wrote to the drive is taken as one that changed nothing
        "multivolumecopy/drive.py",
        "        self.changed = self.changed or changes\n",
        "        self.changed = self.changed\n",
        "tests/test_reruns.py::test_a_rerun_writes_only_the_changes_and_every_file_keeps_its_drive",
    ),
    Mutation(
        "unchanged-drive-recommitted",  # a drive that needed nothing has its records rewritten
        "multivolumecopy/backup.py",
        "        unchanged = not drive.changed",
        "        unchanged = False",
        "tests/test_unchanged_drive.py",
    ),
    Mutation(
        "refused-drive-not-offered-again",  # a blank drive refused early is never used in the run
        "multivolumecopy/backup.py",
        "                queue = [out for out, done in refused.items() if done < volumes_done]",
        "                queue = []",
        "tests/test_attached_drives.py::test_a_blank_drive_refused_at_first_is_the_new_volume_once_one_is_needed",
    ),
    Mutation(
        "overflow-to-a-new-drive",  # what a full volume could not take waits for a new drive
        "multivolumecopy/backup.py",
        "        place_overflow(ctx, rec.number)  # to a volume with room, before a new drive",
        "        pass",
        "tests/test_attached_drives.py::test_what_a_full_volume_cannot_take_goes_to_a_volume_with_room_not_a_new_drive",
    ),
    Mutation(
        "special-alone-on-no-drive",  # a new FIFO alone: "nothing to do", no drive's copy knows it
        "multivolumecopy/prepare.py",
        "        pending |= special_volumes(job, old_catalog, set(job.specials) ^ set(specials))",
        "        pass",
        "tests/test_special_files.py::test_a_new_fifo_alone_reaches_a_drives_copy_of_the_jobfile",
    ),
    Mutation(
        "parity-old-volumes-unvisited",  # --parity on an old job leaves its volumes unprotected
        "multivolumecopy/backup.py",
        "                pending |= self._parity.unmapped(job)",
        "                pass",
        "tests/test_parity.py::-k old_job",
    ),
    Mutation(
        "unread-folder-purged",  # a folder the scan cannot list has its copies deleted from the drives
        "multivolumecopy/prepare.py",
        "    if old is not None and unreadable:",
        "    if False:",
        "tests/test_special_files.py::test_a_folder_that_cannot_be_read_for_a_while_keeps_its_copies_on_the_drives",
    ),
    Mutation(
        "dry-run-by-capacity",  # --dry-run plans from the recorded capacity with its own estimate
        "multivolumecopy/dryrun.py",
        "            plan = plans[v] = recorded_plan(ctx, rec)",
        "            plan = plans[v] = VolumePlan(v)",
        "tests/test_dry_run.py",
    ),
    Mutation(
        "metadata-no-chown",  # copies on the drives keep the creating user, not the source's owner
        "multivolumecopy/metadata.py",
        "                os.fchown(target, *ids)",
        "                pass",
        "tests/test_metadata.py::test_owners_acls_and_attributes_survive_on_the_drives_and_through_restore",
    ),
    Mutation(
        "metadata-no-xattrs-copied",  # a file's ACLs and attributes are not copied to the drive
        "multivolumecopy/copier/filecopy.py",
        "    return metadata.apply(fd, uid, gid, xattrs, mode if mode & 0o6000 or acl else None, keep)",
        "    return metadata.apply(fd, uid, gid, None, mode if mode & 0o6000 or acl else None, keep)",
        "tests/test_metadata.py::test_owners_acls_and_attributes_survive_on_the_drives_and_through_restore",
    ),
    Mutation(
        "metadata-batch-folder-inherits",  # a drive root's default ACL and group pass on to copies
        "multivolumecopy/copier/worker.py",
        "        plain_folder(path)\n",
        "",
        "tests/test_metadata.py::test_owners_acls_and_attributes_survive_on_the_drives_and_through_restore",
    ),
    Mutation(
        "metadata-change-unseen",  # a chown alone is not seen by the change detection
        "multivolumecopy/changes.py",
        "    return a != UNKNOWN_ID and b != UNKNOWN_ID",
        "    return False",
        "tests/test_metadata.py::test_a_metadata_change_alone_updates_the_drives_without_copying_data",
    ),
    Mutation(
        "metadata-restore-none",  # --restore sets modes but no owner nor attribute
        "multivolumecopy/destination.py",
        "                raise NotPlaced(why)\n            self._apply(fd, meta, mode)",
        "                raise NotPlaced(why)\n            self._apply(fd, None, mode)",
        "tests/test_metadata.py::test_an_exfat_drive_records_what_it_cannot_hold_and_restore_gives_it_back",
    ),
    Mutation(
        "metadata-refusal-fails",  # a chown the user may not do fails the run instead of a note
        "multivolumecopy/metadata.py",
        "            if err.errno not in REFUSED:\n                raise\n            lost |= LOST_OWNER",
        "            raise",
        "tests/test_metadata.py::test_a_user_without_root_keeps_what_it_can_says_once_what_not_and_exits_0",
    ),
    Mutation(
        "parity-volume-not-xored",  # a rebuild leaves one volume's blocks out of the XOR
        "multivolumecopy/rebuild.py",
        "                self._xor_volume(drive, label.volume)",
        "                self.needed.discard(label.volume)",
        "tests/test_parity.py::test_a_lost_data_drive_is_rebuilt_exactly_from_the_parity_drive_and_the_others",
    ),
    Mutation(
        "parity-not-marked-before-write",  # parity blocks rewritten while the record still claims them
        "multivolumecopy/parity.py",
        '            self._commit(drive, rec)\n            faults.point("parity:marked")',
        '            faults.point("parity:marked")',
        "tests/test_parity.py::-k killed_midway",
    ),
    Mutation(
        "parity-claimed-before-sync",  # the record claims new parity before it is synced
        "multivolumecopy/parity.py",
        ("                drive._guard(os.fsync, fd)\n", "            drive._guard(drive._synced)\n"),
        ("", ""),
        "tests/test_parity.py::test_the_parity_record_is_committed_only_after_the_parity_is_synced",
    ),
    Mutation(
        "parity-source-trusted",  # a source file is kept in the parity without its hash matching the drive's
        "multivolumecopy/parity.py",
        "        if self.pos != self.row.size or self.digest.hexdigest() != self.row.sha256:",
        "        if False:",
        "tests/test_parity.py::-k source_changed",
    ),
    Mutation(
        "parity-not-updated-after-changes",  # a re-run leaves the parity drive as it was
        "multivolumecopy/parity.py",
        "    return bool(dirty(rec.volumes, wanted, rec.invalid)) or any(",
        "    return False and any(",
        "tests/test_parity.py::-k rerun_with_changes",
    ),
    Mutation(
        "parity-replaced-taken",  # --replace-volume P1 takes the parity drive it replaces
        "multivolumecopy/parity.py",
        "        elif self.replaced == label.volume_uuid:",
        "        elif False:",
        "tests/test_parity_replace.py::-k lost_parity_drive_is_replaced",
    ),
    Mutation(
        "parity-replaced-rebuilds",  # a rebuild reads a replaced parity drive
        "multivolumecopy/rebuild.py",
        "        if pmap is not None and pmap.drive_uuid not in (None, label.volume_uuid):",
        "        if False:",
        "tests/test_parity_replace.py::-k lost_parity_drive_is_replaced",
    ),
    Mutation(
        "parity-replaced-record-trusted",  # --status goes by the record of the parity drive replaced
        "multivolumecopy/parity.py",
        "    if rec is not None and pmap.drive_uuid not in (None, rec.uuid):\n        return None\n",
        "",
        "tests/test_parity_replace.py::-k parity_replacement_killed",
    ),
    Mutation(
        "replacement-not-blank-taken",  # a drive holding files is taken for a new volume N
        "multivolumecopy/replacement.py",
        "            if names:",
        "            if False:",
        "tests/test_parity_replace.py::-k written_anew",
    ),
    Mutation(
        "replacement-file-unrecorded",  # a rebuilt file is put on the new drive but not in its manifest
        "multivolumecopy/replacement.py",
        "        drive.put([cat.entry(i)._replace(sha256=row.sha256)])\n",
        "",
        "tests/test_parity_replace.py::-k written_anew",
    ),
    Mutation(
        "replacement-time-not-set",  # a rebuilt file keeps the time it was rebuilt at
        "multivolumecopy/replacement.py",
        "        drive._guard(os.utime, scratch, ns=(cat.mtimes[i], cat.mtimes[i]))\n",
        "",
        "tests/test_parity_replace.py::-k written_anew",
    ),
    Mutation(
        "replacement-not-resumed",  # a replacement cut short after its label starts on a new drive
        "multivolumecopy/replacement.py",
        "        elif label.volume_uuid != rec.uuid:",
        "        elif True:",
        "tests/test_parity_replace.py::-k written_anew",
    ),
    Mutation(
        "parity-left-out-blocks-kept",  # a file left out keeps its bytes in blocks not computed again
        "multivolumecopy/parity.py",
        "                stale.extend(subtract([(src.row.start, src.row.stop)], todo))\n",
        "",
        "tests/test_parity_review.py::-k left_out_of_a_partial",
    ),
    Mutation(
        "parity-link-to-gone-first",  # a hard link whose first path is gone gets no row
        "multivolumecopy/parity.py",
        "    return first is not None and first.kind == FILE and",
        "    return bool(e.target) or first is not None and first.kind == FILE and",
        "tests/test_parity_review.py::-k hard_link_whose_first",
    ),
    Mutation(
        "parity-time-ignored",  # a touched file counts as protected while P1's record has its old time
        "multivolumecopy/paritymap.py",
        "    have = set(included)\n    missing = [r for r in wanted if r not in have]",
        "    have = {r._replace(mtime_ns=0) for r in included}\n"
        "    missing = [r for r in wanted if r._replace(mtime_ns=0) not in have]",
        "tests/test_parity_review.py::-k only_touched",
    ),
]


def run(mutation: Mutation, workdir: Path) -> bool:
    """True when the mutation was caught (its test failed)."""
    tree = workdir / mutation.name
    shutil.copytree(
        REPO,
        tree,
        ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", ".hypothesis", "mutants", "build"),
    )
    target = tree / mutation.file
    text = target.read_text()
    olds = (mutation.old,) if isinstance(mutation.old, str) else mutation.old
    news = (mutation.new,) if isinstance(mutation.new, str) else mutation.new
    for old, new in zip(olds, news):
        if text.count(old) != 1:
            raise SystemExit(f"{mutation.name}: the code to mutate is not found once in {mutation.file}")
        text = text.replace(old, new)
    target.write_text(text)
    node, _, k = mutation.test.partition("::-k ")
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", node] + (
        ["-k", k] if k else []
    )
    result = subprocess.run(args, cwd=tree, capture_output=True, text=True, timeout=900)
    shutil.rmtree(tree, ignore_errors=True)
    return result.returncode != 0


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    survived = []
    with tempfile.TemporaryDirectory(prefix="mvc-mutations-") as top:
        for m in chosen:
            caught = run(m, Path(top))
            print(f"{'caught  ' if caught else 'SURVIVED'}  {m.name:<24} {m.test}", flush=True)
            if not caught:
                survived.append(m.name)
    print(f"{len(chosen) - len(survived)} of {len(chosen)} caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
