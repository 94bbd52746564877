//! Certificates on the control plane's side: what a joining node gets of
//! the certificates its pool references ([`for_pool`]), and the end of a
//! deletion ([`step`], run by the job lifecycle worker).
//!
//! A deleted certificate shows `deleting` for the transition delay; then it
//! is removed, unless a pool references it or a connected node has it
//! installed (a node keeps the certificates it joined with until it
//! rejoins, as the service's nodes keep them until they restart): then it
//! becomes `deletefailed`, with a `deleteCertificateError` naming them.

use crate::cluster::Cluster;
use crate::pool::PoolSpec;
use serde_json::{json, Map, Value};
use std::time::Duration;
use store::pools::CERTIFICATES;
use wire::enums::{CertificateState, CertificateVisibility};
use wire::time::Timestamp;
use wire::Error;

/// `deleteCertificateError.code` of a deletion refused because the certificate is in use.
pub const IN_USE: &str = "CertificateDeleteFailed";

/// Moves a certificate document to `to`, keeping the state it leaves as `previousState`.
pub fn set_state(doc: &mut Map<String, Value>, to: CertificateState, now: Timestamp) {
    if let Some(from) = doc.get("state").and_then(Value::as_str).and_then(CertificateState::parse) {
        doc.insert("previousState".into(), json!(from.as_str()));
        if let Some(t) = doc.get("stateTransitionTime").cloned() {
            doc.insert("previousStateTransitionTime".into(), t);
        }
    }
    doc.insert("state".into(), json!(to.as_str()));
    doc.insert("stateTransitionTime".into(), json!(now));
}

/// The certificates a node of `pool` gets, with their secret parts: only
/// those the pool references (one that no longer exists is left out).
pub async fn for_pool(store: &store::Store, pool: &PoolSpec) -> Result<Vec<proto::NodeCertificate>, Error> {
    let mut out: Vec<proto::NodeCertificate> = Vec::new();
    for r in &pool.certificate_refs {
        let stored = match store.get_doc(CERTIFICATES, &r.thumbprint).await {
            Ok(s) => s,
            Err(e) if e.code == wire::ErrorCode::CertificateNotFound => {
                tracing::warn!(pool = %pool.id, thumbprint = %r.thumbprint, "the pool references a certificate that does not exist");
                continue;
            }
            Err(e) => return Err(e),
        };
        let doc: Map<String, Value> = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
        let thumbprint = r.thumbprint.to_ascii_lowercase();
        if out.iter().any(|c| c.thumbprint == thumbprint) {
            continue;
        }
        let seen = |v: CertificateVisibility| r.visibility.as_ref().is_none_or(|list| list.is_empty() || list.contains(&v));
        out.push(proto::NodeCertificate {
            thumbprint,
            format: text("_format").unwrap_or_else(|| "pfx".into()),
            data: text("_data").unwrap_or_default(),
            password: text("_password"),
            start_task: seen(CertificateVisibility::StartTask),
            tasks: seen(CertificateVisibility::Task),
        });
    }
    Ok(out)
}

/// What uses the certificate `thumbprint`: pools that reference it and
/// connected nodes that have it installed, as `deleteCertificateError` values.
async fn users(app: &Cluster, thumbprint: &str) -> Result<Vec<(&'static str, String)>, Error> {
    let mut found = Vec::new();
    for pool in app.store.all_pools().await? {
        let refs = pool.get("certificateReferences").and_then(Value::as_array);
        let named = refs
            .into_iter()
            .flatten()
            .any(|r| r.get("thumbprint").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(thumbprint)));
        if named {
            found.push(("PoolId", pool.get("id").and_then(Value::as_str).unwrap_or_default().to_string()));
        }
    }
    let lower = thumbprint.to_ascii_lowercase();
    let mut nodes: Vec<String> =
        app.core().nodes.values().filter(|n| n.tx.is_some() && n.certificates.contains(&lower)).map(|n| n.id.clone()).collect();
    nodes.sort();
    found.extend(nodes.into_iter().map(|n| ("NodeId", n)));
    Ok(found)
}

/// Ends the deletions that have shown `deleting` for `delay`; returns how
/// long until the next one is due.
pub async fn step(app: &Cluster, delay: Duration) -> Result<Option<Duration>, Error> {
    let now = Timestamp::now();
    let mut next: Option<Duration> = None;
    for doc in app.store.all_docs(CERTIFICATES).await? {
        if doc.get("state").and_then(Value::as_str) != Some(CertificateState::Deleting.as_str()) {
            continue;
        }
        let tp = doc.get("thumbprint").and_then(Value::as_str).unwrap_or_default().to_string();
        let since = doc.get("stateTransitionTime").and_then(Value::as_str).and_then(wire::time::parse_datetime).unwrap_or(now.0);
        let age = (now.0 - since).to_std().unwrap_or_default();
        if age < delay {
            let wait = delay - age;
            next = Some(next.map_or(wait, |n| n.min(wait)));
            continue;
        }
        let users = users(app, &tp).await?;
        if users.is_empty() {
            app.store.remove_doc(CERTIFICATES, &tp).await?;
            tracing::info!(thumbprint = %tp, "deleted a certificate");
            continue;
        }
        let names: Vec<String> = users.iter().map(|(k, v)| format!("{} {v}", if *k == "PoolId" { "pool" } else { "node" })).collect();
        let message = format!(
            "The certificate is in use by {}: remove it from the pools' certificateReferences (nodes keep it until they rejoin, as after a reboot) and delete it again, or cancel the deletion.",
            names.join(", ")
        );
        let values: Vec<Value> = users.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        let changed = app
            .store
            .update_doc(CERTIFICATES, &tp, store::Preconditions::default(), move |doc, now| {
                if doc.get("state").and_then(Value::as_str) == Some(CertificateState::Deleting.as_str()) {
                    set_state(doc, CertificateState::DeleteFailed, now);
                    doc.insert("deleteCertificateError".into(), json!({"code": IN_USE, "message": message, "values": values}));
                }
                Ok(())
            })
            .await;
        match changed {
            Ok(_) => tracing::info!(thumbprint = %tp, "a certificate in use could not be deleted"),
            Err(e) if e.code == wire::ErrorCode::CertificateNotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(next)
}
