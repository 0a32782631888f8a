"""Alerts reach the site's webhook (a real HTTP server on loopback) and its command (a
real script reading JSON on stdin); a failing target is logged and never stops the node."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from _node_helpers import PROJECT, received, set_key

from federation.analytics.query import Query
from federation.protocol.query_request import QueryRequest
from federation.site.audit import audit_path, recent_entries
from federation.site.pause import pause_node
from federation.site.tasks import serve


@pytest.fixture
def webhook():
    """An HTTP server on 127.0.0.1 that keeps the JSON bodies POSTed to it."""
    received_bodies: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers["Content-Length"])
            received_bodies.append(
                {"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(self.rfile.read(length))}
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received_bodies
    server.shutdown()
    server.server_close()


def _ask(node):
    config = QueryRequest(query=Query(kind="count", epsilon=0.2), project=PROJECT).to_config()
    return serve(kind="query:count", msg=received(config), site=node.site, node_toml=node.toml)


def test_an_alert_goes_to_the_webhook_and_the_command(node, webhook, tmp_path):
    url, bodies = webhook
    script = tmp_path / "page_it.py"
    out = tmp_path / "paged.jsonl"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')\n")
    set_key(node.toml, "webhook", json.dumps(url))
    set_key(node.toml, "command", json.dumps(f"{sys.executable} {script} {out}"))
    pause_node(state_dir=node.config.state_dir, reason="audit in progress", who="ciso")

    reply = _ask(node)
    assert reply.content["refusal"]["kind"] == "paused"
    assert len(bodies) == 1 and bodies[0]["path"] == "/alerts" and bodies[0]["type"] == "application/json"
    sent = bodies[0]["body"]
    assert sent["kind"] == "alert" and sent["alert"] == "paused" and sent["site_id"] == "hospital-a"
    assert sent["task"] == "query:count" and sent["project"] == PROJECT and "audit in progress" in sent["message"]
    paged = [json.loads(line) for line in out.read_text().splitlines()]
    assert paged == [sent]
    logged = recent_entries(path=audit_path(node.config.state_dir), limit=1)[0]
    assert {k: v for k, v in logged.items() if k not in ("seq", "prev", "hash")} == sent


def test_a_failing_command_and_an_unreachable_webhook_are_logged_and_the_node_goes_on(node, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.stdin.read()\nsys.stderr.write('pager offline')\nsys.exit(3)\n")
    set_key(node.toml, "command", json.dumps(f"{sys.executable} {script}"))
    set_key(node.toml, "webhook", '"http://127.0.0.1:9/nobody-listens"')
    pause_node(state_dir=node.config.state_dir, reason="maintenance")

    reply = _ask(node)
    assert reply.content["refusal"]["kind"] == "paused"
    entries = list(reversed(recent_entries(path=audit_path(node.config.state_dir), limit=4)))
    assert [e["kind"] for e in entries] == ["request", "alert", "alert-delivery-failed", "alert-delivery-failed"]
    command, hook = entries[2], entries[3]
    assert command["target"] == "command" and "exited with status 3: pager offline" in command["error"]
    assert hook["target"] == "webhook" and hook["where"] == "http://127.0.0.1:9/nobody-listens"
    assert "URLError" in hook["error"] or "Connection refused" in hook["error"]


def test_a_served_request_raises_no_alert(node, webhook):
    url, bodies = webhook
    set_key(node.toml, "webhook", json.dumps(url))
    assert "refusal" not in _ask(node).content
    assert bodies == []
    assert [e["kind"] for e in recent_entries(path=audit_path(node.config.state_dir))] == ["request", "received"]
