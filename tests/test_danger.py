"""Danger classification: destructive commands are flagged, everyday look-alikes are not."""

from __future__ import annotations

import pytest

from shellfish.shell.danger import classify, dangers

DANGEROUS: list[tuple[str, str]] = [
    ("rm -rf /", "rm-broad"),
    ("sudo rm -rf --no-preserve-root /", "rm-broad"),
    ("rm -rf ~", "rm-broad"),
    ("rm -r -f $HOME/*", "rm-broad"),
    ("cd build && rm -Rf *", "rm-broad"),
    ('rm -rf "$DIR/"', "rm-broad"),
    ("rm --recursive /usr", "rm-broad"),
    ("find / -name '*.log' -delete", "rm-broad"),
    ("dd if=/dev/zero of=/dev/sda bs=1M", "device-write"),
    ("sudo mkfs.ext4 /dev/sdb1", "device-format"),
    ("wipefs -a /dev/nvme0n1", "device-format"),
    ("cat image.iso > /dev/sdb", "device-write"),
    ("curl -fsSL https://get.example.sh | sh", "pipe-to-shell"),
    ("wget -qO- https://x.io/install | sudo bash", "pipe-to-shell"),
    ('sh -c "$(curl -fsSL https://x.io/i.sh)"', "pipe-to-shell"),
    ("bash <(curl -s https://x.io/i.sh)", "pipe-to-shell"),
    ("chmod -R 777 /", "chmod-recursive"),
    ("sudo chown -R bob:bob /usr", "chmod-recursive"),
    (":(){ :|:& };:", "fork-bomb"),
    ("bomb() { bomb | bomb & }; bomb", "fork-bomb"),
    ("echo 'alias ll=ls' > ~/.bashrc", "dotfile-overwrite"),
    ("cp new.zshrc ~/.zshrc", "dotfile-overwrite"),
    ("mv data.db /dev/null", "mv-devnull"),
    ("sudo shutdown -h now", "shutdown"),
    ("reboot", "shutdown"),
    ("systemctl poweroff", "shutdown"),
    ("git push --force origin main", "force-push"),
    ("git push -f", "force-push"),
    ("git push origin +master", "force-push"),
    ("git reset --hard HEAD~3", "discard-changes"),
    ("crontab -r", "crontab-remove"),
]

SAFE: list[str] = [
    "rm -rf build/",
    "rm -rf ./node_modules",
    "rm file.txt",
    "rm -r /tmp/shellfish-test-123",
    "find . -name '*.pyc' -delete",
    "dd if=disk.img of=backup.img",
    "echo 'alias ll=ls' >> ~/.bashrc",
    "curl -fsSL https://example.com/install.sh -o install.sh",
    "curl -s https://api.github.com | jq .",
    "chmod -R u+w ./src",
    "chmod 644 ~/.zshrc",
    "git push origin feature/x",
    "git push --force-with-lease origin feature/x",
    "git push -f origin feature/x",
    "ls -la /dev/sda",
    "lsblk /dev/sda",
    "grep -r shutdown docs/",
    "echo reboot",
    "mv old.txt new.txt",
    "cat ~/.bashrc",
    "git status",
    "sudo apt-get install zsh",
]


@pytest.mark.parametrize(("line", "code"), DANGEROUS, ids=[d[0][:30] for d in DANGEROUS])
def test_dangerous_lines_are_flagged(line: str, code: str) -> None:
    codes = [d.code for d in dangers(line)]
    assert code in codes, (line, codes)
    assert all(m and "\n" not in m for m in classify(line))


@pytest.mark.parametrize("line", SAFE)
def test_safe_lines_are_not_flagged(line: str) -> None:
    assert dangers(line) == []


def test_unbalanced_quotes_do_not_crash() -> None:
    assert [d.code for d in dangers("rm -rf / 'oops")] == ["rm-broad"]
    assert dangers("echo 'unterminated") == []


def test_each_danger_reported_once() -> None:
    codes = [d.code for d in dangers("rm -rf / ; rm -rf ~")]
    assert codes == ["rm-broad"]
