// SharedKey signing in the browser, the way the Python Batch SDKs sign
// (crates/api/src/sharedkey.rs documents the scheme; `sign` there is the same
// form): HMAC-SHA256 with the base64-decoded account key over
//
//   VERB \n  eleven standard header lines \n
//   "name:value\n" for each header whose lower-cased name contains "ocp-"
//       and whose value is not empty, sorted by name
//   /account + path as sent (still percent-encoded)
//   "\nname:value" for each query parameter, form-decoded, sorted by name,
//       the first non-empty value of each name, empty ones left out
//
// The key never leaves this module's callers except as a CryptoKey that
// cannot be exported.

const STANDARD_HEADERS = [
  "content-encoding", "content-language", "content-length", "content-md5", "content-type",
  "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
];

/// `Tue, 24 Nov 2026 21:59:04 GMT` (RFC 1123), the form of `ocp-date`.
export function ocpDate(d = new Date()) {
  return d.toUTCString();
}

function formDecode(s) {
  const spaced = s.replace(/\+/g, " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

// Ordinal comparison by code point (the server compares UTF-8 bytes, which
// orders the same way).
function ordinal(a, b) {
  const x = Array.from(a), y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/// The string to sign. `target` is the request target exactly as sent (path,
/// still percent-encoded, and the query); `headers` is a list of
/// [name, value] pairs, names in any case.
export function stringToSign(account, method, target, headers) {
  method = method.toUpperCase();
  const pairs = headers.map(([n, v]) => [n.toLowerCase(), String(v)]);
  const first = (name) => {
    const p = pairs.find(([n]) => n === name);
    return p ? p[1] : undefined;
  };
  let s = method + "\n";
  for (const name of STANDARD_HEADERS) {
    let v = first(name);
    if (v === undefined && name === "content-length" && method !== "GET" && method !== "HEAD") v = "0";
    s += (v ?? "") + "\n";
  }
  const ocp = pairs.filter(([n, v]) => n.includes("ocp-") && v !== "");
  // Array.prototype.sort is stable: repeated names keep their order.
  ocp.sort((a, b) => ordinal(a[0], b[0]));
  for (const [n, v] of ocp) s += `${n}:${v}\n`;

  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? "" : target.slice(q + 1);
  s += "/" + account + path;
  const params = query
    .split("&")
    .filter((p) => p !== "")
    .map((p) => {
      const eq = p.indexOf("=");
      return eq < 0 ? [formDecode(p), ""] : [formDecode(p.slice(0, eq)), formDecode(p.slice(eq + 1))];
    })
    .filter(([, v]) => v !== "");
  params.sort((a, b) => ordinal(a[0], b[0]));
  let last = null;
  for (const [n, v] of params) {
    if (n === last) continue;
    last = n;
    s += `\n${n}:${v}`;
  }
  return s;
}

/// Imports a base64 account key as an HMAC-SHA256 signing key; throws on a
/// key that is not base64.
export async function importKey(base64Key) {
  const raw = Uint8Array.from(atob(base64Key.trim()), (c) => c.charCodeAt(0));
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

/// The `Authorization` header value: `SharedKey account:signature`.
export async function authorization(account, cryptoKey, method, target, headers) {
  const text = stringToSign(account, method, target, headers);
  const mac = await crypto.subtle.sign("HMAC", cryptoKey, new TextEncoder().encode(text));
  let bin = "";
  for (const b of new Uint8Array(mac)) bin += String.fromCharCode(b);
  return `SharedKey ${account}:${btoa(bin)}`;
}
