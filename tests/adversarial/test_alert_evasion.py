"""A coordinator averages noise away by asking one question again and again, dressed up
each time (an epsilon offset of 1e-12, another label, the filter reordered, padding). The
repeated-query alert counts fresh answers to the normalised question, with the site's own
threshold; free replays never raise it. (Issue 13, item 7.)"""

from __future__ import annotations

from _site_under_attack import (
    ask,
    hospitals,  # noqa: F401 (a fixture)
    raw_query,
    request,
    site,  # noqa: F401 (a fixture)
)

from federation.analytics.query import Query


def _repeated(site) -> list[dict]:
    return [line for line in site.requests() if line.get("alert") == "repeated"]


def _fresh(site) -> list[dict]:
    return [line for line in site.requests() if line["kind"] == "request" and not line["replay"]]


def test_an_epsilon_offset_of_1e_12_is_the_same_question(site):
    site.set_policy("repeated_query_limit", "2")
    for i in range(4):
        query = Query(kind="mean", column="age", bounds=(18, 95), where={"smoker": 1}, epsilon=0.1 + i * 1e-12)
        assert "refusal" not in ask(site, request(query), message_id=f"m{i}").content
    assert len(_fresh(site)) == 4  # each a fresh answer, each charged
    assert len({line["question"] for line in _fresh(site)}) == 1
    repeated = _repeated(site)
    assert [line["message"].split(" was answered afresh ")[1][:7] for line in repeated] == ["3 times", "4 times"]
    assert "the site allows 2 before alerting (repeated_query_limit)" in repeated[0]["message"]


def test_dressing_the_question_up_does_not_make_it_another(site):
    site.set_policy("repeated_query_limit", "3")
    where = [["age", ">=", 65], ["smoker", "==", 1], ["admission_type", "in", ["emergency", "transfer"]]]
    variants = [
        raw_query("count", where=where, by=["sex", "diabetes"], epsilon=0.1),
        raw_query("count", where=list(reversed(where)), by=["diabetes", "sex"], epsilon=0.1),  # order
        raw_query("count", where=where, by=["sex", "diabetes"], epsilon=0.1, mechanism="laplace"),  # noise kind
        raw_query("count", where=where, by=["sex", "diabetes"], noise_multiplier=25.0),  # noise stated
        raw_query("count", where=where, by=["sex", "diabetes"], epsilon=0.1, min_cell_size=6),  # display rule
    ]
    for i, config in enumerate(variants):
        assert "refusal" not in ask(site, config, message_id=f"m{i}").content
    assert len({line["question"] for line in _fresh(site)}) == 1
    assert len(_repeated(site)) == 2  # the 4th and the 5th fresh answer


def test_padding_a_query_past_the_audit_logs_summary_does_not_hide_it(site):
    """The log keeps a long parameter by its hash only; the question is read from the
    whole query, where a condition repeated 60 times is the same condition."""
    site.set_policy("repeated_query_limit", "1")
    condition = [["admission_type", "in", ["emergency", "transfer"]], ["age", ">=", 40]]
    for i, where in enumerate((condition, condition * 30)):
        config = raw_query("count", where=where, epsilon=0.1 + i * 1e-9)
        assert "refusal" not in ask(site, config, message_id=f"m{i}").content
    fresh = _fresh(site)
    assert fresh[1]["parameters"]["query"].startswith("<")  # the log summarised it by its hash
    assert fresh[0]["question"] == fresh[1]["question"]
    assert len(_repeated(site)) == 1


def test_free_replays_are_not_repeats(site):
    site.set_policy("repeated_query_limit", "1")
    query = Query(kind="count", by=("admission_type",), epsilon=0.2)
    for i in range(5):
        assert "refusal" not in ask(site, request(query, run_id=f"run-{i}"), message_id=f"m{i}").content
    lines = [line for line in site.requests() if line["kind"] == "request"]
    assert [line["replay"] for line in lines] == [False, True, True, True, True]
    assert _repeated(site) == []


def test_refused_repeats_raise_their_own_alert_not_a_repeat(site):
    site.set_policy("repeated_query_limit", "1")
    site.set_policy("max_query_epsilon", "0.5")
    for i in range(3):
        ask(site, request(Query(kind="count", epsilon=0.9)), message_id=f"m{i}")
    alerts = [line["alert"] for line in site.requests() if line["kind"] == "alert"]
    assert alerts == ["refused", "refused", "refused"]
