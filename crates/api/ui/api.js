// A small client of the Batch REST API on this origin, signing every
// request with SharedKey. The account key is kept in sessionStorage (this tab
// only, gone when it closes), never in the URL, and never logged.

import { authorization, importKey, ocpDate } from "./sharedkey.js";

export const API_VERSION = "2025-06-01";
const STORE = "openbatch.credentials";
const JSON_TYPE = "application/json; odata=minimalmetadata";

/// A failed request: the Batch error body's code and message, and the HTTP status.
export class BatchError extends Error {
  constructor(status, code, message, values = []) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || `HTTP${status}`;
    this.values = values;
  }

  /// One line for people: the message and, when it helps, the details.
  describe() {
    const details = this.values
      .filter((v) => v && v.key && v.key !== "AuthenticationErrorDetail")
      .map((v) => `${v.key}: ${v.value}`);
    return `${this.code}: ${this.message}${details.length ? " (" + details.join("; ") + ")" : ""}`;
  }
}

async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // Not a Batch error body.
  }
  const msg = body && body.message ? (typeof body.message === "string" ? body.message : body.message.value) : resp.statusText;
  // The service appends "\nRequestId:...\nTime:..." to messages: keep the sentence.
  const text = String(msg || "").split("\nRequestId:")[0].trim();
  return new BatchError(resp.status, body && body.code, text, (body && body.values) || []);
}

/// Builds `path?query` with the api-version; `params` values are encoded here.
export function target(path, params = {}) {
  const q = new URLSearchParams();
  q.set("api-version", API_VERSION);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  // URLSearchParams writes spaces as "+", which the server form-decodes as the
  // signer does; keep "$" and "," readable.
  return `${path}?${q.toString().replace(/%24/g, "$").replace(/%2C/g, ",")}`;
}

/// Encodes one path segment (an id).
export const seg = (s) => encodeURIComponent(s);

export class Client {
  constructor(account, cryptoKey) {
    this.account = account;
    this.cryptoKey = cryptoKey;
  }

  /// The client of the signed-in account, or null.
  static async restore() {
    const saved = sessionStorage.getItem(STORE);
    if (!saved) return null;
    try {
      const { account, key } = JSON.parse(saved);
      return new Client(account, await importKey(key));
    } catch {
      sessionStorage.removeItem(STORE);
      return null;
    }
  }

  /// Checks the account and key against the server (a one-item pool list);
  /// keeps them for this tab only when they are accepted.
  static async signIn(account, key) {
    if (!window.isSecureContext || !crypto.subtle) {
      throw new BatchError(0, "InsecureContext", "Browsers sign with WebCrypto only on HTTPS pages or on localhost: open the dashboard over https:// (or on 127.0.0.1).");
    }
    let cryptoKey;
    try {
      cryptoKey = await importKey(key);
    } catch {
      throw new BatchError(0, "InvalidKey", "The key is not valid base64; copy the account key exactly.");
    }
    const c = new Client(account.trim(), cryptoKey);
    try {
      await c.json("GET", target("/pools", { maxresults: 1, $select: "id" }));
    } catch (e) {
      if (e.status === 403 || e.status === 401 || e.status === 400) {
        const detail = (e.values.find((v) => v.key === "AuthenticationErrorDetail") || {}).value || "";
        if (/more than 15 minutes/.test(detail)) {
          throw new BatchError(e.status, e.code, "This computer's clock differs from the server's by more than 15 minutes.");
        }
        throw new BatchError(e.status, e.code, "The server refused this account name and key.");
      }
      throw e;
    }
    sessionStorage.setItem(STORE, JSON.stringify({ account: c.account, key: key.trim() }));
    return c;
  }

  static signOut() {
    sessionStorage.removeItem(STORE);
  }

  /// Sends a signed request; `tgt` is `path?query` on this origin (or an
  /// absolute URL such as an `odata.nextLink`, whose path and query are used).
  async send(method, tgt, { body, headers = {}, signal } = {}) {
    const url = new URL(tgt, location.origin);
    const sent = url.pathname + url.search; // exactly what the browser puts on the wire
    const h = [["ocp-date", ocpDate()], ...Object.entries(headers)];
    let payload;
    if (body !== undefined) {
      payload = new TextEncoder().encode(JSON.stringify(body));
      h.push(["content-type", JSON_TYPE], ["content-length", String(payload.length)]);
    }
    const auth = await authorization(this.account, this.cryptoKey, method, sent, h);
    const out = new Headers();
    for (const [n, v] of h) if (n !== "content-length") out.set(n, v);
    out.set("authorization", auth);
    out.set("accept", "application/json");
    let resp;
    try {
      resp = await fetch(sent, { method, headers: out, body: payload, signal, cache: "no-store", credentials: "omit" });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new BatchError(0, "Unreachable", "The server could not be reached.");
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp;
  }

  async json(method, tgt, opts) {
    const r = await this.send(method, tgt, opts);
    const text = await r.text();
    return text ? JSON.parse(text) : {};
  }

  get(path, params, opts) {
    return this.json("GET", target(path, params), opts);
  }

  post(path, body, opts = {}) {
    return this.json("POST", target(path), { ...opts, body });
  }

  /// One page of a list: {items, next} (next: the continuation link or null).
  async page(tgt, opts) {
    const r = await this.json("GET", tgt, opts);
    return { items: r.value || [], next: r["odata.nextLink"] || null };
  }

  /// Every item of a (short) list, following continuation links up to `max` items.
  async all(path, params, max = 1000, opts) {
    let t = target(path, params);
    const out = [];
    while (t && out.length < max) {
      const p = await this.page(t, opts);
      out.push(...p.items);
      t = p.next;
    }
    return out.slice(0, max);
  }

  /// Bytes of a file from `start` to its end (`ocp-range: bytes=start-`), or
  /// null when nothing is there past `start` yet.
  async fileFrom(path, start, opts = {}) {
    try {
      const r = await this.send("GET", target(path), { ...opts, headers: { "ocp-range": `bytes=${start}-` } });
      return new Uint8Array(await r.arrayBuffer());
    } catch (e) {
      if (e.status === 416) return null; // no bytes past `start` yet
      throw e;
    }
  }

  /// A file's size (its properties, HEAD).
  async fileSize(path, opts) {
    const r = await this.send("HEAD", target(path), opts);
    return Number(r.headers.get("content-length") || 0);
  }
}
