//! The application package operations (`GET /applications`, `GET
//! /applications/{id}`) over the registry in `control::packages`.

use crate::http::{Ctx, Reply};
use crate::state::App;
use control::packages::{get, list, Application};
use serde_json::{json, Value};
use wire::{Error, ErrorCode};

fn render(a: &Application) -> serde_json::Map<String, Value> {
    let v = json!({ "id": a.id, "displayName": a.display_name, "versions": a.versions });
    v.as_object().cloned().unwrap_or_default()
}

/// `GET /applications`: pages of up to `maxresults` (by id, without regard
/// to case). The service takes no `$filter`, `$select` or `$expand` here,
/// so they are refused rather than ignored.
pub async fn list_handler(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    for name in ["$filter", "$select", "$expand"] {
        if ctx.q(name).is_some() {
            return Err(Error::new(ErrorCode::UnsupportedQueryParameter)
                .with("QueryParameterName", name)
                .with("Reason", "List Applications does not support this query parameter."));
        }
    }
    let opts = crate::render::list_options(ctx)?;
    let after = opts.after.as_deref().map(str::to_lowercase);
    let mut apps = list(&app.config.applications_dir)
        .into_iter()
        .filter(|a| after.as_deref().is_none_or(|k| a.id.to_lowercase().as_str() > k))
        .peekable();
    let mut items = Vec::new();
    let mut last = None;
    while items.len() < opts.limit() {
        let Some(a) = apps.next() else { break };
        last = Some(a.id.to_lowercase());
        items.push(Value::Object(render(&a)));
    }
    let next = match (apps.peek(), last) {
        (Some(_), Some(k)) => Some(opts.next_link(ctx, &k)),
        _ => None,
    };
    Ok(Reply::json(200, crate::render::list(ctx, "applications", items, next)))
}

/// `GET /applications/{id}`.
pub async fn get_handler(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let a = get(&app.config.applications_dir, id).ok_or_else(|| Error::new(ErrorCode::ApplicationNotFound))?;
    Ok(Reply::json(200, crate::render::single(ctx, "applications", render(&a))))
}
