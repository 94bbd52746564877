//! Certificates (api-versions up to 2024-07-01.20.0; deprecated by the
//! service): add, list, get, delete and cancel a failed deletion, and the
//! check of a pool's `certificateReferences`.
//!
//! A certificate is a document of `store::pools::CERTIFICATES`, keyed by
//! its thumbprint (the algorithm is always sha1). The secret parts — the
//! data and the password — are hidden members (`_data`, `_password`,
//! `_format`) that only the control plane reads, to give a joining node the
//! certificates its pool references; responses are built from a whitelist
//! of the `Certificate` model's properties, so nothing else can leak. A
//! delete leaves the certificate `deleting`; the job lifecycle worker then
//! removes it, or marks it `deletefailed` while a pool references it or a
//! node has it installed (`control::certificates`).

use crate::http::{Ctx, Reply};
use crate::render::{self, apply_select, list_options, select_expand};
use crate::state::App;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use control::certificates::set_state;
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};
use store::pools::CERTIFICATES;
use wire::enums::{CertificateFormat, CertificateState};
use wire::models::{CertificateAddParameter, CertificateReference};
use wire::validate::parse_body;
use wire::{Error, ErrorCode};

/// The properties of the `Certificate` model a response may carry (`url` is added).
const VISIBLE: &[&str] = &[
    "thumbprint",
    "thumbprintAlgorithm",
    "state",
    "stateTransitionTime",
    "previousState",
    "previousStateTransitionTime",
    "publicData",
    "deleteCertificateError",
];

/// A certificate's path.
pub fn certificate_path(thumbprint: &str) -> String {
    format!("/certificates(thumbprintAlgorithm=sha1,thumbprint={})", crate::http::encode_segment(thumbprint))
}

/// The response body of a stored certificate: the model's properties only.
fn render(ctx: &Ctx, doc: &str, select: Option<&[String]>) -> Result<Map<String, Value>, Error> {
    let stored: Map<String, Value> = serde_json::from_str(doc).map_err(Error::internal)?;
    let tp = stored.get("thumbprint").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut m = Map::new();
    for k in VISIBLE {
        if let Some(v) = stored.get(*k) {
            m.insert(k.to_string(), v.clone());
            if *k == "thumbprintAlgorithm" {
                m.insert("url".into(), json!(ctx.url(&certificate_path(&tp))));
            }
        }
    }
    apply_select(&mut m, select);
    Ok(m)
}

/// A SHA-1 thumbprint: 40 hexadecimal digits.
fn check_thumbprint(tp: &str) -> Result<(), Error> {
    if tp.len() == 40 && tp.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::invalid_property("thumbprint", "The value must be the certificate's SHA-1 thumbprint: 40 hexadecimal digits."))
    }
}

/// `POST /certificates`.
pub async fn add(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let p: CertificateAddParameter = parse_body(&ctx.body)?;
    if !p.thumbprint_algorithm.eq_ignore_ascii_case("sha1") {
        return Err(Error::invalid_property("thumbprintAlgorithm", "The value must be sha1."));
    }
    check_thumbprint(&p.thumbprint)?;
    let data = STANDARD
        .decode(p.data.trim())
        .map_err(|e| Error::invalid_property("data", format!("The value must be the certificate in base64: {e}.")))?;
    if data.is_empty() {
        return Err(Error::invalid_property("data", "The value must not be empty."));
    }
    let format = p.certificate_format.unwrap_or(CertificateFormat::Pfx);
    let public = match format {
        CertificateFormat::Cer => {
            if p.password.is_some() {
                return Err(Error::invalid_property("password", "A cer certificate has no password; give none."));
            }
            // DER: one SEQUENCE.
            if data[0] != 0x30 {
                return Err(Error::invalid_property("data", "A cer certificate must be one DER-encoded X.509 certificate."));
            }
            let digest: String = Sha1::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
            if !digest.eq_ignore_ascii_case(&p.thumbprint) {
                return Err(Error::invalid_property(
                    "thumbprint",
                    format!("The value is not the SHA-1 thumbprint of the certificate in data, which is {digest}."),
                ));
            }
            Some(STANDARD.encode(&data))
        }
        CertificateFormat::Pfx => {
            if p.password.is_none() {
                return Err(Error::missing_property("password"));
            }
            None
        }
    };
    let (now, etag) = app.store.etags.next();
    let mut doc = Map::new();
    doc.insert("thumbprint".into(), json!(p.thumbprint));
    doc.insert("thumbprintAlgorithm".into(), json!("sha1"));
    doc.insert("state".into(), json!(CertificateState::Active.as_str()));
    doc.insert("stateTransitionTime".into(), json!(now));
    if let Some(public) = public {
        doc.insert("publicData".into(), json!(public));
    }
    doc.insert("eTag".into(), json!(etag));
    doc.insert("lastModified".into(), json!(now));
    doc.insert("_format".into(), json!(format.as_str()));
    doc.insert("_data".into(), json!(STANDARD.encode(&data)));
    if let Some(pw) = &p.password {
        doc.insert("_password".into(), json!(pw));
    }
    let stored = app.store.create_doc(CERTIFICATES, &p.thumbprint, doc).await?;
    let url = ctx.url(&certificate_path(&p.thumbprint));
    Ok(Reply::status(201).changed(&stored, url.clone()).header("location", url))
}

/// `GET /certificates(…)`.
pub async fn get(app: &App, ctx: &Ctx, tp: &str) -> Result<Reply, Error> {
    let (select, _) = select_expand(ctx)?;
    let stored = app.store.get_doc(CERTIFICATES, tp).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    let m = render(ctx, &stored.doc, select.as_ref().map(|s| s.1.as_slice()))?;
    Ok(Reply::json(200, render::single(ctx, "certificates", m)).tagged(&stored))
}

/// `GET /certificates`: `$filter` on state, thumbprint, thumbprintAlgorithm,
/// previousState and the transition times; `$select`; keyset pages.
pub async fn list(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let page = app.store.list_certificates(opts.store_query()).await?;
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let items = page.docs.iter().map(|d| render(ctx, d, select).map(Value::Object)).collect::<Result<Vec<_>, _>>()?;
    let next = page.next.map(|k| opts.next_link(ctx, &k));
    Ok(Reply::json(200, render::list(ctx, "certificates", items, next)))
}

/// The certificate's state as stored.
fn state_of(doc: &Map<String, Value>) -> Option<CertificateState> {
    doc.get("state").and_then(Value::as_str).and_then(CertificateState::parse)
}

/// `DELETE /certificates(…)`: 202, `deleting`; the lifecycle worker then
/// removes it or marks it `deletefailed`. A failed deletion may be retried.
pub async fn delete(app: &App, ctx: &Ctx, tp: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(CERTIFICATES, tp, pre, |doc, now| {
            if state_of(doc) == Some(CertificateState::Deleting) {
                return Err(Error::new(ErrorCode::CertificateBeingDeleted));
            }
            doc.remove("deleteCertificateError");
            set_state(doc, CertificateState::Deleting, now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&certificate_path(tp))))
}

/// `POST /certificates(…)/canceldelete`: a `deletefailed` certificate
/// becomes `active` again (204); an active one is 409
/// `CertificateStateActive`, one being deleted 409 `CertificateBeingDeleted`.
pub async fn cancel_deletion(app: &App, ctx: &Ctx, tp: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(CERTIFICATES, tp, pre, |doc, now| {
            match state_of(doc) {
                Some(CertificateState::DeleteFailed) => {}
                Some(CertificateState::Deleting) => return Err(Error::new(ErrorCode::CertificateBeingDeleted)),
                _ => return Err(Error::new(ErrorCode::CertificateStateActive)),
            }
            doc.remove("deleteCertificateError");
            set_state(doc, CertificateState::Active, now);
            Ok(())
        })
        .await?;
    Ok(Reply::status(204).changed(&stored, ctx.url(&certificate_path(tp))))
}

/// A pool's `certificateReferences` (absent or null: none) must each name
/// an active certificate of this account with algorithm sha1: else 400
/// `InvalidCertificateReferences` naming the reference and why.
pub async fn check_references(app: &App, refs: Option<&Value>) -> Result<(), Error> {
    let Some(v) = refs.filter(|v| !v.is_null()) else { return Ok(()) };
    let text = serde_json::to_string(v).map_err(Error::internal)?;
    let refs: Vec<CertificateReference> = wire::validate::parse_member("certificateReferences", &text)?;
    for (i, r) in refs.iter().enumerate() {
        let invalid = |why: String| {
            Error::new(ErrorCode::InvalidCertificateReferences)
                .with("PropertyName", format!("certificateReferences[{i}]"))
                .with("Thumbprint", r.thumbprint.clone())
                .with("Reason", why)
        };
        if !r.thumbprint_algorithm.eq_ignore_ascii_case("sha1") {
            return Err(invalid("The thumbprint algorithm must be sha1.".into()));
        }
        let stored = match app.store.get_doc(CERTIFICATES, &r.thumbprint).await {
            Ok(s) => s,
            Err(e) if e.code == ErrorCode::CertificateNotFound => {
                return Err(invalid(format!("The account has no certificate with the thumbprint {}.", r.thumbprint)))
            }
            Err(e) => return Err(e),
        };
        let doc: Map<String, Value> = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
        if state_of(&doc) != Some(CertificateState::Active) {
            let state = doc.get("state").and_then(Value::as_str).unwrap_or_default();
            return Err(invalid(format!("The certificate {} is {state}, not active.", r.thumbprint)));
        }
    }
    Ok(())
}
