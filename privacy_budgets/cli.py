"""The ethics board's and the site's commands: ``workbench budget ...``.

Mounted by the root ``workbench`` CLI, or run alone as ``python -m privacy_budgets``.
Reading commands (status, history, verify, report, reconcile) need no private key and
open the ledger read-only. Exit codes follow the workbench's one table (this package
stands alone, so it repeats the values it uses; a test keeps them equal): bad input
prints one line on stderr and exits with code 2; a refusal by a cap or an allocation
exits 1; a ledger that fails verification (or receipts that do not reconcile) exits 4.

Heavy imports (pandas, matplotlib, dp_accounting) happen inside the commands, so
``workbench --help`` stays fast.

>>> from typer.testing import CliRunner
>>> result = CliRunner().invoke(app, ["status", "--ledger", "no/such.ledger"])
>>> result.exit_code, result.stderr.strip()
(2, 'Error: No such file: no/such.ledger. Check the path.')
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from privacy_budgets.errors import LedgerError

app = typer.Typer(
    name="budget",
    help="Privacy budget ledger: status, history, verification, caps and allocations.",
    no_args_is_help=True,
    add_completion=False,
)

LedgerPath = Annotated[Path, typer.Option("--ledger", help="The site's ledger file (SQLite).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
KeyPath = Annotated[
    Path | None,
    typer.Option(
        "--key", help="The site's signing key (default: ledger.key in the site's key folder, else <ledger>.key)."
    ),
]


# The workbench's exit codes (federation/cli_support.py EXIT_CODES), as this package uses them.
EXIT_REFUSED = 1  # refused by a cap or an allocation
EXIT_BAD_INPUT = 2  # an argument or a file breaks a rule
EXIT_BROKEN_RECORD = 4  # a ledger that does not verify, receipts that do not reconcile


def _clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's errors and file errors into one line on stderr and the exit
    code of their kind (1 refused, 2 bad input, 4 a ledger that does not verify)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from privacy_budgets.errors import AccountingFault, BudgetRefused, LedgerIntegrityError, PrivacyBudgetError

        try:
            return command(*args, **kwargs)
        except (PrivacyBudgetError, OSError) as err:
            message = " ".join(str(err).split())
            typer.echo(f"Error: {message}", err=True)
            if isinstance(err, BudgetRefused):
                code = EXIT_REFUSED
            elif isinstance(err, (LedgerIntegrityError, AccountingFault)):
                code = EXIT_BROKEN_RECORD
            else:
                code = EXIT_BAD_INPUT
            raise typer.Exit(code=code) from None

    return wrapper


@app.command()
@_clear_errors
def status(ledger: LedgerPath, as_json: AsJson = False) -> None:
    """Caps, allocations, spent, reserved and remaining, per dataset and project."""
    from privacy_budgets.exports import read_only
    from privacy_budgets.views import status_frame

    with read_only(_existing(ledger)) as conn:
        frame = status_frame(conn)
    if as_json:
        typer.echo(frame.to_json(orient="records", indent=2))
    else:
        typer.echo(frame.to_string(index=False) if not frame.empty else "No datasets yet.")


@app.command()
@_clear_errors
def history(
    ledger: LedgerPath,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset's entries.")] = None,
    as_json: AsJson = False,
) -> None:
    """Every entry, with its mechanism (a serialised DpEvent) and statement."""
    from privacy_budgets.exports import read_entries
    from privacy_budgets.statements import safe_statement

    entries = read_entries(_existing(ledger))
    if dataset is not None:
        entries = [e for e in entries if e.dataset == dataset]
    if as_json:
        items = []
        for e in entries:
            item = e.to_dict()
            item["mechanism"] = _json_or_text(e.mechanism)
            item["details"] = _json_or_text(item.pop("details_json"))
            item["statement"] = safe_statement(e)
            items.append(item)
        typer.echo(json.dumps(items, indent=2))
        return
    for e in entries:
        typer.echo(f"{e.seq:>5}  {e.time}  {e.kind:<9} {safe_statement(e)}")


@app.command()
@_clear_errors
def verify(
    ledger: LedgerPath,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint JSON kept away from the site.")] = None,
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="Expected key fingerprint (ed25519:SHA256:...).")
    ] = None,
    receipts: Annotated[Path | None, typer.Option(help="The coordinator's receipts (JSON list).")] = None,
    deep: Annotated[bool, typer.Option(help="Recompute every entry's epsilons.")] = False,
) -> None:
    """Check the chain, signatures, rules and totals; exit 4 when anything is wrong."""
    from privacy_budgets.exports import verify_path

    report = verify_path(
        _existing(ledger),
        public_key=public_key,
        checkpoint=None if checkpoint is None else _existing(checkpoint),
        receipts=[] if receipts is None else _json_list(receipts),
        deep=deep,
    )
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(code=EXIT_BROKEN_RECORD)


@app.command("set-cap")
@_clear_errors
def set_cap(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    epsilon: Annotated[float, typer.Option(help="Lifetime cap on epsilon.")],
    delta: Annotated[float, typer.Option(help="The dataset's delta, in (0, 1).")],
    actor: Annotated[str, typer.Option(help="Who sets it.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyPath = None,
) -> None:
    """Set a dataset's lifetime cap (the site's decision)."""
    with _writable(ledger, key) as opened:
        entry = opened.set_cap(dataset=dataset, epsilon=epsilon, delta=delta, actor=actor, reason=reason)
    _echo_entry(entry)


@app.command()
@_clear_errors
def allocate(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    epsilon: Annotated[float, typer.Option(help="The project's allocation of epsilon.")],
    actor: Annotated[str, typer.Option(help="Who allocates (the ethics board).")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyPath = None,
) -> None:
    """Allocate a project's budget on a dataset (the ethics board's decision)."""
    with _writable(ledger, key) as opened:
        entry = opened.allocate(dataset=dataset, project=project, epsilon=epsilon, actor=actor, reason=reason)
    _echo_entry(entry)


@app.command()
@_clear_errors
def checkpoint(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the signed checkpoint (JSON).")],
    key: KeyPath = None,
) -> None:
    """Write a signed statement of the ledger's head, to keep away from the site."""
    with _writable(ledger, key) as opened:
        cp = opened.checkpoint(out=out)
    typer.echo(f"Checkpoint of {cp['site_id']} at seq {cp['seq']} written to {out}.")


@app.command()
@_clear_errors
def export(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the export (JSON).")],
) -> None:
    """Write every entry and the public key as JSON (for the coordinator or the board)."""
    from privacy_budgets.exports import export_dict, read_entries

    entries = read_entries(_existing(ledger))
    if not entries:
        raise LedgerError(f"A ledger to export needs entries; {ledger} holds none. Check the path.")
    public = entries[0].details.get("public_key", "")
    out.write_text(json.dumps(export_dict(site_id=entries[0].site_id, public_key=public, entries=entries)) + "\n")
    typer.echo(f"Exported {len(entries)} entries to {out}.")


@app.command()
@_clear_errors
def report(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")],
    art30: Annotated[
        bool,
        typer.Option(
            "--art30",
            help="Write the record of processing activities (GDPR art. 30) instead: HTML, and JSON beside it.",
        ),
    ] = False,
    node_toml: Annotated[
        Path | None,
        typer.Option(
            "--node-toml",
            help="With --art30: the node.toml whose [processing] keys state what records cannot (controller, DPO, "
            "categories, retention) and whose state folder holds the audit log.",
        ),
    ] = None,
    audit: Annotated[
        Path | None, typer.Option("--audit", help="With --art30: the audit log (default: the node.toml's).")
    ] = None,
) -> None:
    """Write one self-contained HTML report (plots, status, statements, verification)."""
    if art30:
        from privacy_budgets.art30 import audit_path_of, processing_record, stated_by_site, write_record
        from privacy_budgets.report import load_for_report

        entries, _, verdict = load_for_report(_existing(ledger))
        if audit is None and node_toml is not None:
            audit = audit_path_of(_existing(node_toml))
        record = processing_record(
            entries,
            verified=str(verdict),
            stated=stated_by_site(None if node_toml is None else _existing(node_toml)),
            audit_log=audit,
        )
        html_path, json_path = write_record(record, out=out)
        typer.echo(f"Record of processing written to {html_path} and {json_path}.")
        if record["missing"]:
            typer.echo(
                f"Not stated (set them in node.toml's [processing] section): {', '.join(record['missing'])}.", err=True
            )
        return
    from privacy_budgets.report import build_report

    path = build_report(_existing(ledger), out=out)
    typer.echo(f"Report written to {path}.")


@app.command()
@_clear_errors
def reconcile(
    receipts: Annotated[Path, typer.Option(help="The coordinator's receipts (JSON list).")],
    export: Annotated[Path, typer.Option("--export", help="The site's ledger export (JSON).")],
    as_json: AsJson = False,
) -> None:
    """Check the coordinator's receipts against a site's export; exit 4 on any mismatch."""
    from privacy_budgets.reconciliation import reconcile as run

    frame = run(receipts=_json_list(receipts), ledger_export=_existing(export))
    if as_json:
        typer.echo(frame.to_json(orient="records", indent=2))
    elif not frame.empty:
        typer.echo(frame.to_string(index=False))
    typer.echo(frame.attrs["verdict"])
    if not frame.empty:
        raise typer.Exit(code=EXIT_BROKEN_RECORD)


# --- the board: keys, proposals, signatures -------------------------------------------

propose_app = typer.Typer(
    name="propose",
    help="Write a proposal for the board to sign: a cap, an allocation, an approval, a new board.",
    no_args_is_help=True,
)
app.add_typer(propose_app)

ProposalPath = Annotated[Path, typer.Argument(help="The proposal file (JSON, written by `budget propose`).")]
PassphraseFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="Read the key's passphrase from this file (automation; default: ask)."),
]
Reason = Annotated[str, typer.Option(help="Why (the board reads it before signing; recorded in the ledger).")]
ProposedBy = Annotated[str, typer.Option("--proposed-by", help="Who proposes it.")]
ExpiresDays = Annotated[
    float, typer.Option("--expires-days", help="Days until the proposal expires unapplied (at most 90).")
]
Out = Annotated[Path, typer.Option("--out", help="Where to write the proposal file.")]


@app.command()
@_clear_errors
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (KEY and KEY.pub).")],
    name: Annotated[str, typer.Option(help="Your name, as the key's comment.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Make an OpenSSH Ed25519 key pair, the private half passphrase-protected (mode 0600)."""
    from privacy_budgets.signatures import generate_key_pair

    passphrase = _passphrase(passphrase_file, confirm=True)
    public = generate_key_pair(path=out, passphrase=passphrase, comment=name)
    typer.echo(f"Wrote {out} (passphrase-protected) and {out}.pub. Your fingerprint: {public.fingerprint}")
    typer.echo("Send the .pub file to whoever records the board; keep the private key and its passphrase to yourself.")


@app.command()
@_clear_errors
def board(ledger: LedgerPath, as_json: AsJson = False) -> None:
    """The ledger's id, its board (members, fingerprints, quorum) and approvals."""
    from privacy_budgets import store
    from privacy_budgets.authority import GOVERNED_KINDS, Governance
    from privacy_budgets.exports import read_only

    with read_only(_existing(ledger)) as conn:
        governance = Governance.replay(store.governed_entries(conn, kinds=GOVERNED_KINDS))
    roster = governance.board
    with read_only(ledger) as conn:
        keys = store.public_keys(conn)
    ledger_key = keys[-1] if keys else ""  # the key that signs now: the genesis key, or the last rotated in
    data = {
        "ledger_id": governance.ledger_id,
        # what the coordinator registers (`register-node --ledger-key`) to verify this site's receipts
        "ledger_key": ledger_key,
        "board": None
        if roster is None
        else {
            "quorum": roster.quorum,
            "since_seq": governance.board_seq,
            # keys too: the coordinator pins this board (`register-node --board`) and verifies its signatures
            "members": [
                {"name": m.name, "fingerprint": m.fingerprint, "key": m.key.openssh(comment=False)}
                for m in roster.members
            ],
        },
        "approvals": [
            {"dataset": a.dataset, "project": a.project, "purpose": a.purpose, "researchers": a.researchers}
            for a in governance.approvals.values()
        ],
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"ledger id: {governance.ledger_id}")
    typer.echo(f"ledger key: {ledger_key} (the coordinator registers it with --ledger-key)")
    if roster is None:
        typer.echo(
            "board: none (legacy mode: caps and allocations are one-person entries). Record one with "
            "`workbench budget establish-board`."
        )
    else:
        typer.echo(f"board since seq {governance.board_seq}: quorum {roster.quorum} of {len(roster.members)}")
        for m in roster.members:
            typer.echo(f"  {m.name}: {m.fingerprint}")
    for a in governance.approvals.values():
        names = ", ".join(r["name"] for r in a.researchers)
        typer.echo(f"approved: project {a.project} on {a.dataset} ({a.purpose}) for {names}")


@app.command("establish-board")
@_clear_errors
def establish_board(
    ledger: LedgerPath,
    roster: Annotated[Path, typer.Option("--board", help='The board roster (JSON: {"quorum": K, "members": [...]}).')],
    actor: Annotated[str, typer.Option(help="Who records it (the ledger's creator).")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyPath = None,
) -> None:
    """Record the ledger's first board, once; from then on only a quorum changes it."""
    from privacy_budgets.board import Board

    with _writable(ledger, key) as opened:
        entry = opened.establish_board(board=Board.load(_existing(roster)), actor=actor, reason=reason)
    _echo_entry(entry)


@propose_app.command("cap")
@_clear_errors
def propose_cap(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    epsilon: Annotated[float, typer.Option(help="The new lifetime cap on epsilon.")],
    delta: Annotated[float, typer.Option(help="The dataset's delta, in (0, 1).")],
    reason: Reason,
    proposed_by: ProposedBy,
    out: Out,
    expires_days: ExpiresDays = 14.0,
) -> None:
    """Propose a dataset's cap (a raise or a first cap; lowering needs no board: set-cap)."""
    from privacy_budgets.proposals import cap_action

    _write_proposal(
        ledger, cap_action(dataset=dataset, epsilon=epsilon, delta=delta), reason, proposed_by, expires_days, out
    )


@propose_app.command("allocate")
@_clear_errors
def propose_allocate(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    epsilon: Annotated[float, typer.Option(help="The project's allocation of epsilon.")],
    reason: Reason,
    proposed_by: ProposedBy,
    out: Out,
    expires_days: ExpiresDays = 14.0,
) -> None:
    """Propose a project's allocation on a dataset."""
    from privacy_budgets.proposals import allocation_action

    action = allocation_action(dataset=dataset, project=project, epsilon=epsilon)
    _write_proposal(ledger, action, reason, proposed_by, expires_days, out)


@propose_app.command("approve")
@_clear_errors
def propose_approve(
    ledger: LedgerPath,
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    purpose: Annotated[str, typer.Option(help="The project's purpose, as the protocol states it.")],
    researcher: Annotated[
        list[str], typer.Option(help="NAME=PUBLIC_KEY_FILE, once per researcher (the full list after approval).")
    ],
    reason: Reason,
    proposed_by: ProposedBy,
    out: Out,
    expires_days: ExpiresDays = 14.0,
) -> None:
    """Propose to approve a project for named researcher keys."""
    from privacy_budgets.proposals import approval_action

    action = approval_action(
        dataset=dataset, project=project, purpose=purpose, researchers=_named_keys(researcher, "--researcher")
    )
    _write_proposal(ledger, action, reason, proposed_by, expires_days, out)


@propose_app.command("board")
@_clear_errors
def propose_board(
    ledger: LedgerPath,
    member: Annotated[list[str], typer.Option(help="NAME=PUBLIC_KEY_FILE, once per member of the new board.")],
    quorum: Annotated[int, typer.Option(help="How many distinct members must sign a decision.")],
    reason: Reason,
    proposed_by: ProposedBy,
    out: Out,
    expires_days: ExpiresDays = 14.0,
) -> None:
    """Propose the board after a change: members joining or leaving, a member's new key, a new quorum."""
    from privacy_budgets.board import Board, Member
    from privacy_budgets.proposals import board_action

    members = tuple(Member(name=name, key=key) for name, key in _named_keys(member, "--member"))
    _write_proposal(
        ledger, board_action(board=Board(members=members, quorum=quorum)), reason, proposed_by, expires_days, out
    )


@propose_app.command("rotate-key")
@_clear_errors
def propose_rotate_key(
    ledger: LedgerPath,
    new_key: Annotated[
        Path, typer.Option("--new-key", help="The new signing key (made here, mode 0600, when absent).")
    ],
    reason: Reason,
    proposed_by: ProposedBy,
    out: Out,
    expires_days: ExpiresDays = 14.0,
) -> None:
    """Propose to sign the ledger with a new key from now on (the old key signs the handover)."""
    from privacy_budgets.keys import load_or_create_key, public_hex
    from privacy_budgets.proposals import rotation_action

    public = public_hex(load_or_create_key(key_path=new_key, create=True))
    _write_proposal(ledger, rotation_action(new_public_key=public), reason, proposed_by, expires_days, out)


@app.command("rotate-key")
@_clear_errors
def rotate_key(
    ledger: LedgerPath,
    key: KeyPath = None,
    new_key: Annotated[
        Path | None,
        typer.Option("--new-key", help="The new key (default: <key>.new, made when absent)."),
    ] = None,
    proposal: Annotated[
        Path | None, typer.Option("--proposal", help="The rotate-key proposal a quorum signed (a ledger with a board).")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who rotates (a ledger without a board).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (a ledger without a board).")] = None,
) -> None:
    """Rotate the ledger's signing key; the new key takes the old one's place, which is kept as retired.

    After it, re-register the site's ledger key with the coordinator: its mirror links the
    two through the rotation entry carried by the next receipts' heads."""
    import os

    from privacy_budgets.keys import default_key_path
    from privacy_budgets.proposals import SignedProposal

    old_path = key or default_key_path(_existing(ledger))
    new_path = new_key or Path(f"{old_path}.new")
    loaded = None if proposal is None else SignedProposal.load(_existing(proposal))
    with _writable(ledger, old_path) as opened:
        entry = opened.rotate_key(new_key_path=new_path, proposal=loaded, actor=actor, reason=reason)
        fingerprint = opened.public_key_fingerprint
    retired = Path(f"{old_path}.retired-seq{entry.seq}")
    os.replace(old_path, retired)
    os.replace(new_path, old_path)
    _echo_entry(entry)
    typer.echo(
        f"The ledger is signed with {fingerprint} from seq {entry.seq + 1} on; the key is now {old_path} "
        f"(the old one is kept as {retired}: it proves nothing new, so move it offline). The coordinator refuses "
        "receipts under the new key until it accepts the handover: write it with `workbench budget handover "
        f"--ledger {ledger} --out handover.json` and send that file to the coordinator's operator."
    )


@app.command()
@_clear_errors
def handover(
    ledger: LedgerPath,
    out: Annotated[Path, typer.Option(help="Where to write the handover (JSON: public keys and signatures only).")],
) -> None:
    """Write the ledger's key rotations for the coordinator (`workbench coordinator accept-ledger-key`).

    Each rotation: the entry the old key signed, the new key's proof of holding it, the
    board's quorum-signed proposal, and the board in force then. Nothing in it is secret."""
    from privacy_budgets.exports import read_entries
    from privacy_budgets.handover import key_handover

    data = key_handover(read_entries(_existing(ledger)))
    if not data["rotations"]:
        raise LedgerError(
            f"The ledger {ledger} was never rotated: it is signed by its first key, which the coordinator registers "
            "with `workbench coordinator register-node --ledger-key` (read it with `workbench budget board`)."
        )
    out.write_text(json.dumps(data, indent=2) + "\n")
    typer.echo(
        f"Handover of {len(data['rotations'])} rotation(s) written to {out}; the ledger key is now "
        f"{data['current_public_key']}. The coordinator's operator runs `workbench coordinator accept-ledger-key "
        f"--name {data['site_id']} {out}`."
    )


@app.command()
@_clear_errors
def sign(
    proposal: ProposalPath,
    key: Annotated[
        Path,
        typer.Option(
            "--key", help="Your private key (or, with --ssh-keygen, a key in ssh-agent or on a hardware key)."
        ),
    ],
    ssh_keygen: Annotated[
        bool,
        typer.Option(
            "--ssh-keygen", help="Sign with `ssh-keygen -Y sign` (ssh-agent, hardware keys: a touch to sign)."
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Sign a proposal with your key, on your own machine; the signature is added to the file."""
    from privacy_budgets.proposals import SignedProposal
    from privacy_budgets.signatures import KeyFileError, KeySigner, SshKeygenSigner, load_private_key

    loaded = SignedProposal.load(_existing(proposal))
    typer.echo(f"You are signing: {loaded.describe()}")
    if ssh_keygen:
        signer = SshKeygenSigner(key_path=key)
    else:
        passphrase = None if passphrase_file is None else _passphrase(passphrase_file, confirm=False)
        try:
            private = load_private_key(path=key, passphrase=passphrase)
        except KeyFileError as err:
            if passphrase is not None or "passphrase-protected" not in str(err):
                raise
            private = load_private_key(path=key, passphrase=_passphrase(None, confirm=False))
        signer = KeySigner(private)
    signed = loaded.sign(signer)
    signed.save(proposal)
    typer.echo(
        f"Signed; {proposal} now holds {len(signed.signatures)} signature(s). Send it on, or to whoever applies it."
    )


@app.command()
@_clear_errors
def show(
    proposal: ProposalPath,
    ledger: Annotated[
        Path | None, typer.Option("--ledger", help="Count the signatures against this ledger's board.")
    ] = None,
    payload: Annotated[
        bool, typer.Option("--payload", help="Print only the exact bytes signed (for ssh-keygen -Y sign/verify).")
    ] = False,
) -> None:
    """A proposal in words, its signers and whether they count."""
    from privacy_budgets import store
    from privacy_budgets.authority import GOVERNED_KINDS, Governance, tally
    from privacy_budgets.exports import read_only
    from privacy_budgets.proposals import SignedProposal

    loaded = SignedProposal.load(_existing(proposal))
    if payload:
        sys.stdout.write(loaded.message.decode())
        return
    typer.echo(loaded.describe())
    board_now = None
    if ledger is not None:
        with read_only(_existing(ledger)) as conn:
            board_now = Governance.replay(store.governed_entries(conn, kinds=GOVERNED_KINDS)).board
    result = tally(loaded, board=board_now)
    for signer in result.counted:
        typer.echo(f"  signed by {signer.name} ({signer.fingerprint})")
    for sentence in result.refused:
        typer.echo(f"  {sentence}")
    if board_now is not None:
        typer.echo(f"{len(result.counted)} of the {board_now.quorum} signatures the board needs.")


@app.command()
@_clear_errors
def apply(
    proposal: ProposalPath,
    ledger: LedgerPath,
    more: Annotated[
        list[Path] | None, typer.Option("--with", help="Another signed copy of the same proposal (repeatable).")
    ] = None,
    signature: Annotated[
        list[Path] | None, typer.Option("--signature", help="A signature file from ssh-keygen -Y sign (repeatable).")
    ] = None,
    key: KeyPath = None,
) -> None:
    """Record a proposal in the ledger once a quorum of the board has signed it."""
    from privacy_budgets.proposals import ProposalInvalid, SignedProposal

    loaded = SignedProposal.load(_existing(proposal))
    extra: list[str] = []
    for copy in more or []:
        other = SignedProposal.load(_existing(copy))
        if other.id != loaded.id:
            raise ProposalInvalid(
                f"Copies merged with --with must hold the same proposal; {copy} holds proposal {other.id[:12]}, "
                f"{proposal} holds {loaded.id[:12]}."
            )
        extra += other.signatures
    extra += [_existing(path).read_text() for path in signature or []]
    if extra:
        loaded = loaded.with_signatures(extra)
    with _writable(ledger, key) as opened:
        entry = opened.apply(loaded)
    _echo_entry(entry)


def _write_proposal(ledger: Path, action: dict, reason: str, proposed_by: str, expires_days: float, out: Path) -> None:
    from datetime import timedelta

    from privacy_budgets import store
    from privacy_budgets.exports import read_only
    from privacy_budgets.proposals import propose

    with read_only(_existing(ledger)) as conn:
        site_id = store.read_meta(conn)["site_id"]
        ledger_id = store.entry_at(conn, 1).entry_hash
    made = propose(
        site_id=site_id,
        ledger_id=ledger_id,
        action=action,
        reason=reason,
        proposed_by=proposed_by,
        expires_in=timedelta(days=expires_days),
    )
    made.save(out)
    typer.echo(f"Wrote {out}: {made.describe()}")
    typer.echo(f"Each member signs it on their own machine: workbench budget sign {out} --key KEY")


def _named_keys(items: list[str], option: str) -> list[tuple[str, Any]]:
    from privacy_budgets.signatures import SshPublicKey

    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise LedgerError(f"{option} takes NAME=PUBLIC_KEY_FILE; got {item!r}. Fix: e.g. {option} 'Dr A=a.pub'.")
        out.append((name.strip(), SshPublicKey.load(_existing(Path(path.strip())))))
    return out


def _passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        text = _existing(path).read_text().rstrip("\n")
        if not text:
            raise LedgerError(f"A passphrase file must hold the passphrase; {path} is empty.")
        return text
    return typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


# --- helpers ------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}. Check the path.")
    return path


def _json_or_text(text: str | None) -> Any:
    # A damaged entry is still listed, as its raw text; verify says what is wrong.
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(_existing(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LedgerError(f"Receipts must be a JSON list; {path} is not JSON ({err}).") from None
    if not isinstance(data, list):
        raise LedgerError(f"Receipts must be a JSON list; {path} holds a {type(data).__name__}.")
    return data


class _writable:
    """Open an existing ledger for writing, under the site id it records."""

    def __init__(self, path: Path, key: Path | None) -> None:
        self.path, self.key = _existing(path), key

    def __enter__(self):
        from privacy_budgets import store
        from privacy_budgets.exports import read_only
        from privacy_budgets.ledger import Ledger

        with read_only(self.path) as conn:
            site_id = store.read_meta(conn)["site_id"]
        self.ledger = Ledger.open(self.path, site_id=site_id, key_path=self.key, create=False)
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        self.ledger.close()


def _echo_entry(entry: Any) -> None:
    from privacy_budgets.statements import statement

    typer.echo(f"seq {entry.seq}: {statement(entry)}")


def main() -> None:
    """Entry point for ``python -m privacy_budgets``."""
    app(prog_name="python -m privacy_budgets")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
