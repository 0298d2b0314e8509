"""Danger rules for disk tools: formatting, partitioning, wiping a block device.

Only a device operand makes them dangerous (`mkfs.ext4 disk.img` builds an image file);
read-only modes (`fdisk -l`, `parted /dev/sda print`) are not.
"""

from __future__ import annotations

import re

from shellfish.shell.danger.scope import Report, Scope, paths, targets
from shellfish.shell.places import is_device
from shellfish.shell.syntax import SimpleCommand

FORMATTERS = re.compile(r"^(?:mkfs(?:\..+)?|mke2fs|mkswap|mkdosfs|mkntfs|newfs(?:_.+)?|wipefs)$")

PARTITIONERS = frozenset({"fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "parted", "blkdiscard"})

_PARTITION_READ_ONLY = frozenset({"-l", "--list", "-p", "--print", "-d", "--dump", "-V", "-s"})

_DISKUTIL_ERASE = re.compile(r"^(?:erase|zero|random|secureErase|partitionDisk|reformat)", re.I)


def check_disk_tool(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """shred, fdisk, parted, sgdisk...: modifying a disk device (not just printing it)."""
    if command.flag_names() & _PARTITION_READ_ONLY:
        return
    if command.name == "parted" and any(o in {"print", "p"} for o in command.operands[1:]):
        return
    devices = [p for p in targets(command.operands, scope) if is_device(p)]
    if devices:
        report.add("device-write", f"{command.name} modifies the disk {devices[0]}")


def check_format(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """mkfs and friends on a disk device (or on a variable that may be one); an image file
    or a swap file is a new filesystem, not an erased one."""
    for word in command.operands:
        found = paths(word, scope)
        if word.startswith("$") or any(is_device(p) for p in found):
            report.add("device-format", f"{command.name} erases the filesystem on {word}")
            return


def check_destructive_test(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """badblocks -w and hdparm --security-erase / --write-sector overwrite a whole disk."""
    flags = command.flag_names()
    writes = (
        "-w" in flags
        if command.name == "badblocks"
        else any(
            f.startswith(("--security-erase", "--write-sector", "--trim-sector")) for f in flags
        )
    )
    devices = [p for p in targets(command.operands, scope) if is_device(p)]
    if writes and devices:
        report.add("device-write", f"{command.name} overwrites the disk {devices[0]}")


def check_diskutil(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if command.operands and _DISKUTIL_ERASE.match(command.operands[0]):
        report.add("device-format", f"diskutil {command.operands[0]} erases a disk")
