"""OpenSSH signatures (SSHSIG, what ``ssh-keygen -Y sign`` writes) over canonical JSON.

Each kind of document is signed in its own namespace, so a signature made for one kind
can never be read as another (a board member's approval of a proposal is not a
researcher's request): ``hospital-dp-workbench/proposal@v1`` for the board's proposals,
``hospital-dp-workbench/request@v1`` for a researcher's signed requests. A document
carries its namespace as ``format``, a nonce, and ``created``/``expires`` times.

Keys people hold: ``ssh-ed25519`` (a key file, passphrase-protected when we write it) and
the hardware keys ``sk-ssh-ed25519@openssh.com`` and ``sk-ecdsa-sha2-nistp256@openssh.com``
(FIDO authenticators, signed through ``ssh-keygen -Y sign``: a touch per signature). All
three are verified here with ``cryptography`` alone, as OpenSSH's ``PROTOCOL.sshsig`` and
``PROTOCOL.u2f`` define them:

- the SSHSIG blob: ``"SSHSIG"``, version 1, the public key, the namespace, a reserved
  string, the hash algorithm (sha256 or sha512) and the signature; the signed data is
  ``"SSHSIG"`` || string(namespace) || string(reserved) || string(hash algorithm) ||
  string(H(message)).
- an ``sk-`` signature is made by the authenticator over SHA256(application) || flags ||
  uint32 counter || SHA256(signed data), and travels as string(signature), flags,
  counter. The application comes from the public key (it must start with ``ssh:``), so
  a signature made for another application does not verify; the flags must carry user
  presence (0x01, the touch), else the signature is refused; the counter is returned
  for the ledger to check that a key never shows the same non-zero counter twice (a
  cloned authenticator).

>>> key = Ed25519PrivateKey.generate()
>>> document = {"format": PROPOSAL_NAMESPACE, "nonce": "n1", "created": "2026-11-29T10:00:00Z",
...             "expires": "2026-12-13T10:00:00Z", "action": {"kind": "set_cap"}}
>>> signature = KeySigner(key).sign(canonical_bytes(document), namespace=PROPOSAL_NAMESPACE)
>>> signature.startswith("-----BEGIN SSH SIGNATURE-----")
True
>>> verified = verify(canonical_bytes(document), signature, namespace=PROPOSAL_NAMESPACE)
>>> verified.key.key_type, verified.key == public_key_of(key)
('ssh-ed25519', True)
>>> verify(canonical_bytes(document), signature, namespace=REQUEST_NAMESPACE)
Traceback (most recent call last):
...
privacy_budgets.signatures.SignatureInvalid: A signature counts only in the namespace it was made for: this one was made for 'hospital-dp-workbench/proposal@v1', not 'hospital-dp-workbench/request@v1'. Fix: sign the document again with `workbench budget sign` (or ssh-keygen -Y sign -n hospital-dp-workbench/request@v1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import struct
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from privacy_budgets.errors import PrivacyBudgetError

NAMESPACE_PREFIX = "hospital-dp-workbench/"
PROPOSAL_NAMESPACE = "hospital-dp-workbench/proposal@v1"
REQUEST_NAMESPACE = "hospital-dp-workbench/request@v1"
LOGIN_NAMESPACE = "hospital-dp-workbench/login@v1"  # a researcher's login to the study service
NAMESPACES = (PROPOSAL_NAMESPACE, REQUEST_NAMESPACE, LOGIN_NAMESPACE)

ED25519 = "ssh-ed25519"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
KEY_TYPES = (ED25519, SK_ED25519, SK_ECDSA)

USER_PRESENT = 0x01  # the authenticator was touched (PROTOCOL.u2f's "user present" flag)
USER_VERIFIED = 0x04  # and the holder's PIN or biometric was checked

MAGIC = b"SSHSIG"
SIG_VERSION = 1
HASH_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
BEGIN, END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_EXPIRY = timedelta(days=90)
CLOCK_SKEW = timedelta(minutes=5)


class SignatureInvalid(PrivacyBudgetError, ValueError):
    """A signature that does not prove what it is offered for."""


class KeyFileError(PrivacyBudgetError, ValueError):
    """A key file that cannot be read or used: wrong passphrase, wrong kind, missing."""


class DocumentInvalid(PrivacyBudgetError, ValueError):
    """A signed document whose fields break a rule: expired, wrong format, no nonce."""


# --- the SSH wire format ----------------------------------------------------------------


def _string(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return struct.pack(">I", len(data)) + data


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise SignatureInvalid(f"{self.what} is cut short or malformed (SSH wire format).")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def string(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        try:
            return self.string().decode()
        except UnicodeDecodeError:
            raise SignatureInvalid(f"{self.what} holds a name that is not text.") from None

    def end(self) -> None:
        if self.at != len(self.data):
            raise SignatureInvalid(f"{self.what} has trailing data after its last field.")


def _mpint(data: bytes) -> int:
    if data and data[0] & 0x80:
        raise SignatureInvalid("An ECDSA signature holds a negative number.")
    return int.from_bytes(data, "big")


# --- public keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class SshPublicKey:
    """An OpenSSH public key a person holds: Ed25519, or an ``sk-`` hardware key.

    Two keys are equal when their wire blobs are (the comment is only a label).
    """

    key_type: str
    blob: bytes
    comment: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SshPublicKey) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)

    @classmethod
    def from_blob(cls, blob: bytes, *, comment: str = "") -> SshPublicKey:
        """Parse and check a wire blob (the key types in ``KEY_TYPES`` only)."""
        reader = _Reader(blob, "A public key")
        key_type = reader.text()
        if key_type not in KEY_TYPES:
            raise SignatureInvalid(
                f"A board member's or researcher's key must be one of {', '.join(KEY_TYPES)}; got "
                f"{key_type!r}. Fix: make one with `workbench budget keygen`, or `ssh-keygen -t ed25519` / "
                "`ssh-keygen -t ed25519-sk` for a hardware key."
            )
        if key_type == SK_ECDSA:
            curve = reader.text()
            point = reader.string()
            if curve != "nistp256":
                raise SignatureInvalid(f"An {SK_ECDSA} key must be on nistp256; got {curve!r}.")
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            except ValueError:
                raise SignatureInvalid("An sk-ecdsa key holds a point that is not on nistp256.") from None
        else:
            if len(reader.string()) != 32:
                raise SignatureInvalid(f"An {key_type} key must hold 32 bytes of public key.")
        if key_type in (SK_ED25519, SK_ECDSA):
            application = reader.text()
            if not application.startswith("ssh:"):
                raise SignatureInvalid(
                    f"A hardware key for signing must be enrolled for an SSH application ('ssh:...', as "
                    f"ssh-keygen does); this one is for {application!r}. Fix: enrol a key with "
                    "`ssh-keygen -t ed25519-sk`."
                )
        reader.end()
        return cls(key_type=key_type, blob=blob, comment=comment)

    @classmethod
    def from_openssh(cls, line: str) -> SshPublicKey:
        """From a ``.pub`` line: ``TYPE BASE64 [COMMENT]``."""
        parts = str(line).strip().split(None, 2)
        if len(parts) < 2:
            raise SignatureInvalid(
                f"A public key is one line 'TYPE BASE64 [COMMENT]' as in a .pub file; got {str(line)[:60]!r}. "
                "Fix: pass the contents of the member's .pub file."
            )
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid(f"A public key's second field must be base64; got {parts[1][:40]!r}.") from None
        key = cls.from_blob(blob, comment=parts[2] if len(parts) > 2 else "")
        if key.key_type != parts[0]:
            raise SignatureInvalid(f"A public key line names type {parts[0]!r} but holds a {key.key_type} key.")
        return key

    @classmethod
    def load(cls, path: Path | str) -> SshPublicKey:
        """Read a ``.pub`` file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise KeyFileError(f"A public key file must be readable; {path}: {err.strerror}. Check the path.") from None
        return cls.from_openssh(text)

    def openssh(self, *, comment: bool = True) -> str:
        """The ``.pub`` line."""
        line = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{line} {self.comment}" if comment and self.comment else line

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>``, exactly as ``ssh-keygen -lf KEY.pub`` prints it."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    @property
    def hardware(self) -> bool:
        """Whether signing needs a FIDO authenticator (an ``sk-`` key)."""
        return self.key_type in (SK_ED25519, SK_ECDSA)

    @property
    def application(self) -> str | None:
        """The FIDO application an ``sk-`` key was enrolled for (``ssh:`` by default)."""
        if not self.hardware:
            return None
        reader = _Reader(self.blob, "A public key")
        reader.text()
        if self.key_type == SK_ECDSA:
            reader.text()
        reader.string()
        return reader.text()

    def _parts(self) -> list[bytes]:
        reader = _Reader(self.blob, "A public key")
        reader.text()
        if self.key_type == SK_ECDSA:
            reader.text()
        return [reader.string()]

    def check(self, signature: bytes, data: bytes) -> tuple[int | None, int | None]:
        """Verify an SSH signature blob over ``data``; (flags, counter) for ``sk-`` keys.

        Raises SignatureInvalid when it does not verify, or lacks user presence.
        """
        reader = _Reader(signature, "A signature")
        sig_type = reader.text()
        if sig_type != self.key_type:
            raise SignatureInvalid(
                f"A signature must be of its key's type: the key is {self.key_type}, the signature "
                f"{sig_type!r} (webauthn and other variants are not accepted)."
            )
        raw = reader.string()
        flags = counter = None
        if self.hardware:
            flags, counter = reader.u8(), reader.u32()
        reader.end()
        (point,) = self._parts()
        if self.hardware:
            # PROTOCOL.u2f: the authenticator signs SHA256(application) || flags || counter ||
            # SHA256(message); no extensions are defined for SSH.
            signed = (
                hashlib.sha256(self.application.encode()).digest()
                + bytes([flags])
                + struct.pack(">I", counter)
                + hashlib.sha256(data).digest()
            )
        else:
            signed = data
        try:
            if self.key_type == SK_ECDSA:
                inner = _Reader(raw, "An ECDSA signature")
                r, s = _mpint(inner.string()), _mpint(inner.string())
                inner.end()
                public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
                public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
            else:
                if len(raw) != 64:
                    raise InvalidSignature
                Ed25519PublicKey.from_public_bytes(point).verify(raw, signed)
        except (InvalidSignature, ValueError):
            raise SignatureInvalid(
                f"The signature does not verify under key {self.fingerprint}: the document was changed "
                "after it was signed, or the signature belongs to another document."
            ) from None
        if flags is not None and not flags & USER_PRESENT:
            raise SignatureInvalid(
                f"A hardware key's signature counts only when the key was touched: key {self.fingerprint} "
                f"signed with flags 0x{flags:02x}, without user presence (0x01). Fix: sign again without "
                "the no-touch-required option, touching the key when it blinks."
            )
        return flags, counter


def public_key_of(key: Ed25519PrivateKey, *, comment: str = "") -> SshPublicKey:
    """The ``ssh-ed25519`` public key of a private key."""
    raw = key.public_key().public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
    return SshPublicKey(key_type=ED25519, blob=_string(ED25519) + _string(raw), comment=comment)


# --- SSHSIG -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignature:
    """Who signed (the key), in which namespace, and an ``sk-`` key's flags and counter."""

    key: SshPublicKey
    namespace: str
    hash_algorithm: str
    flags: int | None = None
    counter: int | None = None

    @property
    def touched(self) -> bool | None:
        """Whether a hardware key was touched (None for a key file)."""
        return None if self.flags is None else bool(self.flags & USER_PRESENT)


def signed_data(message: bytes, *, namespace: str, hash_algorithm: str = "sha512") -> bytes:
    """What the key signs (PROTOCOL.sshsig section 3), ``reserved`` empty."""
    digest = HASH_ALGORITHMS[hash_algorithm](message).digest()
    return MAGIC + _string(namespace) + _string(b"") + _string(hash_algorithm) + _string(digest)


def armor(blob: bytes) -> str:
    """The armored text: header, base64 in lines of 70 (as ssh-keygen writes), footer."""
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def dearmor(signature: str | bytes) -> bytes:
    """The SSHSIG blob of an armored signature (or of its bare base64)."""
    if isinstance(signature, bytes):
        signature = signature.decode("ascii", errors="replace")
    text = signature.strip()
    if text.startswith(BEGIN):
        if not text.endswith(END):
            raise SignatureInvalid("An armored SSH signature must end with its footer line; this one is cut short.")
        text = text[len(BEGIN) : -len(END)]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(
            "A signature must be an armored SSH signature ('-----BEGIN SSH SIGNATURE-----', as ssh-keygen "
            "-Y sign writes); this one is not base64. Fix: pass the signature file unchanged."
        ) from None


@dataclass(frozen=True)
class SshSig:
    """The fields of an SSHSIG blob (PROTOCOL.sshsig section 2)."""

    key: SshPublicKey
    namespace: str
    reserved: bytes
    hash_algorithm: str
    signature: bytes

    @classmethod
    def parse(cls, signature: str | bytes) -> SshSig:
        reader = _Reader(dearmor(signature), "An SSH signature")
        if reader.take(6) != MAGIC:
            raise SignatureInvalid("An SSH signature must start with 'SSHSIG'; this one does not.")
        version = reader.u32()
        if version != SIG_VERSION:
            raise SignatureInvalid(f"An SSH signature must be of version {SIG_VERSION}; this one is {version}.")
        key = SshPublicKey.from_blob(reader.string())
        namespace = reader.text()
        reserved = reader.string()
        algorithm = reader.text()
        raw = reader.string()
        reader.end()
        if algorithm not in HASH_ALGORITHMS:
            raise SignatureInvalid(
                f"An SSH signature hashes with sha256 or sha512 (PROTOCOL.sshsig); this one says {algorithm!r}."
            )
        return cls(key=key, namespace=namespace, reserved=reserved, hash_algorithm=algorithm, signature=raw)


def verify(message: bytes, signature: str | bytes, *, namespace: str) -> VerifiedSignature:
    """Check an SSHSIG signature over ``message`` in ``namespace``; the signer's key.

    Raises SignatureInvalid naming the rule broken: another namespace, a changed
    message, a hardware key not touched, an unknown key type, a malformed blob.
    """
    sig = SshSig.parse(signature)
    if sig.namespace != namespace:
        raise SignatureInvalid(
            f"A signature counts only in the namespace it was made for: this one was made for "
            f"{sig.namespace!r}, not {namespace!r}. Fix: sign the document again with `workbench budget "
            f"sign` (or ssh-keygen -Y sign -n {namespace})."
        )
    # ``reserved`` is ignored when not empty (PROTOCOL.sshsig); OpenSSH verifies over an empty
    # one, so a signature with anything else there would not verify below either.
    data = signed_data(message, namespace=namespace, hash_algorithm=sig.hash_algorithm)
    flags, counter = sig.key.check(sig.signature, data)
    return VerifiedSignature(
        key=sig.key, namespace=namespace, hash_algorithm=sig.hash_algorithm, flags=flags, counter=counter
    )


# --- signing ----------------------------------------------------------------------------


class Signer(Protocol):
    """Something that signs a message in a namespace: a key file, or ssh-keygen."""

    def sign(self, message: bytes, *, namespace: str) -> str: ...


@dataclass(frozen=True)
class KeySigner:
    """Signs with an Ed25519 private key held in memory (``cryptography``)."""

    key: Ed25519PrivateKey
    hash_algorithm: str = "sha512"

    def sign(self, message: bytes, *, namespace: str) -> str:
        _check_namespace(namespace)
        public = public_key_of(self.key)
        raw = self.key.sign(signed_data(message, namespace=namespace, hash_algorithm=self.hash_algorithm))
        blob = (
            MAGIC
            + struct.pack(">I", SIG_VERSION)
            + _string(public.blob)
            + _string(namespace)
            + _string(b"")
            + _string(self.hash_algorithm)
            + _string(_string(ED25519) + _string(raw))
        )
        return armor(blob)

    @classmethod
    def from_file(cls, path: Path | str, *, passphrase: str | None) -> KeySigner:
        return cls(load_private_key(path=path, passphrase=passphrase))


@dataclass(frozen=True)
class SshKeygenSigner:
    """Signs by running ``ssh-keygen -Y sign -f KEY -n NAMESPACE`` (message on stdin).

    The two-factor path: ``KEY`` may be an ``sk-`` key's handle file (ssh-keygen asks
    for a touch), a passphrase-protected key (it asks for the passphrase), or a ``.pub``
    file whose private half is loaded in ssh-agent.
    """

    key_path: Path
    program: str = "ssh-keygen"
    timeout_s: float = 120.0
    env: dict[str, str] | None = None

    def sign(self, message: bytes, *, namespace: str) -> str:
        _check_namespace(namespace)
        program = shutil.which(self.program)
        if program is None:
            raise KeyFileError(
                f"Signing through ssh-keygen needs the program; {self.program!r} is not on PATH. Fix: install "
                "OpenSSH 8.2 or newer (Debian: openssh-client), or sign with a key file (--key without --ssh-keygen)."
            )
        if not Path(self.key_path).exists():
            raise KeyFileError(f"A signing key must exist; no file at {self.key_path}. Check --key.")
        try:
            done = subprocess.run(
                [program, "-Y", "sign", "-f", str(self.key_path), "-n", namespace],
                input=message,
                capture_output=True,
                timeout=self.timeout_s,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        except subprocess.TimeoutExpired:
            raise KeyFileError(
                f"ssh-keygen did not sign within {self.timeout_s:g} s (a hardware key waits for a touch). "
                "Fix: run the command again and touch the key when it blinks."
            ) from None
        if done.returncode != 0 or BEGIN.encode() not in done.stdout:
            said = " ".join(done.stderr.decode(errors="replace").split())[:300]
            raise KeyFileError(
                f"ssh-keygen -Y sign must sign with {self.key_path}; it exited with code {done.returncode} "
                f"({said or 'no message'}). Fix: check the key file and its passphrase, or that the key is "
                "in ssh-agent or the hardware key is plugged in."
            )
        return done.stdout.decode()


def _check_namespace(namespace: str) -> None:
    if namespace not in NAMESPACES:
        raise SignatureInvalid(f"Documents are signed in one of {', '.join(NAMESPACES)}; got {namespace!r}.")


# --- key files --------------------------------------------------------------------------


def generate_key_pair(*, path: Path | str, passphrase: str | None, comment: str) -> SshPublicKey:
    """Write a new OpenSSH Ed25519 key: ``path`` (mode 0600, encrypted with ``passphrase``
    by bcrypt-pbkdf and AES-256-CTR, as ssh-keygen does) and ``path.pub``.

    ``passphrase=None`` writes it unencrypted (simulations only). An existing file is
    never replaced.
    """
    path = Path(path)
    if passphrase is not None and not passphrase:
        raise KeyFileError(
            "A key's passphrase must not be empty: it is the second factor. Fix: choose one, or pass "
            "passphrase=None for an unencrypted key (simulations only)."
        )
    key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase.encode())
    )
    try:
        pem = key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.OpenSSH,
            encryption_algorithm=encryption,
        )
    except (UnsupportedAlgorithm, ValueError) as err:  # pragma: no cover - bcrypt missing
        raise KeyFileError(
            f"Writing a passphrase-protected OpenSSH key needs the bcrypt package beside cryptography ({err}). "
            "Fix: pip install bcrypt."
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"A key file is never replaced: {path} already exists (it may be the key a board knows). "
            "Fix: choose another path, or move the old key away first."
        ) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = public_key_of(key, comment=comment)
    Path(f"{path}.pub").write_text(public.openssh() + "\n")
    return public


def load_private_key(*, path: Path | str, passphrase: str | None) -> Ed25519PrivateKey:
    """Read an OpenSSH (or PEM) Ed25519 private key, decrypting it with ``passphrase``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"A signing key file must be readable; {path}: {err.strerror}. Check --key.") from None
    pub = Path(f"{path}.pub")
    if path.suffix == ".pub" or data.lstrip().startswith((b"ssh-", b"sk-")):
        raise KeyFileError(
            f"Signing needs the private key; {path} is a public key. Fix: pass the private key file, or sign "
            "with --ssh-keygen when the private key is in ssh-agent or on a hardware key."
        )
    if pub.exists() and pub.read_text().startswith("sk-"):
        raise KeyFileError(
            f"{path} is a hardware (sk-) key: only the authenticator can sign with it. Fix: sign with "
            "--ssh-keygen (ssh-keygen -Y sign asks for a touch)."
        )
    password = None if passphrase is None else passphrase.encode()
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(data, password=password)
        else:
            key = serialization.load_pem_private_key(data, password=password)
    except TypeError as err:
        if "not provided" in str(err) or "was not given" in str(err):
            raise KeyFileError(
                f"The key {path} is passphrase-protected: give its passphrase. Fix: answer the prompt, or "
                "pass --passphrase-file."
            ) from None
        raise KeyFileError(
            f"The key {path} is not encrypted, but a passphrase was given. Fix: sign without a passphrase."
        ) from None
    except ValueError as err:
        if passphrase is not None and ("checksum" in str(err) or "decrypt" in str(err).lower()):
            raise KeyFileError(
                f"The passphrase does not open the key {path} (wrong passphrase). Nothing was signed. Fix: "
                "type the passphrase again; a lost passphrase means a new key and a board change."
            ) from None
        raise KeyFileError(
            f"A signing key must be an OpenSSH Ed25519 private key; {path} cannot be read as one ({err}). "
            "Fix: make one with `workbench budget keygen`, or sign with --ssh-keygen."
        ) from None
    except UnsupportedAlgorithm as err:
        raise KeyFileError(
            f"A signing key must be an OpenSSH Ed25519 private key; {path} is of a kind cryptography "
            f"cannot use here ({err}). Fix: sign with --ssh-keygen."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"A signing key must be Ed25519; {path} holds a {type(key).__name__}. Fix: make one with "
            "`workbench budget keygen` or `ssh-keygen -t ed25519`."
        )
    return key


# --- documents --------------------------------------------------------------------------


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The exact bytes signed: JSON with sorted keys, no spaces, ASCII, no NaN."""
    try:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise DocumentInvalid(f"A signed document must be plain JSON (no NaN, no objects); {err}.") from None


def now_text(now: datetime | None = None) -> str:
    """A document time: UTC, seconds, with a Z."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime(TIME_FORMAT)


def parse_document_time(text: Any, *, field: str) -> datetime:
    """A document's ``created``/``expires`` (seconds; the ledger's microseconds also read)."""
    for fmt in (TIME_FORMAT, "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(str(text), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise DocumentInvalid(f"A document's {field} must be a UTC time like 2026-11-29T10:00:00Z; got {text!r}.")


def new_document(
    *, namespace: str, body: dict[str, Any], expires_in: timedelta, now: datetime | None = None
) -> dict[str, Any]:
    """A document in ``namespace``: ``body``'s fields plus format, nonce, created, expires."""
    _check_namespace(namespace)
    if not timedelta(minutes=1) <= expires_in <= MAX_EXPIRY:
        raise DocumentInvalid(
            f"A signed document expires between 1 minute and {MAX_EXPIRY.days} days after it is made; "
            f"got {expires_in}. Fix: choose an expiry in that range."
        )
    now = now or datetime.now(UTC)
    reserved = {"format", "nonce", "created", "expires"} & set(body)
    if reserved:
        raise DocumentInvalid(f"A document's body may not set {sorted(reserved)}: they are filled in here.")
    return {
        **body,
        "format": namespace,
        "nonce": uuid.uuid4().hex,
        "created": now_text(now),
        "expires": now_text(now + expires_in),
    }


def check_document(document: Any, *, namespace: str, now: datetime) -> None:
    """The rules every signed document keeps: its format is the namespace, a nonce, and
    ``now`` within ``created`` (less a little clock skew) and ``expires``."""
    if not isinstance(document, dict):
        raise DocumentInvalid(f"A signed document must be a JSON object; got {type(document).__name__}.")
    if document.get("format") != namespace:
        raise DocumentInvalid(
            f"A document signed in {namespace!r} must say so in its format; it says {document.get('format')!r}."
        )
    nonce = document.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < 16:
        raise DocumentInvalid(f"A signed document needs a nonce of at least 16 characters; got {nonce!r}.")
    created = parse_document_time(document.get("created"), field="created")
    expires = parse_document_time(document.get("expires"), field="expires")
    if expires <= created or expires - created > MAX_EXPIRY:
        raise DocumentInvalid(
            f"A document expires after it is made and within {MAX_EXPIRY.days} days; this one runs from "
            f"{document.get('created')} to {document.get('expires')}."
        )
    if now > expires:
        raise DocumentInvalid(
            f"A signed document counts only until it expires: this one expired at {document.get('expires')} "
            f"(now {now_text(now)}). Nothing was done. Fix: make a new one and sign it again."
        )
    if now + CLOCK_SKEW < created:
        raise DocumentInvalid(
            f"A signed document cannot be used before it was made: created {document.get('created')}, now "
            f"{now_text(now)}. Fix: check the clocks of the machine that made it and of this one."
        )


# --- researchers' requests (verified by the site's gate) ---------------------------------


def request_document(
    *,
    project: str,
    task: dict[str, Any],
    sites: list[str] | None = None,
    expires_in: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> dict[str, Any]:
    """A researcher's request: a study (run id, spec, maximum rounds) or a query batch
    (``task``), for ``project``, at ``sites`` (None: every site it is sent to)."""
    if not isinstance(project, str) or not project.strip():
        raise DocumentInvalid(f"A request names its project; got {project!r}.")
    if not isinstance(task, dict) or not isinstance(task.get("kind"), str):
        raise DocumentInvalid("A request's task is a JSON object with a 'kind' (e.g. 'study' or 'queries').")
    body = {"project": project, "task": task, "sites": None if sites is None else sorted(sites)}
    return new_document(namespace=REQUEST_NAMESPACE, body=body, expires_in=expires_in, now=now)


def verify_request(
    document: dict[str, Any], signature: str, *, site_id: str, now: datetime | None = None
) -> VerifiedSignature:
    """The researcher's key behind a request, once its signature, format and times hold.

    Whether that key is approved for the project, and whether the nonce was seen
    before, is the site's to check against its ledger and replay cache. The errors
    here say nothing about projects or researchers the site knows.
    """
    now = now or datetime.now(UTC)
    check_document(document, namespace=REQUEST_NAMESPACE, now=now)
    sites = document.get("sites")
    if sites is not None and site_id not in sites:
        raise DocumentInvalid("A request is served only at the sites it names; this site is not one of them.")
    return verify(canonical_bytes(document), signature, namespace=REQUEST_NAMESPACE)
