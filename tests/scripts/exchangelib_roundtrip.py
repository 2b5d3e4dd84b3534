"""A third-party EWS client (exchangelib, from PyPI) against `exarch simulate`: open a mailbox
through impersonation, walk the root and the top of the information store, list the Inbox, export
20 items, upload them into another mailbox's Inbox and count them there. Prints one JSON line."""
import json, os, sys
from exchangelib import Account, Configuration, Credentials, IMPERSONATION, Version, Build
from exchangelib.transport import BASIC, NTLM
# argv: URL MAILBOX1 MAILBOX2 [ntlm USER PASSWORD CA_PEM] (NTLM over HTTPS: requests-ntlm computes
# its own channel binding from the server's certificate)
url, a1, a2 = sys.argv[1], sys.argv[2], sys.argv[3]
if len(sys.argv) > 4 and sys.argv[4] == "ntlm":
    user, password, ca = sys.argv[5], sys.argv[6], sys.argv[7]
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    cfg = Configuration(service_endpoint=url, credentials=Credentials(user, password), auth_type=NTLM, version=Version(build=Build(15, 1)))
else:
    cfg = Configuration(service_endpoint=url, credentials=Credentials("svc", "x"), auth_type=BASIC, version=Version(build=Build(15, 1)))
acc = Account(a1, config=cfg, autodiscover=False, access_type=IMPERSONATION)
top = [f.name for f in acc.msg_folder_root.children]
root_children = [f.name for f in acc.root.children]
items = list(acc.inbox.all().only("id", "changekey")[:20])
assert len(items) == 20, f"the Inbox lists {len(items)} items"
data = acc.export(items)
acc2 = Account(a2, config=cfg, autodiscover=False, access_type=IMPERSONATION)
before = len(list(acc2.inbox.all().only("id")))
res = acc2.upload([(acc2.inbox, d) for d in data])
after = len(list(acc2.inbox.all().only("id")))
print(json.dumps({"root": root_children, "top": top, "listed": len(items), "exported": len(data),
                  "uploaded": sum(1 for r in res if isinstance(r, tuple)), "before": before, "after": after}))
