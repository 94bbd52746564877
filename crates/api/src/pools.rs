//! Pool, compute node and node-file operations.

use crate::http::{encode_segment, Ctx, Reply};
use crate::paths::pool_path;
use crate::rawdoc::{self, RawObject};
use crate::render::{self, apply_select, list_options, select_expand};
use crate::state::App;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use wire::enums::ComputeNodeState;
use wire::validate::{check_id, parse_body};
use wire::{Error, ErrorCode};

fn obj(v: &Value, name: &str) -> Result<(), Error> {
    if v.is_object() {
        Ok(())
    } else {
        Err(Error::invalid_property(name, "The value must be an object."))
    }
}

pub fn int_in(doc: &Map<String, Value>, name: &str, min: i64, max: i64) -> Result<Option<i64>, Error> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Error::invalid_property(name, format!("The value must be an integer from {min} to {max}."))),
        },
    }
}

pub fn check_start_task(v: Option<&Value>) -> Result<(), Error> {
    if let Some(st) = v.filter(|v| !v.is_null()) {
        obj(st, "startTask")?;
        if st.get("commandLine").and_then(Value::as_str).is_none_or(|c| c.trim().is_empty()) {
            return Err(Error::missing_property("startTask.commandLine"));
        }
        wire::validate::check_start_task(st)?;
    }
    Ok(())
}

/// The node deallocation options (`nodeDeallocationOption`, `nodeRebootOption`, `nodeReimageOption`).
const DEALLOCATION_OPTIONS: &[&str] = &["requeue", "terminate", "taskcompletion", "retaineddata"];
/// `nodeDisableSchedulingOption`.
const DISABLE_SCHEDULING_OPTIONS: &[&str] = &["requeue", "terminate", "taskcompletion"];

/// An enum-valued property of a request body, lower-cased: None when absent
/// (or null); anything but one of `allowed` (a string, in any case) is
/// refused rather than read as the default.
fn enum_property(body: &Map<String, Value>, name: &str, allowed: &[&str]) -> Result<Option<String>, Error> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.iter().any(|a| a.eq_ignore_ascii_case(s)) => Ok(Some(s.to_ascii_lowercase())),
        Some(_) => Err(Error::invalid_property(name, format!("The value must be one of: {}.", allowed.join(", ")))),
    }
}

/// `targetNodeCommunicationMode`.
const NODE_COMMUNICATION_MODES: &[&str] = &["default", "classic", "simplified"];

/// Boolean properties must be booleans (or absent).
fn check_bools(body: &Map<String, Value>, names: &[&str]) -> Result<(), Error> {
    for name in names {
        if !matches!(body.get(*name), None | Some(Value::Null | Value::Bool(_))) {
            return Err(Error::invalid_property(name, "The value must be true or false."));
        }
    }
    Ok(())
}

/// `resizeTimeout`: an ISO 8601 duration of at least 5 minutes, as the service requires.
fn resize_timeout(body: &Map<String, Value>) -> Result<Option<String>, Error> {
    match body.get("resizeTimeout") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let d = v
                .as_str()
                .and_then(wire::time::Duration::parse)
                .ok_or_else(|| Error::invalid_property("resizeTimeout", "The value must be an ISO 8601 duration such as PT15M."))?;
            if d.ticks() < wire::time::Duration::from_secs(300).ticks() {
                return Err(Error::invalid_property("resizeTimeout", "The value must be at least 5 minutes (PT5M)."));
            }
            Ok(Some(d.to_string()))
        }
    }
}

/// 409 for an operation that sets a pool's size while autoscale does.
fn autoscale_on() -> Error {
    Error::msg(
        ErrorCode::OperationNotValidOnPool,
        "The pool has automatic scaling enabled: its size is set by its autoscale formula. Disable autoscale to resize it.",
    )
}

fn autoscale_enabled(doc: &Map<String, Value>) -> bool {
    doc.get("enableAutoScale").and_then(Value::as_bool) == Some(true)
}

/// The autoscale members of a pool body (add): with `enableAutoScale`, a
/// formula that parses is required and no target may be given; the
/// evaluation interval (any time it is given) must be in range and is
/// stored in canonical form. `strict`: the service's 5-minute minimum.
fn check_autoscale(doc: &mut Map<String, Value>, strict: bool) -> Result<(), Error> {
    if let Some(v) = doc.get("autoScaleFormula").filter(|v| !v.is_null()) {
        if !v.is_string() {
            return Err(Error::invalid_property("autoScaleFormula", "The value must be a string."));
        }
    }
    if let Some(d) = control::autoscale::evaluation_interval(doc.get("autoScaleEvaluationInterval"), strict)? {
        doc.insert("autoScaleEvaluationInterval".into(), json!(d.to_string()));
    }
    if !autoscale_enabled(doc) {
        return Ok(());
    }
    let formula = doc.get("autoScaleFormula").and_then(Value::as_str).ok_or_else(|| Error::missing_property("autoScaleFormula"))?;
    control::autoscale::parse_formula(formula)?;
    for t in ["targetDedicatedNodes", "targetLowPriorityNodes"] {
        if doc.get(t).is_some_and(|v| !v.is_null()) {
            return Err(Error::new(ErrorCode::InvalidAutoScalingSettings)
                .with("PropertyName", t)
                .with("Reason", "A pool with enableAutoScale gets its targets from its formula; do not give them."));
        }
    }
    Ok(())
}

/// A pool's package references must name registered packages (a version,
/// or an application with a default version): else 409
/// `InvalidApplicationPackageReferences`, as the service answers.
fn check_packages(app: &App, refs: Option<Vec<wire::models::ApplicationPackageReference>>) -> Result<(), Error> {
    let Some(refs) = refs else { return Ok(()) };
    control::packages::resolve(&app.config.applications_dir, &refs)
        .map(|_| ())
        .map_err(|reason| Error::new(ErrorCode::InvalidApplicationPackageReferences).with("Reason", reason))
}

/// A configuration openbatch's nodes cannot be: 400 `UnsupportedProperty`
/// naming the property, as the service answers a property it does not
/// support.
fn unsupported(property: &str, why: &str) -> Error {
    Error::msg(ErrorCode::UnsupportedProperty, format!("The property '{property}' is not supported by openbatch: {why}"))
        .with("PropertyName", property)
        .with("Reason", why)
}

/// Nodes are Linux machines running the agent: Cloud Services pools and
/// Windows images are refused rather than recorded and run as Linux.
fn check_linux(doc: &Map<String, Value>) -> Result<(), Error> {
    if doc.get("cloudServiceConfiguration").is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "cloudServiceConfiguration",
            "Cloud Services (Windows) pools are not supported; nodes run Linux. Use virtualMachineConfiguration with a Linux image.",
        ));
    }
    let Some(vm) = doc.get("virtualMachineConfiguration").filter(|v| !v.is_null()) else { return Ok(()) };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
    let windows = "Windows images are not supported; nodes run Linux (see GET /supportedimages).";
    if text(vm.get("nodeAgentSKUId")).starts_with("batch.node.windows") {
        return Err(unsupported("virtualMachineConfiguration.nodeAgentSKUId", windows));
    }
    let image = vm.get("imageReference");
    let publisher = text(image.and_then(|i| i.get("publisher")));
    let offer = text(image.and_then(|i| i.get("offer")));
    if publisher.starts_with("microsoftwindows") || offer.contains("windows") {
        return Err(unsupported("virtualMachineConfiguration.imageReference", windows));
    }
    if vm.get("windowsConfiguration").is_some_and(|v| !v.is_null()) {
        return Err(unsupported("virtualMachineConfiguration.windowsConfiguration", windows));
    }
    Ok(())
}

/// The checks of a pool body that need nothing but the body; returns the
/// id. Normalises `taskSchedulingPolicy`.
pub fn check_add(doc: &mut Map<String, Value>) -> Result<String, Error> {
    let id = check_id("id", doc.get("id").and_then(Value::as_str))?;
    check_linux(doc)?;
    if let Some(d) = doc.get("displayName").and_then(Value::as_str) {
        if d.chars().count() > 1024 {
            return Err(Error::invalid_property("displayName", "The value must be at most 1024 characters long."));
        }
    }
    if doc.get("vmSize").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Error::missing_property("vmSize"));
    }
    check_bools(doc, &["enableAutoScale", "enableInterNodeCommunication"])?;
    check_autoscale(doc, false)?;
    enum_property(doc, "targetNodeCommunicationMode", NODE_COMMUNICATION_MODES)?;
    int_in(doc, "targetDedicatedNodes", 0, 1000)?;
    int_in(doc, "targetLowPriorityNodes", 0, 1000)?;
    int_in(doc, "taskSlotsPerNode", 1, 256)?;
    if let Some(t) = resize_timeout(doc)? {
        doc.insert("resizeTimeout".into(), json!(t));
    }
    check_start_task(doc.get("startTask"))?;
    for (i, u) in doc.get("userAccounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = u.get("name").and_then(Value::as_str).unwrap_or("");
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            return Err(Error::invalid_property(
                &format!("userAccounts[{i}].name"),
                "A Linux user name: lower-case letters, digits, '_' and '-', at most 32.",
            ));
        }
        if u.get("password").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Error::missing_property(&format!("userAccounts[{i}].password")));
        }
        match u.get("elevationLevel") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) if l.eq_ignore_ascii_case("admin") || l.eq_ignore_ascii_case("nonadmin") => {}
            Some(_) => {
                return Err(Error::invalid_property(&format!("userAccounts[{i}].elevationLevel"), "The value must be admin or nonadmin."));
            }
        }
    }
    if let Some(p) = doc.get("taskSchedulingPolicy") {
        let fill = p.get("nodeFillType").and_then(Value::as_str).unwrap_or("");
        if !fill.eq_ignore_ascii_case("spread") && !fill.eq_ignore_ascii_case("pack") {
            return Err(Error::invalid_property("taskSchedulingPolicy.nodeFillType", "The value must be spread or pack."));
        }
        let mut policy = json!({"nodeFillType": fill.to_ascii_lowercase()});
        // How tasks of equal-priority jobs share the pool (`none`: evenly).
        match p.get("jobDefaultOrder") {
            None | Some(Value::Null) => {}
            Some(Value::String(o)) if o.eq_ignore_ascii_case("none") || o.eq_ignore_ascii_case("creationtime") => {
                policy["jobDefaultOrder"] = json!(o.to_ascii_lowercase());
            }
            Some(_) => {
                return Err(Error::invalid_property("taskSchedulingPolicy.jobDefaultOrder", "The value must be none or creationtime."));
            }
        }
        doc.insert("taskSchedulingPolicy".into(), policy);
    }
    Ok(id)
}

/// The pool's numeric members as numbers: the body read as
/// `wire::models::PoolNumbers` (which refuses a value of the wrong type,
/// naming it) and, when a client sent numbers as strings (`"2"`, as the
/// `az batch` CLI does), the numbers written over them in the kept members.
fn pool_numbers_raw(doc: &mut RawObject, body: &[u8]) -> Result<(), Error> {
    let text = std::str::from_utf8(body).map_err(Error::internal)?;
    let Some(typed) = wire::validate::numbers_of::<wire::models::PoolNumbers>("", text)? else { return Ok(()) };
    for (name, numbers) in typed.as_object().into_iter().flatten() {
        if let Some(raw) = doc.get(name) {
            let mut v: Value = serde_json::from_str(raw.get()).map_err(Error::internal)?;
            if wire::lenient::adopt_numbers(&mut v, numbers) {
                doc.set(name, &v);
            }
        }
    }
    Ok(())
}

/// [`pool_numbers_raw`] for a body read as a map.
fn pool_numbers(body: &mut Map<String, Value>, text: &[u8]) -> Result<(), Error> {
    let text = std::str::from_utf8(text).map_err(Error::internal)?;
    if let Some(typed) = wire::validate::numbers_of::<wire::models::PoolNumbers>("", text)? {
        let mut v = Value::Object(std::mem::take(body));
        wire::lenient::adopt_numbers(&mut v, &typed);
        if let Value::Object(m) = v {
            *body = m;
        }
    }
    Ok(())
}

/// Members of a pool body that [`check_add`] does not read and that may be
/// large: left as raw text (`startTask` is checked from its text on its own).
const UNREAD: &[&str] = &["startTask", "metadata", "applicationPackageReferences", "certificateReferences", "mountConfiguration"];

/// [`check_add`] for a body kept as raw members: the members it reads are
/// parsed into a small map and checked there (normalised ones are written
/// back); `startTask` is checked from its text; nothing builds a tree of
/// the whole body.
fn check_add_raw(doc: &mut RawObject) -> Result<String, Error> {
    let mut small = Map::new();
    for (name, value) in doc.members() {
        if !UNREAD.contains(&name) {
            let v: Value = serde_json::from_str(value.get()).map_err(|e| Error::invalid_property(name, e.to_string()))?;
            small.insert(name.to_string(), v);
        }
    }
    let id = check_add(&mut small)?;
    for name in ["resizeTimeout", "taskSchedulingPolicy", "autoScaleEvaluationInterval"] {
        if let Some(v) = small.get(name) {
            doc.set(name, v);
        }
    }
    if let Some(st) = doc.given("startTask") {
        if !rawdoc::is_object(st) {
            return Err(Error::invalid_property("startTask", "The value must be an object."));
        }
        wire::validate::check_start_task_text(st.get())?;
    }
    Ok(id)
}

pub async fn create(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let (id, stored) = create_from(app, &ctx.body).await?;
    let url = ctx.url(&pool_path(&id));
    Ok(Reply::status(201).changed(&stored, url.clone()).header("location", url))
}

/// How the control plane creates auto pools: as [`create_auto`] does, on
/// this server (given to `control::Cluster::set_pool_maker` at start).
pub fn pool_maker(app: &Arc<App>) -> control::autopool::PoolMaker {
    let weak = Arc::downgrade(app);
    Arc::new(move |id, spec| {
        let weak = weak.clone();
        Box::pin(async move {
            let app = weak.upgrade().ok_or_else(|| Error::new(ErrorCode::ServerBusy))?;
            create_auto(&app, id, spec).await
        })
    })
}

/// Creates an auto pool (see `control::autopool`): the job's
/// `PoolSpecification` with the id the control plane chose, added as a pool
/// add with that body would be.
pub async fn create_auto(app: &App, id: String, spec: Value) -> Result<(), Error> {
    let mut body = match spec {
        Value::Object(m) => m,
        _ => return Err(Error::invalid_property("poolInfo.autoPoolSpecification.pool", "The value must be an object.")),
    };
    body.insert("id".into(), Value::String(id));
    let text = serde_json::to_vec(&body).map_err(Error::internal)?;
    create_from(app, &text).await.map(|_| ())
}

/// A pool add's body checked, completed with the service's defaults and
/// stored; the pool's id and the stored document.
async fn create_from(app: &App, body: &[u8]) -> Result<(String, store::Stored), Error> {
    // Kept member by member as sent; only what is checked is parsed.
    let mut doc: RawObject = parse_body(body)?;
    pool_numbers_raw(&mut doc, body)?;
    let id = check_add_raw(&mut doc)?;
    if app.config.strict_limits {
        // The service's minimum evaluation interval (5 minutes).
        let given: Option<Value> = doc.parse("autoScaleEvaluationInterval")?;
        control::autoscale::evaluation_interval(given.as_ref(), true)?;
    }
    let autoscale = doc.parse::<Option<bool>>("enableAutoScale")?.flatten() == Some(true);
    check_packages(app, doc.parse::<Vec<wire::models::ApplicationPackageReference>>("applicationPackageReferences")?)?;
    crate::certificates::check_references(app, doc.parse::<Value>("certificateReferences")?.as_ref()).await?;
    let (now, etag) = app.store.etags.next();
    for (k, v) in [
        ("eTag", json!(etag)),
        ("lastModified", json!(now)),
        ("creationTime", json!(now)),
        ("state", json!("active")),
        ("stateTransitionTime", json!(now)),
        ("allocationStateTransitionTime", json!(now)),
    ] {
        doc.set(k, &v);
    }
    for (k, v) in [
        ("targetDedicatedNodes", json!(0)),
        ("targetLowPriorityNodes", json!(0)),
        ("taskSlotsPerNode", json!(1)),
        ("taskSchedulingPolicy", json!({"nodeFillType": "spread"})),
        ("enableAutoScale", json!(false)),
        ("enableInterNodeCommunication", json!(false)),
        ("resizeTimeout", json!("PT15M")),
    ] {
        doc.set_default(k, &v);
    }
    if autoscale {
        doc.set_default("autoScaleEvaluationInterval", &json!("PT15M"));
    }
    doc.remove("url");
    let lm = doc.str("lastModified").unwrap_or_default();
    let text = doc.to_json();
    drop(doc);
    let stored = app.store.create_doc_text(store::pools::POOLS, &id, text, "active".into(), etag, lm).await?;
    if autoscale {
        // The first evaluation happens now, as the service's does.
        app.cluster.autoscale_pool(&id, chrono::Utc::now()).await?;
    }
    app.cluster.reconcile.notify_one();
    Ok((id, stored))
}

/// A pool's current dedicated and low-priority nodes (those leaving it do
/// not count; preempted ones do).
fn current_nodes(app: &App, pool: &str) -> (u64, u64) {
    app.cluster.node_kinds(pool).iter().filter(|(s, _)| *s != ComputeNodeState::LeavingPool).fold((0, 0), |(d, l), (_, dedicated)| {
        if *dedicated {
            (d + 1, l)
        } else {
            (d, l + 1)
        }
    })
}

/// Adds what changes without a write: current node counts and allocation state.
fn render_pool(app: &App, ctx: &Ctx, doc: &str, select: Option<&[String]>) -> Result<Map<String, Value>, Error> {
    let mut m = render::resource(doc, String::new(), false)?;
    let id = m.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    m.insert("url".into(), Value::String(ctx.url(&pool_path(&id))));
    let (dedicated, low) = current_nodes(app, &id);
    let target = m.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
        + m.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0);
    m.insert("currentDedicatedNodes".into(), json!(dedicated));
    // Preempted low-priority nodes count (as the service documents).
    m.insert("currentLowPriorityNodes".into(), json!(low));
    let allocation = if m.get("state").and_then(Value::as_str) == Some("deleting") {
        "resizing"
    } else {
        app.cluster.allocation_state(&id, target as usize)
    };
    m.insert("allocationState".into(), json!(allocation));
    apply_select(&mut m, select);
    Ok(m)
}

pub async fn get(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let (select, _) = select_expand(ctx)?;
    let stored = app.store.get_pool(id).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    let m = render_pool(app, ctx, &stored.doc, select.as_ref().map(|s| s.1.as_slice()))?;
    Ok(Reply::json(200, render::single(ctx, "pools", m)).tagged(&stored))
}

pub async fn exists(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let stored = app.store.get_pool(id).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    Ok(Reply::status(200).tagged(&stored))
}

pub async fn list(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let page = app.store.list_pools(opts.store_query()).await?;
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let items = page.docs.iter().map(|d| render_pool(app, ctx, d, select).map(Value::Object)).collect::<Result<Vec<_>, _>>()?;
    let next = page.next.map(|k| opts.next_link(ctx, &k));
    Ok(Reply::json(200, render::list(ctx, "pools", items, next)))
}

fn refuse_if_deleting(doc: &Map<String, Value>) -> Result<(), Error> {
    if doc.get("state").and_then(Value::as_str) == Some("deleting") {
        return Err(Error::new(ErrorCode::PoolBeingDeleted));
    }
    Ok(())
}

/// PATCH: replaces the given properties among startTask, metadata,
/// applicationPackageReferences, targetNodeCommunicationMode,
/// certificateReferences.
pub async fn patch(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let mut body: Map<String, Value> = parse_body(&ctx.body)?;
    pool_numbers(&mut body, &ctx.body)?;
    check_start_task(body.get("startTask"))?;
    enum_property(&body, "targetNodeCommunicationMode", NODE_COMMUNICATION_MODES)?;
    crate::certificates::check_references(app, body.get("certificateReferences")).await?;
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, move |doc, _| {
            refuse_if_deleting(doc)?;
            for k in ["startTask", "metadata", "applicationPackageReferences", "targetNodeCommunicationMode", "certificateReferences"] {
                if let Some(v) = body.get(k) {
                    doc.insert(k.into(), v.clone());
                }
            }
            Ok(())
        })
        .await?;
    Ok(Reply::status(200).changed(&stored, ctx.url(&pool_path(id))))
}

/// POST updateproperties: replaces startTask (absent: removed), metadata,
/// applicationPackageReferences and certificateReferences (when given).
pub async fn update_properties(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let mut body: Map<String, Value> = parse_body(&ctx.body)?;
    pool_numbers(&mut body, &ctx.body)?;
    check_start_task(body.get("startTask"))?;
    for k in ["metadata", "applicationPackageReferences"] {
        if !body.get(k).is_some_and(Value::is_array) {
            return Err(Error::missing_property(k));
        }
    }
    crate::certificates::check_references(app, body.get("certificateReferences")).await?;
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, move |doc, _| {
            refuse_if_deleting(doc)?;
            match body.get("startTask") {
                Some(v) => doc.insert("startTask".into(), v.clone()),
                None => doc.remove("startTask"),
            };
            for k in ["metadata", "applicationPackageReferences"] {
                doc.insert(k.into(), body.get(k).cloned().unwrap_or(json!([])));
            }
            // Required by the api-versions that have it (replacing the
            // pool's), absent from the newer ones (kept).
            if let Some(refs) = body.get("certificateReferences") {
                doc.insert("certificateReferences".into(), refs.clone());
            }
            Ok(())
        })
        .await?;
    Ok(Reply::status(204).changed(&stored, ctx.url(&pool_path(id))))
}

pub async fn delete(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, |doc, now| {
            if doc.get("state").and_then(Value::as_str) != Some("deleting") {
                doc.insert("state".into(), json!("deleting"));
                doc.insert("stateTransitionTime".into(), json!(now));
            }
            Ok(())
        })
        .await?;
    app.cluster.reconcile.notify_one();
    Ok(Reply::status(202).changed(&stored, ctx.url(&pool_path(id))))
}

pub async fn resize(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let mut body: Map<String, Value> = parse_body(&ctx.body)?;
    pool_numbers(&mut body, &ctx.body)?;
    let dedicated = int_in(&body, "targetDedicatedNodes", 0, 1000)?;
    let low = int_in(&body, "targetLowPriorityNodes", 0, 1000)?;
    let timeout = resize_timeout(&body)?;
    let option = enum_property(&body, "nodeDeallocationOption", DEALLOCATION_OPTIONS)?.unwrap_or_else(|| "requeue".into());
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, move |doc, now| {
            refuse_if_deleting(doc)?;
            if autoscale_enabled(doc) {
                return Err(autoscale_on());
            }
            // How nodes beyond the new target leave (see `reconcile_pools`).
            doc.insert(control::autoscale::DEALLOCATION_MEMBER.into(), json!(option));
            if let Some(d) = dedicated {
                doc.insert("targetDedicatedNodes".into(), json!(d));
            }
            if let Some(l) = low {
                doc.insert("targetLowPriorityNodes".into(), json!(l));
            }
            if let Some(t) = timeout {
                doc.insert("resizeTimeout".into(), json!(t));
            }
            doc.insert("allocationStateTransitionTime".into(), json!(now));
            Ok(())
        })
        .await?;
    app.cluster.reconcile.notify_one();
    Ok(Reply::status(202).changed(&stored, ctx.url(&pool_path(id))))
}

/// Stops a resize where it is: the targets become the current counts.
pub async fn stop_resize(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let (dedicated, low) = current_nodes(app, id);
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, move |doc, now| {
            refuse_if_deleting(doc)?;
            if autoscale_enabled(doc) {
                return Err(autoscale_on());
            }
            doc.insert("targetDedicatedNodes".into(), json!(dedicated));
            doc.insert("targetLowPriorityNodes".into(), json!(low));
            doc.insert("allocationStateTransitionTime".into(), json!(now));
            Ok(())
        })
        .await?;
    app.cluster.reconcile.notify_one();
    Ok(Reply::status(202).changed(&stored, ctx.url(&pool_path(id))))
}

pub async fn remove_nodes(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let body: Map<String, Value> = parse_body(&ctx.body)?;
    let list: Vec<String> = body
        .get("nodeList")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::missing_property("nodeList"))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if list.is_empty() || list.len() > 100 {
        return Err(Error::invalid_property("nodeList", "Between 1 and 100 node ids are required."));
    }
    let option = enum_property(&body, "nodeDeallocationOption", DEALLOCATION_OPTIONS)?.unwrap_or_else(|| "requeue".into());
    // Each removed node lowers the target of its kind.
    let (mut dedicated, mut low) = (0i64, 0i64);
    for n in &list {
        match app.cluster.node(id, n, |n| n.is_dedicated) {
            None => return Err(Error::new(ErrorCode::NodeNotFound).with("NodeId", n.clone())),
            Some(true) => dedicated += 1,
            Some(false) => low += 1,
        }
    }
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, move |doc, now| {
            refuse_if_deleting(doc)?;
            for (k, count) in [("targetDedicatedNodes", dedicated), ("targetLowPriorityNodes", low)] {
                let t = doc.get(k).and_then(Value::as_i64).unwrap_or(0);
                if count > 0 {
                    doc.insert(k.into(), json!((t - count).max(0)));
                }
            }
            doc.insert("allocationStateTransitionTime".into(), json!(now));
            Ok(())
        })
        .await?;
    for n in list {
        match option.as_str() {
            "terminate" => {
                terminate_running_on(app, &n).await;
                app.cluster.remove_node(&n, false).await;
            }
            "requeue" => app.cluster.remove_node(&n, true).await,
            _ => app.cluster.drain_leaving(&n, option == "retaineddata").await,
        }
    }
    Ok(Reply::status(202).changed(&stored, ctx.url(&pool_path(id))))
}

/// Completes the tasks running on a node as terminated and kills them.
pub async fn terminate_running_on(app: &App, node_id: &str) {
    app.cluster.terminate_running_on(node_id).await;
}

/// Requeues the tasks running on a node and kills them.
pub async fn requeue_running_on(app: &App, node_id: &str) {
    for (attempt, slot) in app.cluster.running_on(node_id) {
        app.cluster.requeue_attempt(&slot.job_id, &slot.task_id, attempt).await;
        app.cluster.kill(node_id, attempt);
    }
}

/// The autoscale operations: `enableautoscale`, `disableautoscale`,
/// `evaluateautoscale` (the route's last segment says which).
pub async fn autoscale(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let action = ctx.path.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
    match action.as_str() {
        "enableautoscale" => enable_autoscale(app, ctx, id).await,
        "disableautoscale" => disable_autoscale(app, ctx, id).await,
        _ => evaluate_autoscale(app, ctx, id).await,
    }
}

/// `POST /pools/{id}/enableautoscale`: turns autoscale on with a formula
/// (required then), or changes the formula or interval of a pool that has
/// it on. The formula is evaluated at once and then every interval.
async fn enable_autoscale(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let body: Map<String, Value> = if ctx.body.iter().all(|b| b.is_ascii_whitespace()) { Map::new() } else { parse_body(&ctx.body)? };
    let formula = match body.get("autoScaleFormula") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => {
            control::autoscale::parse_formula(f)?;
            Some(f.clone())
        }
        Some(_) => return Err(Error::invalid_property("autoScaleFormula", "The value must be a string.")),
    };
    let interval = control::autoscale::evaluation_interval(body.get("autoScaleEvaluationInterval"), app.config.strict_limits)?;
    // A pool being resized cannot switch to autoscale (the service's rule).
    let current = app.store.get_pool(id).await?;
    let doc: Map<String, Value> = serde_json::from_str(&current.doc).map_err(Error::internal)?;
    if !autoscale_enabled(&doc) {
        let target = doc.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
            + doc.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0);
        if doc.get("state").and_then(Value::as_str) != Some("deleting") && app.cluster.allocation_state(id, target as usize) == "resizing" {
            return Err(Error::new(ErrorCode::PoolBeingResized));
        }
    }
    let pre = ctx.preconditions()?;
    app.cluster.check_enable_autoscale(id, chrono::Utc::now())?;
    let stored = app
        .store
        .update_pool(id, pre, move |doc, now| {
            refuse_if_deleting(doc)?;
            let was = autoscale_enabled(doc);
            match formula {
                Some(f) => {
                    doc.insert("autoScaleFormula".into(), json!(f));
                }
                None if !was => return Err(Error::missing_property("autoScaleFormula")),
                None => {}
            }
            if let Some(i) = interval {
                doc.insert("autoScaleEvaluationInterval".into(), json!(i.to_string()));
            } else if !was {
                doc.insert("autoScaleEvaluationInterval".into(), json!("PT15M"));
            }
            doc.insert("enableAutoScale".into(), json!(true));
            if !was {
                doc.insert("allocationStateTransitionTime".into(), json!(now));
            }
            Ok(())
        })
        .await?;
    // Evaluated now (as the service does when autoscale is enabled); the
    // next evaluation is one interval later.
    app.cluster.autoscale_pool(id, chrono::Utc::now()).await?;
    app.cluster.autoscale.notify_one();
    let stored = app.store.get_pool(id).await.unwrap_or(stored);
    Ok(Reply::status(200).changed(&stored, ctx.url(&pool_path(id))))
}

/// `POST /pools/{id}/disableautoscale`: the pool keeps the size autoscale
/// last gave it, and can be resized again. Its formula, interval and last
/// run are kept.
async fn disable_autoscale(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    if !ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        parse_body::<Map<String, Value>>(&ctx.body)?;
    }
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_pool(id, pre, |doc, _| {
            refuse_if_deleting(doc)?;
            doc.insert("enableAutoScale".into(), json!(false));
            Ok(())
        })
        .await?;
    Ok(Reply::status(200).changed(&stored, ctx.url(&pool_path(id))))
}

/// `POST /pools/{id}/evaluateautoscale`: the `AutoScaleRun` of a formula
/// on the pool now, applying nothing. The pool must have autoscale on (as
/// the service requires); an evaluation error is the run's `error`, a
/// formula that does not parse a 400.
async fn evaluate_autoscale(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let body: Map<String, Value> = parse_body(&ctx.body)?;
    let text = match body.get("autoScaleFormula") {
        Some(Value::String(f)) => f.clone(),
        None | Some(Value::Null) => return Err(Error::missing_property("autoScaleFormula")),
        Some(_) => return Err(Error::invalid_property("autoScaleFormula", "The value must be a string.")),
    };
    let formula = control::autoscale::parse_formula(&text)?;
    let stored = app.store.get_pool(id).await?;
    let doc: Map<String, Value> = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
    refuse_if_deleting(&doc)?;
    if !autoscale_enabled(&doc) {
        return Err(Error::msg(
            ErrorCode::OperationNotValidOnPool,
            "The pool does not have automatic scaling enabled: enable it (enableautoscale) before evaluating a formula.",
        ));
    }
    let now = chrono::Utc::now();
    if app.cluster.sample_count(id) == 0 {
        app.cluster.sample_pool(id, now).await?;
    }
    let eval = app.cluster.evaluate_formula(&doc, &formula, now);
    let Value::Object(run) = control::autoscale::run_json(&eval, now) else { return Err(Error::internal("an AutoScaleRun is an object")) };
    let mut out = Map::new();
    out.insert("odata.metadata".into(), json!(format!("{}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun", ctx.base_url)));
    out.extend(run);
    Ok(Reply::json(200, Value::Object(out).to_string()).header("dataserviceid", ctx.url(&pool_path(id))))
}

/// `GET /nodecounts`.
pub async fn node_counts(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let page = app.store.list_pools(opts.store_query()).await?;
    let keys = [
        "creating",
        "idle",
        "offline",
        "preempted",
        "rebooting",
        "reimaging",
        "running",
        "starting",
        "startTaskFailed",
        "leavingPool",
        "unknown",
        "unusable",
        "waitingForStartTask",
        "deallocated",
        "deallocating",
        "upgradingOS",
    ];
    let mut items = Vec::new();
    for d in &page.docs {
        let doc: Map<String, Value> = serde_json::from_str(d).map_err(Error::internal)?;
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let nodes = app.cluster.node_kinds(&id);
        let counts = |dedicated: bool| {
            let mut m = Map::new();
            let of_kind: Vec<ComputeNodeState> = nodes.iter().filter(|(_, d)| *d == dedicated).map(|(s, _)| *s).collect();
            for k in keys {
                m.insert(k.into(), json!(of_kind.iter().filter(|s| s.as_str().eq_ignore_ascii_case(k)).count()));
            }
            m.insert("total".into(), json!(of_kind.len()));
            m
        };
        let (dedicated, low) = (counts(true), counts(false));
        items.push(json!({"poolId": id, "dedicated": dedicated, "lowPriority": low}));
    }
    let next = page.next.map(|k| opts.next_link(ctx, &k));
    Ok(Reply::json(200, render::list(ctx, "poolnodecounts", items, next)))
}

fn image(publisher: &str, offer: &str, sku: &str, agent: &str, capabilities: Vec<String>) -> Value {
    json!({
        "nodeAgentSKUId": agent,
        "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
        "osType": "linux",
        "capabilities": capabilities,
        "verificationType": "verified",
    })
}

/// The Linux images a pool may name (every node runs the agent on the
/// host's Linux whatever it names).
fn images() -> Vec<Value> {
    vec![
        image("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04", vec![]),
        image("canonical", "ubuntu-24_04-lts", "server", "batch.node.ubuntu 24.04", vec![]),
        image("debian", "debian-12", "12", "batch.node.debian 12", vec![]),
    ]
}

/// `GET /supportedimages`: the Linux images a node agent serves, then one
/// entry per declared node provider other than the local one (its name is
/// the `vmSize` that selects it; `capabilities` say its kind and what it
/// serves).
pub async fn supported_images(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let mut items = images();
    let providers = app.cluster.providers();
    for e in providers.entries().iter().filter(|e| e.kind != "local") {
        let mut caps =
            vec![format!("openbatch.provider={}", e.name), format!("openbatch.kind={}", e.kind), format!("openbatch.vmSize={}", e.name)];
        if e.name == providers.default_name() {
            caps.push("openbatch.default".into());
        }
        caps.push(format!("openbatch.serves={}", e.description));
        items.push(image("openbatch", &format!("{}-provider", e.kind), &e.name, "batch.node.openbatch", caps));
    }
    Ok(Reply::json(200, render::list(ctx, "supportedimages", items, None)))
}

/// `GET /nodeagentskus` (api-versions before 2019-06-01.9.0): the same
/// images grouped by node agent SKU.
pub async fn node_agent_skus(_app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let mut skus: Vec<Value> = Vec::new();
    for image in images() {
        let id = image["nodeAgentSKUId"].clone();
        match skus.iter_mut().find(|s| s["id"] == id) {
            Some(s) => s["verifiedImageReferences"].as_array_mut().into_iter().for_each(|v| v.push(image["imageReference"].clone())),
            None => skus.push(json!({"id": id, "verifiedImageReferences": [image["imageReference"]], "osType": "linux"})),
        }
    }
    Ok(Reply::json(200, render::list(ctx, "nodeagentskus", skus, None)))
}

/// `POST /pools/{id}/upgradeos` (api-version 2018-08-01.7.0) upgrades a
/// Cloud Services pool's OS; openbatch has none (they are refused), so any
/// pool answers 409 `OperationNotValidOnPool`.
pub async fn upgrade_os(app: &App, id: &str) -> Result<Reply, Error> {
    app.store.get_pool(id).await?;
    Err(Error::new(ErrorCode::OperationNotValidOnPool)
        .with("Reason", "upgradeos applies to Cloud Services pools only; this pool uses virtualMachineConfiguration."))
}

fn vm_size(doc: &Map<String, Value>) -> String {
    doc.get("vmSize").and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn pool_doc(app: &App, id: &str) -> Result<Map<String, Value>, Error> {
    let s = app.store.get_pool(id).await?;
    serde_json::from_str(&s.doc).map_err(Error::internal)
}

pub async fn list_nodes(app: &App, ctx: &Ctx, pool: &str) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let doc = pool_doc(app, pool).await?;
    let mut nodes = app.cluster.pool_nodes(pool, |n| crate::render::node(n, &ctx.base_url, &vm_size(&doc)));
    if let Some(st) = doc.get("startTask") {
        for n in nodes.iter_mut() {
            n.insert("startTask".into(), st.clone());
        }
    }
    if let Some((_, f)) = &opts.filter {
        // Node lists are small: filter on the rendered documents.
        nodes.retain(|n| crate::render::matches(f, n));
    }
    let after = opts.after.clone().unwrap_or_default();
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let mut rest: Vec<Map<String, Value>> =
        nodes.into_iter().filter(|n| n.get("id").and_then(Value::as_str).unwrap_or_default() > after.as_str()).collect();
    let limit = opts.limit();
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().and_then(|n| n.get("id")).and_then(Value::as_str).map(|k| opts.next_link(ctx, k))
    } else {
        None
    };
    let items = rest
        .into_iter()
        .map(|mut n| {
            apply_select(&mut n, select);
            Value::Object(n)
        })
        .collect();
    Ok(Reply::json(200, render::list(ctx, "nodes", items, next)))
}

pub async fn get_node(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    let (select, _) = select_expand(ctx)?;
    let doc = pool_doc(app, pool).await?;
    let mut n = app
        .cluster
        .node(pool, node, |n| crate::render::node(n, &ctx.base_url, &vm_size(&doc)))
        .ok_or_else(|| Error::new(ErrorCode::NodeNotFound).with("NodeId", node))?;
    if let Some(st) = doc.get("startTask") {
        n.insert("startTask".into(), st.clone());
    }
    apply_select(&mut n, select.as_ref().map(|s| s.1.as_slice()));
    Ok(Reply::json(200, render::single(ctx, "nodes", n)))
}

/// `GET .../remoteloginsettings`: the address and SSH port the node's
/// agent reported when it joined (`openbatch agent --ip --ssh-port`).
pub async fn remote_login_settings(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    pool_doc(app, pool).await?;
    let (ip, port) = app
        .cluster
        .node(pool, node, |n| (n.ip.clone(), n.ssh_port))
        .ok_or_else(|| Error::new(ErrorCode::NodeNotFound).with("NodeId", node))?;
    let body = json!({
        "odata.metadata": format!("{}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.ComputeNodeGetRemoteLoginSettingsResult", ctx.base_url),
        "remoteLoginIPAddress": ip,
        "remoteLoginPort": port,
    });
    Ok(Reply::json(200, body.to_string()))
}

/// openbatch's own `GET /openbatch/pools/{pool}/nodeload`: each node's CPU
/// busy share (percent, between the agent's last two measurements) and
/// memory in use (bytes), `null` until its agent has measured. Signed like
/// any Batch request; the dashboard shows it next to the nodes.
pub async fn node_load(app: &App, pool: &str) -> Result<Reply, Error> {
    pool_doc(app, pool).await?;
    let mut nodes: Vec<Value> = app
        .cluster
        .node_loads()
        .into_iter()
        .filter(|(p, _, _)| p.eq_ignore_ascii_case(pool))
        .map(|(_, id, load)| json!({"id": id, "cpuPercent": load.cpu_percent, "memoryBytes": load.memory_bytes}))
        .collect();
    nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(Reply::json(200, json!({ "value": nodes }).to_string()))
}

/// openbatch's own `POST /openbatch/pools/{pool}/nodes/{node}/preempt`:
/// preempts a low-priority node as Azure would take a spot VM back (see
/// `control::preempt`). The body is optional: `recoverAfter`, an ISO 8601
/// duration, brings the node back by itself that much later; without it the
/// node stays preempted until `.../recover`. A dedicated node: 409
/// `OperationNotValidOnNode`.
pub async fn preempt_node(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    let body: Map<String, Value> = if ctx.body.iter().all(|b| b.is_ascii_whitespace()) { Map::new() } else { parse_body(&ctx.body)? };
    let recover_after = match body.get("recoverAfter") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(wire::time::Duration::parse)
                .filter(|d| !d.is_infinite())
                .map(|d| d.to_std())
                .ok_or_else(|| Error::invalid_property("recoverAfter", "The value must be an ISO 8601 duration such as PT30S."))?,
        ),
    };
    pool_doc(app, pool).await?;
    app.cluster.preempt_node(pool, node, recover_after, std::time::Instant::now()).await?;
    Ok(Reply::status(202).header("dataserviceid", ctx.url(&format!("{}/nodes/{}", pool_path(pool), encode_segment(node)))))
}

/// openbatch's own `POST /openbatch/pools/{pool}/nodes/{node}/recover`: a
/// preempted node comes back (reimaged, then idle). A node that is not
/// preempted: 409 `OperationNotValidOnNode`.
pub async fn recover_node(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    if !ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        parse_body::<Map<String, Value>>(&ctx.body)?;
    }
    pool_doc(app, pool).await?;
    app.cluster.recover_node(pool, node)?;
    Ok(Reply::status(202).header("dataserviceid", ctx.url(&format!("{}/nodes/{}", pool_path(pool), encode_segment(node)))))
}

/// The option of a node action (its body is optional; the default is requeue).
fn node_option(ctx: &Ctx, field: &str, allowed: &[&str]) -> Result<String, Error> {
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok("requeue".into());
    }
    let body: Map<String, Value> = parse_body(&ctx.body)?;
    Ok(enum_property(&body, field, allowed)?.unwrap_or_else(|| "requeue".into()))
}

/// Reboot (`wipe = false`) or reimage (`wipe = true`) a node.
pub async fn restart_node(app: &App, ctx: &Ctx, pool: &str, node: &str, wipe: bool) -> Result<Reply, Error> {
    let option = node_option(ctx, if wipe { "nodeReimageOption" } else { "nodeRebootOption" }, DEALLOCATION_OPTIONS)?;
    pool_doc(app, pool).await?;
    match app.cluster.node(pool, node, |n| (n.pending(), n.state)) {
        None => return Err(Error::new(ErrorCode::NodeNotFound).with("NodeId", node)),
        // Its provider is still making it: nothing to restart yet.
        Some((true, ComputeNodeState::Creating)) => return Err(Error::new(ErrorCode::NodeBeingCreated).with("NodeId", node)),
        Some((true, _)) => return Err(Error::new(ErrorCode::NodeBeingStarted).with("NodeId", node)),
        Some(_) => {}
    }
    if matches!(option.as_str(), "taskcompletion" | "retaineddata") {
        // Running tasks finish first; the node takes no new ones meanwhile.
        app.cluster.drain(node, control::Drain::Restart { wipe }).await;
        return Ok(node_reply(ctx, pool, node));
    }
    // The state first, so that no requeued task comes back to the node.
    let state = if wipe { ComputeNodeState::Reimaging } else { ComputeNodeState::Rebooting };
    app.cluster.set_node_state(node, state);
    match option.as_str() {
        "terminate" => terminate_running_on(app, node).await,
        _ => requeue_running_on(app, node).await,
    }
    app.cluster.reboot_node(node, wipe);
    Ok(node_reply(ctx, pool, node))
}

fn node_reply(ctx: &Ctx, pool: &str, node: &str) -> Reply {
    Reply::status(202).header("dataserviceid", ctx.url(&format!("{}/nodes/{}", pool_path(pool), encode_segment(node))))
}

/// `POST …/nodes/{n}/deallocate`: an idle or running node stops (its
/// running tasks as `nodeDeallocateOption` says) and stays `deallocated`
/// in its pool until started.
pub async fn deallocate_node(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    let option = node_option(ctx, "nodeDeallocateOption", DEALLOCATION_OPTIONS)?;
    pool_doc(app, pool).await?;
    let drain = matches!(option.as_str(), "taskcompletion" | "retaineddata");
    app.cluster.deallocate_node(pool, node, drain).await?;
    if !drain {
        match option.as_str() {
            "terminate" => terminate_running_on(app, node).await,
            _ => requeue_running_on(app, node).await,
        }
        app.cluster.stop_node(node);
    }
    Ok(node_reply(ctx, pool, node))
}

/// `POST …/nodes/{n}/start`: a deallocated node starts again.
pub async fn start_node(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    pool_doc(app, pool).await?;
    app.cluster.start_node(pool, node)?;
    Ok(node_reply(ctx, pool, node))
}

/// The VM extensions a pool declares (`virtualMachineConfiguration.extensions`)
/// as each of its nodes reports them: openbatch installs none, so each is
/// `Failed` with an instance view that says why.
fn node_extensions(doc: &Map<String, Value>) -> Vec<Value> {
    let declared = doc.get("virtualMachineConfiguration").and_then(|v| v.get("extensions")).and_then(Value::as_array);
    declared
        .into_iter()
        .flatten()
        .map(|ext| {
            let name = ext.get("name").cloned().unwrap_or(Value::Null);
            let mut shown = ext.clone();
            if let Some(m) = shown.as_object_mut() {
                // Secrets are never returned.
                m.remove("protectedSettings");
            }
            json!({
                "provisioningState": "Failed",
                "vmExtension": shown,
                "instanceView": {
                    "name": name,
                    "statuses": [{
                        "code": "ProvisioningState/failed/NotSupported",
                        "displayStatus": "Provisioning failed",
                        "level": "Error",
                        "message": "openbatch installs no VM extensions: the pool declares this extension but the node does not run it.",
                        "time": wire::time::Timestamp::now().to_string(),
                    }],
                },
            })
        })
        .collect()
}

fn selected(v: &Value, select: Option<&[String]>) -> Value {
    let mut m = v.as_object().cloned().unwrap_or_default();
    apply_select(&mut m, select);
    Value::Object(m)
}

/// `GET …/nodes/{n}/extensions` (paged by `maxresults`, `$select`).
pub async fn list_node_extensions(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let doc = pool_doc(app, pool).await?;
    if !app.cluster.node_exists(pool, node) {
        return Err(Error::new(ErrorCode::NodeNotFound).with("NodeId", node));
    }
    // Paged by position (the pool's list of extensions does not change).
    let all = node_extensions(&doc);
    let start: usize = opts.after.as_deref().and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (start + opts.limit()).min(all.len());
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let items: Vec<Value> = all.get(start..end).unwrap_or_default().iter().map(|e| selected(e, select)).collect();
    let next = (end < all.len()).then(|| opts.next_link(ctx, &end.to_string()));
    Ok(Reply::json(200, render::list(ctx, "extensions", items, next)))
}

/// `GET …/nodes/{n}/extensions/{name}`: 404 `ResourceNotFound` when the
/// pool declares no extension of that name.
pub async fn get_node_extension(app: &App, ctx: &Ctx, pool: &str, node: &str, name: &str) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let doc = pool_doc(app, pool).await?;
    if !app.cluster.node_exists(pool, node) {
        return Err(Error::new(ErrorCode::NodeNotFound).with("NodeId", node));
    }
    let ext = node_extensions(&doc)
        .into_iter()
        .find(|e| e["vmExtension"]["name"].as_str() == Some(name))
        .ok_or_else(|| Error::new(ErrorCode::ResourceNotFound).with("ExtensionName", name))?;
    Ok(Reply::json(200, selected(&ext, opts.select.as_ref().map(|s| s.1.as_slice())).to_string()))
}

pub async fn scheduling(app: &App, ctx: &Ctx, pool: &str, node: &str, enable: bool) -> Result<Reply, Error> {
    let option = if enable { String::new() } else { node_option(ctx, "nodeDisableSchedulingOption", DISABLE_SCHEDULING_OPTIONS)? };
    pool_doc(app, pool).await?;
    app.cluster.set_scheduling(pool, node, enable)?;
    if !enable {
        match option.as_str() {
            "requeue" => requeue_running_on(app, node).await,
            "terminate" => terminate_running_on(app, node).await,
            _ => {} // taskcompletion (the only other valid option): running tasks finish
        }
    }
    Ok(Reply::status(200).header("dataserviceid", ctx.url(&format!("{}/nodes/{}", pool_path(pool), encode_segment(node)))))
}
