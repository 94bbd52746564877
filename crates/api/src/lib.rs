//! The HTTP layer: every request is authenticated (SharedKey), its
//! api-version checked, routed to one [`route::Operation`], dispatched to a
//! thin handler that calls the store, and answered with the service's
//! headers — or with a Batch error body from the one table in
//! [`wire::error`].

pub mod agent_ws;
pub mod applications;
pub mod certificates;
pub mod engine;
pub mod files;
pub mod http;
pub mod jobs;
pub mod lifetime;
pub mod metrics;
pub mod nodeops;
pub mod paths;
pub mod pools;
pub mod rawdoc;
pub mod render;
pub mod replica;
pub mod route;
pub mod schedules;
pub mod server;
/// SharedKey (the `sharedkey` crate, shared with the command-line client).
pub use ::sharedkey;
pub mod state;
pub mod tasks;
pub mod tls;
pub mod tokens;
pub mod ui;
pub mod usage;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::Router;
use chrono::Utc;
use http::{error_response, finish, into_response, parse_query, Ctx, Reply};
use route::Operation;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use wire::versions::ApiVersion;
use wire::{Error, ErrorCode};

pub use state::{ApiConfig, App};

/// Every published data-plane api-version from 2018-08-01.7.0 on, newest
/// first (`wire::versions`: how the older ones are translated at the edge).
pub const API_VERSIONS: &[&str] = &[
    "2025-06-01",
    "2024-07-01.20.0",
    "2024-02-01.19.0",
    "2023-11-01.18.0",
    "2023-05-01.17.0",
    "2022-10-01.16.0",
    "2022-01-01.15.0",
    "2021-06-01.14.0",
    "2020-09-01.12.0",
    "2020-03-01.11.0",
    "2019-08-01.10.0",
    "2019-06-01.9.0",
    "2018-12-01.8.0",
    "2018-08-01.7.0",
];

/// Serves the API on `listener` (see [`server`]: limits, TLS) until
/// `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    opts: server::ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let server_url = listener.local_addr().ok().map(|a| format!("{scheme}://{a}"));
    *app.cluster.config.agent_env.lock().unwrap_or_else(|p| p.into_inner()) = opts.agent_env.clone();
    // A replica starts the background loops once it leads (see `replica`).
    let supervisor: Arc<std::sync::Mutex<Option<Arc<control::supervisor::Supervisor>>>> = Default::default();
    let mut replica_tasks = Vec::new();
    match app.replica.get().cloned() {
        None => *supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(start_background(app.clone(), server_url)),
        Some(replica) => {
            replica_tasks.push(tokio::spawn(replica.clone().run(app.store.clone())));
            let (app, slot) = (app.clone(), supervisor.clone());
            replica_tasks.push(tokio::spawn(async move {
                replica.became_leader().await;
                app.cluster.hold_scheduling(std::time::Instant::now() + replica::REJOIN_GRACE);
                let url = Some(replica.advertise_url.clone()).filter(|u| !u.is_empty()).or(server_url);
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(start_background(app, url));
            }));
        }
    }
    let cluster = app.cluster.clone();
    let (store, replica) = (app.store.clone(), app.replica.get().cloned());
    let r = server::run(app, listener, opts, shutdown, |app, req| Box::pin(handle(State(app), req))).await;
    for t in replica_tasks {
        t.abort();
        let _ = t.await;
    }
    // In order: the background loops (no new placements, transitions or
    // node changes), then the local nodes, then the lease (a standby takes
    // over at once).
    let running = supervisor.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(supervisor) = running {
        supervisor.shutdown(Duration::from_secs(10)).await;
    }
    cluster.stop_local_nodes().await;
    if let Some(replica) = replica {
        replica.release(&store).await;
    }
    r
}

/// Serves only `/metrics` on `listener` (`--metrics-listen`) until `shutdown`.
pub async fn serve_metrics(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    async fn only_metrics(State(app): State<Arc<App>>, req: Request) -> Response<Body> {
        if req.uri().path() != metrics::PATH {
            return metrics::answer(404, "text/plain; charset=utf-8", "not found; try /metrics\n".into());
        }
        metrics::scrape((&app.store, &app.cluster, &app.metrics), &app.config.metrics, req.method(), req.headers()).await
    }
    let router = Router::new().fallback(only_metrics).with_state(app);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// The request handler as a router (one fallback: routing is ours, on the raw
/// path). The lifecycle worker is not started; [`serve`] does that.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Starts the background loops under one supervisor (see
/// `control::supervisor`): the job lifecycle worker, then — once attempt ids
/// are initialised — the control plane's loops. `server_url` is where local
/// agents dial. Stop them with `Supervisor::shutdown`.
pub fn start_background(app: Arc<App>, server_url: Option<String>) -> Arc<control::supervisor::Supervisor> {
    *app.cluster.config.server_url.lock().unwrap_or_else(|p| p.into_inner()) = server_url.clone();
    // Auto pools are created as a pool add would create them.
    app.cluster.set_pool_maker(pools::pool_maker(&app));
    {
        let mut u = app.account_url.lock().unwrap_or_else(|p| p.into_inner());
        if u.is_none() {
            *u = server_url;
        }
    }
    let supervisor = control::supervisor::Supervisor::new();
    let c = app.cluster.clone();
    supervisor.spawn("lifecycle", move |stop| control::transitions::run(c, stop));
    let (cluster, account_url, sup) = (app.cluster.clone(), app.account_url.clone(), supervisor.clone());
    supervisor.spawn("control", move |mut stop| async move {
        tokio::select! {
            r = cluster.init_attempts() => if let Err(e) = r {
                tracing::error!(error = %e, "cannot read attempt ids; scheduling is off");
                return;
            },
            _ = stop.stopped() => return,
        }
        control::supervisor::start(&sup, cluster, account_url);
    });
    supervisor
}

pub(crate) async fn handle(State(app): State<Arc<App>>, req: Request) -> Response<Body> {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, mut body) = req.into_parts();
    let limits = parts.extensions.get::<server::RequestLimits>().copied();
    let client_request_id = parts
        .headers
        .get("client-request-id")
        .or_else(|| parts.headers.get("x-ms-client-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let base_url = app.config.public_url.clone().unwrap_or_else(|| {
        let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let scheme = if limits.is_some_and(|l| l.tls) { "https" } else { "http" };
        format!("{scheme}://{host}")
    });
    let method = parts.method.clone();
    // A standby replica: agents go to the leader, API requests are
    // forwarded to it (see `replica`).
    let standby = app.replica.get().filter(|r| !r.leading()).cloned();
    if let Some(replica) = &standby {
        let path = parts.uri.path();
        if path == proto::CONNECT_PATH
            || path.starts_with(proto::PACKAGES_PATH)
            || path.starts_with(proto::FILE_STREAM_PATH)
            || path == proto::engine::ENGINE_PATH
        {
            return replica.refuse_agent();
        }
    }
    if parts.uri.path() == proto::CONNECT_PATH {
        return agent_connect(app, Request::from_parts(parts, body)).await;
    }
    if ui::is_ui(parts.uri.path()) {
        // The dashboard's own files need no signature: its data comes from
        // the signed API below.
        return ui::serve(&method, parts.uri.path(), &parts.headers);
    }
    if parts.uri.path() == metrics::PATH && !app.config.metrics.off && !app.config.metrics.separate {
        // Prometheus scrapes without the account key (see `metrics`).
        return metrics::scrape((&app.store, &app.cluster, &app.metrics), &app.config.metrics, &method, &parts.headers).await;
    }
    if let Some(rest) = parts.uri.path().strip_prefix(proto::PACKAGES_PATH) {
        let rest = rest.to_string();
        return package_archive(&app, &parts.headers, &rest).await;
    }
    if parts.uri.path() == proto::engine::ENGINE_PATH {
        if !is_agent(&app, &parts.headers) || method != axum::http::Method::POST {
            return Response::builder().status(403).body(Body::from("invalid agent token")).unwrap_or_default();
        }
        return engine::serve(&app, &parts.headers, body).await;
    }
    if let Some(key) = parts.uri.path().strip_prefix(proto::FILE_STREAM_PATH) {
        if !is_agent(&app, &parts.headers) || method != axum::http::Method::POST {
            return Response::builder().status(403).body(Body::from("invalid agent token")).unwrap_or_default();
        }
        return files::accept_stream(key.trim_start_matches('/'), body).await;
    }
    let raw_target = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    if let Some(replica) = standby.filter(|_| authenticated(&app, &method, &raw_target, &parts.headers)) {
        let resp = match replica.forward(parts, body).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e, &base_url, &request_id, &method),
        };
        app.metrics.record("forwarded", resp.status().as_u16(), started.elapsed());
        return match resp.headers().contains_key("request-id") {
            true => resp,
            false => finish(resp, &request_id, client_request_id.as_deref()),
        };
    }
    let mut op_name = "unrouted";
    let result = async {
        // Everything that can be decided from the head is decided before
        // the body is read: authentication first (SharedKey signs the
        // Content-Length, not the body), so an unauthenticated client
        // never has its body buffered.
        // A task's authentication token (Bearer) grants its own job only;
        // anything else is signed with the account key (SharedKey).
        let token_scope = match tokens::bearer(&parts.headers) {
            Some(token) => Some(tokens::verify(&app.config.keys[0], token, Utc::now().timestamp()).ok_or_else(|| {
                Error::new(ErrorCode::AuthenticationFailed)
                    .with("AuthenticationErrorDetail", "The bearer token is not a valid task authentication token, or it has expired.")
            })?),
            None => {
                sharedkey::verify(&app.auth, &method, &raw_target, &parts.headers, Utc::now()).map_err(auth_error)?;
                None
            }
        };
        let (path, raw_query) = raw_target.split_once('?').unwrap_or((raw_target.as_str(), ""));
        let mut query = parse_query(raw_query);
        let api_version = query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("api-version"))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::new(ErrorCode::MissingRequiredQueryParameter).with("QueryParameterName", "api-version"))?;
        let Some(version) = ApiVersion::parse(&api_version) else {
            return Err(Error::new(ErrorCode::UnsupportedRequestVersion)
                .with("QueryParameterName", "api-version")
                .with("QueryParameterValue", api_version.clone())
                .with("Reason", format!("Supported versions: {}", API_VERSIONS.join(", "))));
        };
        let op = route::route(&method, path)?;
        op_name = op.name();
        route::check_version(&op, version)?;
        if version != ApiVersion::LATEST {
            for (name, value) in query.iter_mut() {
                if ["$select", "$expand", "$filter"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
                    if let Some(v) = wire::versions::query_names(version, value) {
                        *value = v;
                    }
                }
            }
        }
        if let Some(job) = &token_scope {
            if !op.job().is_some_and(|j| j.eq_ignore_ascii_case(job)) {
                return Err(Error::new(ErrorCode::AuthenticationFailed).with(
                    "AuthenticationErrorDetail",
                    format!("The task authentication token grants access to operations on job '{job}' only."),
                ));
            }
        }
        let mut body = server::read_body(&mut body, &parts.headers, limits.map(|l| l.body_deadline)).await?;
        if version != ApiVersion::LATEST && !body.is_empty() {
            // An older version's spelling, in the newest one (see `wire::versions`).
            if let Some(b) = wire::versions::request_body(version, &body)? {
                body = b.into();
            }
        }
        let kind = match op {
            Operation::JobTaskCounts(_) => wire::versions::Body::TaskCounts,
            Operation::PoolUsageMetrics => wire::versions::Body::PoolUsageMetrics,
            _ => wire::versions::Body::Resource,
        };
        let ctx = Ctx {
            method: method.clone(),
            path: path.to_string(),
            query,
            headers: parts.headers.clone(),
            body,
            api_version,
            request_id: request_id.clone(),
            base_url: base_url.clone(),
        };
        let mut reply = dispatch(&app, &ctx, op).await?;
        if version != ApiVersion::LATEST {
            if let Some((_, bytes)) = reply.body.as_mut().filter(|(ct, _)| ct.starts_with("application/json")) {
                if let Some(b) = wire::versions::response_body(version, kind, bytes) {
                    *bytes = b.into();
                }
            }
        }
        Ok(reply)
    }
    .await;
    // Whatever is left of the body (an early error) is drained, not kept.
    server::discard(body, &parts.headers, limits);
    let resp = match result {
        Ok(reply) => into_response(reply),
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(request_id = %request_id, op = op_name, error = %e, values = ?e.values, "request failed");
            }
            error_response(&e, &base_url, &request_id, &method)
        }
    };
    app.metrics.record(op_name, resp.status().as_u16(), started.elapsed());
    tracing::debug!(
        request_id = %request_id, %method, uri = %raw_target, op = op_name,
        status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request"
    );
    finish(resp, &request_id, client_request_id.as_deref())
}

/// Whether a request is a replica's to forward: it is authenticated (an
/// unauthenticated one is answered here, before its body is read).
fn authenticated(app: &App, method: &axum::http::Method, raw_target: &str, headers: &axum::http::HeaderMap) -> bool {
    let now = chrono::Utc::now();
    match tokens::bearer(headers) {
        Some(token) => tokens::verify(&app.config.keys[0], token, now.timestamp()).is_some(),
        None => sharedkey::verify(&app.auth, method, raw_target, headers, now).is_ok(),
    }
}

/// Upgrades an agent's connection after checking its join token.
/// Whether a request carries the agents' join token.
fn is_agent(app: &App, headers: &axum::http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    !app.config.agent_token.is_empty() && bool::from(token.as_bytes().ct_eq(app.config.agent_token.as_bytes()))
}

/// An application package archive, streamed to an agent that installs it.
async fn package_archive(app: &App, headers: &axum::http::HeaderMap, rest: &str) -> Response<Body> {
    let status = |code: u16, text: &str| Response::builder().status(code).body(Body::from(text.to_string())).unwrap_or_default();
    if !is_agent(app, headers) {
        return status(403, "invalid agent token");
    }
    let mut parts =
        rest.trim_start_matches('/').splitn(2, '/').map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned());
    let (Some(id), Some(version)) = (parts.next(), parts.next()) else { return status(404, "no such package") };
    let Some(path) = control::packages::archive(&app.config.applications_dir, &id, &version) else {
        return status(404, "no such package");
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Response::builder()
                .status(200)
                .header("x-openbatch-archive", name)
                .body(Body::from_stream(tokio_util::io::ReaderStream::new(f)))
                .unwrap_or_default()
        }
        Err(_) => status(404, "no such package"),
    }
}

async fn agent_connect(app: Arc<App>, req: Request) -> Response<Body> {
    use axum::extract::FromRequest;
    use axum::response::IntoResponse;
    use subtle::ConstantTimeEq;
    let token = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let ok = !app.config.agent_token.is_empty() && bool::from(token.as_bytes().ct_eq(app.config.agent_token.as_bytes()));
    if !ok {
        return Response::builder().status(403).body(Body::from("invalid agent token")).unwrap_or_default();
    }
    match axum::extract::ws::WebSocketUpgrade::from_request(req, &()).await {
        Ok(ws) => {
            let cluster = app.cluster.clone();
            let url = app.account_url.clone();
            ws.on_upgrade(move |socket| agent_ws::serve_agent(cluster, socket, url)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn auth_error(f: sharedkey::AuthFailure) -> Error {
    use sharedkey::AuthFailure::*;
    let detail = f.detail();
    match f {
        Missing => Error::msg(
            ErrorCode::InvalidAuthenticationInfo,
            "Server failed to authenticate the request. The Authorization header is missing.",
        )
        .with_status(401)
        .with("AuthenticationErrorDetail", detail),
        Malformed(_) => Error::new(ErrorCode::InvalidAuthenticationInfo).with("AuthenticationErrorDetail", detail),
        BadDate(_) | WrongAccount(_) | BadSignature(_) => {
            Error::new(ErrorCode::AuthenticationFailed).with("AuthenticationErrorDetail", detail)
        }
    }
}

async fn dispatch(app: &App, ctx: &Ctx, op: Operation) -> Result<Reply, Error> {
    use Operation::*;
    match op {
        ListJobs => jobs::list(app, ctx).await,
        CreateJob => jobs::create(app, ctx).await,
        GetJob(j) => jobs::get(app, ctx, &j).await,
        PatchJob(j) => jobs::update(app, ctx, &j, false).await,
        ReplaceJob(j) => jobs::update(app, ctx, &j, true).await,
        DeleteJob(j) => jobs::delete(app, ctx, &j).await,
        DisableJob(j) => jobs::disable(app, ctx, &j).await,
        EnableJob(j) => jobs::enable(app, ctx, &j).await,
        TerminateJob(j) => jobs::terminate(app, ctx, &j).await,
        JobTaskCounts(j) => jobs::task_counts(app, &j).await,
        JobPrepReleaseStatus(j) => jobs::prep_release_status(app, ctx, &j).await,
        ListTasks(j) => tasks::list(app, ctx, &j).await,
        AddTask(j) => tasks::add(app, ctx, &j).await,
        AddTaskCollection(j) => tasks::add_collection(app, ctx, &j).await,
        GetTask(j, t) => tasks::get(app, ctx, &j, &t).await,
        UpdateTask(j, t) => tasks::update(app, ctx, &j, &t).await,
        DeleteTask(j, t) => tasks::delete(app, ctx, &j, &t).await,
        TerminateTask(j, t) => tasks::terminate(app, ctx, &j, &t).await,
        ReactivateTask(j, t) => tasks::reactivate(app, ctx, &j, &t).await,
        ListSubtasks(j, t) => tasks::subtasks(app, ctx, &j, &t).await,
        ListTaskFiles(j, t) => files::list(app, ctx, files::task_location(app, ctx, &j, &t).await?).await,
        GetTaskFile(j, t, f) => files::get(app, ctx, files::task_location(app, ctx, &j, &t).await?, &f).await,
        TaskFileProperties(j, t, f) => files::properties(app, ctx, files::task_location(app, ctx, &j, &t).await?, &f).await,
        DeleteTaskFile(j, t, f) => files::delete(app, ctx, files::task_location(app, ctx, &j, &t).await?, &f).await,
        ListSchedules => schedules::list(app, ctx).await,
        CreateSchedule => schedules::create(app, ctx).await,
        GetSchedule(s) => schedules::get(app, ctx, &s).await,
        ScheduleExists(s) => schedules::exists(app, ctx, &s).await,
        PatchSchedule(s) => schedules::update(app, ctx, &s, false).await,
        ReplaceSchedule(s) => schedules::update(app, ctx, &s, true).await,
        DeleteSchedule(s) => schedules::delete(app, ctx, &s).await,
        DisableSchedule(s) => schedules::disable(app, ctx, &s).await,
        EnableSchedule(s) => schedules::enable(app, ctx, &s).await,
        TerminateSchedule(s) => schedules::terminate(app, ctx, &s).await,
        ListScheduleJobs(s) => jobs::list_of_schedule(app, ctx, &s).await,
        ListApplications => applications::list_handler(app, ctx).await,
        GetApplication(a) => applications::get_handler(app, ctx, &a).await,
        ListCertificates => certificates::list(app, ctx).await,
        AddCertificate => certificates::add(app, ctx).await,
        GetCertificate(t) => certificates::get(app, ctx, &t).await,
        DeleteCertificate(t) => certificates::delete(app, ctx, &t).await,
        CancelCertificateDeletion(t) => certificates::cancel_deletion(app, ctx, &t).await,
        ListPools => pools::list(app, ctx).await,
        CreatePool => pools::create(app, ctx).await,
        GetPool(p) => pools::get(app, ctx, &p).await,
        PoolExists(p) => pools::exists(app, ctx, &p).await,
        PatchPool(p) => pools::patch(app, ctx, &p).await,
        DeletePool(p) => pools::delete(app, ctx, &p).await,
        UpdatePoolProperties(p) => pools::update_properties(app, ctx, &p).await,
        ResizePool(p) => pools::resize(app, ctx, &p).await,
        StopResizePool(p) => pools::stop_resize(app, ctx, &p).await,
        RemoveNodes(p) => pools::remove_nodes(app, ctx, &p).await,
        PoolAutoscale(p) => pools::autoscale(app, ctx, &p).await,
        NodeCounts => pools::node_counts(app, ctx).await,
        SupportedImages => pools::supported_images(app, ctx).await,
        NodeAgentSkus => pools::node_agent_skus(app, ctx).await,
        UpgradePoolOs(p) => pools::upgrade_os(app, &p).await,
        PoolUsageMetrics => usage::list(app, ctx).await,
        LifetimeJobStats => lifetime::jobs(app, ctx).await,
        LifetimePoolStats => lifetime::pools(app, ctx).await,
        ListNodes(p) => pools::list_nodes(app, ctx, &p).await,
        GetNode(p, n) => pools::get_node(app, ctx, &p, &n).await,
        RebootNode(p, n) => pools::restart_node(app, ctx, &p, &n, false).await,
        ReimageNode(p, n) => pools::restart_node(app, ctx, &p, &n, true).await,
        DisableScheduling(p, n) => pools::scheduling(app, ctx, &p, &n, false).await,
        EnableScheduling(p, n) => pools::scheduling(app, ctx, &p, &n, true).await,
        ListNodeFiles(p, n) => files::list(app, ctx, files::node_location(app, ctx, &p, &n).await?).await,
        GetNodeFile(p, n, f) => files::get(app, ctx, files::node_location(app, ctx, &p, &n).await?, &f).await,
        NodeFileProperties(p, n, f) => files::properties(app, ctx, files::node_location(app, ctx, &p, &n).await?, &f).await,
        DeleteNodeFile(p, n, f) => files::delete(app, ctx, files::node_location(app, ctx, &p, &n).await?, &f).await,
        RemoteLoginSettings(p, n) => pools::remote_login_settings(app, ctx, &p, &n).await,
        StartNode(p, n) => pools::start_node(app, ctx, &p, &n).await,
        DeallocateNode(p, n) => pools::deallocate_node(app, ctx, &p, &n).await,
        ListNodeExtensions(p, n) => pools::list_node_extensions(app, ctx, &p, &n).await,
        GetNodeExtension(p, n, e) => pools::get_node_extension(app, ctx, &p, &n, &e).await,
        AddNodeUser(p, n) => nodeops::add_user(app, ctx, &p, &n).await,
        UpdateNodeUser(p, n, u) => nodeops::update_user(app, ctx, &p, &n, &u).await,
        DeleteNodeUser(p, n, u) => nodeops::delete_user(app, &p, &n, &u).await,
        UploadNodeLogs(p, n) => nodeops::upload_logs(app, ctx, &p, &n).await,
        NodeLoad(p) => pools::node_load(app, &p).await,
        PreemptNode(p, n) => pools::preempt_node(app, ctx, &p, &n).await,
        RecoverNode(p, n) => pools::recover_node(app, ctx, &p, &n).await,
        NotImplemented(what) => {
            Err(Error::msg(ErrorCode::NotImplemented, format!("openbatch does not implement {what} yet; see COMPATIBILITY.md.")))
        }
    }
}
