"""A minimal SharedKey-signing HTTP client, signing exactly as the Python
SDKs do (query names as sent, Content-Length as sent, ocp-date)."""
import base64
import hashlib
import hmac
import json as jsonlib
import urllib.parse
from email.utils import formatdate

import requests


def string_to_sign(account, method, path, query, headers):
    h = {k.lower(): v for k, v in headers.items()}
    parts = [method.upper()] + [h.get(n, "") for n in (
        "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
        "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")]
    s = "\n".join(parts) + "\n"
    for k in sorted(k for k in h if "ocp-" in k and h[k]):
        s += f"{k}:{h[k]}\n"
    s += f"/{account}{path}"
    q = urllib.parse.parse_qs(query)
    for name in sorted(q):
        if q[name][0]:
            s += f"\n{name}:{q[name][0]}"
    return s


class Raw:
    def __init__(self, endpoint, account, key, api_version="2025-06-01"):
        self.endpoint, self.account, self.key, self.api_version = endpoint, account, key, api_version

    def request(self, method, path, body=None, query=None, headers=None, sign=True, api_version=None, raw_body=None):
        q = {"api-version": api_version or self.api_version}
        if api_version == "":
            q = {}
        q.update(query or {})
        query_string = urllib.parse.urlencode(q, quote_via=urllib.parse.quote)
        data = raw_body if raw_body is not None else (jsonlib.dumps(body).encode() if body is not None else b"")
        hdrs = {"ocp-date": formatdate(usegmt=True), "client-request-id": "raw-client-1"}
        if data or method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = str(len(data))
        if data:
            hdrs["Content-Type"] = "application/json; odata=minimalmetadata"
        hdrs.update(headers or {})
        if sign:
            sts = string_to_sign(self.account, method, path, query_string, hdrs)
            sig = base64.b64encode(hmac.new(base64.b64decode(self.key), sts.encode(), hashlib.sha256).digest()).decode()
            hdrs["Authorization"] = f"SharedKey {self.account}:{sig}"
        url = f"{self.endpoint}{path}" + (f"?{query_string}" if query_string else "")
        return requests.request(method, url, data=data, headers=hdrs)
