"""The kit's webhook receiver: how ``run_script`` gets a message's attachments as bytes.

A message is delivered at once where nothing else takes it (the console), and its attachments' bytes
leave the database then. So the kit gives the runner a channel webhook for the ``kit`` channel (the
``thread`` fixture's threads, ``kit:<random>``): every message of such a thread is POSTed, attachments
in base64, to this small receiver on the session's private network, which keeps each body by message
id. The bodies come from job scripts: they are parsed as data, with size caps, never run or trusted."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from typing import Any

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

PORT = 8081
CHANNEL = "kit"  # the thread channel whose messages are POSTed here
WAIT = 5.0  # seconds a delivered message's body may take to arrive (a runner without channel webhooks: never)

# Standard library only, in the runner's own image: keep each POST's body as /tmp/hooks/<message id>.json.
RECEIVER = r"""
import http.server, os
os.makedirs('/tmp/hooks', exist_ok=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        key = self.headers.get('Idempotency-Key', '')
        size = int(self.headers.get('Content-Length') or 0)
        if not key.isdigit() or size > 64 << 20:
            self.send_response(400); self.end_headers(); return
        body = self.rfile.read(size)
        with open(f'/tmp/hooks/{key}.tmp', 'wb') as f:
            f.write(body)
        os.replace(f'/tmp/hooks/{key}.tmp', f'/tmp/hooks/{key}.json')
        self.send_response(204); self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('0.0.0.0', PORT), H).serve_forever()
""".replace("PORT", str(PORT))


class HookReceiver(DockerContainer):
    """The receiver, in the runner's own image (it has Python), on the session's network."""

    def __init__(self, image: str, network: Network, labels: dict[str, str]) -> None:
        super().__init__(image, labels=labels)
        self.with_command(["python3", "-c", RECEIVER])
        self.with_network(network)
        self._network_name = network.name
        self.secret = secrets.token_hex(24)

    def address(self) -> str:
        """Its address on the session's network (known once started)."""
        wrapped = self.get_wrapped_container()
        wrapped.reload()
        return str(wrapped.attrs["NetworkSettings"]["Networks"][self._network_name]["IPAddress"])

    def runner_env(self) -> dict[str, str]:
        """The runner's settings that send the kit channel's messages here (and allow only this address)."""
        ip = self.address()
        return {"RUNNER_WEBHOOK_CHANNELS": f"{CHANNEL}=http://{ip}:{PORT}/hook",
                "RUNNER_WEBHOOK_ALLOW_ADDRESSES": f"{ip}:{PORT}", "RUNNER_WEBHOOK_SECRET": self.secret}

    def body(self, message_id: int, wait: float = WAIT) -> dict[str, Any] | None:
        """The delivered body of message ``message_id``, waiting up to ``wait`` seconds for it."""
        deadline = time.monotonic() + wait
        while True:
            result = self.exec(["cat", f"/tmp/hooks/{int(message_id)}.json"])
            if result.exit_code == 0:
                try:
                    got = json.loads(result.output)
                except ValueError:
                    return None
                return got if isinstance(got, dict) else None
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)  # polling for a delivery in flight, bounded by the deadline

    def attachments(self, message_id: int) -> dict[str, bytes]:
        """The attachments of message ``message_id`` (name -> bytes); empty when none were delivered."""
        found: dict[str, bytes] = {}
        for item in (self.body(message_id) or {}).get("attachments") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("content"), str):
                try:
                    found[item["name"]] = base64.b64decode(item["content"], validate=True)
                except (binascii.Error, ValueError):
                    continue
        return found
