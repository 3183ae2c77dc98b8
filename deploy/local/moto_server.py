"""moto's server, with its DynamoDB requests applied one at a time and its SQS deletes under the queue's lock.

`moto_server` runs werkzeug with one thread per connection, and moto's DynamoDB backend changes its
tables (plain dicts of dicts) without a lock. Writes that reach it at once can race: a CI run lost
one acknowledged `UpdateItem` out of 13,200 (a new item under a partition key that other writes of
the same page created at the same moment), and the replay test rightly reported the read model
unequal. Real DynamoDB has no such race, so a test against moto must not have one either.

This serves the same application, but a request whose `X-Amz-Target` names DynamoDB takes one lock
(first come, first served) for its whole handling. Other services stay concurrent: an SQS
`ReceiveMessage` long poll waits up to 20 s and must not hold up the `SendMessage` that ends it.
moto is bound by Python's GIL anyway, so the lock costs little throughput.

SQS has a race of its own: `Queue.delete_message` rebuilds the queue's message list from a copy
and assigns it back without the lock `add_message` takes, so a message sent while another is being
deleted can vanish after SendMessage answered with its id. The broker-outage chaos experiment found
it: once the brokers answered again, the outbox's backlog went out while three payment processors
deleted what they had handled, and one acknowledged payment request was never delivered (its
MessageId in the publisher's log, no ReceiveMessage ever returning it, the queue empty). Real SQS
keeps what it acknowledged, so here `delete_message` takes the same lock (`serial_sqs_deletes`).

`GET /cloudcafe/serial-dynamodb` answers 200 so that deploy/local/emulators.sh can tell this server
from a plain `moto_server` it must not reuse.

`GET /cloudcafe/sent-email` and `GET /cloudcafe/sent-sms` answer what moto's SES and SNS accepted
(JSON lists, oldest first): moto keeps sent messages in its backends, where the library's
`ses_backends[...].sent_messages` reads them in process; these read them for tests over HTTP.

Usage: python moto_server.py --host 127.0.0.1 --port 5056
"""

import argparse
import collections
import json
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

MARKER_PATH = "/cloudcafe/serial-dynamodb"
SENT_EMAIL_PATH = "/cloudcafe/sent-email"
SENT_SMS_PATH = "/cloudcafe/sent-sms"


class FifoLock:
    """A lock handed to its waiters in arrival order. `threading.Lock` lets a request that arrives
    later overtake one that waits, so under a stream of sink writes a lease renewal could wait for
    seconds and its lease expire; here a request waits only for those queued before it."""

    def __init__(self):
        self._guard = threading.Lock()
        self._waiters = collections.deque()
        self._held = False

    def __enter__(self):
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # the releasing request handed the lock over
        return self

    def __exit__(self, *exc):
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False


def sent_email():
    """Every email moto's SES (v1 and v2) accepted, in every account and region."""
    from moto.ses.models import ses_backends

    out = []
    for account in list(ses_backends.keys()):
        for region in list(ses_backends[account].keys()):
            for m in list(ses_backends[account][region].sent_messages):
                out.append({
                    "message_id": m.id,
                    "source": getattr(m, "source", None),
                    "destinations": getattr(m, "destinations", None),
                    "subject": getattr(m, "subject", None),
                    "body": getattr(m, "body", None),
                })
    return out


def sent_sms():
    """Every text message moto's SNS accepted for a phone number, in every account and region."""
    from moto.sns.models import sns_backends

    out = []
    for account in list(sns_backends.keys()):
        for region in list(sns_backends[account].keys()):
            for message_id, (phone, message) in list(sns_backends[account][region].sms_messages.items()):
                out.append({"message_id": message_id, "phone_number": phone, "message": message})
    return out


def serial_dynamodb(app):
    lock = FifoLock()

    def serve(environ, start_response):
        if environ.get("PATH_INFO") == MARKER_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"dynamodb requests are serialized\n"]
        if environ.get("PATH_INFO") in (SENT_EMAIL_PATH, SENT_SMS_PATH):
            sent = sent_email() if environ["PATH_INFO"] == SENT_EMAIL_PATH else sent_sms()
            body = json.dumps(sent).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with lock:
                # The body is produced inside the lock: moto renders it from the live tables.
                return [b"".join(app(environ, start_response))]
        return app(environ, start_response)

    return serve


def serial_sqs_deletes():
    """Makes moto's `Queue.delete_message` hold the queue's `_messages_lock` (a `Condition` over an
    `RLock`, which `add_message` holds while it appends), so that its copy-and-assign of the message
    list cannot drop a message appended meanwhile."""
    from moto.sqs import models

    unlocked = models.Queue.delete_message

    def delete_message(self, receipt_handle):
        with self._messages_lock:
            return unlocked(self, receipt_handle)

    models.Queue.delete_message = delete_message


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs (SQS queues) from it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serial_sqs_deletes()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serial_dynamodb(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
