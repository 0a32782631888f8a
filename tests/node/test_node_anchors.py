"""Keys apart from what they sign, an owner-only state folder, and a ledger that cannot
be rolled back or rewritten unseen by the node itself (the insider with write access to
the state folder: issue 16). Each attack is refused with a message naming what and where."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from _node_helpers import DELTA, PROJECT, set_key

from federation.site.anchors import LedgerBehind, check_not_behind
from federation.site.audit import audit_path, line_hash, verify_audit
from federation.site.audit_heads import sign_audit_head
from federation.site.ledger_keys import move_legacy_key, open_site_ledger
from federation.site.preflight import ledger_keys_of, run_preflight
from federation.site.supernode import _anchor_at_start
from privacy_budgets import Ledger, LedgerError, gaussian_event


def _checks(node) -> dict:
    return {c.name: c for c in run_preflight(config_path=node.toml, require_coordinator=False).checks}


def _spend(node, n: int = 1) -> None:
    with open_site_ledger(node.site) as ledger:
        for _ in range(n):
            r = ledger.reserve(
                dataset=node.site.dataset,
                project=PROJECT,
                actor="analyst",
                event=gaussian_event(noise_multiplier=8.0),
                purpose="a count",
            )
            ledger.commit(r)


def _spent(node) -> float:
    with open_site_ledger(node.site) as ledger:
        return ledger.spent(dataset=node.site.dataset)


def _copy_state(node, to: Path) -> None:
    """An insider's copy of the state folder (the ledger closed: its WAL is folded in)."""
    shutil.copytree(node.site.state_dir, to)


def _put_back(node, copy: Path, *names: str) -> None:
    """Put older copies back in place, as an insider with write access to the state folder would."""
    state = node.site.state_dir
    for name in names:
        target = state / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        source = copy / name
        if source.is_dir():
            shutil.copytree(source, target)
        elif source.exists():
            shutil.copy2(source, target)
    for leftover in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        (state / leftover).unlink(missing_ok=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keys apart from the ledger; owner-only state -----------------------------------------------


def test_the_ledger_key_lives_in_the_key_folder_and_the_state_is_owner_only(node):
    site = node.site
    assert site.ledger_key_path == node.toml.parent / "keys" / "ledger.key"
    assert site.ledger_key_path.is_file() and not site.legacy_key_path.exists()
    assert _mode(site.ledger_key_path) == 0o600 and _mode(site.ledger_key_path.parent) == 0o700
    assert _mode(site.state_dir) == 0o700 and _mode(site.ledger_path) == 0o600
    sign_audit_head(site)
    assert _mode(audit_path(site.state_dir)) == 0o600
    checks = _checks(node)
    assert checks["key folder"].status == "ok" and checks["state permissions"].status == "ok"


def test_a_legacy_key_beside_the_ledger_fails_check_and_moves_into_the_key_folder(tmp_path, node):
    site = node.site
    site.ledger_key_path.replace(site.legacy_key_path)  # as a ledger made before key folders keeps it
    check = _checks(node)["key folder"]
    assert check.status == "fail" and str(site.legacy_key_path) in check.detail
    assert f"mv {site.legacy_key_path} {site.ledger_key_path}" in check.fix
    with Ledger.open(site.ledger_path, site_id=site.site_id, key_path=site.legacy_key_path) as ledger:
        before = ledger.public_key_fingerprint
    assert move_legacy_key(site) == site.legacy_key_path
    assert not site.legacy_key_path.exists() and _mode(site.ledger_key_path) == 0o600
    with open_site_ledger(site) as ledger:  # the ledger keeps writing with the key it was created with
        assert ledger.public_key_fingerprint == before and ledger.verify().ok
    assert _checks(node)["key folder"].status == "ok"


def test_looser_modes_fail_node_check_with_the_fix(node):
    site = node.site
    site.ledger_path.chmod(0o644)
    check = _checks(node)["state permissions"]
    assert check.status == "fail" and f"{site.ledger_path} is 0o644" in check.detail
    assert check.fix.startswith(f"chmod -R go-rwx {site.state_dir}")
    site.ledger_path.chmod(0o600)
    site.ledger_key_path.parent.chmod(0o755)
    check = _checks(node)["key folder"]
    assert check.status == "fail" and f"chmod 700 {site.ledger_key_path.parent}" in check.fix


def test_a_key_folder_inside_the_state_folder_is_refused(node):
    set_key(node.toml, "key_dir", f'"{node.site.state_dir / "keys"}"')
    check = _checks(node)["key folder"]
    assert check.status == "fail" and "inside the state folder" in check.detail


# --- a rollback caught automatically -----------------------------------------------------------


def test_a_rolled_back_ledger_file_is_refused_at_check_and_at_start(tmp_path, node):
    _spend(node)
    sign_audit_head(node.site)
    _copy_state(node, tmp_path / "copy")
    _spend(node, 2)
    sign_audit_head(node.site)  # the node starts again, or checks: the newer head is signed
    spent = _spent(node)
    _put_back(node, tmp_path / "copy", "ledger.sqlite")
    assert _spent(node) < spent  # the rollback took recorded spending away
    check = _checks(node)["ledger anchors"]
    assert check.status == "fail" and check.kind == "broken record"
    assert "ends at seq 5" in check.detail and "seq 9" in check.detail
    assert str(audit_path(node.site.state_dir)) in check.detail or "key folder" in check.detail
    assert "an older copy would erase recorded spending" in check.detail
    with pytest.raises(LedgerBehind, match="Refused to serve"):
        _anchor_at_start(node.config)
    assert not _checks(node)["ledger anchors"].status == "ok"


def test_ledger_audit_log_and_replay_cache_rolled_back_together_are_refused(tmp_path, node):
    _spend(node)
    sign_audit_head(node.site)
    (node.site.analytics_cache_dir).mkdir(mode=0o700)
    _copy_state(node, tmp_path / "copy")
    _spend(node, 2)
    sign_audit_head(node.site)
    _put_back(node, tmp_path / "copy", "ledger.sqlite", "audit.jsonl", "analytics-cache")
    with pytest.raises(LedgerBehind) as caught:
        check_not_behind(node.site)
    message = str(caught.value)
    # The state folder agrees with itself now; the key folder (not the state folder) remembers.
    assert "the key folder" in message and "last_head.json" in message and "seq 9" in message
    assert _checks(node)["ledger anchors"].status == "fail"


def test_the_boards_checkpoint_catches_a_rollback_of_everything_the_node_holds(tmp_path, node):
    _spend(node)
    _copy_state(node, tmp_path / "copy")
    _spend(node, 2)
    with open_site_ledger(node.site) as ledger:
        ledger.checkpoint(out=tmp_path / "board-checkpoint.json")
    set_key(node.toml, "checkpoint", f'"{tmp_path / "board-checkpoint.json"}"')
    _put_back(node, tmp_path / "copy", "ledger.sqlite", "audit.jsonl")
    (node.site.ledger_key_path.parent / "last_head.json").unlink(missing_ok=True)
    check = _checks(node)["ledger anchors"]
    assert check.status == "fail" and "board checkpoint" in check.detail
    assert str(tmp_path / "board-checkpoint.json") in check.detail and "seq 9" in check.detail


def test_a_restore_at_or_beyond_the_last_anchored_head_is_accepted(tmp_path, node):
    _spend(node)
    sign_audit_head(node.site)
    _copy_state(node, tmp_path / "backup")  # a backup taken at the anchored head
    _put_back(node, tmp_path / "backup", "ledger.sqlite")
    assert _checks(node)["ledger anchors"].status == "ok"
    _anchor_at_start(node.config)  # starts: the head is where the node left it


def test_a_forged_history_signed_with_another_key_is_refused(tmp_path, node):
    _spend(node)
    sign_audit_head(node.site)
    site = node.site
    site.ledger_path.unlink()
    with Ledger.open(site.ledger_path, site_id=site.site_id, key_path=tmp_path / "insider.key") as forged:
        forged.set_cap(dataset=site.dataset, epsilon=1000.0, delta=DELTA, actor="insider", reason="forged")
        forged.allocate(dataset=site.dataset, project=PROJECT, epsilon=500.0, actor="insider", reason="forged")
        for _ in range(4):
            forged.commit(
                forged.reserve(
                    dataset=site.dataset,
                    project=PROJECT,
                    actor="x",
                    event=gaussian_event(noise_multiplier=50.0),
                    purpose="padding",
                )
            )
    checks = _checks(node)
    assert checks["ledger"].status == "fail" and "not the expected key" in checks["ledger"].detail
    assert checks["ledger anchors"].status == "fail" and "another entry at seq" in checks["ledger anchors"].detail
    with pytest.raises(LedgerError, match="created with"):
        open_site_ledger(site)


# --- an audit log that cannot be re-chained -------------------------------------------------------


def _rechain(path: Path, *, drop: int) -> None:
    """Remove line ``drop`` (1-based) and compute the chain again, as an insider would."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    del records[drop - 1]
    prev = "0" * 64
    out = []
    for number, record in enumerate(records, start=1):
        record.update(seq=number, prev=prev)
        record["hash"] = line_hash(record)
        prev = record["hash"]
        out.append(json.dumps(record, separators=(",", ":")) + "\n")
    path.write_text("".join(out))


def test_a_rechained_audit_log_is_named_at_the_first_line_after_the_last_good_signature(node):
    from federation.site.audit import append_audit, utc_now

    site = node.site
    path = audit_path(site.state_dir)
    sign_audit_head(site)  # line 1: a start
    append_audit(path=path, entry={"kind": "request", "time": utc_now(), "n": 1})  # line 2
    append_audit(path=path, entry={"kind": "alert", "time": utc_now(), "alert": "repeated query"})  # line 3
    sign_audit_head(site)  # line 4
    assert verify_audit(path, public_keys=ledger_keys_of(node.config)).signed_heads == 2
    _rechain(path, drop=3)
    plain = verify_audit(path)
    result = verify_audit(path, public_keys=ledger_keys_of(node.config))
    # The re-chained lines agree with each other; the head signed after them does not.
    assert not plain.ok and not result.ok
    assert result.first_bad_line == 2 and "the signed head at line 3" in result.problem
    assert "proven up to line 1" in result.problem
    check = _checks(node)["audit log"]
    assert check.status == "fail" and "TAMPERED at line 2" in check.detail


def test_a_head_signed_with_a_key_not_the_ledgers_is_refused(tmp_path, node):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from federation.site.audit import append_audit, utc_now
    from federation.site.audit_heads import HEAD_KIND, head_message
    from privacy_budgets.keys import public_hex, sign

    path = audit_path(node.site.state_dir)
    insider = Ed25519PrivateKey.generate()

    def seal(seq: int, h: str) -> dict:
        record = {
            "kind": HEAD_KIND,
            "time": utc_now(),
            "site": node.site.site_id,
            "signed_seq": seq,
            "signed_hash": h,
            "ledger_seq": None,
            "ledger_hash": None,
            "public_key": public_hex(insider),
        }
        return {**record, "signature": sign(insider, head_message(record))}

    append_audit(path=path, entry=None, seal=seal)
    result = verify_audit(path, public_keys=ledger_keys_of(node.config))
    assert not result.ok and "not the ledger's" in result.problem and result.first_bad_line == 1


def test_a_rollback_while_the_node_runs_is_refused_at_the_next_release(tmp_path, node):
    """Every charged release keeps the head in the key folder; the next release compares."""
    from federation.errors import InternalFault
    from federation.site.charged_path import Charge, Ran, charged_release

    def release(site):
        with open_site_ledger(site) as ledger:
            return charged_release(
                ledger=ledger,
                site=site,
                charge=Charge(
                    project=PROJECT, actor="analyst", event=gaussian_event(noise_multiplier=8.0), purpose="q"
                ),
                run=lambda: Ran(value="answer"),
            )

    site = node.site
    release(site)
    spent_then = _spent(node)
    _copy_state(node, tmp_path / "copy")
    charged = release(site)
    assert json.loads((site.ledger_key_path.parent / "last_head.json").read_text())["seq"] == charged.entry.seq
    _put_back(node, tmp_path / "copy", "ledger.sqlite")
    with pytest.raises(InternalFault) as refused:
        release(site)
    assert "Refused to serve" in str(refused.value) and "key folder" in str(refused.value)
    assert "releases nothing" in refused.value.public and str(site.state_dir) not in refused.value.public
    assert _spent(node) == spent_then  # nothing more was charged on the rolled-back ledger


def test_the_node_process_refuses_to_start_on_a_rolled_back_ledger(tmp_path, node):
    """`node start` (its supervisor process) stops before Flower starts, with exit code 4."""
    import subprocess
    import sys

    from _node_helpers import write_ca_certificate

    write_ca_certificate(node.toml.parent / "ca.crt")
    _spend(node)
    sign_audit_head(node.site)
    _copy_state(node, tmp_path / "copy")
    _spend(node)
    sign_audit_head(node.site)
    _put_back(node, tmp_path / "copy", "ledger.sqlite")
    done = subprocess.run(
        [sys.executable, "-m", "federation.site.supernode", "--config", str(node.toml)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stderr
    assert "Refused to serve" in done.stderr and "ends at seq 5" in done.stderr


# --- the same check on every path that serves ---------------------------------------------------


def _ask(node, config: dict, *, kind: str = "query:count", message_id: str = "m-1"):
    from _node_helpers import received

    from federation.site.tasks import serve

    return serve(kind=kind, msg=received(config, message_id=message_id), site=node.site, node_toml=node.toml)


def _count_request(epsilon: float) -> dict:
    from federation.analytics.query import Query
    from federation.protocol.query_request import QueryRequest

    return QueryRequest(query=Query(kind="count", epsilon=epsilon), project=PROJECT).to_config()


def _refused_as_behind(node, reply) -> str:
    """The reply is the anchors' refusal (public words only), and the audit log keeps why."""
    from federation.site.audit import recent_entries

    assert "refusal" in reply.content, "a rolled-back ledger served this request"
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "error" and "privacy ledger is behind a head it recorded" in refusal["reason"]
    assert str(node.site.state_dir) not in refusal["reason"]  # where stays at the site
    line = next(e for e in recent_entries(path=audit_path(node.site.state_dir)) if e["kind"] == "request")
    assert line["decision"]["reason"].startswith("Refused to serve") and line["epsilon_charged"] == 0.0
    return line["decision"]["reason"]


def test_a_rolled_back_ledger_is_refused_on_a_replayed_answer_and_a_query_cost(tmp_path, node):
    """Every path goes through the gate's one anchors check: a released answer kept for replay
    (which charges nothing) and a price (which reads no data) are refused as a fresh release is."""
    first, second = _count_request(0.2), _count_request(0.3)
    assert "refusal" not in _ask(node, first).content
    _copy_state(node, tmp_path / "copy")
    assert "refusal" not in _ask(node, second, message_id="m-2").content
    replayed = _ask(node, first, message_id="m-3")  # before the rollback: a free replay
    assert "refusal" not in replayed.content and replayed.content["site"]["replay"]
    priced = _ask(node, first, kind="query:cost", message_id="m-4")
    assert "refusal" not in priced.content
    spent = _spent(node)

    _put_back(node, tmp_path / "copy", "ledger.sqlite")  # the ledger alone, as in the issue
    for kind, request in (("query:count", first), ("query:cost", first), ("query:count", second)):
        reason = _refused_as_behind(node, _ask(node, request, kind=kind, message_id=f"after-{kind}"))
        assert "key folder" in reason or str(audit_path(node.site.state_dir)) in reason
    assert _spent(node) < spent  # the rolled-back file, untouched: nothing charged on it


def test_ledger_cache_and_audit_log_rolled_back_together_are_refused_on_a_replay(tmp_path, node):
    """The state folder agrees with itself after the rollback (its cache holds the answer
    the old ledger charged); the key folder's head refuses the replay all the same."""
    first = _count_request(0.2)
    assert "refusal" not in _ask(node, first).content
    _copy_state(node, tmp_path / "copy")
    assert "refusal" not in _ask(node, _count_request(0.3), message_id="m-2").content
    _put_back(node, tmp_path / "copy", "ledger.sqlite", "audit.jsonl", "analytics-cache")
    reason = _refused_as_behind(node, _ask(node, first, message_id="m-3"))
    assert "the key folder" in reason and "last_head.json" in reason
    reason = _refused_as_behind(node, _ask(node, first, kind="query:cost", message_id="m-4"))
    assert "the key folder" in reason


def test_the_boards_checkpoint_is_checked_before_every_request(tmp_path, node):
    """A rollback of everything the node holds (state and key folder's head) before the
    board's checkpoint: the node.toml's checkpoint refuses a price too."""
    _spend(node)
    _copy_state(node, tmp_path / "copy")
    _spend(node, 2)
    with open_site_ledger(node.site) as ledger:
        ledger.checkpoint(out=tmp_path / "board-checkpoint.json")
    set_key(node.toml, "checkpoint", f'"{tmp_path / "board-checkpoint.json"}"')
    _put_back(node, tmp_path / "copy", "ledger.sqlite", "audit.jsonl")
    (node.site.ledger_key_path.parent / "last_head.json").unlink(missing_ok=True)
    reason = _refused_as_behind(node, _ask(node, _count_request(0.2), kind="query:cost"))
    assert "board checkpoint" in reason and str(tmp_path / "board-checkpoint.json") in reason


@pytest.mark.parametrize("kind", sorted(__import__("federation.site.tasks", fromlist=["HANDLERS"]).HANDLERS))
def test_every_task_kind_is_refused_on_a_rolled_back_ledger_before_its_handler(tmp_path, node, kind):
    """Each handler the site registers (training, evaluation, range finding, every query
    kind, a price) sits behind the gate's anchors check: no handler runs at all (the
    message here is a count request; a handler that ran would refuse its kind instead)."""
    _spend(node)
    sign_audit_head(node.site)
    _copy_state(node, tmp_path / "copy")
    _spend(node)
    sign_audit_head(node.site)
    _put_back(node, tmp_path / "copy", "ledger.sqlite")
    reason = _refused_as_behind(node, _ask(node, _count_request(0.2), kind=kind))
    assert "ends at seq 5" in reason


def test_the_replay_caches_anchor_follows_every_answer_and_a_cache_put_back(tmp_path, node):
    """Read straight from the cache's file (never written by the check); kept between
    requests only while the cache's files are unchanged."""
    from federation.site.anchors import cache_anchor

    folder = node.site.analytics_cache_dir
    first = _ask(node, _count_request(0.2))
    seq = json.loads(first.content["site"]["receipts"])[-1]["seq"]
    assert cache_anchor(folder).seq == seq
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    assert cache_anchor(folder).seq == seq  # again: from the memo, the files untouched
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    _copy_state(node, tmp_path / "copy")
    second = _ask(node, _count_request(0.3), message_id="m-2")
    newer = json.loads(second.content["site"]["receipts"])[-1]["seq"]
    assert newer > seq and cache_anchor(folder).seq == newer
    _put_back(node, tmp_path / "copy", "analytics-cache")
    assert cache_anchor(folder).seq == seq


def test_the_replay_caches_anchor_reads_large_answers_kept_in_files(tmp_path):
    """diskcache keeps a text over 32 KiB in a file of its own: its receipts count too."""
    import diskcache

    from federation.site.anchors import cache_anchor

    small = json.dumps({"release": "x", "receipts": [{"seq": 4, "entry_hash": "a" * 64}]})
    large = json.dumps({"release": "y" * 40_000, "receipts": [{"seq": 9, "entry_hash": "b" * 64}]})
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        cache.set("small", small)
        cache.set("large", large)
        cache.set("version", "data-version-marker")
    assert list((tmp_path / "cache").rglob("*.val"))  # the large one did go to a file
    found = cache_anchor(tmp_path / "cache")
    assert (found.seq, found.head_hash) == (9, "b" * 64)
