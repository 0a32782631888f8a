"""The signing library: SSHSIG as OpenSSH writes it, namespaces, key files, hardware keys.

Hardware (sk-) signatures are built here byte by byte from OpenSSH's PROTOCOL.sshsig and
PROTOCOL.u2f with ordinary keys playing the authenticator, independently of the code
under test: no authenticator can be touched on a test machine.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from _authenticator import Authenticator, sshsig_blob, string, to_be_signed
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy_budgets.signatures import (
    PROPOSAL_NAMESPACE,
    REQUEST_NAMESPACE,
    DocumentInvalid,
    KeyFileError,
    KeySigner,
    SignatureInvalid,
    SshKeygenSigner,
    SshPublicKey,
    canonical_bytes,
    generate_key_pair,
    load_private_key,
    public_key_of,
    request_document,
    verify,
    verify_request,
)

MESSAGE = canonical_bytes({"action": {"kind": "set_cap"}, "nonce": "0" * 32})
NEEDS_SSH_KEYGEN = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH 8.2+) is not installed on this machine"
)


# --- plain keys ---------------------------------------------------------------------


def test_a_signature_verifies_and_names_its_key():
    key = Ed25519PrivateKey.generate()
    signature = KeySigner(key).sign(MESSAGE, namespace=PROPOSAL_NAMESPACE)
    verified = verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE)
    assert verified.key == public_key_of(key)
    assert verified.flags is None and verified.touched is None


def test_a_signature_built_from_the_specification_verifies():
    key = Ed25519PrivateKey.generate()
    public = public_key_of(key)
    raw = key.sign(to_be_signed(MESSAGE, namespace=PROPOSAL_NAMESPACE, algorithm="sha256"))
    signature = sshsig_blob(
        public.blob, string("ssh-ed25519") + string(raw), namespace=PROPOSAL_NAMESPACE, algorithm="sha256"
    )
    assert verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE).hash_algorithm == "sha256"


def test_a_changed_message_does_not_verify():
    signature = KeySigner(Ed25519PrivateKey.generate()).sign(MESSAGE, namespace=PROPOSAL_NAMESPACE)
    with pytest.raises(SignatureInvalid, match="does not verify under key SHA256:"):
        verify(MESSAGE.replace(b"set_cap", b"set_cat"), signature, namespace=PROPOSAL_NAMESPACE)


def test_a_signature_counts_only_in_its_own_namespace():
    signature = KeySigner(Ed25519PrivateKey.generate()).sign(MESSAGE, namespace=REQUEST_NAMESPACE)
    with pytest.raises(
        SignatureInvalid, match="only in the namespace it was made for: .*request@v1', not '.*proposal@v1'"
    ):
        verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE)


def test_a_signature_made_in_another_namespace_but_relabelled_does_not_verify():
    # The namespace is inside the signed data: editing the blob's label breaks the signature.
    key = Ed25519PrivateKey.generate()
    raw = key.sign(to_be_signed(MESSAGE, namespace="file"))
    forged = sshsig_blob(public_key_of(key).blob, string("ssh-ed25519") + string(raw), namespace=PROPOSAL_NAMESPACE)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify(MESSAGE, forged, namespace=PROPOSAL_NAMESPACE)


def test_malformed_signatures_say_what_is_wrong():
    with pytest.raises(SignatureInvalid, match="not base64"):
        verify(MESSAGE, "-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----", namespace=PROPOSAL_NAMESPACE)
    with pytest.raises(SignatureInvalid, match="must start with 'SSHSIG'"):
        verify(MESSAGE, base64.b64encode(b"NOTSIG" + b"\0" * 20).decode(), namespace=PROPOSAL_NAMESPACE)
    good = KeySigner(Ed25519PrivateKey.generate()).sign(MESSAGE, namespace=PROPOSAL_NAMESPACE)
    blob = base64.b64decode("".join(good.strip().splitlines()[1:-1]))
    with pytest.raises(SignatureInvalid, match="trailing data"):
        verify(MESSAGE, base64.b64encode(blob + b"x").decode(), namespace=PROPOSAL_NAMESPACE)


def test_rsa_and_plain_ecdsa_keys_are_not_board_keys():
    rsa_line = (
        "ssh-rsa " + base64.b64encode(string("ssh-rsa") + string(b"\x01\x00\x01") + string(b"\x00" * 64)).decode()
    )
    with pytest.raises(SignatureInvalid, match="must be one of ssh-ed25519, sk-ssh-ed25519@openssh.com"):
        SshPublicKey.from_openssh(rsa_line)


# --- key files -------------------------------------------------------------------------


def test_key_files_are_passphrase_protected_and_private(tmp_path):
    public = generate_key_pair(path=tmp_path / "ada", passphrase="correct horse", comment="Ada")
    assert (tmp_path / "ada").stat().st_mode & 0o777 == 0o600
    assert b"BEGIN OPENSSH PRIVATE KEY" in (tmp_path / "ada").read_bytes()
    assert SshPublicKey.load(tmp_path / "ada.pub") == public
    key = load_private_key(path=tmp_path / "ada", passphrase="correct horse")
    assert public_key_of(key) == public
    with pytest.raises(
        KeyFileError, match=r"The passphrase does not open the key .*ada \(wrong passphrase\)\. Nothing was signed"
    ):
        load_private_key(path=tmp_path / "ada", passphrase="wrong horse")
    with pytest.raises(KeyFileError, match="is passphrase-protected: give its passphrase"):
        load_private_key(path=tmp_path / "ada", passphrase=None)
    with pytest.raises(KeyFileError, match="never replaced"):
        generate_key_pair(path=tmp_path / "ada", passphrase="x", comment="again")


def test_a_public_key_or_a_hardware_key_file_cannot_sign_here(tmp_path):
    generate_key_pair(path=tmp_path / "ada", passphrase=None, comment="Ada")
    with pytest.raises(KeyFileError, match="is a public key"):
        load_private_key(path=tmp_path / "ada.pub", passphrase=None)
    (tmp_path / "yubi").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "yubi.pub").write_text(Authenticator("sk-ssh-ed25519@openssh.com").public.openssh())
    with pytest.raises(KeyFileError, match="hardware .* sign with --ssh-keygen"):
        load_private_key(path=tmp_path / "yubi", passphrase=None)


# --- hardware keys (sk-) ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"])
def test_a_touched_hardware_key_signature_verifies_with_its_flags_and_counter(kind):
    authenticator = Authenticator(kind)
    signature = authenticator.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE, flags=0x05, counter=4242)
    verified = verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE)
    assert verified.key == authenticator.public and verified.key.hardware
    assert (verified.flags, verified.counter, verified.touched) == (0x05, 4242, True)


@pytest.mark.parametrize("kind", ["sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"])
def test_a_hardware_key_signature_without_user_presence_is_refused(kind):
    signature = Authenticator(kind).sign(MESSAGE, namespace=PROPOSAL_NAMESPACE, flags=0x00)
    with pytest.raises(SignatureInvalid, match=r"only when the key was touched: .*flags 0x00, without user presence"):
        verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE)
    verified_only = Authenticator(kind).sign(MESSAGE, namespace=PROPOSAL_NAMESPACE, flags=0x04)
    with pytest.raises(SignatureInvalid, match="without user presence"):
        verify(MESSAGE, verified_only, namespace=PROPOSAL_NAMESPACE)


def test_hardware_signed_data_binds_flags_counter_application_and_message():
    authenticator = Authenticator("sk-ssh-ed25519@openssh.com")
    good = base64.b64decode(authenticator.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE, flags=0x01, counter=9))
    # Flip the flags byte (user presence on a signature made without it) or the counter: both are signed.
    flags_at = len(good) - 5
    for at, value in ((flags_at, 0x05), (len(good) - 1, 10)):
        edited = bytearray(good)
        edited[at] = value
        with pytest.raises(SignatureInvalid, match="does not verify"):
            verify(MESSAGE, base64.b64encode(bytes(edited)).decode(), namespace=PROPOSAL_NAMESPACE)
    # Signed for another application (a web origin) than the key was enrolled for.
    other = authenticator.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE, application="https://example.org")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify(MESSAGE, other, namespace=PROPOSAL_NAMESPACE)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify(MESSAGE + b" ", authenticator.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE), namespace=PROPOSAL_NAMESPACE)


def test_hardware_keys_enrolled_for_a_website_are_not_accepted():
    with pytest.raises(SignatureInvalid, match="enrolled for an SSH application"):
        Authenticator("sk-ssh-ed25519@openssh.com", application="example.org").public  # noqa: B018


def test_a_webauthn_style_signature_type_is_refused():
    authenticator = Authenticator("sk-ecdsa-sha2-nistp256@openssh.com")
    signature = authenticator.sign(
        MESSAGE, namespace=PROPOSAL_NAMESPACE, sig_type="webauthn-sk-ecdsa-sha2-nistp256@openssh.com"
    )
    with pytest.raises(SignatureInvalid, match="must be of its key's type"):
        verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE)


# --- ssh-keygen, both ways --------------------------------------------------------------


@NEEDS_SSH_KEYGEN
def test_ssh_keygen_signs_with_a_plain_key_and_we_verify(tmp_path):
    public = generate_key_pair(path=tmp_path / "ada", passphrase=None, comment="Ada")
    signature = SshKeygenSigner(key_path=tmp_path / "ada").sign(MESSAGE, namespace=PROPOSAL_NAMESPACE)
    assert verify(MESSAGE, signature, namespace=PROPOSAL_NAMESPACE).key == public


@NEEDS_SSH_KEYGEN
def test_ssh_keygen_asks_for_the_passphrase_and_a_wrong_one_is_a_clear_error(tmp_path):
    generate_key_pair(path=tmp_path / "ada", passphrase="s3cret", comment="Ada")
    for answer, ok in (("s3cret", True), ("wrong", False)):
        askpass = tmp_path / f"askpass-{answer}.sh"
        askpass.write_text(f"#!/bin/sh\necho {answer}\n")
        askpass.chmod(0o700)
        signer = SshKeygenSigner(
            key_path=tmp_path / "ada", env={"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}, timeout_s=30
        )
        if ok:
            assert verify(MESSAGE, signer.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE), namespace=PROPOSAL_NAMESPACE)
        else:
            with pytest.raises(KeyFileError, match=r"ssh-keygen -Y sign must sign with .*ada; it exited with code"):
                signer.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE)


@NEEDS_SSH_KEYGEN
def test_ssh_keygen_verifies_what_we_sign(tmp_path):
    public = generate_key_pair(path=tmp_path / "ada", passphrase="s3cret", comment="Ada")
    key = load_private_key(path=tmp_path / "ada", passphrase="s3cret")
    (tmp_path / "message").write_bytes(MESSAGE)
    (tmp_path / "message.sig").write_text(KeySigner(key).sign(MESSAGE, namespace=PROPOSAL_NAMESPACE))
    (tmp_path / "allowed").write_text(f"ada {public.openssh()}\n")
    done = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", "allowed", "-I", "ada", "-n", PROPOSAL_NAMESPACE, "-s", "message.sig"],
        input=MESSAGE,
        cwd=tmp_path,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    assert f'Good "{PROPOSAL_NAMESPACE}" signature for ada' in done.stdout.decode()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", "ada.pub"], cwd=tmp_path, capture_output=True, text=True)
    assert public.fingerprint in fingerprint.stdout


def test_signing_through_a_missing_ssh_keygen_says_how_to_fix_it(tmp_path):
    signer = SshKeygenSigner(key_path=tmp_path / "k", program="no-such-ssh-keygen")
    with pytest.raises(KeyFileError, match="'no-such-ssh-keygen' is not on PATH. Fix: install OpenSSH"):
        signer.sign(MESSAGE, namespace=PROPOSAL_NAMESPACE)


# --- requests (for the site's gate) ------------------------------------------------------


def test_a_request_verifies_in_its_namespace_until_it_expires():
    key = Ed25519PrivateKey.generate()
    made = datetime(2026, 11, 29, 10, tzinfo=UTC)
    document = request_document(
        project="cardio", task={"kind": "queries", "queries": ["count"]}, sites=["h1"], now=made
    )
    signature = KeySigner(key).sign(canonical_bytes(document), namespace=REQUEST_NAMESPACE)
    assert verify_request(document, signature, site_id="h1", now=made + timedelta(hours=1)).key == public_key_of(key)
    with pytest.raises(DocumentInvalid, match="counts only until it expires: this one expired at 2026-11-30T10:00:00Z"):
        verify_request(document, signature, site_id="h1", now=made + timedelta(days=2))
    with pytest.raises(DocumentInvalid, match="only at the sites it names; this site is not one of them"):
        verify_request(document, signature, site_id="h2", now=made)
    proposal_signature = KeySigner(key).sign(canonical_bytes(document), namespace=PROPOSAL_NAMESPACE)
    with pytest.raises(SignatureInvalid, match="namespace"):
        verify_request(document, proposal_signature, site_id="h1", now=made)
    edited = {**document, "project": "other"}
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_request(edited, signature, site_id="h1", now=made)


def test_a_request_error_never_names_a_project_or_researcher():
    document = request_document(project="secret-project", task={"kind": "study"}, sites=["h1"])
    with pytest.raises(DocumentInvalid) as refused:
        verify_request(document, "AAAA", site_id="h9")
    assert "secret-project" not in str(refused.value)
