"""A walhook receiver in Python: verifies each request with the Standard
Webhooks library, then acts on the event.

    pip install standardwebhooks
    WEBHOOK_SECRET=whsec_... python receiver.py

walhook's endpoint url: http://127.0.0.1:8080/hooks/users
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

wh = Webhook(os.environ["WEBHOOK_SECRET"])  # "whsec_..." as walhook has it
seen = set()  # use your database: webhook-id repeats when walhook retries


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        # The raw body, exactly as sent: re-serialised JSON would not verify.
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            wh.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except Exception as err:  # WebhookVerificationError
            print("rejected:", err)
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        if self.headers["webhook-id"] not in seen:
            seen.add(self.headers["webhook-id"])
            print(event["type"], event["id"], "user", event["data"].get("id"), event.get("previous", ""))
        self.send_response(204)  # any 2xx acknowledges; answer fast, work later
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"listening on 127.0.0.1:{port}")
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
