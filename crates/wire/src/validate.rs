//! Request-body parsing and the service's validation rules for jobs and tasks.

use crate::error::{Error, ErrorCode, Result};
use crate::models::*;
use serde::de::DeserializeOwned;

/// The longest id the service accepts.
pub const MAX_ID_LEN: usize = 64;
/// The longest display name the service accepts.
pub const MAX_DISPLAY_NAME_LEN: usize = 1024;

/// Parses a JSON request body — the one reader every operation that takes a
/// body goes through — turning serde's complaints into Batch errors that name
/// the offending property. The body must be exactly one JSON object (see
/// [`check_strict_json`]) before it is read into `T`.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::msg(ErrorCode::InvalidRequestBody, "The request body is empty; a JSON object is required."));
    }
    check_strict_json(body)?;
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(crate::lenient::Lenient(&mut *de)) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Err(body_error(&path, &inner))
        }
    }
}

fn syntax_error(reason: impl Into<String>) -> Error {
    Error::msg(ErrorCode::InvalidRequestBody, "The specified Request Body is not syntactically valid.").with("Reason", reason)
}

/// The strictness rules for request bodies, checked in one pass over the
/// bytes without building a tree: the body is one JSON object (not an array
/// or a scalar) with nothing but whitespace after it; every string, in
/// values and in ignored properties alike, is valid UTF-8 with no lone
/// surrogate escape (`\ud800`); no object anywhere repeats a property name.
/// A typed read alone lets all of these through: serde reads a struct from
/// an array, skips unknown properties without decoding them, and keeps the
/// last of repeated keys in a map.
pub fn check_strict_json(body: &[u8]) -> Result<()> {
    use serde::de::DeserializeSeed;
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(syntax_error("The request body must be a JSON object.")),
        None => return Err(Error::msg(ErrorCode::InvalidRequestBody, "The request body is empty; a JSON object is required.")),
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Strict.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| syntax_error(e.to_string()))
}

/// Walks any JSON value, checking the rules of [`check_strict_json`].
struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A property name as read (borrowed from the body unless it had escapes).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a property name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    // serde_json hands a string over only after checking that it is UTF-8
    // and that its escapes make whole characters.
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Strict)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        // Objects are small: a linear scan beats hashing until they are not.
        let mut seen: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut many: std::collections::HashSet<std::borrow::Cow<'de, str>> = std::collections::HashSet::new();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let repeated = if many.is_empty() && seen.len() < 32 {
                seen.contains(&k)
            } else {
                many.extend(seen.drain(..));
                !many.insert(k.clone())
            };
            if repeated {
                return Err(serde::de::Error::custom(format!("the property '{k}' appears more than once in an object")));
            }
            if many.is_empty() {
                seen.push(k);
            }
            map.next_value_seed(Strict)?;
        }
        Ok(())
    }
}

/// A member of a body (`name`, given as its JSON text) read as `T`, with
/// errors naming the property below `name`; numbers may come as strings
/// (see [`crate::lenient`]).
pub fn parse_member<T: DeserializeOwned>(name: &str, text: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(crate::lenient::Lenient(&mut *de)) {
        Ok(v) => Ok(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = match inner.as_str() {
                "." | "" => name.to_string(),
                p if p.starts_with('[') || name.is_empty() => format!("{name}{p}"),
                p => format!("{name}.{p}"),
            };
            Err(body_error(&path, &e.into_inner()))
        }
    }
}

/// The numbers a lenient typed read of `text` as `T` took from strings: the
/// typed value as JSON when any were, to write over the kept document with
/// [`crate::lenient::adopt_numbers`]; None when the text had none.
pub fn numbers_of<T: DeserializeOwned + serde::Serialize>(name: &str, text: &str) -> Result<Option<serde_json::Value>> {
    let (typed, coerced) = crate::lenient::tracking(|| parse_member::<T>(name, text));
    let typed = typed?;
    if !coerced {
        return Ok(None);
    }
    serde_json::to_value(typed).map(Some).map_err(|e| Error::internal(e.to_string()))
}

/// Like [`parse_body`] for a value already parsed as JSON (collection items).
pub fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    match serde_path_to_error::deserialize::<_, T>(crate::lenient::Lenient(v)) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Err(body_error(&path, &inner))
        }
    }
}

pub(crate) fn body_error(path: &str, e: &serde_json::Error) -> Error {
    let msg = e.to_string();
    let path = if path == "." { String::new() } else { path.to_string() };
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        let full = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        return Error::missing_property(&full);
    }
    if e.is_syntax() || e.is_eof() {
        return Error::msg(ErrorCode::InvalidRequestBody, "The specified Request Body is not syntactically valid.").with("Reason", msg);
    }
    let reason = type_reason(&msg);
    if path.is_empty() {
        return Error::new(ErrorCode::InvalidRequestBody).with("Reason", reason);
    }
    Error::invalid_property(&path, reason)
}

/// What a client reads about a value of the wrong type or out of range, in
/// the service's words rather than the parser's.
pub fn type_reason(msg: &str) -> String {
    // serde_json ends its messages with the position.
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    };
    fn kind(expected: &str) -> Option<String> {
        let e = expected.trim();
        Some(match e {
            "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" => {
                let range = match e {
                    "i32" => " from -2147483648 to 2147483647",
                    "u32" => " from 0 to 4294967295",
                    "u8" => " from 0 to 255",
                    "u16" => " from 0 to 65535",
                    "u64" => " of 0 or more",
                    _ => "",
                };
                format!("an integer{range}")
            }
            "f32" | "f64" => "a number".into(),
            "a boolean" => "true or false".into(),
            "a string" | "a borrowed string" | "a character" => "a string".into(),
            "a sequence" => "an array".into(),
            "a map" | "a JSON object" | "a property name" => "an object".into(),
            _ if e.starts_with("struct ") => "an object".into(),
            _ => return None,
        })
    }
    fn what(unexpected: &str) -> &'static str {
        match unexpected.split([' ', ':']).next().unwrap_or("") {
            "string" => "a string",
            "integer" => "an integer",
            "floating" => "a decimal number",
            "boolean" => "a boolean",
            "map" => "an object",
            "sequence" => "an array",
            "null" | "unit" => "null",
            _ => "of another type",
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ").or_else(|| msg.strip_prefix("invalid value: ")) {
        if let Some((unexpected, expected)) = rest.rsplit_once(", expected ") {
            if let Some(k) = kind(expected) {
                let found = if msg.starts_with("invalid value") { "out of range" } else { what(unexpected) };
                let found = if found == "out of range" { "it is out of range".to_string() } else { format!("it is {found}") };
                return format!("The value must be {k}; {found}.");
            }
        }
    }
    if msg.starts_with("invalid length") {
        return "The value has the wrong number of items.".into();
    }
    msg.to_string()
}

/// Ids: 1 to 64 letters, digits, hyphens and underscores.
pub fn check_id(property: &str, id: Option<&str>) -> Result<String> {
    let id = id.ok_or_else(|| Error::missing_property(property))?;
    if id.is_empty() {
        return Err(Error::missing_property(property));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid_property(property, format!("The value must be at most {MAX_ID_LEN} characters long.")));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::invalid_property(property, "The value may contain only letters, digits, hyphens and underscores."));
    }
    Ok(id.to_string())
}

fn check_display_name(property: &str, v: &Option<String>) -> Result<()> {
    if let Some(d) = v {
        if d.chars().count() > MAX_DISPLAY_NAME_LEN {
            return Err(Error::invalid_property(property, format!("The value must be at most {MAX_DISPLAY_NAME_LEN} characters long.")));
        }
    }
    Ok(())
}

fn check_required_str(property: &str, v: &Option<String>) -> Result<()> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(()),
        _ => Err(Error::missing_property(property)),
    }
}

fn check_env(property: &str, v: &Option<Vec<EnvironmentSetting>>) -> Result<()> {
    for (i, e) in v.iter().flatten().enumerate() {
        if e.name.is_empty() {
            return Err(Error::invalid_property(&format!("{property}[{i}].name"), "The name must not be empty."));
        }
        // A process environment is `NAME=value` strings ending at a NUL:
        // such a name or value cannot be given to a process as it was asked.
        if e.name.contains(['=', '\0']) {
            return Err(Error::invalid_property(
                &format!("{property}[{i}].name"),
                "The name of an environment variable must not contain '=' or a NUL character.",
            ));
        }
        if e.value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(Error::invalid_property(
                &format!("{property}[{i}].value"),
                "The value of an environment variable must not contain a NUL character.",
            ));
        }
    }
    Ok(())
}

fn check_resource_files(property: &str, v: &Option<Vec<ResourceFile>>) -> Result<()> {
    for (i, r) in v.iter().flatten().enumerate() {
        let sources = [&r.auto_storage_container_name, &r.storage_container_url, &r.http_url].iter().filter(|s| s.is_some()).count();
        if sources != 1 {
            return Err(Error::invalid_property(
                &format!("{property}[{i}]"),
                "Exactly one of autoStorageContainerName, storageContainerUrl and httpUrl must be specified.",
            ));
        }
        if r.http_url.is_some() && r.file_path.as_deref().is_none_or(str::is_empty) {
            return Err(Error::missing_property(&format!("{property}[{i}].filePath")));
        }
        if let Some(fp) = &r.file_path {
            if fp.starts_with('/') || fp.split(['/', '\\']).any(|seg| seg == "..") {
                return Err(Error::invalid_property(
                    &format!("{property}[{i}].filePath"),
                    "The file path must be relative and must not leave the task's directory.",
                ));
            }
        }
        if let Some(mode) = &r.file_mode {
            if mode.is_empty() || mode.len() > 4 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(Error::invalid_property(
                    &format!("{property}[{i}].fileMode"),
                    "The file mode must be an octal number such as 0755.",
                ));
            }
        }
    }
    Ok(())
}

fn check_constraints(property: &str, c: &Option<TaskConstraints>) -> Result<()> {
    if let Some(c) = c {
        if let Some(n) = c.max_task_retry_count {
            if n < -1 {
                return Err(Error::invalid_property(&format!("{property}.maxTaskRetryCount"), "The value must be -1 or greater."));
            }
        }
        for (name, d) in [("maxWallClockTime", c.max_wall_clock_time), ("retentionTime", c.retention_time)] {
            if let Some(d) = d {
                if d.ticks() <= 0 {
                    return Err(Error::invalid_property(&format!("{property}.{name}"), "The duration must be positive."));
                }
            }
        }
    }
    Ok(())
}

fn check_user_identity(property: &str, u: &Option<UserIdentity>) -> Result<()> {
    if let Some(u) = u {
        if u.username.is_some() && u.auto_user.is_some() {
            return Err(Error::invalid_property(property, "Only one of username and autoUser may be specified."));
        }
    }
    Ok(())
}

fn check_output_files(property: &str, v: &Option<Vec<OutputFile>>) -> Result<()> {
    for (i, o) in v.iter().flatten().enumerate() {
        if o.file_pattern.is_empty() {
            return Err(Error::missing_property(&format!("{property}[{i}].filePattern")));
        }
        if o.destination.container.is_none() {
            return Err(Error::missing_property(&format!("{property}[{i}].destination.container")));
        }
    }
    Ok(())
}

fn check_exit_conditions(e: &Option<ExitConditions>) -> Result<()> {
    if let Some(e) = e {
        for (i, r) in e.exit_code_ranges.iter().flatten().enumerate() {
            if r.start > r.end {
                return Err(Error::invalid_property(&format!("exitConditions.exitCodeRanges[{i}]"), "start must not be greater than end."));
            }
        }
    }
    Ok(())
}

fn check_container(property: &str, c: &Option<TaskContainerSettings>) -> Result<()> {
    if let Some(c) = c {
        if c.image_name.trim().is_empty() {
            return Err(Error::missing_property(&format!("{property}.imageName")));
        }
    }
    Ok(())
}

/// The service's checks for a task body. Job-dependent rules (dependencies on
/// a job without `usesTaskDependencies`) are checked by the store.
pub fn check_task(p: &TaskAddParameter) -> Result<String> {
    let id = check_id("id", p.id.as_deref())?;
    check_display_name("displayName", &p.display_name)?;
    check_required_str("commandLine", &p.command_line)?;
    check_env("environmentSettings", &p.environment_settings)?;
    check_resource_files("resourceFiles", &p.resource_files)?;
    check_output_files("outputFiles", &p.output_files)?;
    check_constraints("constraints", &p.constraints)?;
    check_user_identity("userIdentity", &p.user_identity)?;
    check_exit_conditions(&p.exit_conditions)?;
    check_container("containerSettings", &p.container_settings)?;
    if let Some(n) = p.required_slots {
        if n < 1 {
            return Err(Error::invalid_property("requiredSlots", "The value must be at least 1."));
        }
    }
    if let Some(m) = &p.multi_instance_settings {
        if m.number_of_instances.is_some_and(|n| n < 1) {
            return Err(Error::invalid_property("multiInstanceSettings.numberOfInstances", "The value must be at least 1."));
        }
        check_required_str("multiInstanceSettings.coordinationCommandLine", &Some(m.coordination_command_line.clone()))?;
        check_resource_files("multiInstanceSettings.commonResourceFiles", &m.common_resource_files)?;
    }
    if let Some(d) = &p.depends_on {
        for (i, r) in d.task_id_ranges.iter().flatten().enumerate() {
            if r.start > r.end || r.start < 0 {
                return Err(Error::invalid_property(&format!("dependsOn.taskIdRanges[{i}]"), "A range must have 0 <= start <= end."));
            }
        }
        for (i, t) in d.task_ids.iter().flatten().enumerate() {
            check_id(&format!("dependsOn.taskIds[{i}]"), Some(t))?;
            if t.eq_ignore_ascii_case(&id) {
                return Err(Error::invalid_property(&format!("dependsOn.taskIds[{i}]"), "A task cannot depend on itself."));
            }
        }
    }
    for (i, a) in p.application_package_references.iter().flatten().enumerate() {
        if a.application_id.is_empty() {
            return Err(Error::missing_property(&format!("applicationPackageReferences[{i}].applicationId")));
        }
    }
    Ok(id)
}

fn check_metadata(m: &Option<Vec<MetadataItem>>) -> Result<()> {
    for (i, item) in m.iter().flatten().enumerate() {
        if item.name.is_empty() {
            return Err(Error::new(ErrorCode::EmptyMetadataKey).with("PropertyName", format!("metadata[{i}].name")));
        }
    }
    Ok(())
}

fn check_job_common(
    priority: Option<i32>,
    max_parallel: Option<i32>,
    constraints: &Option<JobConstraints>,
    pool: &Option<PoolInformation>,
    metadata: &Option<Vec<MetadataItem>>,
) -> Result<()> {
    if let Some(p) = priority {
        if !(-1000..=1000).contains(&p) {
            return Err(Error::invalid_property("priority", "The priority must be between -1000 and 1000."));
        }
    }
    if let Some(m) = max_parallel {
        if m != -1 && m < 1 {
            return Err(Error::invalid_property("maxParallelTasks", "The value must be -1 or greater than 0."));
        }
    }
    if let Some(c) = constraints {
        if c.max_task_retry_count.is_some_and(|n| n < -1) {
            return Err(Error::invalid_property("constraints.maxTaskRetryCount", "The value must be -1 or greater."));
        }
        if c.max_wall_clock_time.is_some_and(|d| d.ticks() <= 0) {
            return Err(Error::invalid_property("constraints.maxWallClockTime", "The duration must be positive."));
        }
    }
    if let Some(p) = pool {
        match (&p.pool_id, &p.auto_pool_specification) {
            (Some(id), None) => {
                check_id("poolInfo.poolId", Some(id))?;
            }
            (None, Some(spec)) => {
                if !spec.is_object() {
                    return Err(Error::invalid_property("poolInfo.autoPoolSpecification", "The value must be an object."));
                }
            }
            _ => return Err(Error::invalid_property("poolInfo", "Exactly one of poolId and autoPoolSpecification must be specified.")),
        }
    }
    check_metadata(metadata)
}

/// The service's checks for a job body; returns the id.
pub fn check_job(p: &JobAddParameter) -> Result<String> {
    let id = check_id("id", p.id.as_deref())?;
    check_display_name("displayName", &p.display_name)?;
    if p.pool_info.is_none() {
        return Err(Error::missing_property("poolInfo"));
    }
    check_job_common(p.priority, p.max_parallel_tasks, &p.constraints, &p.pool_info, &p.metadata)?;
    check_env("commonEnvironmentSettings", &p.common_environment_settings)?;
    if let Some(jm) = &p.job_manager_task {
        check_id("jobManagerTask.id", jm.id.as_deref())?;
        check_display_name("jobManagerTask.displayName", &jm.display_name)?;
        check_required_str("jobManagerTask.commandLine", &jm.command_line)?;
        check_resource_files("jobManagerTask.resourceFiles", &jm.resource_files)?;
        check_output_files("jobManagerTask.outputFiles", &jm.output_files)?;
        check_env("jobManagerTask.environmentSettings", &jm.environment_settings)?;
        check_constraints("jobManagerTask.constraints", &jm.constraints)?;
        check_user_identity("jobManagerTask.userIdentity", &jm.user_identity)?;
        check_container("jobManagerTask.containerSettings", &jm.container_settings)?;
    }
    if let Some(jp) = &p.job_preparation_task {
        if let Some(id) = &jp.id {
            check_id("jobPreparationTask.id", Some(id))?;
        }
        check_required_str("jobPreparationTask.commandLine", &jp.command_line)?;
        check_resource_files("jobPreparationTask.resourceFiles", &jp.resource_files)?;
        check_env("jobPreparationTask.environmentSettings", &jp.environment_settings)?;
        check_constraints("jobPreparationTask.constraints", &jp.constraints)?;
        check_user_identity("jobPreparationTask.userIdentity", &jp.user_identity)?;
        check_container("jobPreparationTask.containerSettings", &jp.container_settings)?;
    }
    if let Some(jr) = &p.job_release_task {
        if p.job_preparation_task.is_none() {
            return Err(Error::invalid_property(
                "jobReleaseTask",
                "A job release task can only be specified together with a job preparation task.",
            ));
        }
        if let Some(id) = &jr.id {
            check_id("jobReleaseTask.id", Some(id))?;
        }
        check_required_str("jobReleaseTask.commandLine", &jr.command_line)?;
        check_resource_files("jobReleaseTask.resourceFiles", &jr.resource_files)?;
        check_env("jobReleaseTask.environmentSettings", &jr.environment_settings)?;
        check_user_identity("jobReleaseTask.userIdentity", &jr.user_identity)?;
        check_container("jobReleaseTask.containerSettings", &jr.container_settings)?;
    }
    Ok(id)
}

/// The typed properties of a pool's start task (pools are kept as JSON
/// documents; this reads what the node acts on, so a bad value is refused
/// rather than read as a default).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartTaskCheck {
    #[serde(default)]
    command_line: Option<String>,
    #[serde(default)]
    environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default)]
    resource_files: Option<Vec<ResourceFile>>,
    #[serde(default)]
    user_identity: Option<UserIdentity>,
    #[serde(default)]
    container_settings: Option<TaskContainerSettings>,
    #[serde(default)]
    max_task_retry_count: Option<i32>,
    #[serde(default)]
    #[allow(dead_code)]
    wait_for_success: Option<bool>,
}

/// Checks a pool's `startTask` (an object): value types, enums, environment
/// names, resource files and user identity, as for tasks.
pub fn check_start_task(v: &serde_json::Value) -> Result<()> {
    start_task_checks(serde_path_to_error::deserialize(crate::lenient::Lenient(v)))
}

/// [`check_start_task`] for `startTask` given as its JSON text (no tree of
/// it is built).
pub fn check_start_task_text(text: &str) -> Result<()> {
    start_task_checks(serde_path_to_error::deserialize(crate::lenient::Lenient(&mut serde_json::Deserializer::from_str(text))))
}

fn start_task_checks(parsed: std::result::Result<StartTaskCheck, serde_path_to_error::Error<serde_json::Error>>) -> Result<()> {
    let st = match parsed {
        Ok(st) => st,
        Err(e) => {
            let path = format!("startTask.{}", e.path()).trim_end_matches('.').to_string();
            return Err(body_error(&path, &e.into_inner()));
        }
    };
    check_required_str("startTask.commandLine", &st.command_line)?;
    check_env("startTask.environmentSettings", &st.environment_settings)?;
    check_resource_files("startTask.resourceFiles", &st.resource_files)?;
    check_user_identity("startTask.userIdentity", &st.user_identity)?;
    check_container("startTask.containerSettings", &st.container_settings)?;
    if st.max_task_retry_count.is_some_and(|n| n < -1) {
        return Err(Error::invalid_property("startTask.maxTaskRetryCount", "The value must be -1 or greater."));
    }
    Ok(())
}

/// Checks for a job patch or replace body.
pub fn check_job_update(p: &JobUpdateParameter, replace: bool) -> Result<()> {
    if replace && p.pool_info.is_none() {
        return Err(Error::missing_property("poolInfo"));
    }
    check_job_common(p.priority, p.max_parallel_tasks, &p.constraints, &p.pool_info, &p.metadata)
}

/// Checks for a task update body.
pub fn check_task_update(p: &TaskUpdateParameter) -> Result<()> {
    check_constraints("constraints", &p.constraints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: &str) -> Result<String> {
        let p: TaskAddParameter = parse_body(json.as_bytes())?;
        check_task(&p)
    }

    #[test]
    fn ids() {
        assert!(check_id("id", Some("a-B_9")).is_ok());
        assert_eq!(check_id("id", Some("a b")).unwrap_err().code, ErrorCode::InvalidPropertyValue);
        assert_eq!(check_id("id", Some(&"x".repeat(65))).unwrap_err().code, ErrorCode::InvalidPropertyValue);
        assert!(check_id("id", Some(&"x".repeat(64))).is_ok());
        assert_eq!(check_id("id", None).unwrap_err().code, ErrorCode::MissingRequiredProperty);
        assert_eq!(check_id("id", Some("é")).unwrap_err().code, ErrorCode::InvalidPropertyValue);
    }

    #[test]
    fn strict_bodies() {
        let update = |b: &[u8]| parse_body::<TaskUpdateParameter>(b).map(|_| ());
        assert!(update(br#"{"constraints":{"maxTaskRetryCount":1}}"#).is_ok());
        assert!(update(b" \r\n{\"unknown\":[1,{\"a\":\"\\u00e9\\ud83d\\ude00\"}]} \n").is_ok());
        for bad in [
            &br#"[]"#[..],
            br#"[{"constraints":{}}]"#,
            br#""text""#,
            br#"7"#,
            br#"null"#,
            br#"{"constraints":{}} trailing"#,
            br#"{"constraints":{}}{}"#,
            br#"{"constraints":{}},"#,
            br#"{"constraints":{},"constraints":{}}"#,
            br#"{"constraints":{"maxTaskRetryCount":1,"maxTaskRetryCount":2}}"#,
            br#"{"x":{"a":1,"a":2}}"#,
            br#"{"x":"\ud800"}"#,
            br#"{"x":"\udc00\ud800"}"#,
            br#"{"constraints":{},"x":["\ud800x"]}"#,
            b"{\"x\":\"\xff\xfe\"}",
            b"{\"\xc3\":1}",
            b"\xef\xbb\xbf{}",
        ] {
            let e = update(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequestBody, "{}", String::from_utf8_lossy(bad));
        }
        // Repeated names are found in big objects too.
        let mut big: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(update(format!("{{{}\"z\":0}}", big).as_bytes()).is_ok());
        big.push_str("\"k39\":1");
        assert_eq!(update(format!("{{{big}}}").as_bytes()).unwrap_err().code, ErrorCode::InvalidRequestBody);
        // Nesting deeper than the parser's limit is an error, not a stack overflow.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(update(deep.as_bytes()).unwrap_err().code, ErrorCode::InvalidRequestBody);
    }

    #[test]
    fn task_bodies() {
        assert_eq!(task(r#"{"id":"t1","commandLine":"x"}"#).unwrap(), "t1");
        let e = task(r#"{"id":"t1"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingRequiredProperty);
        assert_eq!(e.values[0].1, "commandLine");
        let e = task(r#"{"id":"t1","commandLine":"x","userIdentity":{"autoUser":{"elevationLevel":"root"}}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPropertyValue);
        assert_eq!(e.values[0].1, "userIdentity.autoUser.elevationLevel");
        let e = task(r#"{"id":"t1","commandLine":"x","outputFiles":[{"filePattern":"*","destination":{"container":{}},"uploadOptions":{"uploadCondition":"tasksuccess"}}]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingRequiredProperty);
        assert_eq!(e.values[0].1, "outputFiles[0].destination.container.containerUrl");
        assert_eq!(task("{not json").unwrap_err().code, ErrorCode::InvalidRequestBody);
        assert_eq!(task("").unwrap_err().code, ErrorCode::InvalidRequestBody);
        let long = format!(r#"{{"id":"t","commandLine":"x","displayName":"{}"}}"#, "d".repeat(1025));
        assert_eq!(task(&long).unwrap_err().code, ErrorCode::InvalidPropertyValue);
        assert_eq!(task(r#"{"id":"t","commandLine":"x","requiredSlots":0}"#).unwrap_err().code, ErrorCode::InvalidPropertyValue);
        assert_eq!(
            task(r#"{"id":"t","commandLine":"x","constraints":{"maxWallClockTime":"soon"}}"#).unwrap_err().code,
            ErrorCode::InvalidPropertyValue
        );
        assert_eq!(
            task(r#"{"id":"t","commandLine":"x","resourceFiles":[{"httpUrl":"http://a","filePath":"../x"}]}"#).unwrap_err().code,
            ErrorCode::InvalidPropertyValue
        );
        assert!(task(r#"{"id":"t","commandLine":"x","environmentSettings":[{"name":"A_1","value":"b=c"}]}"#).is_ok());
        for (env, property) in [
            (r#"[{"name":"A\u0000B","value":"v"}]"#, "environmentSettings[0].name"),
            (r#"[{"name":"A","value":"v"},{"name":"A=B","value":"v"}]"#, "environmentSettings[1].name"),
            (r#"[{"name":"A","value":"v\u0000"}]"#, "environmentSettings[0].value"),
        ] {
            let e = task(&format!(r#"{{"id":"t","commandLine":"x","environmentSettings":{env}}}"#)).unwrap_err();
            assert_eq!((e.code, e.values[0].1.as_str()), (ErrorCode::InvalidPropertyValue, property), "{env}");
        }
    }

    #[test]
    fn pool_start_tasks() {
        let st = |s: &str| check_start_task(&serde_json::from_str(s).unwrap());
        assert!(st(r#"{"commandLine":"x","userIdentity":{"autoUser":{"elevationLevel":"Admin","scope":"pool"}},"waitForSuccess":true}"#)
            .is_ok());
        for (bad, property) in [
            (
                r#"{"commandLine":"x","userIdentity":{"autoUser":{"elevationLevel":"root"}}}"#,
                "startTask.userIdentity.autoUser.elevationLevel",
            ),
            (r#"{"commandLine":"x","userIdentity":{"autoUser":{"scope":5}}}"#, "startTask.userIdentity.autoUser.scope"),
            (r#"{"commandLine":"x","environmentSettings":[{"name":"A=B"}]}"#, "startTask.environmentSettings[0].name"),
            (r#"{"commandLine":"x","maxTaskRetryCount":"three"}"#, "startTask.maxTaskRetryCount"),
            (r#"{"commandLine":"x","waitForSuccess":"yes"}"#, "startTask.waitForSuccess"),
            (r#"{"commandLine":"x","resourceFiles":[{"httpUrl":"http://a","filePath":"/etc/x"}]}"#, "startTask.resourceFiles[0].filePath"),
        ] {
            let e = st(bad).unwrap_err();
            assert_eq!((e.code, e.values[0].1.as_str()), (ErrorCode::InvalidPropertyValue, property), "{bad}");
        }
        assert_eq!(st(r#"{"commandLine":" "}"#).unwrap_err().code, ErrorCode::MissingRequiredProperty);
        assert!(st(r#"{"commandLine":"x","maxTaskRetryCount":"3"}"#).is_ok(), "a number sent as a string");
    }

    #[test]
    fn numbers_as_strings_and_type_errors_that_name_the_property() {
        let p: JobAddParameter =
            parse_body(br#"{"id":"j","priority":"5","maxParallelTasks":"-1","constraints":{"maxTaskRetryCount":"2"}}"#).unwrap();
        assert_eq!((p.priority, p.max_parallel_tasks), (Some(5), Some(-1)));
        assert_eq!(p.constraints.unwrap().max_task_retry_count, Some(2));
        let t: TaskAddParameter = parse_body(
            br#"{"id":"t","commandLine":"x","requiredSlots":"2","exitConditions":{"exitCodes":[{"code":"3","exitOptions":{}}]}}"#,
        )
        .unwrap();
        assert_eq!(t.required_slots, Some(2));
        assert_eq!(t.exit_conditions.unwrap().exit_codes.unwrap()[0].code, 3);
        // Every kind of wrong value: a Batch error naming the property, in words.
        for (body, property, words) in [
            (&br#"{"id":"j","priority":"high"}"#[..], "priority", "The value must be an integer"),
            (br#"{"id":"j","priority":"3000000000"}"#, "priority", "out of range"),
            (br#"{"id":"j","priority":true}"#, "priority", "it is a boolean"),
            (br#"{"id":"j","usesTaskDependencies":"yes"}"#, "usesTaskDependencies", "true or false"),
            (br#"{"id":"j","constraints":{"maxWallClockTime":"an hour"}}"#, "constraints.maxWallClockTime", "ISO 8601 duration"),
            (br#"{"id":"j","constraints":{"maxWallClockTime":5}}"#, "constraints.maxWallClockTime", "must be a string"),
            (br#"{"id":"j","onAllTasksComplete":"sometimes"}"#, "onAllTasksComplete", "one of: noaction, terminatejob"),
            (br#"{"id":"j","metadata":{"a":"b"}}"#, "metadata", "must be an array"),
            (br#"{"id":5}"#, "id", "must be a string"),
        ] {
            let e = parse_body::<JobAddParameter>(body).unwrap_err();
            let text = String::from_utf8_lossy(body);
            assert_eq!(e.code, ErrorCode::InvalidPropertyValue, "{text}");
            assert_eq!(e.values[0], ("PropertyName".to_string(), property.to_string()), "{text}");
            let reason = &e.values[1].1;
            assert!(reason.contains(words), "{text}: {reason}");
            assert!(!reason.contains(" at line ") && !reason.contains("invalid type") && !reason.contains("expected"), "{text}: {reason}");
        }
    }
}
