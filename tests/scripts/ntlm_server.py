"""An independent NTLM acceptor (pyspnego) for exarch's NTLM client.

Reads the NEGOTIATE message (base64, one line) on stdin, prints the CHALLENGE (base64), reads the
AUTHENTICATE message and prints "ok <user>" or "refused <why>". argv: user, password, and the
expected channel binding application data as hex ("-" for none).
"""
import base64
import os
import sys
import tempfile

import spnego
from spnego.channel_bindings import GssChannelBindings

user, password, cb_hex = sys.argv[1], sys.argv[2], sys.argv[3]
domain, _, name = user.rpartition("\\")
with tempfile.NamedTemporaryFile("w", delete=False) as f:
    f.write(f"{domain}:{name}:{password}\n")
os.environ["NTLM_USER_FILE"] = f.name
bindings = None if cb_hex == "-" else GssChannelBindings(application_data=bytes.fromhex(cb_hex))
server = spnego.server(protocol="ntlm", channel_bindings=bindings)
challenge = server.step(base64.b64decode(sys.stdin.readline()))
print(base64.b64encode(challenge).decode(), flush=True)
try:
    server.step(base64.b64decode(sys.stdin.readline()))
    print("ok", server.client_principal, flush=True)
except Exception as e:  # noqa: BLE001 - any refusal is reported, not raised
    print("refused", type(e).__name__, e, flush=True)
