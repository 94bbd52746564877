//! Request targets parsed into one typed [`Operation`] per REST operation.
//!
//! Routing works on the raw path: each segment is percent-decoded on its own,
//! so an id containing an encoded `/` stays one segment, and a file path is
//! "everything after `/files/`", decoded, with `/` or `\` separators.

use axum::http::Method;
use percent_encoding::percent_decode_str;
use wire::versions::ApiVersion;
use wire::{Error, ErrorCode};

/// Every operation openbatch routes. Variants carry their path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    ListJobs,
    CreateJob,
    GetJob(String),
    PatchJob(String),
    ReplaceJob(String),
    DeleteJob(String),
    DisableJob(String),
    EnableJob(String),
    TerminateJob(String),
    JobTaskCounts(String),
    JobPrepReleaseStatus(String),
    ListTasks(String),
    AddTask(String),
    AddTaskCollection(String),
    GetTask(String, String),
    UpdateTask(String, String),
    DeleteTask(String, String),
    TerminateTask(String, String),
    ReactivateTask(String, String),
    ListSubtasks(String, String),
    ListTaskFiles(String, String),
    GetTaskFile(String, String, String),
    TaskFileProperties(String, String, String),
    DeleteTaskFile(String, String, String),
    ListPools,
    CreatePool,
    GetPool(String),
    PoolExists(String),
    PatchPool(String),
    DeletePool(String),
    UpdatePoolProperties(String),
    ResizePool(String),
    StopResizePool(String),
    RemoveNodes(String),
    PoolAutoscale(String),
    NodeCounts,
    SupportedImages,
    /// `GET /nodeagentskus` (api-versions up to 2018-12-01.8.0; `supportedimages` since).
    NodeAgentSkus,
    /// `GET /lifetimejobstats` (api-versions up to 2022-10-01.16.0).
    LifetimeJobStats,
    /// `GET /lifetimepoolstats` (api-versions up to 2022-10-01.16.0).
    LifetimePoolStats,
    /// `POST /pools/{id}/upgradeos` (Cloud Services pools, api-version 2018-08-01.7.0 only).
    UpgradePoolOs(String),
    /// `GET /poolusagemetrics`.
    PoolUsageMetrics,
    ListNodes(String),
    GetNode(String, String),
    RebootNode(String, String),
    ReimageNode(String, String),
    DisableScheduling(String, String),
    EnableScheduling(String, String),
    ListNodeFiles(String, String),
    GetNodeFile(String, String, String),
    NodeFileProperties(String, String, String),
    DeleteNodeFile(String, String, String),
    RemoteLoginSettings(String, String),
    /// `POST …/nodes/{n}/start` (api-version 2024-07-01.20.0 on).
    StartNode(String, String),
    /// `POST …/nodes/{n}/deallocate` (api-version 2024-07-01.20.0 on).
    DeallocateNode(String, String),
    ListNodeExtensions(String, String),
    GetNodeExtension(String, String, String),
    AddNodeUser(String, String),
    UpdateNodeUser(String, String, String),
    DeleteNodeUser(String, String, String),
    UploadNodeLogs(String, String),
    /// openbatch's own (not a Batch operation): each node's CPU and memory,
    /// for the dashboard.
    NodeLoad(String),
    /// openbatch's own: preempt a low-priority node (`POST
    /// /openbatch/pools/{p}/nodes/{n}/preempt`), or bring a preempted one
    /// back (`.../recover`).
    PreemptNode(String, String),
    RecoverNode(String, String),
    ListSchedules,
    CreateSchedule,
    GetSchedule(String),
    ScheduleExists(String),
    PatchSchedule(String),
    ReplaceSchedule(String),
    DeleteSchedule(String),
    DisableSchedule(String),
    EnableSchedule(String),
    TerminateSchedule(String),
    ListScheduleJobs(String),
    ListApplications,
    GetApplication(String),
    /// Certificates (api-versions up to 2024-07-01.20.0), by thumbprint
    /// (the algorithm is always sha1).
    ListCertificates,
    AddCertificate,
    GetCertificate(String),
    DeleteCertificate(String),
    CancelCertificateDeletion(String),
    /// A Batch operation openbatch does not implement yet; the name is used in the error.
    NotImplemented(&'static str),
}

impl Operation {
    /// The job an operation is on (what a task authentication token may reach).
    pub fn job(&self) -> Option<&str> {
        use Operation::*;
        match self {
            GetJob(j)
            | PatchJob(j)
            | ReplaceJob(j)
            | DeleteJob(j)
            | DisableJob(j)
            | EnableJob(j)
            | TerminateJob(j)
            | JobTaskCounts(j)
            | JobPrepReleaseStatus(j)
            | ListTasks(j)
            | AddTask(j)
            | AddTaskCollection(j) => Some(j),
            GetTask(j, _)
            | UpdateTask(j, _)
            | DeleteTask(j, _)
            | TerminateTask(j, _)
            | ReactivateTask(j, _)
            | ListSubtasks(j, _)
            | ListTaskFiles(j, _) => Some(j),
            GetTaskFile(j, _, _) | TaskFileProperties(j, _, _) | DeleteTaskFile(j, _, _) => Some(j),
            _ => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        use Operation::*;
        match self {
            ListJobs => "ListJobs",
            CreateJob => "CreateJob",
            GetJob(_) => "GetJob",
            PatchJob(_) => "PatchJob",
            ReplaceJob(_) => "ReplaceJob",
            DeleteJob(_) => "DeleteJob",
            DisableJob(_) => "DisableJob",
            EnableJob(_) => "EnableJob",
            TerminateJob(_) => "TerminateJob",
            JobTaskCounts(_) => "JobTaskCounts",
            JobPrepReleaseStatus(_) => "JobPrepReleaseStatus",
            ListTasks(_) => "ListTasks",
            AddTask(_) => "AddTask",
            AddTaskCollection(_) => "AddTaskCollection",
            GetTask(..) => "GetTask",
            UpdateTask(..) => "UpdateTask",
            DeleteTask(..) => "DeleteTask",
            TerminateTask(..) => "TerminateTask",
            ReactivateTask(..) => "ReactivateTask",
            ListSubtasks(..) => "ListSubtasks",
            ListTaskFiles(..) => "ListTaskFiles",
            GetTaskFile(..) => "GetTaskFile",
            TaskFileProperties(..) => "TaskFileProperties",
            DeleteTaskFile(..) => "DeleteTaskFile",
            ListPools => "ListPools",
            CreatePool => "CreatePool",
            GetPool(_) => "GetPool",
            PoolExists(_) => "PoolExists",
            ListSchedules => "ListJobSchedules",
            CreateSchedule => "CreateJobSchedule",
            GetSchedule(_) => "GetJobSchedule",
            ScheduleExists(_) => "JobScheduleExists",
            PatchSchedule(_) => "PatchJobSchedule",
            ReplaceSchedule(_) => "ReplaceJobSchedule",
            DeleteSchedule(_) => "DeleteJobSchedule",
            DisableSchedule(_) => "DisableJobSchedule",
            EnableSchedule(_) => "EnableJobSchedule",
            TerminateSchedule(_) => "TerminateJobSchedule",
            ListScheduleJobs(_) => "ListJobsFromSchedule",
            ListApplications => "ListApplications",
            GetApplication(_) => "GetApplication",
            ListCertificates => "ListCertificates",
            AddCertificate => "AddCertificate",
            GetCertificate(_) => "GetCertificate",
            DeleteCertificate(_) => "DeleteCertificate",
            CancelCertificateDeletion(_) => "CancelCertificateDeletion",
            PatchPool(_) => "PatchPool",
            DeletePool(_) => "DeletePool",
            UpdatePoolProperties(_) => "UpdatePoolProperties",
            ResizePool(_) => "ResizePool",
            StopResizePool(_) => "StopResizePool",
            RemoveNodes(_) => "RemoveNodes",
            PoolAutoscale(_) => "PoolAutoscale",
            NodeCounts => "NodeCounts",
            SupportedImages => "SupportedImages",
            NodeAgentSkus => "ListNodeAgentSkus",
            LifetimeJobStats => "GetAllJobLifetimeStatistics",
            LifetimePoolStats => "GetAllPoolLifetimeStatistics",
            UpgradePoolOs(_) => "UpgradePoolOS",
            PoolUsageMetrics => "ListPoolUsageMetrics",
            ListNodes(_) => "ListNodes",
            GetNode(..) => "GetNode",
            RebootNode(..) => "RebootNode",
            ReimageNode(..) => "ReimageNode",
            DisableScheduling(..) => "DisableScheduling",
            EnableScheduling(..) => "EnableScheduling",
            ListNodeFiles(..) => "ListNodeFiles",
            GetNodeFile(..) => "GetNodeFile",
            NodeFileProperties(..) => "NodeFileProperties",
            DeleteNodeFile(..) => "DeleteNodeFile",
            RemoteLoginSettings(..) => "GetRemoteLoginSettings",
            StartNode(..) => "StartNode",
            DeallocateNode(..) => "DeallocateNode",
            ListNodeExtensions(..) => "ListNodeExtensions",
            GetNodeExtension(..) => "GetNodeExtension",
            AddNodeUser(..) => "AddNodeUser",
            UpdateNodeUser(..) => "UpdateNodeUser",
            DeleteNodeUser(..) => "DeleteNodeUser",
            UploadNodeLogs(..) => "UploadBatchServiceLogs",
            NodeLoad(_) => "OpenbatchNodeLoad",
            PreemptNode(..) => "OpenbatchPreemptNode",
            RecoverNode(..) => "OpenbatchRecoverNode",
            NotImplemented(n) => n,
        }
    }
}

fn decode(seg: &str) -> Result<String, Error> {
    percent_decode_str(seg).decode_utf8().map(|s| s.into_owned()).map_err(|_| Error::new(ErrorCode::RequestUrlFailedToParse))
}

fn verb_error() -> Error {
    Error::new(ErrorCode::UnsupportedHttpVerb)
}

/// Maps a method and raw path (no query) to an operation.
pub fn route(method: &Method, raw_path: &str) -> Result<Operation, Error> {
    use Operation::*;
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let path = path.strip_suffix('/').unwrap_or(path);
    // Task and node files: everything after a fifth segment `files` is one
    // path parameter (an id may itself be `files`). openbatch's own routes
    // have no files.
    let (head, file) = match path.match_indices('/').nth(4) {
        Some((i, _)) if path[..i].ends_with("/files") && !path.starts_with("openbatch/") => (&path[..i], Some(&path[i + 1..])),
        _ => (path, None),
    };
    let segs: Vec<&str> = if head.is_empty() { Vec::new() } else { head.split('/').collect() };
    let m = method;
    let is = |x: &Method| m == x;
    let s: Vec<String> = segs.iter().map(|s| decode(s)).collect::<Result<_, _>>()?;
    let sv: Vec<&str> = s.iter().map(String::as_str).collect();
    let file = file.map(decode).transpose()?;
    // A file path names something below the task's or node's directory: an
    // empty one (`files//`, `files/%2F`) would name the directory itself.
    if file.as_deref().is_some_and(|f| f.trim_matches(['/', '\\']).is_empty()) {
        return Err(Error::new(ErrorCode::InvalidUri).with("Reason", "The file path is empty."));
    }
    let op = match (sv.as_slice(), file) {
        (["applications"], None) => get_only(m, ListApplications)?,
        (["applications", a], None) => get_only(m, GetApplication(a.to_string()))?,
        (["certificates"], None) => match () {
            _ if is(&Method::GET) => ListCertificates,
            _ if is(&Method::POST) => AddCertificate,
            _ => return Err(verb_error()),
        },
        ([c], None) if c.starts_with("certificates(") => {
            let tp = certificate_key(c)?;
            match () {
                _ if is(&Method::GET) => GetCertificate(tp),
                _ if is(&Method::DELETE) => DeleteCertificate(tp),
                _ => return Err(verb_error()),
            }
        }
        ([c, "canceldelete"], None) if c.starts_with("certificates(") => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            CancelCertificateDeletion(certificate_key(c)?)
        }
        (["jobschedules"], None) => match () {
            _ if is(&Method::GET) => ListSchedules,
            _ if is(&Method::POST) => CreateSchedule,
            _ => return Err(verb_error()),
        },
        (["jobschedules", js], None) => {
            let js = js.to_string();
            match () {
                _ if is(&Method::GET) => GetSchedule(js),
                _ if is(&Method::HEAD) => ScheduleExists(js),
                _ if is(&Method::PATCH) => PatchSchedule(js),
                _ if is(&Method::PUT) => ReplaceSchedule(js),
                _ if is(&Method::DELETE) => DeleteSchedule(js),
                _ => return Err(verb_error()),
            }
        }
        (["jobschedules", js, action], None) if ["disable", "enable", "terminate"].contains(action) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            match *action {
                "disable" => DisableSchedule(js.to_string()),
                "enable" => EnableSchedule(js.to_string()),
                _ => TerminateSchedule(js.to_string()),
            }
        }
        (["jobschedules", js, "jobs"], None) => get_only(m, ListScheduleJobs(js.to_string()))?,
        (["jobs"], None) => match () {
            _ if is(&Method::GET) => ListJobs,
            _ if is(&Method::POST) => CreateJob,
            _ => return Err(verb_error()),
        },
        (["jobs", j], None) => match () {
            _ if is(&Method::GET) => GetJob(j.to_string()),
            _ if is(&Method::PATCH) => PatchJob(j.to_string()),
            _ if is(&Method::PUT) => ReplaceJob(j.to_string()),
            _ if is(&Method::DELETE) => DeleteJob(j.to_string()),
            _ => return Err(verb_error()),
        },
        (["jobs", j, action], None) if ["disable", "enable", "terminate"].contains(action) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            match *action {
                "disable" => DisableJob(j.to_string()),
                "enable" => EnableJob(j.to_string()),
                _ => TerminateJob(j.to_string()),
            }
        }
        (["jobs", j, "taskcounts"], None) => get_only(m, JobTaskCounts(j.to_string()))?,
        (["jobs", j, "jobpreparationandreleasetaskstatus"], None) => get_only(m, JobPrepReleaseStatus(j.to_string()))?,
        (["jobs", j, "tasks"], None) => match () {
            _ if is(&Method::GET) => ListTasks(j.to_string()),
            _ if is(&Method::POST) => AddTask(j.to_string()),
            _ => return Err(verb_error()),
        },
        (["jobs", j, "addtaskcollection"], None) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            AddTaskCollection(j.to_string())
        }
        (["jobs", j, "tasks", t], None) => {
            let (j, t) = (j.to_string(), t.to_string());
            match () {
                _ if is(&Method::GET) => GetTask(j, t),
                _ if is(&Method::PUT) => UpdateTask(j, t),
                _ if is(&Method::DELETE) => DeleteTask(j, t),
                _ => return Err(verb_error()),
            }
        }
        (["jobs", j, "tasks", t, action], None) if ["terminate", "reactivate"].contains(action) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            if *action == "terminate" {
                TerminateTask(j.to_string(), t.to_string())
            } else {
                ReactivateTask(j.to_string(), t.to_string())
            }
        }
        (["jobs", j, "tasks", t, "subtasksinfo"], None) => get_only(m, ListSubtasks(j.to_string(), t.to_string()))?,
        (["jobs", j, "tasks", t, "files"], None) => get_only(m, ListTaskFiles(j.to_string(), t.to_string()))?,
        (["jobs", j, "tasks", t, "files"], Some(f)) => {
            let f = f.replace('\\', "/");
            let (j, t) = (j.to_string(), t.to_string());
            match () {
                _ if is(&Method::GET) => GetTaskFile(j, t, f),
                _ if is(&Method::HEAD) => TaskFileProperties(j, t, f),
                _ if is(&Method::DELETE) => DeleteTaskFile(j, t, f),
                _ => return Err(verb_error()),
            }
        }
        (["pools"], None) => match () {
            _ if is(&Method::GET) => ListPools,
            _ if is(&Method::POST) => CreatePool,
            _ => return Err(verb_error()),
        },
        (["pools", p], None) => {
            let p = p.to_string();
            match () {
                _ if is(&Method::GET) => GetPool(p),
                _ if is(&Method::HEAD) => PoolExists(p),
                _ if is(&Method::PATCH) => PatchPool(p),
                _ if is(&Method::DELETE) => DeletePool(p),
                _ => return Err(verb_error()),
            }
        }
        (["pools", p, action], None)
            if ["updateproperties", "resize", "stopresize", "removenodes", "enableautoscale", "disableautoscale", "evaluateautoscale"]
                .contains(action) =>
        {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            let p = p.to_string();
            match *action {
                "updateproperties" => UpdatePoolProperties(p),
                "resize" => ResizePool(p),
                "stopresize" => StopResizePool(p),
                "removenodes" => RemoveNodes(p),
                _ => PoolAutoscale(p),
            }
        }
        (["nodecounts"], None) => get_only(m, NodeCounts)?,
        (["supportedimages"], None) => get_only(m, SupportedImages)?,
        (["nodeagentskus"], None) => get_only(m, NodeAgentSkus)?,
        (["lifetimejobstats"], None) => get_only(m, LifetimeJobStats)?,
        (["lifetimepoolstats"], None) => get_only(m, LifetimePoolStats)?,
        (["poolusagemetrics"], None) => get_only(m, PoolUsageMetrics)?,
        (["pools", p, "upgradeos"], None) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            UpgradePoolOs(p.to_string())
        }
        (["pools", p, "nodes"], None) => get_only(m, ListNodes(p.to_string()))?,
        (["pools", p, "nodes", n], None) => get_only(m, GetNode(p.to_string(), n.to_string()))?,
        (["pools", p, "nodes", n, action], None)
            if ["reboot", "reimage", "disablescheduling", "enablescheduling", "start", "deallocate"].contains(action) =>
        {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            let (p, n) = (p.to_string(), n.to_string());
            match *action {
                "reboot" => RebootNode(p, n),
                "reimage" => ReimageNode(p, n),
                "disablescheduling" => DisableScheduling(p, n),
                "start" => StartNode(p, n),
                "deallocate" => DeallocateNode(p, n),
                _ => EnableScheduling(p, n),
            }
        }
        (["pools", p, "nodes", n, "extensions"], None) => get_only(m, ListNodeExtensions(p.to_string(), n.to_string()))?,
        (["pools", p, "nodes", n, "extensions", e], None) => get_only(m, GetNodeExtension(p.to_string(), n.to_string(), e.to_string()))?,
        (["openbatch", "pools", p, "nodeload"], None) => get_only(m, NodeLoad(p.to_string()))?,
        (["openbatch", "pools", p, "nodes", n, action], None) if ["preempt", "recover"].contains(action) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            let (p, n) = (p.to_string(), n.to_string());
            if *action == "preempt" {
                PreemptNode(p, n)
            } else {
                RecoverNode(p, n)
            }
        }
        (["pools", p, "nodes", n, "remoteloginsettings"], None) => get_only(m, RemoteLoginSettings(p.to_string(), n.to_string()))?,
        (["pools", p, "nodes", n, "files"], None) => get_only(m, ListNodeFiles(p.to_string(), n.to_string()))?,
        (["pools", p, "nodes", n, "users"], None) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            AddNodeUser(p.to_string(), n.to_string())
        }
        (["pools", p, "nodes", n, "users", u], None) => {
            let (p, n, u) = (p.to_string(), n.to_string(), u.to_string());
            match () {
                _ if is(&Method::PUT) => UpdateNodeUser(p, n, u),
                _ if is(&Method::DELETE) => DeleteNodeUser(p, n, u),
                _ => return Err(verb_error()),
            }
        }
        (["pools", p, "nodes", n, "uploadbatchservicelogs"], None) => {
            if !is(&Method::POST) {
                return Err(verb_error());
            }
            UploadNodeLogs(p.to_string(), n.to_string())
        }
        (["pools", p, "nodes", n, "files"], Some(f)) => {
            let f = f.replace('\\', "/");
            let (p, n) = (p.to_string(), n.to_string());
            match () {
                _ if is(&Method::GET) => GetNodeFile(p, n, f),
                _ if is(&Method::HEAD) => NodeFileProperties(p, n, f),
                _ if is(&Method::DELETE) => DeleteNodeFile(p, n, f),
                _ => return Err(verb_error()),
            }
        }
        (segs, _) => not_implemented(segs).ok_or_else(|| Error::new(ErrorCode::InvalidUri))?,
    };
    Ok(op)
}

/// Whether `op` is an operation of api-version `v` (each version's REST
/// specification lists its own): 400 `InvalidUri` naming the versions that
/// have it, if not.
pub fn check_version(op: &Operation, v: ApiVersion) -> Result<(), Error> {
    use ApiVersion::*;
    use Operation::*;
    let (since, until) = match op {
        SupportedImages => (V2019_06_01, ApiVersion::LATEST),
        NodeAgentSkus => (V2018_08_01, V2018_12_01),
        LifetimeJobStats | LifetimePoolStats => (V2018_08_01, V2022_10_01),
        StartNode(..) | DeallocateNode(..) => (V2024_07_01, ApiVersion::LATEST),
        UpgradePoolOs(_) => (V2018_08_01, V2018_08_01),
        ListCertificates | AddCertificate | GetCertificate(_) | DeleteCertificate(_) | CancelCertificateDeletion(_) => {
            (V2018_08_01, V2024_07_01)
        }
        _ => return Ok(()),
    };
    if v >= since && v <= until {
        return Ok(());
    }
    let which = if until == ApiVersion::LATEST {
        format!("api-version {} and later", since.as_str())
    } else if since == until {
        format!("api-version {} only", since.as_str())
    } else {
        format!("api-versions up to {}", until.as_str())
    };
    Err(Error::new(ErrorCode::InvalidUri)
        .with("Reason", format!("{} is not an operation of api-version {}; it is one of {which}.", op.name(), v.as_str())))
}

/// The thumbprint a `certificates(thumbprintAlgorithm=sha1,thumbprint=…)`
/// segment (decoded) names; the two keys in either order, values bare or
/// quoted. Any algorithm but sha1 is refused (the only one the service has).
fn certificate_key(seg: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::new(ErrorCode::InvalidUri).with("Reason", why.to_string());
    let form = "A certificate is addressed as certificates(thumbprintAlgorithm=sha1,thumbprint={thumbprint}).";
    let inner = seg.strip_prefix("certificates(").and_then(|s| s.strip_suffix(')')).ok_or_else(|| bad(form))?;
    let (mut alg, mut tp) = (None, None);
    for part in inner.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| bad(form))?;
        let v = v.trim().trim_matches('\'');
        match k.trim() {
            k if k.eq_ignore_ascii_case("thumbprintAlgorithm") => alg = Some(v),
            k if k.eq_ignore_ascii_case("Thumbprint") => tp = Some(v),
            _ => return Err(bad(form)),
        }
    }
    match (alg, tp) {
        (Some(a), Some(t)) if a.eq_ignore_ascii_case("sha1") && !t.is_empty() => Ok(t.to_string()),
        (Some(_), Some(t)) if !t.is_empty() => Err(bad("The thumbprint algorithm must be sha1.")),
        _ => Err(bad(form)),
    }
}

fn get_only(m: &Method, op: Operation) -> Result<Operation, Error> {
    if m == Method::GET {
        Ok(op)
    } else {
        Err(verb_error())
    }
}

/// Resources of the Batch API that later work will add; until then they
/// answer 501 `NotImplemented` rather than "no such resource".
fn not_implemented(segs: &[&str]) -> Option<Operation> {
    let first = *segs.first()?;
    let name = match first {
        "pools" => "this compute node operation",
        _ => return None,
    };
    Some(Operation::NotImplemented(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/jobs").unwrap(), Operation::ListJobs);
        assert_eq!(route(&Method::GET, "/jobs/a%20b%2Fc").unwrap(), Operation::GetJob("a b/c".into()));
        assert_eq!(
            route(&Method::HEAD, "/jobs/j/tasks/t/files/wd%2Fout%20put.txt").unwrap(),
            Operation::TaskFileProperties("j".into(), "t".into(), "wd/out put.txt".into())
        );
        assert_eq!(
            route(&Method::GET, "/jobs/j/tasks/t/files/wd\\x.txt").unwrap(),
            Operation::GetTaskFile("j".into(), "t".into(), "wd/x.txt".into())
        );
        assert_eq!(route(&Method::POST, "/jobs/j/tasks/t/terminate").unwrap(), Operation::TerminateTask("j".into(), "t".into()));
        assert_eq!(route(&Method::DELETE, "/jobs/j/terminate").unwrap_err().code, ErrorCode::UnsupportedHttpVerb);
        assert_eq!(route(&Method::GET, "/nothing/here").unwrap_err().code, ErrorCode::InvalidUri);
        assert_eq!(route(&Method::GET, "/pools").unwrap(), Operation::ListPools);
        assert_eq!(route(&Method::HEAD, "/pools/p").unwrap(), Operation::PoolExists("p".into()));
        assert_eq!(
            route(&Method::GET, "/pools/p/nodes/n/files/startup%2Fstdout.txt").unwrap(),
            Operation::GetNodeFile("p".into(), "n".into(), "startup/stdout.txt".into())
        );
        assert_eq!(route(&Method::POST, "/pools/p/nodes/n/users").unwrap(), Operation::AddNodeUser("p".into(), "n".into()));
        assert_eq!(
            route(&Method::DELETE, "/pools/p/nodes/n/users/u%2Dx").unwrap(),
            Operation::DeleteNodeUser("p".into(), "n".into(), "u-x".into())
        );
        assert_eq!(route(&Method::GET, "/pools/p/nodes/n/users/u").unwrap_err().code, ErrorCode::UnsupportedHttpVerb);
        assert!(matches!(route(&Method::GET, "/pools/p/nodes/n/rdp").unwrap(), Operation::NotImplemented(_)));
        assert_eq!(route(&Method::GET, "/jobschedules").unwrap(), Operation::ListSchedules);
        // Certificates: the keys in either order, quoted or not, percent-encoded or not.
        for p in [
            "/certificates(thumbprintAlgorithm=sha1,thumbprint=AB12)",
            "/certificates(thumbprint='AB12',thumbprintAlgorithm='SHA1')",
            "/certificates(thumbprintAlgorithm%3Dsha1%2Cthumbprint%3DAB12)",
        ] {
            assert_eq!(route(&Method::GET, p).unwrap(), Operation::GetCertificate("AB12".into()), "{p}");
        }
        assert_eq!(
            route(&Method::POST, "/certificates(thumbprintAlgorithm=sha1,thumbprint=ab)/canceldelete").unwrap(),
            Operation::CancelCertificateDeletion("ab".into())
        );
        for p in
            ["/certificates(thumbprintAlgorithm=md5,thumbprint=ab)", "/certificates(thumbprint=ab)", "/certificates(x=1,thumbprint=ab)"]
        {
            assert_eq!(route(&Method::GET, p).unwrap_err().code, ErrorCode::InvalidUri, "{p}");
        }
        assert_eq!(route(&Method::PUT, "/certificates").unwrap_err().code, ErrorCode::UnsupportedHttpVerb);
        assert_eq!(route(&Method::HEAD, "/jobschedules/s").unwrap(), Operation::ScheduleExists("s".into()));
        assert_eq!(route(&Method::GET, "/jobschedules/s/jobs").unwrap(), Operation::ListScheduleJobs("s".into()));
        assert_eq!(route(&Method::GET, "/jobs/%FF").unwrap_err().code, ErrorCode::RequestUrlFailedToParse);
        // Ids that are the router's own words (found by the `route` fuzz target).
        assert_eq!(route(&Method::GET, "/jobs/files/tasks").unwrap(), Operation::ListTasks("files".into()));
        assert_eq!(route(&Method::GET, "/jobschedules/files/jobs").unwrap(), Operation::ListScheduleJobs("files".into()));
        assert_eq!(
            route(&Method::GET, "/jobs/files/tasks/files/files/files/x").unwrap(),
            Operation::GetTaskFile("files".into(), "files".into(), "files/x".into())
        );
        assert_eq!(
            route(&Method::DELETE, "/pools/files/nodes/files/files/a").unwrap(),
            Operation::DeleteNodeFile("files".into(), "files".into(), "a".into())
        );
        assert_eq!(route(&Method::GET, "/jobs/j/tasks/t/xfiles/y").unwrap_err().code, ErrorCode::InvalidUri);
        // An empty file path would name the task's (or node's) directory itself.
        for p in ["/jobs/j/tasks/t/files//", "/jobs/j/tasks/t/files/%2F", "/jobs/j/tasks/t/files/%5C", "/pools/p/nodes/n/files//"] {
            assert_eq!(route(&Method::DELETE, p).unwrap_err().code, ErrorCode::InvalidUri, "{p}");
        }
    }

    /// Every route, as (method, path template, the operation for ids).
    /// `{j}`, `{t}`, `{p}`, `{n}`, `{s}`, `{a}` are ids; `{f}` a file path.
    type Build = fn(&[String]) -> Operation;
    fn table() -> Vec<(Method, &'static str, Build)> {
        use Operation::*;
        let (g, h, po, pu, pa, d) = (Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE);
        let v = |a: &[String], i: usize| a[i].clone();
        let _ = v;
        vec![
            (g.clone(), "applications", |_| ListApplications),
            (g.clone(), "applications/{a}", |a| GetApplication(a[0].clone())),
            (g.clone(), "certificates", |_| ListCertificates),
            (po.clone(), "certificates", |_| AddCertificate),
            (g.clone(), "certificates(thumbprintAlgorithm=sha1,thumbprint=ab12)", |_| GetCertificate("ab12".into())),
            (d.clone(), "certificates(thumbprintAlgorithm=sha1,thumbprint=ab12)", |_| DeleteCertificate("ab12".into())),
            (po.clone(), "certificates(thumbprintAlgorithm=sha1,thumbprint=ab12)/canceldelete", |_| {
                CancelCertificateDeletion("ab12".into())
            }),
            (g.clone(), "jobschedules", |_| ListSchedules),
            (po.clone(), "jobschedules", |_| CreateSchedule),
            (g.clone(), "jobschedules/{s}", |a| GetSchedule(a[0].clone())),
            (h.clone(), "jobschedules/{s}", |a| ScheduleExists(a[0].clone())),
            (pa.clone(), "jobschedules/{s}", |a| PatchSchedule(a[0].clone())),
            (pu.clone(), "jobschedules/{s}", |a| ReplaceSchedule(a[0].clone())),
            (d.clone(), "jobschedules/{s}", |a| DeleteSchedule(a[0].clone())),
            (po.clone(), "jobschedules/{s}/disable", |a| DisableSchedule(a[0].clone())),
            (po.clone(), "jobschedules/{s}/enable", |a| EnableSchedule(a[0].clone())),
            (po.clone(), "jobschedules/{s}/terminate", |a| TerminateSchedule(a[0].clone())),
            (g.clone(), "jobschedules/{s}/jobs", |a| ListScheduleJobs(a[0].clone())),
            (g.clone(), "jobs", |_| ListJobs),
            (po.clone(), "jobs", |_| CreateJob),
            (g.clone(), "jobs/{j}", |a| GetJob(a[0].clone())),
            (pa.clone(), "jobs/{j}", |a| PatchJob(a[0].clone())),
            (pu.clone(), "jobs/{j}", |a| ReplaceJob(a[0].clone())),
            (d.clone(), "jobs/{j}", |a| DeleteJob(a[0].clone())),
            (po.clone(), "jobs/{j}/disable", |a| DisableJob(a[0].clone())),
            (po.clone(), "jobs/{j}/enable", |a| EnableJob(a[0].clone())),
            (po.clone(), "jobs/{j}/terminate", |a| TerminateJob(a[0].clone())),
            (g.clone(), "jobs/{j}/taskcounts", |a| JobTaskCounts(a[0].clone())),
            (g.clone(), "jobs/{j}/jobpreparationandreleasetaskstatus", |a| JobPrepReleaseStatus(a[0].clone())),
            (g.clone(), "jobs/{j}/tasks", |a| ListTasks(a[0].clone())),
            (po.clone(), "jobs/{j}/tasks", |a| AddTask(a[0].clone())),
            (po.clone(), "jobs/{j}/addtaskcollection", |a| AddTaskCollection(a[0].clone())),
            (g.clone(), "jobs/{j}/tasks/{t}", |a| GetTask(a[0].clone(), a[1].clone())),
            (pu.clone(), "jobs/{j}/tasks/{t}", |a| UpdateTask(a[0].clone(), a[1].clone())),
            (d.clone(), "jobs/{j}/tasks/{t}", |a| DeleteTask(a[0].clone(), a[1].clone())),
            (po.clone(), "jobs/{j}/tasks/{t}/terminate", |a| TerminateTask(a[0].clone(), a[1].clone())),
            (po.clone(), "jobs/{j}/tasks/{t}/reactivate", |a| ReactivateTask(a[0].clone(), a[1].clone())),
            (g.clone(), "jobs/{j}/tasks/{t}/subtasksinfo", |a| ListSubtasks(a[0].clone(), a[1].clone())),
            (g.clone(), "jobs/{j}/tasks/{t}/files", |a| ListTaskFiles(a[0].clone(), a[1].clone())),
            (g.clone(), "jobs/{j}/tasks/{t}/files/{f}", |a| GetTaskFile(a[0].clone(), a[1].clone(), a[2].clone())),
            (h.clone(), "jobs/{j}/tasks/{t}/files/{f}", |a| TaskFileProperties(a[0].clone(), a[1].clone(), a[2].clone())),
            (d.clone(), "jobs/{j}/tasks/{t}/files/{f}", |a| DeleteTaskFile(a[0].clone(), a[1].clone(), a[2].clone())),
            (g.clone(), "pools", |_| ListPools),
            (po.clone(), "pools", |_| CreatePool),
            (g.clone(), "pools/{p}", |a| GetPool(a[0].clone())),
            (h.clone(), "pools/{p}", |a| PoolExists(a[0].clone())),
            (pa.clone(), "pools/{p}", |a| PatchPool(a[0].clone())),
            (d.clone(), "pools/{p}", |a| DeletePool(a[0].clone())),
            (po.clone(), "pools/{p}/updateproperties", |a| UpdatePoolProperties(a[0].clone())),
            (po.clone(), "pools/{p}/resize", |a| ResizePool(a[0].clone())),
            (po.clone(), "pools/{p}/stopresize", |a| StopResizePool(a[0].clone())),
            (po.clone(), "pools/{p}/removenodes", |a| RemoveNodes(a[0].clone())),
            (po.clone(), "pools/{p}/enableautoscale", |a| PoolAutoscale(a[0].clone())),
            (po.clone(), "pools/{p}/disableautoscale", |a| PoolAutoscale(a[0].clone())),
            (po.clone(), "pools/{p}/evaluateautoscale", |a| PoolAutoscale(a[0].clone())),
            (g.clone(), "nodecounts", |_| NodeCounts),
            (g.clone(), "supportedimages", |_| SupportedImages),
            (g.clone(), "nodeagentskus", |_| NodeAgentSkus),
            (g.clone(), "lifetimejobstats", |_| LifetimeJobStats),
            (g.clone(), "lifetimepoolstats", |_| LifetimePoolStats),
            (g.clone(), "poolusagemetrics", |_| PoolUsageMetrics),
            (po.clone(), "pools/{p}/upgradeos", |a| UpgradePoolOs(a[0].clone())),
            (g.clone(), "pools/{p}/nodes", |a| ListNodes(a[0].clone())),
            (g.clone(), "pools/{p}/nodes/{n}", |a| GetNode(a[0].clone(), a[1].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/reboot", |a| RebootNode(a[0].clone(), a[1].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/reimage", |a| ReimageNode(a[0].clone(), a[1].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/disablescheduling", |a| DisableScheduling(a[0].clone(), a[1].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/enablescheduling", |a| EnableScheduling(a[0].clone(), a[1].clone())),
            (g.clone(), "pools/{p}/nodes/{n}/remoteloginsettings", |a| RemoteLoginSettings(a[0].clone(), a[1].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/start", |a| StartNode(a[0].clone(), a[1].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/deallocate", |a| DeallocateNode(a[0].clone(), a[1].clone())),
            (g.clone(), "pools/{p}/nodes/{n}/extensions", |a| ListNodeExtensions(a[0].clone(), a[1].clone())),
            (g.clone(), "pools/{p}/nodes/{n}/extensions/{e}", |a| GetNodeExtension(a[0].clone(), a[1].clone(), a[2].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/users", |a| AddNodeUser(a[0].clone(), a[1].clone())),
            (pu.clone(), "pools/{p}/nodes/{n}/users/{u}", |a| UpdateNodeUser(a[0].clone(), a[1].clone(), a[2].clone())),
            (d.clone(), "pools/{p}/nodes/{n}/users/{u}", |a| DeleteNodeUser(a[0].clone(), a[1].clone(), a[2].clone())),
            (po.clone(), "pools/{p}/nodes/{n}/uploadbatchservicelogs", |a| UploadNodeLogs(a[0].clone(), a[1].clone())),
            (g.clone(), "openbatch/pools/{p}/nodeload", |a| NodeLoad(a[0].clone())),
            (po.clone(), "openbatch/pools/{p}/nodes/{n}/preempt", |a| PreemptNode(a[0].clone(), a[1].clone())),
            (po.clone(), "openbatch/pools/{p}/nodes/{n}/recover", |a| RecoverNode(a[0].clone(), a[1].clone())),
            (g.clone(), "pools/{p}/nodes/{n}/files", |a| ListNodeFiles(a[0].clone(), a[1].clone())),
            (g.clone(), "pools/{p}/nodes/{n}/files/{f}", |a| GetNodeFile(a[0].clone(), a[1].clone(), a[2].clone())),
            (h.clone(), "pools/{p}/nodes/{n}/files/{f}", |a| NodeFileProperties(a[0].clone(), a[1].clone(), a[2].clone())),
            (d, "pools/{p}/nodes/{n}/files/{f}", |a| DeleteNodeFile(a[0].clone(), a[1].clone(), a[2].clone())),
        ]
    }

    /// The router's own words: every string literal in `route` and
    /// `not_implemented` that is a lower-case word (taken from this file's
    /// source, so a route added there without a line in `table` fails
    /// `every_word_of_the_router_is_in_the_table`).
    fn router_words() -> Vec<String> {
        let src = include_str!("route.rs");
        let start = src.find("pub fn route(").unwrap();
        let end = src.find("#[cfg(test)]").unwrap();
        let body = &src[start..end];
        let mut words: Vec<String> = body
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
            .map(str::to_string)
            .collect();
        // Operations the service has that answer 501 here.
        words.sort();
        words.dedup();
        words
    }

    #[test]
    fn every_word_of_the_router_is_in_the_table() {
        let table = table();
        let literal: std::collections::BTreeSet<&str> =
            table.iter().flat_map(|(_, t, _)| t.split('/')).filter(|s| !s.starts_with('{')).collect();
        let implemented: [&str; 0] = [];
        for w in router_words() {
            assert!(literal.contains(w.as_str()) || implemented.contains(&w.as_str()), "the router's word '{w}' has no route in the table");
        }
        assert!(router_words().len() > 30, "{:?}", router_words());
    }

    /// Each route's path with each of the router's words as each id (one
    /// at a time, and all at once) reaches the route's operation with those
    /// ids; file paths are the word, and `wd/{word}`.
    #[test]
    fn ids_that_are_route_words_route_by_position() {
        let words = router_words();
        let mut checked = 0;
        for (method, template, build) in table() {
            let holes: Vec<usize> = template.split('/').enumerate().filter(|(_, s)| s.starts_with('{')).map(|(i, _)| i).collect();
            let mut cases: Vec<Vec<String>> = Vec::new();
            for w in &words {
                for which in 0..=holes.len() {
                    // which == holes.len(): every id is the word.
                    let ids: Vec<String> =
                        (0..holes.len()).map(|k| if which == holes.len() || k == which { w.clone() } else { format!("id{k}") }).collect();
                    cases.push(ids.clone());
                    if template.ends_with("{f}") {
                        let mut nested = ids;
                        let last = nested.len() - 1;
                        nested[last] = format!("wd/{}", nested[last]);
                        cases.push(nested);
                    }
                }
            }
            for ids in cases {
                let mut k = 0;
                let path: Vec<String> = template
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') {
                            k += 1;
                            ids[k - 1].clone()
                        } else {
                            s.to_string()
                        }
                    })
                    .collect();
                let path = format!("/{}", path.join("/"));
                let got = route(&method, &path).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
                assert_eq!(got, build(&ids), "{method} {path}");
                checked += 1;
            }
        }
        assert!(checked > 5000, "{checked}");
    }
}
