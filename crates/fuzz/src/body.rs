//! `body`: the JSON request-body readers. Every input is given to each of
//! them, as the body of: add task, add task collection (and each of its
//! tasks), update task, add job, patch and replace job, terminate and
//! disable job, add pool, patch / update pool properties, resize pool, add
//! job schedule. Each reader is [`wire::validate::parse_body`] followed by
//! the checks the handler makes before touching the store
//! (`wire::validate::check_*`, `api::pools::check_add`, ...).
//!
//! Checked:
//! * nothing panics;
//! * a refused body is a client error (4xx; 501 only for what openbatch
//!   does not implement), and its error body is JSON carrying the code;
//! * a task body read on its own and the same task read as an item of a
//!   collection (from a parsed JSON value) are the same task;
//! * a task body written back as JSON reads as the same task;
//! * a pool body's normalisation is stable;
//! * every string in the body that reads as a duration or a date-time
//!   prints back to the same value;
//! * a body translated from an older api-version's spelling
//!   (`wire::versions`) is strict JSON and survives a trip back and forth.

use crate::harness::{invariant, Features};
use serde_json::{Map, Value};
use wire::models::*;
use wire::time::{format_datetime, parse_datetime, Duration};
use wire::validate::{check_id, check_job, check_job_update, check_task, check_task_update, from_value, parse_body};
use wire::versions::{self, ApiVersion};
use wire::{Error, ErrorCode};

pub const ABOUT: &str =
    "every JSON body reader (wire::validate, pool and schedule checks); errors are 4xx; tasks read alike alone and in collections";

pub const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\\"",
    "\\u0000",
    "\\ud800",
    "\\u00e9",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e400",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "\"id\":",
    "\"commandLine\":",
    "\"displayName\":",
    "\"constraints\":",
    "\"maxWallClockTime\":",
    "\"retentionTime\":",
    "\"maxTaskRetryCount\":",
    "\"maxTasksPerNode\":",
    "\"taskSlotsPerNode\":",
    "\"publicIPs\":",
    "\"resourceFiles\":",
    "\"blobSource\":",
    "\"httpUrl\":",
    "\"PT1H\"",
    "\"PT01H00M00S\"",
    "\"P1D\"",
    "\"-PT1S\"",
    "\"P10675199DT2H48M5.4775807S\"",
    "\"PT1.5S\"",
    "\"P1W\"",
    "\"2024-01-01T00:00:00Z\"",
    "\"2024-01-01T00:00:00.0000000Z\"",
    "\"resourceFiles\":",
    "\"httpUrl\":",
    "\"filePath\":",
    "\"fileMode\":",
    "\"outputFiles\":",
    "\"filePattern\":",
    "\"destination\":",
    "\"container\":",
    "\"containerUrl\":",
    "\"uploadOptions\":",
    "\"uploadCondition\":",
    "\"taskcompletion\"",
    "\"environmentSettings\":",
    "\"name\":",
    "\"value\":",
    "\"userIdentity\":",
    "\"autoUser\":",
    "\"elevationLevel\":",
    "\"admin\"",
    "\"scope\":",
    "\"pool\"",
    "\"dependsOn\":",
    "\"taskIds\":",
    "\"taskIdRanges\":",
    "\"start\":",
    "\"end\":",
    "\"exitConditions\":",
    "\"exitCodes\":",
    "\"exitCodeRanges\":",
    "\"exitOptions\":",
    "\"jobAction\":",
    "\"dependencyAction\":",
    "\"default\":",
    "\"requiredSlots\":",
    "\"multiInstanceSettings\":",
    "\"numberOfInstances\":",
    "\"coordinationCommandLine\":",
    "\"containerSettings\":",
    "\"imageName\":",
    "\"applicationPackageReferences\":",
    "\"applicationId\":",
    "\"version\":",
    "\"poolInfo\":",
    "\"poolId\":",
    "\"autoPoolSpecification\":",
    "\"priority\":",
    "\"maxParallelTasks\":",
    "\"onAllTasksComplete\":",
    "\"terminatejob\"",
    "\"onTaskFailure\":",
    "\"metadata\":",
    "\"jobManagerTask\":",
    "\"jobPreparationTask\":",
    "\"jobReleaseTask\":",
    "\"usesTaskDependencies\":",
    "\"terminateReason\":",
    "\"disableTasks\":",
    "\"requeue\"",
    "\"vmSize\":",
    "\"targetDedicatedNodes\":",
    "\"taskSlotsPerNode\":",
    "\"startTask\":",
    "\"userAccounts\":",
    "\"password\":",
    "\"taskSchedulingPolicy\":",
    "\"nodeFillType\":",
    "\"pack\"",
    "\"enableAutoScale\":",
    "\"schedule\":",
    "\"recurrenceInterval\":",
    "\"startWindow\":",
    "\"doNotRunUntil\":",
    "\"jobSpecification\":",
    "\"nodeList\":",
    "\"value\":[",
    "\"authenticationTokenSettings\":",
    "\"access\":[\"job\"]",
    "é",
    "\u{1F600}",
];

/// The status a refused body may have.
fn check_error(reader: &str, e: &Error, f: &mut Features) {
    // The property named, without indices: `resourceFiles[3].filePath` → `resourceFiles[].filePath`.
    let property: String = e
        .values
        .iter()
        .find(|(k, _)| k == "PropertyName")
        .map(|(_, v)| v.chars().filter(|c| !c.is_ascii_digit()).take(60).collect())
        .unwrap_or_default();
    f.add("error", (reader, e.code.as_str(), property));
    let status = e.status();
    invariant!(
        (400..500).contains(&status) || (e.code == ErrorCode::NotImplemented && status == 501),
        "the {reader} reader refuses a body with {status} {:?}: {}",
        e.code,
        e.message
    );
    let body = e.body("http://account.example", "00000000-0000-0000-0000-000000000000", "2026-01-01T00:00:00.0000000Z");
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    invariant!(
        parsed.as_ref().and_then(|v| v.get("code")).and_then(Value::as_str) == Some(e.code.as_str()),
        "the {reader} reader's error body is not JSON with its code: {body}"
    );
}

/// Runs one reader, recording what it reached.
fn read<T>(reader: &'static str, f: &mut Features, r: impl FnOnce() -> Result<T, Error>) -> Option<T> {
    match r() {
        Ok(v) => {
            f.add("ok", reader);
            Some(v)
        }
        Err(e) => {
            check_error(reader, &e, f);
            None
        }
    }
}

pub fn run(data: &[u8], f: &mut Features) {
    let value: Option<Value> = serde_json::from_slice(data).ok();

    // Tasks.
    let task = read("task add", f, || {
        let p: TaskAddParameter = parse_body(data)?;
        let id = check_task(&p)?;
        Ok((p, id))
    });
    if let Ok(p) = parse_body::<TaskAddParameter>(data) {
        check_task_alike(data, &p, value.as_ref());
    }
    if let Some((_, id)) = &task {
        invariant!(check_id("id", Some(id)).as_deref() == Ok(id.as_str()), "task add accepted the id {id:?}");
    }
    if let Some(p) = read("task collection", f, || parse_body::<TaskAddCollectionParameter>(data)) {
        for item in p.value.into_iter().flatten().take(100) {
            read("collection item", f, || {
                let p: TaskAddParameter = from_value(item)?;
                check_task(&p)
            });
        }
    }
    read("task update", f, || check_task_update(&parse_body::<TaskUpdateParameter>(data)?));

    // Jobs.
    read("job add", f, || check_job(&parse_body::<JobAddParameter>(data)?));
    read("job patch", f, || check_job_update(&parse_body::<JobUpdateParameter>(data)?, false));
    read("job replace", f, || check_job_update(&parse_body::<JobUpdateParameter>(data)?, true));
    read("job terminate", f, || parse_body::<JobTerminateParameter>(data));
    read("job disable", f, || parse_body::<JobDisableParameter>(data));

    // Pools: the checks that need nothing but the body.
    if let Some(mut doc) = read("pool add", f, || {
        let mut doc: Map<String, Value> = parse_body(data)?;
        api::pools::check_add(&mut doc)?;
        Ok(doc)
    }) {
        let once = doc.clone();
        let again = api::pools::check_add(&mut doc);
        invariant!(again.is_ok() && doc == once, "a pool body checked twice changes or fails: {again:?}");
    }
    read("pool patch", f, || api::pools::check_start_task(parse_body::<Map<String, Value>>(data)?.get("startTask")));
    read("pool resize", f, || {
        let body: Map<String, Value> = parse_body(data)?;
        api::pools::int_in(&body, "targetDedicatedNodes", 0, 1000)?;
        api::pools::int_in(&body, "targetLowPriorityNodes", 0, 1000)
    });

    // Job schedules.
    read("schedule add", f, || {
        let body: Map<String, Value> = parse_body(data)?;
        check_id("id", body.get("id").and_then(Value::as_str))?;
        control::schedules::check_timing(body.get("schedule"))?;
        match body.get("jobSpecification") {
            Some(Value::Object(spec)) => check_job(&control::schedules::job_parameter(spec, "specification")?).map(drop),
            Some(_) => Err(Error::invalid_property("jobSpecification", "The value must be an object.")),
            None => Err(Error::missing_property("jobSpecification")),
        }
    });

    // Older api-versions: the body in the newest spelling, and back.
    for v in [ApiVersion::V2018_08_01, ApiVersion::V2019_08_01, ApiVersion::V2020_03_01] {
        if let Some(Some(new)) = read("older api-version", f, || versions::request_body(v, data)) {
            check_older_version(v, &new);
        }
    }

    if let Some(v) = &value {
        let mut budget = 64;
        check_strings(v, &mut budget, f);
    }
}

/// A body translated from an older version's spelling is one strict JSON
/// object, and reads the same after a trip back to that spelling (as a
/// response) and forward again.
fn check_older_version(v: ApiVersion, new: &[u8]) {
    invariant!(wire::validate::check_strict_json(new).is_ok(), "{v:?}: the translated body is not strict JSON");
    let old = versions::response_body(v, versions::Body::Resource, new).unwrap_or_else(|| new.to_vec());
    let again = match versions::request_body(v, &old) {
        Ok(b) => b.unwrap_or(old),
        Err(e) => panic!("{v:?}: a translated body translated back is refused: {e}"),
    };
    let (a, b): (Value, Value) = (serde_json::from_slice(new).unwrap_or_default(), serde_json::from_slice(&again).unwrap_or_default());
    invariant!(a == b, "{v:?}: the body changes on a trip back and forth: {a} vs {b}");
}

/// A task reads the same alone, as a collection item, and written back.
fn check_task_alike(data: &[u8], p: &TaskAddParameter, value: Option<&Value>) {
    if let Some(v) = value {
        match from_value::<TaskAddParameter>(v.clone()) {
            Ok(q) => invariant!(&q == p, "a task reads as {p:?} alone but as {q:?} in a collection"),
            Err(e) => panic!("invariant broken: a task body read alone is refused in a collection: {e} {:?}", e.values),
        }
    }
    let written = match serde_json::to_vec(p) {
        Ok(w) => w,
        Err(e) => panic!("invariant broken: the task {p:?} cannot be written as JSON: {e}"),
    };
    match parse_body::<TaskAddParameter>(&written) {
        Ok(q) => invariant!(&q == p, "the task {p:?}, written as {}, reads back as {q:?}", String::from_utf8_lossy(&written)),
        Err(e) => panic!(
            "invariant broken: the task {p:?}, written as {}, is refused: {e} {:?}; body was {}",
            String::from_utf8_lossy(&written),
            e.values,
            String::from_utf8_lossy(data)
        ),
    }
}

/// Durations and date-times print back to themselves.
fn check_strings(v: &Value, budget: &mut usize, f: &mut Features) {
    if *budget == 0 {
        return;
    }
    match v {
        Value::String(s) => {
            *budget -= 1;
            if let Some(d) = Duration::parse(s) {
                f.add("duration", d.ticks().signum());
                let printed = d.to_string();
                invariant!(
                    Duration::parse(&printed) == Some(d),
                    "the duration {s:?} = {d:?} prints as {printed:?}, which reads differently"
                );
            }
            if let Some(t) = parse_datetime(s) {
                f.add("datetime", true);
                use chrono::{Datelike, Timelike};
                if (1..=9999).contains(&t.year()) {
                    let printed = format_datetime(&t);
                    let want = t.with_nanosecond(t.nanosecond() / 100 * 100).unwrap_or(t);
                    invariant!(
                        parse_datetime(&printed) == Some(want),
                        "the date-time {s:?} prints as {printed:?}, which reads differently"
                    );
                }
            }
            let _ = check_id("id", Some(s));
        }
        Value::Array(a) => a.iter().for_each(|x| check_strings(x, budget, f)),
        Value::Object(m) => m.values().for_each(|x| check_strings(x, budget, f)),
        _ => {}
    }
}
