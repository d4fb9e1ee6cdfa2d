"""aiosmtpd handler for cpn-notify's tests: a real SMTP server on loopback that stores each
accepted message as JSON in a directory, and misbehaves on purpose for some recipients so the
tests can see retries and permanent failures over real SMTP.

Run by the tests as
    python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c smtp_sink.MaildirSink DIR
with this directory on PYTHONPATH.

Recipients (local part):
    reject...        RCPT answered 550 (permanent, must not be retried)
    bounceN...       RCPT answered 550 the first N times, then accepted (a mailbox fixed
                     after a permanent failure: an operator's retry then delivers)
    flakyN...        RCPT answered 451 (transient) the first N times, then accepted
    anything else    accepted
Every RCPT is appended to DIR/rcpt.log, so a test counts attempts as the server saw them.
"""

import json
import os
import re
import threading


class MaildirSink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.seen = {}
        self.seq = 0
        self.lock = threading.Lock()

    @classmethod
    def from_cli(cls, parser, *args):
        # aiosmtpd passes CLASSARGS only to handlers that define from_cli.
        if len(args) != 1:
            parser.error("smtp_sink.MaildirSink takes one argument: the output directory")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        with self.lock:
            with open(os.path.join(self.outdir, "rcpt.log"), "a") as log:
                log.write(address + "\n")
            self.seen[address] = self.seen.get(address, 0) + 1
            count = self.seen[address]
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: mailbox unavailable (test sink)" % address
        bounce = re.match(r"bounce(\d+)", local)
        if bounce and count <= int(bounce.group(1)):
            return "550 5.1.1 <%s>: mailbox unavailable (test sink, refusal %d)" % (address, count)
        flaky = re.match(r"flaky(\d+)", local)
        if flaky and count <= int(flaky.group(1)):
            return "451 4.3.0 try again later (test sink, refusal %d)" % count
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.seq += 1
            seq = self.seq
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", errors="replace"),
        }
        # Written under a temporary name and renamed, so a test never reads half a message.
        path = os.path.join(self.outdir, "%06d.json" % seq)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"
