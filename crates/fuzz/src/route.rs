//! `route`: the request router, [`api::route::route`].
//!
//! The input is `METHOD raw-target` (no space: a GET of the whole input);
//! the query, as in the server, is cut off at the first `?` before routing.
//!
//! Checked:
//! * routing never panics, and fails only with the three routing errors, as a 4xx;
//! * an operation's ids are the percent-decoded segments of the path at
//!   their places, and a file path is the decoded rest after `files/`;
//! * the operation, written back as a path the way a client writes it
//!   (every id percent-encoded as one segment), routes to itself;
//! * and the same the other way: the input bytes also pick an operation and
//!   ids (via `arbitrary`), which must route to themselves from the path a
//!   client would send for them.

use crate::harness::{invariant, Features};
use api::http::encode_segment;
use api::route::{route, Operation};
use arbitrary::{Result as ArbResult, Unstructured};
use axum::http::Method;
use percent_encoding::percent_decode_str;
use wire::ErrorCode;

pub const ABOUT: &str =
    "api::route::route on `METHOD raw-target`; ids are the decoded segments; operations round-trip through a client's path";

pub const DICTIONARY: &[&str] = &[
    "GET ",
    "POST ",
    "PUT ",
    "PATCH ",
    "DELETE ",
    "HEAD ",
    "OPTIONS ",
    "/",
    "//",
    "?",
    "%",
    "%2F",
    "%2f",
    "%5C",
    "%20",
    "%FF",
    "%C3%A9",
    "%00",
    "%25",
    "%3F",
    "\\",
    "..",
    ".",
    "jobs",
    "tasks",
    "pools",
    "nodes",
    "files",
    "jobschedules",
    "applications",
    "addtaskcollection",
    "taskcounts",
    "jobpreparationandreleasetaskstatus",
    "subtasksinfo",
    "terminate",
    "reactivate",
    "disable",
    "enable",
    "reboot",
    "reimage",
    "disablescheduling",
    "enablescheduling",
    "updateproperties",
    "resize",
    "stopresize",
    "removenodes",
    "enableautoscale",
    "evaluateautoscale",
    "nodecounts",
    "supportedimages",
    "poolusagemetrics",
    "certificates(",
    "users",
    "/files/",
    "job1",
    "t1",
    "wd",
    "stdout.txt",
    "?api-version=2025-06-01",
];

/// Splits `METHOD rest`; an input without a space is a GET of all of it.
pub fn split_request(data: &[u8]) -> (Method, String) {
    match data.iter().position(|&b| b == b' ') {
        Some(i) => (Method::from_bytes(&data[..i]).unwrap_or(Method::GET), String::from_utf8_lossy(&data[i + 1..]).into_owned()),
        None => (Method::GET, String::from_utf8_lossy(data).into_owned()),
    }
}

pub fn run(data: &[u8], f: &mut Features) {
    let (method, target) = split_request(data);
    let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
    match route(&method, path) {
        Ok(op) => {
            f.add("op", (standard(&method), op.name()));
            check_operation(&method, path, &op);
        }
        Err(e) => {
            f.add("error", e.code.as_str());
            invariant!(
                matches!(e.code, ErrorCode::UnsupportedHttpVerb | ErrorCode::InvalidUri | ErrorCode::RequestUrlFailedToParse),
                "routing {method} {path:?} failed with {:?}, not a routing error",
                e.code
            );
            invariant!((400..500).contains(&e.status()), "routing {method} {path:?} answers {}", e.status());
        }
    }
    // The other direction: an operation picked by the same bytes.
    if let Ok(op) = arbitrary_operation(&mut Unstructured::new(data)) {
        f.add("generated", op.name());
        if let Some((m, p)) = request_for(&op) {
            match route(&m, &p) {
                Ok(back) => invariant!(back == op, "{op:?} sent as {m} {p:?} routes to {back:?}"),
                Err(e) => panic!("invariant broken: {op:?} sent as {m} {p:?} does not route: {:?} {}", e.code, e.message),
            }
        }
    }
}

/// A method's name if it is one of HTTP's own (any token is a method).
fn standard(m: &Method) -> &str {
    match *m {
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS => m.as_str(),
        _ => "other",
    }
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// The ids and the file path an operation carries, in path order.
fn params(op: &Operation) -> (Vec<&str>, Option<&str>) {
    use Operation::*;
    match op {
        ListJobs | CreateJob | ListPools | CreatePool | NodeCounts | SupportedImages | ListSchedules | CreateSchedule
        | ListApplications | NodeAgentSkus | LifetimeJobStats | LifetimePoolStats | PoolUsageMetrics | NotImplemented(_) => (vec![], None),
        // A thumbprint is inside its segment (`certificates(…,thumbprint=…)`), not one.
        ListCertificates | AddCertificate | GetCertificate(_) | DeleteCertificate(_) | CancelCertificateDeletion(_) => (vec![], None),
        GetJob(a)
        | PatchJob(a)
        | ReplaceJob(a)
        | DeleteJob(a)
        | DisableJob(a)
        | EnableJob(a)
        | TerminateJob(a)
        | JobTaskCounts(a)
        | JobPrepReleaseStatus(a)
        | ListTasks(a)
        | AddTask(a)
        | AddTaskCollection(a)
        | GetPool(a)
        | PoolExists(a)
        | PatchPool(a)
        | DeletePool(a)
        | UpdatePoolProperties(a)
        | ResizePool(a)
        | StopResizePool(a)
        | RemoveNodes(a)
        | PoolAutoscale(a)
        | NodeLoad(a)
        | ListNodes(a)
        | GetSchedule(a)
        | ScheduleExists(a)
        | PatchSchedule(a)
        | ReplaceSchedule(a)
        | DeleteSchedule(a)
        | DisableSchedule(a)
        | EnableSchedule(a)
        | TerminateSchedule(a)
        | ListScheduleJobs(a)
        | UpgradePoolOs(a)
        | GetApplication(a) => (vec![a], None),
        GetTask(a, b)
        | UpdateTask(a, b)
        | DeleteTask(a, b)
        | TerminateTask(a, b)
        | ReactivateTask(a, b)
        | ListSubtasks(a, b)
        | ListTaskFiles(a, b)
        | GetNode(a, b)
        | RebootNode(a, b)
        | ReimageNode(a, b)
        | DisableScheduling(a, b)
        | EnableScheduling(a, b)
        | RemoteLoginSettings(a, b)
        | StartNode(a, b)
        | DeallocateNode(a, b)
        | ListNodeExtensions(a, b)
        | PreemptNode(a, b)
        | RecoverNode(a, b)
        | AddNodeUser(a, b)
        | UploadNodeLogs(a, b)
        | ListNodeFiles(a, b) => (vec![a, b], None),
        GetNodeExtension(a, b, c) | UpdateNodeUser(a, b, c) | DeleteNodeUser(a, b, c) => (vec![a, b, c], None),
        GetTaskFile(a, b, c)
        | TaskFileProperties(a, b, c)
        | DeleteTaskFile(a, b, c)
        | GetNodeFile(a, b, c)
        | NodeFileProperties(a, b, c)
        | DeleteNodeFile(a, b, c) => (vec![a, b], Some(c)),
    }
}

/// What routing promises about an operation it returned for `path`.
fn check_operation(method: &Method, path: &str, op: &Operation) {
    invariant!(!op.name().is_empty(), "{op:?} has no name");
    if let Operation::NotImplemented(_) = op {
        return;
    }
    // Ids sit at segments 1 and 3 (`jobs/{j}/tasks/{t}`, `pools/{p}/nodes/{n}`),
    // a file path after segment 4 (`files`).
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segs: Vec<&str> = trimmed.split('/').collect();
    let (ids, file) = params(op);
    for (k, id) in ids.iter().enumerate() {
        let raw = segs.get(1 + 2 * k).copied().unwrap_or_default();
        invariant!(decode(raw).as_deref() == Some(*id), "{method} {path:?} gave {op:?}: id {id:?} is not the decoded segment {raw:?}");
    }
    if let Some(file) = file {
        invariant!(segs.get(4) == Some(&"files"), "{method} {path:?} gave {op:?} without a files segment");
        let rest = segs[5.min(segs.len())..].join("/");
        let want = decode(&rest).map(|s| s.replace('\\', "/"));
        invariant!(want.as_deref() == Some(file), "{method} {path:?} gave {op:?}: file {file:?} is not the decoded rest {rest:?}");
    }
    // An empty id (`/jobs//tasks//` is GetTask("", "")) or file path
    // (`…/files//`) has no client spelling: as the last segment it would be
    // cut off with the trailing slash.
    if ids.iter().any(|id| id.is_empty()) || file == Some("") {
        return;
    }
    if let Some((m, p)) = request_for(op) {
        invariant!(m == method, "{op:?} came from {method}, but is sent with {m}");
        match route(&m, &p) {
            Ok(back) => invariant!(&back == op, "{method} {path:?} gave {op:?}, but its client path {p:?} routes to {back:?}"),
            Err(e) => panic!("invariant broken: {method} {path:?} gave {op:?}, but its client path {p:?} fails: {:?}", e.code),
        }
    }
}

/// A certificate's path as the SDKs send it (a thumbprint is hex digits;
/// None for one no client could name).
fn certificate(tp: &str) -> Option<String> {
    let plain = !tp.is_empty() && tp.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then(|| format!("/certificates(thumbprintAlgorithm=sha1,thumbprint={})", encode_segment(tp)))
}

/// The method and path a client sends for an operation: each id and the
/// file path percent-encoded as one segment, as the SDKs do.
pub fn request_for(op: &Operation) -> Option<(Method, String)> {
    use Operation::*;
    let e = encode_segment;
    // Clients encode a file path's `/` too (`wd%2Fout.txt`).
    let file = encode_segment;
    let job = |j: &str| format!("/jobs/{}", e(j));
    let task = |j: &str, t: &str| format!("/jobs/{}/tasks/{}", e(j), e(t));
    let pool = |p: &str| format!("/pools/{}", e(p));
    let node = |p: &str, n: &str| format!("/pools/{}/nodes/{}", e(p), e(n));
    let sched = |s: &str| format!("/jobschedules/{}", e(s));
    let (m, p) = match op {
        ListJobs => (Method::GET, "/jobs".to_string()),
        CreateJob => (Method::POST, "/jobs".to_string()),
        GetJob(j) => (Method::GET, job(j)),
        PatchJob(j) => (Method::PATCH, job(j)),
        ReplaceJob(j) => (Method::PUT, job(j)),
        DeleteJob(j) => (Method::DELETE, job(j)),
        DisableJob(j) => (Method::POST, job(j) + "/disable"),
        EnableJob(j) => (Method::POST, job(j) + "/enable"),
        TerminateJob(j) => (Method::POST, job(j) + "/terminate"),
        JobTaskCounts(j) => (Method::GET, job(j) + "/taskcounts"),
        JobPrepReleaseStatus(j) => (Method::GET, job(j) + "/jobpreparationandreleasetaskstatus"),
        ListTasks(j) => (Method::GET, job(j) + "/tasks"),
        AddTask(j) => (Method::POST, job(j) + "/tasks"),
        AddTaskCollection(j) => (Method::POST, job(j) + "/addtaskcollection"),
        GetTask(j, t) => (Method::GET, task(j, t)),
        UpdateTask(j, t) => (Method::PUT, task(j, t)),
        DeleteTask(j, t) => (Method::DELETE, task(j, t)),
        TerminateTask(j, t) => (Method::POST, task(j, t) + "/terminate"),
        ReactivateTask(j, t) => (Method::POST, task(j, t) + "/reactivate"),
        ListSubtasks(j, t) => (Method::GET, task(j, t) + "/subtasksinfo"),
        ListTaskFiles(j, t) => (Method::GET, task(j, t) + "/files"),
        GetTaskFile(j, t, f) => (Method::GET, format!("{}/files/{}", task(j, t), file(f))),
        TaskFileProperties(j, t, f) => (Method::HEAD, format!("{}/files/{}", task(j, t), file(f))),
        DeleteTaskFile(j, t, f) => (Method::DELETE, format!("{}/files/{}", task(j, t), file(f))),
        ListPools => (Method::GET, "/pools".to_string()),
        CreatePool => (Method::POST, "/pools".to_string()),
        GetPool(p) => (Method::GET, pool(p)),
        PoolExists(p) => (Method::HEAD, pool(p)),
        PatchPool(p) => (Method::PATCH, pool(p)),
        DeletePool(p) => (Method::DELETE, pool(p)),
        UpdatePoolProperties(p) => (Method::POST, pool(p) + "/updateproperties"),
        ResizePool(p) => (Method::POST, pool(p) + "/resize"),
        StopResizePool(p) => (Method::POST, pool(p) + "/stopresize"),
        RemoveNodes(p) => (Method::POST, pool(p) + "/removenodes"),
        PoolAutoscale(p) => (Method::POST, pool(p) + "/evaluateautoscale"),
        NodeCounts => (Method::GET, "/nodecounts".to_string()),
        SupportedImages => (Method::GET, "/supportedimages".to_string()),
        NodeAgentSkus => (Method::GET, "/nodeagentskus".to_string()),
        LifetimeJobStats => (Method::GET, "/lifetimejobstats".to_string()),
        LifetimePoolStats => (Method::GET, "/lifetimepoolstats".to_string()),
        PoolUsageMetrics => (Method::GET, "/poolusagemetrics".to_string()),
        UpgradePoolOs(p) => (Method::POST, pool(p) + "/upgradeos"),
        ListNodes(p) => (Method::GET, pool(p) + "/nodes"),
        NodeLoad(p) => (Method::GET, format!("/openbatch{}/nodeload", pool(p))),
        PreemptNode(p, n) => (Method::POST, format!("/openbatch{}/preempt", node(p, n))),
        RecoverNode(p, n) => (Method::POST, format!("/openbatch{}/recover", node(p, n))),
        AddNodeUser(p, n) => (Method::POST, node(p, n) + "/users"),
        UpdateNodeUser(p, n, u) => (Method::PUT, format!("{}/users/{}", node(p, n), e(u))),
        DeleteNodeUser(p, n, u) => (Method::DELETE, format!("{}/users/{}", node(p, n), e(u))),
        UploadNodeLogs(p, n) => (Method::POST, node(p, n) + "/uploadbatchservicelogs"),
        GetNode(p, n) => (Method::GET, node(p, n)),
        RebootNode(p, n) => (Method::POST, node(p, n) + "/reboot"),
        ReimageNode(p, n) => (Method::POST, node(p, n) + "/reimage"),
        DisableScheduling(p, n) => (Method::POST, node(p, n) + "/disablescheduling"),
        EnableScheduling(p, n) => (Method::POST, node(p, n) + "/enablescheduling"),
        RemoteLoginSettings(p, n) => (Method::GET, node(p, n) + "/remoteloginsettings"),
        StartNode(p, n) => (Method::POST, node(p, n) + "/start"),
        DeallocateNode(p, n) => (Method::POST, node(p, n) + "/deallocate"),
        ListNodeExtensions(p, n) => (Method::GET, node(p, n) + "/extensions"),
        GetNodeExtension(p, n, x) => (Method::GET, format!("{}/extensions/{}", node(p, n), e(x))),
        ListNodeFiles(p, n) => (Method::GET, node(p, n) + "/files"),
        GetNodeFile(p, n, f) => (Method::GET, format!("{}/files/{}", node(p, n), file(f))),
        NodeFileProperties(p, n, f) => (Method::HEAD, format!("{}/files/{}", node(p, n), file(f))),
        DeleteNodeFile(p, n, f) => (Method::DELETE, format!("{}/files/{}", node(p, n), file(f))),
        ListSchedules => (Method::GET, "/jobschedules".to_string()),
        CreateSchedule => (Method::POST, "/jobschedules".to_string()),
        GetSchedule(s) => (Method::GET, sched(s)),
        ScheduleExists(s) => (Method::HEAD, sched(s)),
        PatchSchedule(s) => (Method::PATCH, sched(s)),
        ReplaceSchedule(s) => (Method::PUT, sched(s)),
        DeleteSchedule(s) => (Method::DELETE, sched(s)),
        DisableSchedule(s) => (Method::POST, sched(s) + "/disable"),
        EnableSchedule(s) => (Method::POST, sched(s) + "/enable"),
        TerminateSchedule(s) => (Method::POST, sched(s) + "/terminate"),
        ListScheduleJobs(s) => (Method::GET, sched(s) + "/jobs"),
        ListApplications => (Method::GET, "/applications".to_string()),
        GetApplication(a) => (Method::GET, format!("/applications/{}", e(a))),
        ListCertificates => (Method::GET, "/certificates".to_string()),
        AddCertificate => (Method::POST, "/certificates".to_string()),
        GetCertificate(t) => (Method::GET, certificate(t)?),
        DeleteCertificate(t) => (Method::DELETE, certificate(t)?),
        CancelCertificateDeletion(t) => (Method::POST, certificate(t)? + "/canceldelete"),
        NotImplemented(_) => return None,
    };
    Some((m, p))
}

/// Ids that collide with the router's own words, and other awkward ones.
const AWKWARD_IDS: &[&str] = &[
    "files",
    "tasks",
    "jobs",
    "nodes",
    "pools",
    "terminate",
    "disable",
    "enable",
    "reboot",
    "subtasksinfo",
    "addtaskcollection",
    "remoteloginsettings",
    "users",
    "jobschedules",
    "job1",
    "t1",
    "a b/c",
    "a/b",
    "%2F",
    "%",
    "..",
    ".",
    "sched:job-1",
    "é",
    "files/",
    "/files/",
    "?",
    "#",
    "\\",
    "x y",
];

/// An id a client could send: non-empty (an empty last segment is the
/// parent's path), often one of the awkward ones.
fn id(u: &mut Unstructured) -> ArbResult<String> {
    let s = if u.ratio(1, 2)? { u.choose(AWKWARD_IDS)?.to_string() } else { u.arbitrary::<String>()? };
    Ok(if s.is_empty() { "x".into() } else { s })
}

/// A file path as it names a file: non-empty, `/`-separated names, no `\`
/// (the router turns it into `/`), no empty last name.
fn file_path(u: &mut Unstructured) -> ArbResult<String> {
    let n = u.int_in_range(1..=3)?;
    let mut parts = Vec::new();
    for _ in 0..n {
        let p = id(u)?.replace(['\\', '/'], "_");
        parts.push(p);
    }
    Ok(parts.join("/"))
}

/// An operation (never `NotImplemented`) with ids taken from the bytes.
pub fn arbitrary_operation(u: &mut Unstructured) -> ArbResult<Operation> {
    use Operation::*;
    let k: u8 = u.int_in_range(0..=82)?;
    if k >= 78 {
        let tp: String = u.arbitrary::<Vec<u8>>()?.iter().map(|b| format!("{b:02x}")).collect();
        let tp = if tp.is_empty() { "ab".to_string() } else { tp };
        return Ok(match k {
            78 => ListCertificates,
            79 => AddCertificate,
            80 => GetCertificate(tp),
            81 => DeleteCertificate(tp),
            _ => CancelCertificateDeletion(tp),
        });
    }
    if k == 62 {
        return Ok(NodeLoad(id(u)?));
    }
    if k >= 68 {
        let (p, n) = (id(u)?, id(u)?);
        return Ok(match k {
            68 => StartNode(p, n),
            69 => DeallocateNode(p, n),
            70 => ListNodeExtensions(p, n),
            71 => PreemptNode(p, n),
            72 => RecoverNode(p, n),
            73 => AddNodeUser(p, n),
            74 => UploadNodeLogs(p, n),
            75 => UpdateNodeUser(p, n, id(u)?),
            76 => DeleteNodeUser(p, n, id(u)?),
            _ => GetNodeExtension(p, n, id(u)?),
        });
    }
    if k >= 63 {
        return Ok(match k {
            63 => NodeAgentSkus,
            64 => LifetimeJobStats,
            65 => LifetimePoolStats,
            66 => PoolUsageMetrics,
            _ => UpgradePoolOs(id(u)?),
        });
    }
    let one: fn(String) -> Operation = match k {
        0 => return Ok(ListJobs),
        1 => return Ok(CreateJob),
        2 => return Ok(ListPools),
        3 => return Ok(CreatePool),
        4 => return Ok(NodeCounts),
        5 => return Ok(SupportedImages),
        6 => return Ok(ListSchedules),
        7 => return Ok(CreateSchedule),
        8 => return Ok(ListApplications),
        9 => GetJob,
        10 => PatchJob,
        11 => ReplaceJob,
        12 => DeleteJob,
        13 => DisableJob,
        14 => EnableJob,
        15 => TerminateJob,
        16 => JobTaskCounts,
        17 => JobPrepReleaseStatus,
        18 => ListTasks,
        19 => AddTask,
        20 => AddTaskCollection,
        21 => GetPool,
        22 => PoolExists,
        23 => PatchPool,
        24 => DeletePool,
        25 => UpdatePoolProperties,
        26 => ResizePool,
        27 => StopResizePool,
        28 => RemoveNodes,
        29 => PoolAutoscale,
        30 => ListNodes,
        31 => GetSchedule,
        32 => ScheduleExists,
        33 => PatchSchedule,
        34 => ReplaceSchedule,
        35 => DeleteSchedule,
        36 => DisableSchedule,
        37 => EnableSchedule,
        38 => TerminateSchedule,
        39 => ListScheduleJobs,
        40 => GetApplication,
        _ => {
            let two: fn(String, String) -> Operation = match k {
                41 => GetTask,
                42 => UpdateTask,
                43 => DeleteTask,
                44 => TerminateTask,
                45 => ReactivateTask,
                46 => ListSubtasks,
                47 => ListTaskFiles,
                48 => GetNode,
                49 => RebootNode,
                50 => ReimageNode,
                51 => DisableScheduling,
                52 => EnableScheduling,
                53 => ListNodeFiles,
                54 => RemoteLoginSettings,
                _ => {
                    let three: fn(String, String, String) -> Operation = match k {
                        55 => GetTaskFile,
                        56 => TaskFileProperties,
                        57 => DeleteTaskFile,
                        58 => GetNodeFile,
                        59 => NodeFileProperties,
                        _ => DeleteNodeFile,
                    };
                    return Ok(three(id(u)?, id(u)?, file_path(u)?));
                }
            };
            return Ok(two(id(u)?, id(u)?));
        }
    };
    Ok(one(id(u)?))
}
