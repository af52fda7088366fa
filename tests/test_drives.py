"""The test drives themselves: an image can be mounted again at once, however it was unmounted,
and nothing of a drive stays attached or on disk after the test."""

from __future__ import annotations

import subprocess

from conftest import needs_root

pytestmark = needs_root


def test_one_image_mounted_unmounted_and_inspected_50_times_in_a_row_never_meets_a_busy_device(
    tmp_path, drives
):
    image = drives.image("d1", 2048)
    point = tmp_path / "usb"
    point.mkdir()
    for n in range(50):
        if n % 2:  # as the swap script mounts: the kernel detaches this one when it likes
            subprocess.run(["mount", "-o", "loop", str(image), str(point)], check=True)
        else:
            drives.mount(image, point)
        (point / "n").write_text(str(n))
        drives.umount(point)
        with drives.inspect([image]) as (seen,):  # read-only, right after the read-write mount
            assert (seen / "n").read_text() == str(n)
    assert drives.attached(image) == []  # the last unmount waited for its detach


def test_released_drives_leave_no_loop_device_and_no_image(tmp_path, drives):
    image = drives.image("d1", 2048)
    drives.mount(image, tmp_path / "usb")
    subprocess.run(["umount", str(tmp_path / "usb")], check=True)  # behind the helper's back

    drives.release()

    assert not image.exists()
    assert str(image) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
