"""A hostile coordinator sends the site a local tuning (task "tune") that would exhaust
or trick it: more candidates or a larger mean number of runs than its policy allows, a
candidate outside its [training] limits, a request without a signature on a node that
requires one, a request to a paused node, a "tune" to a node that never listed it.
Each is refused with the rule, the value and the fix, before the site reads its data;
nothing is charged and the audit log has the request's line. A signed, bounded tuning
is served once, charged once as its proven pair, and its audit line names the researcher.
"""

from __future__ import annotations

import json
import time

import pytest
from _adversary import ENCODER, PROJECT, message, refusal, set_key, spec
from flwr.app import MessageType

from federation.protocol.authorization import sign_local_tuning
from federation.protocol.local_tuning import REPLY_KEY, tuning_config
from federation.protocol.task_kinds import QUERY_KIND_KEY, TUNE
from federation.site.local_tuning import DELTA_SHARE
from federation.site.pause import pause_node
from privacy_budgets import Ledger
from privacy_budgets.signatures import KeySigner, generate_key_pair, load_private_key

SERVES_TUNE = '["train", "evaluate", "query:*", "tune"]'


def tune_message(*, candidates=({"learning_rate": 0.1},), mean=2.0, shape="geometric", signer=None, **overrides):
    the_spec = spec(**{"rounds": 1, **overrides})
    config = tuning_config(
        spec_config=the_spec.to_config(),
        encoder_json=ENCODER.to_json(),
        candidates=list(candidates),
        mean=mean,
        shape=shape,
    )
    if signer is not None:
        config.update(
            sign_local_tuning(signer, project=PROJECT, config=config, spec_config=the_spec.to_config()).to_config()
        )
    return message({**config, QUERY_KIND_KEY: TUNE}, message_type=MessageType.QUERY)


@pytest.fixture
def tuning_site(site, monkeypatch):
    """The node serving "tune" (its IT listed it); reading its rows fails the test."""
    set_key(site.toml, "allowed_tasks", SERVES_TUNE)

    def touched(*_, **__):
        raise AssertionError("the site read its data for a local tuning it must refuse")

    monkeypatch.setattr("federation.site.local_tuning.site_arrays", touched)
    return site


def _refused_with_nothing_charged(site, msg, *, kind: str, words: tuple[str, ...]) -> dict:
    before = len(site.ledger_entries())
    refused = refusal(site.ask(msg))
    assert refused["kind"] == kind, refused
    for word in words:
        assert word in refused["reason"], (word, refused["reason"])
    assert len(site.ledger_entries()) == before
    line = site.audit()[-1]
    assert (line["task"], line["project"], line["decision"]["outcome"]) == (TUNE, PROJECT, "refused")
    assert line["epsilon_charged"] == 0
    return refused


@pytest.mark.parametrize(
    "request_, words",
    [
        (
            {"candidates": [{"learning_rate": 0.01 * (i + 1)} for i in range(17)]},
            ("1 to 16 candidates", "got 17", "[training] max_tuning_candidates", "Fix:"),
        ),
        ({"mean": 1000.0}, ("[1, 10]", "got 1000.0", "[training] max_tuning_runs", "Fix:")),
        (
            {"candidates": [{"learning_rate": 0.1}, {"learning_rate": 1e6}]},
            ("learning_rate 1000000.0 is outside this site's range", "[training] learning_rate_range", "Fix:"),
        ),
        ({"candidates": [{"batch_size": 1}]}, ("batch_size 1 is outside this site's range [16, 4096]",)),
        ({"candidates": [{"project": "other-study"}]}, ("candidate 1 sets project",)),
        ({"rounds": 1_000_000}, ("rounds 1000000 is above this site's most of 100",)),
    ],
)
def test_a_tuning_beyond_the_sites_limits_is_refused_before_any_data(tuning_site, request_, words):
    _refused_with_nothing_charged(tuning_site, tune_message(**request_), kind="invalid", words=words)


def test_the_site_sets_its_own_tuning_limits(tuning_site):
    set_key(tuning_site.toml, "max_tuning_candidates", "1")
    set_key(tuning_site.toml, "max_tuning_runs", "1.5")
    two = tune_message(candidates=[{"learning_rate": 0.1}, {"learning_rate": 0.2}], mean=1.0)
    _refused_with_nothing_charged(tuning_site, two, kind="invalid", words=("1 to 1 candidates", "got 2"))
    _refused_with_nothing_charged(tuning_site, tune_message(mean=2.0), kind="invalid", words=("[1, 1.5]",))


def test_a_node_that_never_listed_tune_refuses_it_though_it_serves_every_query(site):
    refused = _refused_with_nothing_charged(site, tune_message(), kind="policy", words=("does not allow tune",))
    assert "query:*" in refused["reason"]


def test_an_unsigned_tuning_is_refused_where_signatures_are_required(tuning_site):
    set_key(tuning_site.toml, "require_signed_requests", "true")
    _refused_with_nothing_charged(
        tuning_site, tune_message(), kind="policy", words=("carries no signature", "Nothing was run or charged")
    )


def test_a_paused_node_refuses_a_tuning(tuning_site):
    pause_node(state_dir=tuning_site.config.state_dir, reason="incident drill", who="site IT")
    _refused_with_nothing_charged(tuning_site, tune_message(), kind="paused", words=("paused",))


@pytest.fixture
def dr_r(tmp_path, site):
    """Researcher "Dr R", approved for PROJECT by the site's board, and their signer."""
    key = generate_key_pair(path=tmp_path / "keys" / "dr_r", passphrase=None, comment="Dr R")
    config = site.config.site_config()
    with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
        ledger.approve(
            dataset=config.dataset,
            project=PROJECT,
            purpose="cardio study",
            researchers=[{"name": "Dr R", "key": key.openssh()}],
            actor="ethics board",
            reason="protocol EB-1",
        )
    return KeySigner(load_private_key(path=tmp_path / "keys" / "dr_r", passphrase=None))


def test_a_changed_signed_tuning_is_refused_and_a_signed_one_is_served_once(site, dr_r):
    set_key(site.toml, "allowed_tasks", SERVES_TUNE)
    set_key(site.toml, "require_signed_requests", "true")
    signed = tune_message(signer=dr_r, mean=1.0)
    # the relay swaps in a larger mean under the same signature
    config = dict(signed.content["config"])
    config["tune-mean"] = 9.0
    changed = message(config, message_type=MessageType.QUERY)
    _refused_with_nothing_charged(site, changed, kind="policy", words=("not what the researcher signed",))

    started = time.monotonic()
    reply = site.ask(signed)
    assert "refusal" not in reply.content, dict(reply.content["refusal"])
    released = json.loads(str(reply.content["site"][REPLY_KEY]))
    assert released["best"] in (None, {"learning_rate": 0.1})
    assert released["delta"] == pytest.approx(DELTA_SHARE * 1e-5)
    line = site.audit()[-1]
    assert (line["task"], line["decision"]["outcome"], line["researcher"]["name"]) == (TUNE, "served", "Dr R")
    commits = [e for e in site.ledger_entries() if e.kind == "commit" and e.project == PROJECT]
    assert len(commits) == 1 and line["epsilon_charged"] == pytest.approx(commits[0].epsilon)
    assert json.loads(commits[0].mechanism)["event"]["type"] == "PrivacyParametersDpEvent"
    assert time.monotonic() - started < 60

    # the coordinator replays it: refused, nothing more charged
    entries = len(site.ledger_entries())
    replayed = refusal(site.ask(_again(signed)))
    assert replayed["kind"] == "policy" and "replay refused" in replayed["reason"]
    assert len(site.ledger_entries()) == entries


def _again(msg):
    """The same signed request in a new message (a new message id), as a replaying relay sends it."""
    return message(dict(msg.content["config"]), message_type=MessageType.QUERY)


@pytest.mark.parametrize(
    "policy, target, words",
    [
        ({"max_epsilon_per_request": "0.2"}, 1.0, ("above the site's cap of 0.2 per request",)),  # one release
        ({}, 5.0, ("allocation",)),  # the project's allocation is 3
    ],
)
def test_a_tuning_over_the_per_request_cap_or_the_allocation_is_refused_uncharged(site, policy, target, words):
    set_key(site.toml, "allowed_tasks", SERVES_TUNE)
    for key, value in policy.items():
        set_key(site.toml, key, value)
    refused = _refused_with_nothing_charged(site, tune_message(target_epsilon=target), kind="budget", words=())
    assert any(w in refused["reason"] for w in words), refused["reason"]
    assert site.spent() == 0
