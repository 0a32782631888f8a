"""A researcher's identity: the key that signs their studies and query batches.

``workbench researcher init`` writes an OpenSSH Ed25519 key pair, the private half
passphrase-protected (bcrypt-pbkdf and AES-256-CTR, as ssh-keygen writes it; or by
``ssh-keygen`` itself with ``--ssh-keygen``, which can also make a hardware ``ed25519-sk``
key). The researcher sends the ``.pub`` file to each site's ethics board, whose quorum
approves it for a project (``workbench budget propose approve``); then every request
the researcher sends is signed with it (``Workbench.connect(..., researcher=KEY)``) and
each site checks the signature before any work (federation/site/authorization.py).

A simulation makes its own researcher (``SimulatedResearcher``: an unencrypted key in
the workdir, like the simulated board's) and has its simulated board approve it.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from privacy_budgets.signatures import (
    KeyFileError,
    KeySigner,
    Signer,
    SshKeygenSigner,
    SshPublicKey,
    generate_key_pair,
    load_private_key,
)

SIMULATED_NAME = "Researcher (simulated)"


def init_researcher(*, out: Path, name: str, passphrase: str | None, ssh_keygen: bool = False) -> SshPublicKey:
    """Write a new researcher key pair at ``out`` and ``out.pub``; never replaces a file.

    ``ssh_keygen``: make it with ``ssh-keygen -t ed25519`` (the passphrase is handed to
    it); otherwise with ``cryptography`` and ``bcrypt``."""
    out = Path(out)
    if not ssh_keygen:
        return generate_key_pair(path=out, passphrase=passphrase, comment=name)
    program = shutil.which("ssh-keygen")
    if program is None:
        raise KeyFileError(
            "--ssh-keygen needs the ssh-keygen program, which is not on PATH. Fix: install OpenSSH (Debian: "
            "openssh-client), or leave out --ssh-keygen to write the key with Python's cryptography."
        )
    if out.exists():
        raise KeyFileError(f"A key file is never replaced: {out} already exists. Fix: choose another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [program, "-q", "-t", "ed25519", "-f", str(out), "-C", name, "-N", passphrase or ""],
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        said = " ".join(done.stderr.decode(errors="replace").split())[:300]
        raise KeyFileError(f"ssh-keygen could not write {out} (exit {done.returncode}: {said}).")
    return SshPublicKey.load(f"{out}.pub")


def researcher_signer(*, key: Path | str, passphrase: str | None = None, ask: bool = True) -> Signer:
    """A signer for the researcher's key ``key``: the key file decrypted once with its
    passphrase (asked on the terminal when ``ask`` and none is given), or ssh-keygen for a
    hardware ``sk-`` key (a touch per signature). A wrong passphrase is refused here, before
    anything is sent."""
    key = Path(key).expanduser()
    pub = Path(f"{key}.pub")
    if pub.exists() and pub.read_text().startswith("sk-"):
        return SshKeygenSigner(key_path=key)
    try:
        return KeySigner(load_private_key(path=key, passphrase=passphrase))
    except KeyFileError as err:
        if passphrase is not None or not ask or "passphrase-protected" not in str(err):
            raise
    return KeySigner(load_private_key(path=key, passphrase=getpass.getpass(f"Passphrase for {key}: ")))


@dataclass(frozen=True)
class SimulatedResearcher:
    """The simulation's researcher: a key in ``folder`` (unencrypted, mode 0600)."""

    folder: Path
    name: str = SIMULATED_NAME

    @classmethod
    def create(cls, folder: Path | str) -> SimulatedResearcher:
        """Make the key (or reuse the one already in ``folder``)."""
        folder = Path(folder)
        if not (folder / "id_ed25519").exists():
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            generate_key_pair(path=folder / "id_ed25519", passphrase=None, comment=SIMULATED_NAME)
        return cls(folder=folder)

    @property
    def key_path(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def public_key(self) -> SshPublicKey:
        return SshPublicKey.load(f"{self.key_path}.pub")

    def signer(self) -> Signer:
        return KeySigner(load_private_key(path=self.key_path, passphrase=None))
