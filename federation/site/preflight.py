"""``node check``: every preflight check of a node, one line each, with its fix.

Each check returns a ``Check`` ("ok", "warn" or "fail"); none raises. ``node start``
runs the same checks (reachability of the coordinator as a warning only: the
SuperNode retries until the SuperLink is up) and starts nothing when one fails.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from federation.site.audit import append_audit, audit_path, utc_now, verify_audit
from federation.site.config import NodeConfig, NodeConfigError, load_node_config
from federation.site.keys import NodeKeyError, read_public_key_line
from federation.site.pause import read_pause

OK, WARN, FAIL = "ok", "warn", "fail"
CONNECT_TIMEOUT_S = 3.0


# What a failed check means, for the command's exit code (federation/cli_support.py).
BAD_INPUT, UNREACHABLE, BROKEN = "bad input", "unreachable", "broken record"


@dataclass(frozen=True)
class Check:
    """One preflight line: what was checked, the verdict, what was found, and the fix.

    ``kind`` says what a failure is: the node's settings, files or data break a rule
    (bad input), the coordinator cannot be reached, or a record does not verify."""

    name: str
    status: str
    detail: str
    fix: str = ""
    kind: str = BAD_INPUT

    def line(self) -> str:
        label = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}[self.status]
        text = f"{label} {self.name}: {self.detail}"
        return f"{text} Fix: {self.fix}" if self.fix and self.status != OK else text


@dataclass(frozen=True)
class Preflight:
    """All checks of one node.toml; ``config`` is None when the file itself is bad."""

    checks: tuple[Check, ...]
    config: NodeConfig | None

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def exit_code(self) -> int:
        """0 when nothing failed; else the code of the gravest failure (cli_support.EXIT_CODES)."""
        from federation.cli_support import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_UNREACHABLE

        kinds = {c.kind for c in self.checks if c.status == FAIL}
        if not kinds:
            return EXIT_OK
        if BROKEN in kinds:
            return EXIT_INTERNAL
        if BAD_INPUT in kinds:
            return EXIT_BAD_INPUT
        return EXIT_UNREACHABLE


def run_preflight(*, config_path: Path, require_coordinator: bool = True) -> Preflight:
    """Run every check of the node described by ``config_path``."""
    try:
        config = load_node_config(Path(config_path))
    except NodeConfigError as err:
        return Preflight(checks=(Check("config", FAIL, str(err)),), config=None)
    checks = [Check("config", OK, f"{config.path} is valid (site {config.site_id}, dataset {config.dataset})")]
    for check in (
        _data,
        _state_dir,
        _node_key,
        _key_folder,
        _state_modes,
        _ca_certificate,
        _ledger,
        _ledger_anchors,
        _audit_log,
        _paused,
        _trusted_entities,
        _alerts,
        _runtime_api,
        _runtime_port,
    ):
        checks.append(_safely(check, config))
    proxy = _safely(_proxy, config)
    if proxy.status == FAIL and not require_coordinator:  # node start sets NO_PROXY for its own processes
        proxy = Check(proxy.name, WARN, proxy.detail + " (node start bypasses the proxy for its own loopback traffic)")
    checks.append(proxy)
    reach = _safely(_coordinator, config)
    if reach.status == FAIL and not require_coordinator:
        reach = Check(reach.name, WARN, reach.detail + " (the node keeps retrying once started)", reach.fix)
    checks.append(reach)
    return Preflight(checks=tuple(checks), config=config)


def _safely(check: Callable[[NodeConfig], Check], config: NodeConfig) -> Check:
    from privacy_budgets.errors import LedgerIntegrityError, PrivacyBudgetError, environment_problem

    name = check.__name__.lstrip("_").replace("_", " ")
    try:
        return check(config)
    except PrivacyBudgetError as err:  # the ledger's own messages say what and the fix (a disk, a permission)
        kind = BROKEN if isinstance(err, LedgerIntegrityError) else BAD_INPUT
        return Check(name, FAIL, " ".join(str(err).split()), kind=kind)
    except OSError as err:
        found = environment_problem(err, path=err.filename or config.state_dir / "(file)")
        if found is None:
            return Check(name, FAIL, f"{type(err).__name__}: {err}", "check the path and its permissions.")
        return Check(name, FAIL, " ".join(str(found).split()).replace("The ledger", "The file"))
    except Exception as err:  # a check that breaks is a failed check, never a traceback
        return Check(
            name,
            FAIL,
            f"the check itself failed: {type(err).__name__}: {err}",
            "report this with the node.toml (without keys) to the workbench maintainers.",
        )


def _data(config: NodeConfig) -> Check:
    from federation.data.dictionary import DataDictionary
    from federation.data.errors import DataDictionaryError, DataValidationError
    from federation.data.loader import load_site_data

    dictionary_path = config.resolved_dictionary_path
    if not config.data_path.is_file():
        return Check(
            "data",
            FAIL,
            f"{config.data_path} does not exist.",
            "point [site] data in node.toml at the site's table (CSV or Parquet).",
        )
    if not dictionary_path.is_file():
        return Check(
            "data",
            FAIL,
            f"no data dictionary at {dictionary_path}: the data cannot be checked against its schema.",
            "put the study's data_dictionary.json beside the data file, or name it in [site] dictionary.",
        )
    try:
        dictionary = DataDictionary.load(dictionary_path)
    except DataDictionaryError as err:
        return Check(
            "data",
            FAIL,
            f"the data dictionary {dictionary_path} is invalid: {' '.join(str(err).split())}",
            "restore the study's data_dictionary.json.",
        )
    try:
        site = load_site_data(path=config.data_path, dictionary=dictionary, site_id=config.site_id)
    except (DataValidationError, DataDictionaryError) as err:
        return Check(
            "data",
            FAIL,
            f"{config.data_path} does not match its schema: {' '.join(str(err).split())}",
            f"fix the data file, or have the study update the dictionary {dictionary_path.name}; "
            "no task is served on data that does not validate.",
        )
    return Check(
        "data",
        OK,
        f"{config.data_path.name}: {len(site.frame)} rows match dictionary "
        f"'{dictionary.name}' ({len(dictionary.columns)} columns)",
    )


def _state_dir(config: NodeConfig) -> Check:
    state = config.state_dir
    probe = state if state.exists() else next((p for p in state.parents if p.exists()), None)
    if state.exists() and not state.is_dir():
        return Check("state folder", FAIL, f"{state} is a file.", "point [state] dir at a folder.")
    if probe is None or not _writable(probe):
        return Check(
            "state folder",
            FAIL,
            f"{state} cannot be written by this user.",
            f"create it and give the node's user write access (mkdir -p {state}).",
        )
    return Check("state folder", OK, f"{state}" + ("" if state.exists() else " (created on first use)"))


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK | os.X_OK)


def _node_key(config: NodeConfig) -> Check:
    try:
        line = read_public_key_line(private_key=config.node_private_key)
    except NodeKeyError as err:
        message = str(err)
        detail, _, fix = message.partition(" Fix: ")
        return Check("node key", FAIL, detail, fix or "make a key pair with `workbench node init`.")
    return Check(
        "node key",
        OK,
        f"ECDSA P-384 pair at {config.node_private_key} (mode 600); "
        f"the coordinator registers {config.node_public_key.name}: {line[:48]}...",
    )


def _key_folder(config: NodeConfig) -> Check:
    """The ledger's key lives in the key folder (0700, outside the state folder), never beside the ledger."""
    site = config.site_config()
    folder, key = config.ledger_key_dir, site.ledger_key_path
    state = Path(config.state_dir).resolve()
    if folder.resolve() == state or state in folder.resolve().parents:
        return Check(
            "key folder",
            FAIL,
            f"[node] key_dir {folder} is inside the state folder {state}: whoever writes the state folder could "
            "then sign a history of their own.",
            f'name a folder outside it, e.g. key_dir = "{Path(config.path).parent / "keys"}", and move ledger.key there.',
        )
    if site.legacy_key_path.exists():
        return Check(
            "key folder",
            FAIL,
            f"the ledger's signing key is still in the state folder ({site.legacy_key_path}), where whoever writes "
            "the ledger could also sign a history of their own.",
            f"`workbench node start` moves it into the key folder; or by hand: mkdir -p -m 700 {folder} && "
            f"mv {site.legacy_key_path} {key}",
        )
    loose = [(p, m) for p, m in ((folder, 0o700), (key, 0o600)) if p.exists() and (p.stat().st_mode & 0o077)]
    if loose:
        shown = ", ".join(f"{p} is {oct(p.stat().st_mode & 0o777)}" for p, _ in loose)
        return Check(
            "key folder",
            FAIL,
            f"the key folder and the ledger key must be owner-only; {shown}: another local user may read the key.",
            "; ".join(f"chmod {oct(m)[2:]} {p}" for p, m in loose),
        )
    if not key.exists():
        return Check(
            "key folder",
            OK if not site.ledger_path.exists() else FAIL,
            f"no ledger key yet in {folder} (made with the ledger)"
            if not site.ledger_path.exists()
            else f"the ledger {site.ledger_path} exists but its key {key} does not.",
            "put the site's ledger.key back into the key folder (from the key backup); never make a new one for an "
            "existing ledger.",
        )
    return Check("key folder", OK, f"{key} (owner-only, outside the state folder)")


def _state_modes(config: NodeConfig) -> Check:
    """Every file and folder in the state folder is owner-only."""
    from federation.site.ledger_keys import loose_modes

    loose = loose_modes(config.state_dir)
    if loose:
        shown = ", ".join(f"{p} is {oct(m)}" for p, m in loose)
        return Check(
            "state permissions",
            FAIL,
            f"the state folder and every file in it must be owner-only (no access for group or others); {shown}: "
            "every local user may read the ledger, the audit log and released answers.",
            f"chmod -R go-rwx {config.state_dir} (the node creates them owner-only from now on).",
        )
    return Check("state permissions", OK, f"{config.state_dir} and everything in it are owner-only")


def _ca_certificate(config: NodeConfig) -> Check:
    from cryptography import x509

    path = config.ca_certificate
    if not path.is_file():
        return Check(
            "CA certificate",
            FAIL,
            f"{path} does not exist.",
            "save the CA certificate the coordinator sent (ca.crt) there, or fix [coordinator] ca_certificate.",
        )
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as err:
        return Check(
            "CA certificate",
            FAIL,
            f"{path} is not a PEM certificate ({err}).",
            "ask the coordinator for its CA certificate in PEM form (-----BEGIN CERTIFICATE-----).",
        )
    now = datetime.now(UTC)
    cert = certificates[0]
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return Check(
            "CA certificate",
            FAIL,
            f"{path} is valid only from {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}.",
            "ask the coordinator for its current CA certificate.",
        )
    return Check(
        "CA certificate", OK, f"{cert.subject.rfc4514_string()}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    )


def _ledger(config: NodeConfig) -> Check:
    from privacy_budgets import Ledger

    path = config.site_config().ledger_path
    if not path.exists():
        return Check(
            "ledger",
            WARN,
            f"no ledger yet at {path}: every task is refused until a cap and an allocation exist.",
            f"set the dataset's cap: `workbench budget set-cap --ledger {path} --dataset {config.dataset} --epsilon E --delta 1e-5 --actor NAME --reason TEXT`, "
            "then the ethics board allocates each project (`workbench budget allocate`).",
        )
    from privacy_budgets.keys import load_key, public_hex

    key_path = config.site_config().ledger_key_path
    if not key_path.exists():
        return Check(
            "ledger",
            FAIL,
            f"{path} cannot be checked against the site's key: there is no {key_path}.",
            "put the site's ledger.key back into the key folder (see the key folder line).",
        )
    # Pinned to the key in the key folder: a history signed with any other key is not this site's.
    report = Ledger.verify_file(path, public_key=public_hex(load_key(key_path=key_path)))
    if not report.ok:
        return Check(
            "ledger",
            FAIL,
            f"{path} does not verify: {report}",
            kind=BROKEN,
            fix=f"stop the node (`workbench node stop --config {config.path}`) and keep the file as it is: it is the evidence. Ask the "
            "ethics board to compare it with the last checkpoint and receipts; never replace it with an older "
            "copy (that would erase recorded spending).",
        )
    with Ledger.open(path, site_id=config.site_id, key_path=key_path, create=False) as ledger:
        cap = ledger.cap(dataset=config.dataset)
    if cap is None:
        return Check(
            "ledger",
            WARN,
            f"{path} verifies ({report.entries_checked} entries) but dataset "
            f"'{config.dataset}' has no cap: nothing can be released.",
            f"`workbench budget set-cap --ledger {path} --dataset {config.dataset} --epsilon E --delta 1e-5 --actor NAME --reason TEXT`.",
        )
    return Check("ledger", OK, f"{report.entries_checked} entries verify; dataset '{config.dataset}' cap {cap:g}")


def _ledger_anchors(config: NodeConfig) -> Check:
    """The ledger is at or beyond every head this node recorded elsewhere (anchors.py)."""
    from federation.site.anchors import LedgerBehind, check_not_behind

    try:
        head, anchors = check_not_behind(config.site_config(), board_checkpoint=config.board_checkpoint)
    except LedgerBehind as err:
        return Check(
            "ledger anchors",
            FAIL,
            " ".join(str(err).split()),
            "see above: never serve from, or restore, a ledger older than the last anchored head.",
            kind=BROKEN,
        )
    if not anchors:
        return Check("ledger anchors", OK, "no head recorded outside the ledger yet")
    sources = sorted({a.source for a in anchors})
    return Check(
        "ledger anchors",
        OK,
        f"ledger head seq {head[0]} is at or beyond the heads recorded in the {', '.join(sources)} "
        f"(highest seq {max(a.seq for a in anchors)})",
    )


def _audit_log(config: NodeConfig) -> Check:
    path = audit_path(config.state_dir)
    fix = "make the state folder and its audit.jsonl writable by the node's user, and free disk space."
    if path.exists() and not path.is_file():
        return Check(
            "audit log",
            FAIL,
            f"{path} is not a regular file, so it cannot be appended to; the node would refuse every request, "
            "since it serves nothing it cannot record",
            "move it aside; " + fix,
        )
    keys = ledger_keys_of(config)
    if path.exists():
        result = verify_audit(path, public_keys=keys)
        if not result.ok:
            return Check(
                "audit log",
                FAIL,
                result.describe(),
                "keep the file as evidence, tell the site's security officer, and start a new log only "
                "after moving this one aside.",
                kind=BROKEN,
            )
    # The node refuses every request it cannot record (fail closed), and the only proof
    # that a log accepts appends is an append: this check writes one line to it.
    try:
        append_audit(path=path, entry={"kind": "check", "time": utc_now(), "note": "workbench node check"})
    except OSError as err:
        return Check(
            "audit log",
            FAIL,
            f"{path} cannot be appended to ({type(err).__name__}: {err.strerror or err}); the node would refuse "
            "every request, since it serves nothing it cannot record",
            fix,
        )
    _sign_head_if_not_behind(config)
    result = verify_audit(path, public_keys=keys)
    return Check("audit log", WARN if result.torn_tail else OK, result.describe())


def ledger_keys_of(config: NodeConfig) -> set[str] | None:
    """The keys the ledger was signed with (None: no ledger to ask)."""
    import sqlite3

    from privacy_budgets import store

    path = config.site_config().ledger_path
    if not path.exists():
        return None
    try:
        conn = store.connect(path, read_only=True)
        try:
            return set(store.public_keys(conn))
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _sign_head_if_not_behind(config: NodeConfig) -> None:
    """A signed audit head at every check, but never one that would anchor a rolled-back ledger."""
    from federation.site.anchors import LedgerBehind, check_not_behind
    from federation.site.audit_heads import sign_audit_head

    site = config.site_config()
    try:
        check_not_behind(site, board_checkpoint=config.board_checkpoint)
    except (LedgerBehind, OSError, ValueError):
        return
    sign_audit_head(site)


def _paused(config: NodeConfig) -> Check:
    pause = read_pause(state_dir=config.state_dir)
    if pause is None:
        return Check("pause switch", OK, "the node is not paused")
    return Check(
        "pause switch",
        WARN,
        f"the node is {pause.describe()}; it refuses every task.",
        "`workbench node resume --config node.toml` when the site agrees.",
    )


def _trusted_entities(config: NodeConfig) -> Check:
    path = config.policy.trusted_entities
    if path is None:
        # The site executor runs only the workbench's own ClientApp whatever the bundle says;
        # Flower's signature check is the extra layer (bundles signed by Flower's platform).
        return Check(
            "trusted app signers",
            OK,
            "none set: the node's executor runs only the workbench's own ClientApp (installed here), "
            "whatever app bundle arrives; Flower's app signatures are not checked.",
        )
    try:
        signers = read_trusted_entities(path=path)
    except ValueError as err:
        return Check(
            "trusted app signers",
            FAIL,
            str(err),
            "fix the file (Flower's --trusted-entities format), or remove [policy] trusted_entities.",
        )
    return Check("trusted app signers", OK, f"the node runs only apps signed by: {', '.join(signers)}")


def read_trusted_entities(*, path: Path) -> list[str]:
    """The signers in a Flower --trusted-entities YAML file (``id: "ssh-ed25519 KEY [comment]"``),
    as ``id (comment)``; raises ValueError with the fix if the file is not of that form."""
    import yaml
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    if not path.is_file():
        raise ValueError(f"{path} does not exist; write it, or remove [policy] trusted_entities.")
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(err).split())}).") from None
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{path} must map key ids to public keys, e.g. fpk_1: 'ssh-ed25519 AAAA... name'.")
    signers = []
    for key_id, key in entries.items():
        key = str(key)
        try:
            loaded = load_ssh_public_key(key.strip().encode("utf-8"))
        except (ValueError, UnicodeEncodeError) as err:
            raise ValueError(f"{path}: the key of {key_id} is not an OpenSSH public key ({err}).") from None
        if not isinstance(loaded, ed25519.Ed25519PublicKey):
            raise ValueError(f"{path}: the key of {key_id} is not Ed25519, which Flower requires for app signing.")
        comment = " ".join(key.split()[2:])
        signers.append(f"{key_id} ({comment})" if comment else str(key_id))
    return signers


def _alerts(config: NodeConfig) -> Check:
    targets = [
        f"command {config.policy.alert_command!r}" if config.policy.alert_command else "",
        f"webhook {config.policy.alert_webhook}" if config.policy.alert_webhook else "",
    ]
    targets = [t for t in targets if t]
    if not targets:
        return Check(
            "alerts",
            WARN,
            "alerts go to the audit log only.",
            "set [alerts] command or webhook so someone is told at once.",
        )
    return Check("alerts", OK, "alerts go to the audit log and " + " and ".join(targets))


def _runtime_api(config: NodeConfig) -> Check:
    """Loopback only, and a secret no other local user can read (runtime_secret.py)."""
    from federation.site.runtime_secret import runtime_api_problem, secret_path

    problem = runtime_api_problem(
        address=config.clientappio_address, state_dir=config.state_dir, config_path=config.path
    )
    if problem is not None:
        return Check("runtime API", FAIL, problem[0], problem[1])
    secret = secret_path(config.state_dir)
    held = "held in" if secret.exists() else "to be made at start in"
    return Check(
        "runtime API",
        OK,
        f"{config.clientappio_address} is loopback; tasks go only to requests signed with the node's secret "
        f"({held} {secret}, mode 600)",
    )


def _runtime_port(config: NodeConfig) -> Check:
    from federation.processes import free_runtime_port, port_is_free, split_address
    from federation.site.supernode import runtime_of

    host, port = split_address(config.clientappio_address)
    runtime = runtime_of(config)
    if runtime.supernode is not None:
        return Check(
            "runtime port", OK, f"{config.clientappio_address} is this node's (supernode PID {runtime.supernode})"
        )
    if not port_is_free(host, port):
        return Check(
            "runtime port",
            FAIL,
            f"[node] clientappio_address {config.clientappio_address} is in use by another program (another node "
            "on this machine?): this node's SuperNode could not serve its Runtime API there.",
            f'set clientappio_address = "127.0.0.1:{free_runtime_port()}" (a free port now) in {config.path}.',
        )
    return Check("runtime port", OK, f"{config.clientappio_address} is free")


def _proxy(config: NodeConfig) -> Check:
    from federation.site.proxy import proxies_set, proxy_problem

    problem = proxy_problem()
    if problem is not None:
        detail, _, fix = problem.partition(" Fix: ")
        return Check("proxy", FAIL, detail, fix)
    proxies = proxies_set()
    if not proxies:
        return Check("proxy", OK, "no HTTP(S) proxy set: the node dials the coordinator directly")
    return Check(
        "proxy",
        OK,
        f"Fleet traffic to {config.coordinator_address} goes through {', '.join(sorted(set(proxies.values())))}; "
        "NO_PROXY covers loopback",
    )


def _coordinator(config: NodeConfig) -> Check:
    host, _, port = config.coordinator_address.rpartition(":")
    host = host.strip("[]")
    from federation.site.proxy import open_tunnel, proxy_for

    started = time.monotonic()
    proxy = proxy_for(host)  # behind the hospital's proxy, the coordinator is reached as the node reaches it
    via = f" through the proxy {proxy}" if proxy else ""
    try:
        if proxy:
            open_tunnel(proxy=proxy, host=host, port=int(port), timeout=CONNECT_TIMEOUT_S).close()
        else:
            with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
                pass
    except OSError as err:
        return Check(
            "coordinator",
            FAIL,
            f"cannot open a TCP connection to {config.coordinator_address}{via} within {CONNECT_TIMEOUT_S:g} s ({err}).",
            "check [coordinator] address, that the coordinator's SuperLink is running, and that "
            "the site's firewall allows outgoing connections to that port.",
            kind=UNREACHABLE,
        )
    return Check(
        "coordinator",
        OK,
        f"{config.coordinator_address} accepts connections{via} ({(time.monotonic() - started) * 1000:.0f} ms)",
    )
