"""The job's options resolved (multivolumecopy.joboptions): what the command line gives, what the
jobfile records, and the built-in defaults, in tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multivolumecopy import joboptions as jo
from multivolumecopy.errors import ExitCode, UsageError
from multivolumecopy.sizes import exact_size, parse_size

METADATA = {"owner": True, "acls": True, "xattrs": True}  # kept by default
DEFAULTS = {"exclude": [], "one_file_system": False, "device_padding": 0, "volume_size": None, **METADATA}
MADE = {
    "exclude": [".cache", "*.tmp"],
    "one_file_system": True,
    "device_padding": 500 << 20,
    "volume_size": 4 << 30,
    "owner": True,
    "acls": False,
    "xattrs": True,
}


def test_a_new_job_takes_what_is_given_and_the_defaults_for_the_rest():
    resolved = jo.resolve({"exclude": ["*.iso"], "device_padding": 1024}, None, change=False)

    assert resolved.values == {**DEFAULTS, "exclude": ["*.iso"], "device_padding": 1024}
    assert resolved.changes == ()


def test_a_new_job_given_nothing_has_the_defaults_each_in_a_list_of_its_own():
    first = jo.resolve({}, None, change=False).values
    first["exclude"].append("x")

    assert jo.resolve({}, None, change=False).values == DEFAULTS


def test_a_bare_run_takes_every_option_the_job_records():
    resolved = jo.resolve({}, MADE, change=False)

    assert resolved.values == MADE
    assert resolved.changes == ()
    assert resolved.values["exclude"] is not MADE["exclude"]  # the run's own list


@pytest.mark.parametrize(
    "given",
    [
        {"exclude": ["*.tmp", ".cache"]},  # the same patterns in another order
        {"exclude": [".cache", "*.tmp", ".cache"]},  # one given twice
        {"one_file_system": True},
        {"device_padding": 500 << 20},
        {"volume_size": 4 << 30},
        dict(MADE),
    ],
)
def test_a_run_giving_the_jobs_own_values_runs_and_keeps_the_record_as_it_was(given):
    resolved = jo.resolve(given, MADE, change=False)

    assert resolved.values == MADE
    assert resolved.changes == ()


def test_a_jobfile_older_than_an_option_gives_its_default_or_takes_the_one_given():
    old = {"exclude": [".cache"], "device_padding": 0, "volume_size": None}  # no one_file_system

    assert jo.resolve({}, old, change=False).values["one_file_system"] is False
    taken = jo.resolve({"one_file_system": True}, old, change=False)
    assert taken.values["one_file_system"] is True and taken.changes == ()


@pytest.mark.parametrize(
    "given,says",
    [
        (
            {"exclude": ["*.iso"]},
            "the job has --exclude .cache --exclude '*.tmp'; this run gives --exclude '*.iso': give "
            "--change-options to change the job's options (files they leave out are then deleted "
            "from the drives), or leave out --exclude to keep the job's",
        ),
        (
            {"exclude": [], "device_padding": 0},
            "the job has --exclude .cache --exclude '*.tmp' --device-padding 500M; this run gives "
            "--no-exclude --device-padding 0: give --change-options to change the job's options, or "
            "leave out --no-exclude and --device-padding to keep the job's",
        ),
        (
            {"one_file_system": False, "volume_size": None, "device_padding": 1000},
            "the job has --one-file-system --device-padding 500M --volume-size 4G; this run gives "
            "--no-one-file-system --device-padding 1KB --volume-size none: give --change-options to "
            "change the job's options, or leave out --no-one-file-system, --device-padding and "
            "--volume-size to keep the job's",
        ),
    ],
)
def test_a_run_giving_other_values_is_refused_in_one_line_naming_both(given, says):
    with pytest.raises(UsageError) as refused:
        jo.resolve(given, MADE, change=False)

    assert str(refused.value) == says
    assert refused.value.exit_code == ExitCode.USAGE


def test_turning_one_file_system_on_warns_that_files_leave_the_drives():
    with pytest.raises(UsageError, match=r"\(files they leave out are then deleted from the drives\)"):
        jo.resolve({"one_file_system": True}, DEFAULTS, change=False)


def test_change_options_adopts_what_differs_and_keeps_the_rest():
    resolved = jo.resolve({"exclude": ["*.iso"], "volume_size": 4 << 30}, MADE, change=True)

    assert resolved.values == {**MADE, "exclude": ["*.iso"]}
    assert [(c.option.key, c.old, c.new) for c in resolved.changes] == [
        ("exclude", [".cache", "*.tmp"], ["*.iso"])
    ]


@pytest.mark.parametrize(
    "given,says",
    [
        (
            {"exclude": [".cache", "*.tmp", "*.iso"]},
            "the job's options change to --exclude .cache --exclude '*.tmp' --exclude '*.iso' (were "
            "--exclude .cache --exclude '*.tmp'); files now left out are deleted from the drives, as "
            "files deleted from the sources are",
        ),
        (
            {"exclude": [".cache"]},
            "the job's options change to --exclude .cache (were --exclude .cache --exclude '*.tmp'); "
            "files no longer left out are copied",
        ),
        (
            {"exclude": ["*.iso"], "one_file_system": False},
            "the job's options change to --exclude '*.iso' --no-one-file-system (were --exclude .cache "
            "--exclude '*.tmp' --one-file-system); files now left out are deleted from the drives, as "
            "files deleted from the sources are; files no longer left out are copied",
        ),
        (
            {"device_padding": 1 << 30, "volume_size": None},
            "the job's options change to --device-padding 1G --volume-size none (were --device-padding "
            "500M --volume-size 4G); the new room applies to what is written from now on; what the "
            "drives hold stays",
        ),
    ],
)
def test_a_change_says_what_it_changes_and_what_that_does_to_the_drives(given, says):
    changes = jo.resolve(given, MADE, change=True).changes

    assert jo.change_note(changes) == says
    assert jo.change_note(changes, dry=True) == says.replace("options change", "options would change")


def test_change_options_with_nothing_different_changes_nothing():
    resolved = jo.resolve({"exclude": ["*.tmp", ".cache"]}, MADE, change=True)

    assert resolved.values == MADE and resolved.changes == ()


def test_what_a_jobfile_records_is_checked():
    assert jo.unknown({**MADE, "parity": 2}) == ["parity"]
    assert jo.unknown(MADE) == []
    assert jo.malformed(MADE) == [] and jo.malformed(DEFAULTS) == []
    assert jo.malformed(
        {"exclude": "*.tmp", "one_file_system": 1, "device_padding": -1, "volume_size": 0}
    ) == ["exclude", "one_file_system", "device_padding", "volume_size"]
    assert jo.malformed({"exclude": [3], "device_padding": True, "volume_size": "4G"}) == [
        "exclude",
        "device_padding",
        "volume_size",
    ]
    assert jo.malformed({"device_padding": None}) == ["device_padding"]  # only a limit can be none


def test_the_status_names_the_options_that_are_not_the_defaults():
    assert jo.describe({}) == "the defaults"
    assert jo.describe(DEFAULTS) == "the defaults"
    assert jo.describe({"exclude": ["a b"], "volume_size": 3 * 10**9}) == "--exclude 'a b' --volume-size 3GB"
    assert jo.describe({"parity": 2}) == "parity=2"


@pytest.mark.parametrize(
    "n,text",
    [
        (0, "0"),
        (1, "1"),
        (1024, "1K"),
        (1536, "1536"),
        (500 << 20, "500M"),
        (4 << 30, "4G"),
        (2 * 10**12, "2TB"),
        (10**6, "1MB"),
        (3000, "3KB"),
    ],
)
def test_sizes_are_shown_as_a_command_line_gives_them(n, text):
    assert exact_size(n) == text


@given(st.integers(0, 1 << 60))
def test_a_size_shown_reads_back_as_itself(n):
    assert parse_size(exact_size(n)) == n


def test_a_run_giving_several_other_patterns_is_told_to_leave_out_the_one_flag():
    with pytest.raises(UsageError) as err:
        jo.resolve({"exclude": ["*.iso", "*.bak"]}, {"exclude": []}, change=False)
    assert str(err.value).endswith("or leave out --exclude to keep the job's")


def test_a_volume_size_of_one_byte_is_a_valid_record_and_zero_is_not():
    assert jo.malformed({"volume_size": 1}) == []
    assert jo.malformed({"volume_size": 0}) == ["volume_size"]


def test_turning_owners_off_says_the_copies_on_the_drives_keep_theirs():
    note = jo.change_note(jo.resolve({"owner": False}, {"owner": True}, change=True).changes)
    assert note == (
        "the job's options change to --no-owner (were --owner); owners, ACLs and attributes are "
        "read by that rule from now on; a copy already on a drive keeps what it has until it is "
        "written again"
    )
