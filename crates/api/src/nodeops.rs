//! Operations a node's agent carries out on the node itself: user accounts
//! (`POST .../users`, `PUT`/`DELETE .../users/{name}`) and uploading its
//! own log files (`POST .../uploadbatchservicelogs`). The request is
//! checked here, then sent to the agent (`Cluster::node_request`), whose
//! answer becomes the reply (see `agent::users`, `agent::logs`).

use crate::http::{encode_segment, Ctx, Reply};
use crate::paths::pool_path;
use crate::state::App;
use proto::{NodeOp, NodeReply};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use wire::enums::ComputeNodeState;
use wire::time::Timestamp;
use wire::validate::parse_body;
use wire::{Error, ErrorCode};

/// How long an account change may take on the node.
const USER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the upload of a node's logs may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// The expiry of an account when none is given (the service's default).
const DEFAULT_EXPIRY: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// `POST .../users` (`ComputeNodeUser`, 15.x `BatchNodeUserCreateOptions`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddUser {
    name: String,
    #[serde(default)]
    is_admin: Option<bool>,
    #[serde(default)]
    expiry_time: Option<Timestamp>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ssh_public_key: Option<String>,
}

/// `PUT .../users/{name}` (`NodeUpdateUserParameter`): what is absent is removed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateUser {
    #[serde(default)]
    expiry_time: Option<Timestamp>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ssh_public_key: Option<String>,
}

/// `POST .../uploadbatchservicelogs` (`UploadBatchServiceLogsConfiguration`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadLogs {
    container_url: String,
    start_time: Timestamp,
    #[serde(default)]
    end_time: Option<Timestamp>,
    #[serde(default)]
    identity_reference: Option<serde_json::Value>,
}

fn check_name(name: &str) -> Result<(), Error> {
    proto::check_user_name(name).map_err(|r| Error::invalid_property("name", r))
}

fn check_secrets(password: Option<&str>, key: Option<&str>) -> Result<(), Error> {
    if let Some(p) = password {
        proto::check_password(p).map_err(|r| Error::invalid_property("password", r))?;
    }
    if let Some(k) = key {
        proto::check_ssh_public_key(k).map_err(|r| Error::invalid_property("sshPublicKey", r))?;
    }
    Ok(())
}

/// The expiry in Unix milliseconds: the given time (which must be in the
/// future) or a day from now.
fn expiry(t: Option<Timestamp>) -> Result<i64, Error> {
    let now = chrono::Utc::now();
    match t {
        None => Ok((now + DEFAULT_EXPIRY).timestamp_millis()),
        Some(t) if t.0 > now => Ok(t.0.timestamp_millis()),
        Some(_) => Err(Error::invalid_property("expiryTime", "The expiry time must be in the future.")),
    }
}

/// The node, which must exist in the pool and be able to take the request
/// (idle or running: the service adds users to such nodes only).
async fn usable_node(app: &App, pool: &str, node: &str) -> Result<(), Error> {
    app.store.get_pool(pool).await?;
    let state = app.cluster.node(pool, node, |n| n.state).ok_or_else(|| Error::new(ErrorCode::NodeNotFound).with("NodeId", node))?;
    match state {
        ComputeNodeState::Idle | ComputeNodeState::Running => Ok(()),
        other => Err(Error::msg(
            ErrorCode::OperationNotValidOnNode,
            format!("The compute node is {}; user accounts and service logs need an idle or running node.", other.as_str()),
        )),
    }
}

/// The agent's answer as the client's reply (or error).
fn answer(r: NodeReply) -> Result<NodeReply, Error> {
    let Some(e) = r.error.clone() else { return Ok(r) };
    let code = match e.code.as_str() {
        "NodeUserExists" => ErrorCode::NodeUserExists,
        "NodeUserNotFound" => ErrorCode::NodeUserNotFound,
        "OperationNotValidOnNode" => ErrorCode::OperationNotValidOnNode,
        "InvalidPropertyValue" => {
            return Err(Error::invalid_property(e.property.as_deref().unwrap_or(""), e.message));
        }
        _ => ErrorCode::InternalError,
    };
    Err(Error::msg(code, e.message))
}

fn user_path(pool: &str, node: &str, name: &str) -> String {
    format!("{}/nodes/{}/users/{}", pool_path(pool), encode_segment(node), encode_segment(name))
}

pub async fn add_user(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    let body: AddUser = parse_body(&ctx.body)?;
    check_name(&body.name)?;
    check_secrets(body.password.as_deref(), body.ssh_public_key.as_deref())?;
    let expiry_ms = expiry(body.expiry_time)?;
    usable_node(app, pool, node).await?;
    let op = NodeOp::AddUser {
        name: body.name.clone(),
        admin: body.is_admin.unwrap_or(false),
        password: body.password,
        ssh_public_key: body.ssh_public_key,
        expiry_ms,
    };
    answer(app.cluster.node_request(node, op, USER_TIMEOUT).await?)?;
    let url = ctx.url(&user_path(pool, node, &body.name));
    Ok(Reply::status(201).header("dataserviceid", url.clone()).header("location", url))
}

pub async fn update_user(app: &App, ctx: &Ctx, pool: &str, node: &str, name: &str) -> Result<Reply, Error> {
    let body: UpdateUser = parse_body(&ctx.body)?;
    check_name(name)?;
    check_secrets(body.password.as_deref(), body.ssh_public_key.as_deref())?;
    let expiry_ms = expiry(body.expiry_time)?;
    usable_node(app, pool, node).await?;
    let op = NodeOp::UpdateUser { name: name.to_string(), password: body.password, ssh_public_key: body.ssh_public_key, expiry_ms };
    answer(app.cluster.node_request(node, op, USER_TIMEOUT).await?)?;
    Ok(Reply::status(200).header("dataserviceid", ctx.url(&user_path(pool, node, name))))
}

pub async fn delete_user(app: &App, pool: &str, node: &str, name: &str) -> Result<Reply, Error> {
    check_name(name)?;
    usable_node(app, pool, node).await?;
    answer(app.cluster.node_request(node, NodeOp::DeleteUser { name: name.to_string() }, USER_TIMEOUT).await?)?;
    Ok(Reply::status(200))
}

pub async fn upload_logs(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Reply, Error> {
    let body: UploadLogs = parse_body(&ctx.body)?;
    if body.identity_reference.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Error::new(ErrorCode::UnsupportedProperty)
            .with("PropertyName", "identityReference")
            .with("Reason", "Managed identities are not supported; give a container URL with a SAS that allows writing."));
    }
    let lower = body.container_url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://"))
        || body.container_url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid_property("containerUrl", "The container URL must be an http(s) URL with a SAS that allows writing."));
    }
    let end = body.end_time.map(|t| t.0).unwrap_or_else(chrono::Utc::now);
    if end < body.start_time.0 {
        return Err(Error::invalid_property("endTime", "The end time is before the start time."));
    }
    usable_node(app, pool, node).await?;
    // Unique per upload, as the service's: {pool}/{node}/{time}-{random}.
    let directory =
        format!("{pool}/{node}/{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let op = NodeOp::UploadLogs {
        container_url: body.container_url,
        directory: directory.clone(),
        start_ms: body.start_time.0.timestamp_millis(),
        end_ms: end.timestamp_millis(),
    };
    let r = answer(app.cluster.node_request(node, op, UPLOAD_TIMEOUT).await?)?;
    let body = json!({
        "odata.metadata": format!("{}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.UploadBatchServiceLogsResult", ctx.base_url),
        "virtualDirectoryName": directory,
        "numberOfFilesUploaded": r.files.unwrap_or(0),
    });
    Ok(Reply::json(200, body.to_string()))
}
