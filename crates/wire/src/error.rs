//! The one table of Batch error codes: code string, HTTP status and the
//! service's default message. Every error a client sees is built from it.

use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident = ($status:literal, $msg:literal)),+ $(,)?) => {
        /// A Batch error code. The variant name is the wire code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];
            /// The code string clients read from `error.code`.
            pub fn as_str(&self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant)),+ }
            }
            /// The HTTP status the service answers with.
            pub fn status(&self) -> u16 {
                match self { $(ErrorCode::$variant => $status),+ }
            }
            /// The service's default message for this code.
            pub fn default_message(&self) -> &'static str {
                match self { $(ErrorCode::$variant => $msg),+ }
            }
        }
    };
}

error_codes! {
    // Common codes.
    ConditionNotMet = (412, "The condition specified using HTTP conditional header(s) is not met."),
    NotModified = (304, "The condition specified using HTTP conditional header(s) is not met."),
    MissingRequiredHeader = (400, "An HTTP header that's mandatory for this request is not specified."),
    MissingRequiredProperty = (400, "A property that is required for this request was not specified."),
    UnsupportedHeader = (400, "One of the HTTP headers specified in the request is not supported."),
    UnsupportedProperty = (400, "One of the properties specified in the request body is not supported."),
    InvalidHeaderValue = (400, "The value for one of the HTTP headers is not in the correct format."),
    InvalidPropertyValue = (400, "The value provided for one of the properties in the request body is invalid."),
    MissingRequiredQueryParameter = (400, "A query parameter that's mandatory for this request is not specified."),
    UnsupportedQueryParameter = (400, "One of the query parameters specified in the request URI is not supported."),
    InvalidQueryParameterValue = (400, "Value for one of the query parameters specified in the request URI is invalid."),
    OutOfRangeQueryParameterValue = (400, "One of the query parameters specified in the request URI is outside the permissible range."),
    RequestUrlFailedToParse = (400, "The URL in the request could not be parsed."),
    InvalidUri = (400, "The requested URI does not represent any resource on the server."),
    InvalidHttpVerb = (400, "The HTTP verb specified was not recognized by the server."),
    EmptyMetadataKey = (400, "The key for one of the metadata key-value pairs is empty."),
    InvalidRequestBody = (400, "The specified Request Body is not syntactically valid."),
    OutOfRangeInput = (400, "One of the request inputs is out of range."),
    InvalidAuthenticationInfo = (400, "The authentication information was not provided in the correct format. Verify the value of Authorization header."),
    InvalidInput = (400, "One of the request inputs is not valid."),
    InvalidMetadata = (400, "The specified metadata is invalid. It includes characters that are not permitted."),
    MetadataTooLarge = (400, "The size of the specified metadata exceeds the maximum size permitted."),
    MultipleConditionHeadersNotSupported = (400, "Multiple condition headers are not supported."),
    AuthenticationFailed = (403, "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
    InsufficientAccountPermissions = (403, "The account being accessed does not have sufficient permissions to execute this operation."),
    AccountIsDisabled = (403, "The specified account is disabled."),
    ResourceNotFound = (404, "The specified resource does not exist."),
    UnsupportedHttpVerb = (405, "The resource doesn't support the specified HTTP verb."),
    MissingContentLengthHeader = (411, "The Content-Length header was not specified."),
    RequestBodyTooLarge = (413, "The request body is too large and exceeds the maximum permissible limit."),
    InvalidRange = (416, "The range specified is invalid for the current size of the resource."),
    InternalError = (500, "The server encountered an internal error. Please retry the request."),
    OperationTimedOut = (500, "The operation could not be completed within the permitted time."),
    ServerBusy = (503, "The server is currently unable to receive requests. Please retry your request."),
    // openbatch: an operation the service has but this server does not implement yet.
    NotImplemented = (501, "This operation is not implemented by openbatch yet; see COMPATIBILITY.md."),
    // Batch-specific codes.
    UnsupportedRequestVersion = (400, "The specified api-version is not supported."),
    TaskDependenciesNotSpecifiedOnJob = (400, "The Job does not use task dependencies; set usesTaskDependencies on the Job to add Tasks with dependencies."),
    TaskDependencyListTooLong = (400, "The Task's dependency list is too long."),
    TaskDependencyRangesTooLong = (400, "The Task's dependency ranges are too long."),
    InvalidAutoScalingSettings = (400, "The auto-scaling settings are invalid."),
    AutoScalingFormulaSyntaxError = (400, "The specified auto-scaling formula has a syntax error."),
    AutoScalingFormulaTooLong = (400, "The specified auto-scaling formula exceeds lengths limit."),
    TooManyEnableAutoScaleRequests = (503, "Autoscale was enabled on this pool less than 30 seconds ago. Please retry your request later."),
    PoolNotFound = (404, "The specified pool does not exist."),
    NodeNotFound = (404, "The specified node does not exist."),
    JobScheduleNotFound = (404, "The specified job schedule does not exist."),
    JobNotFound = (404, "The specified job does not exist."),
    TaskNotFound = (404, "The specified task does not exist."),
    FileNotFound = (404, "The specified file does not exist."),
    ApplicationNotFound = (404, "The specified application does not exist."),
    NodeUserNotFound = (404, "The specified compute node user does not exist."),
    CertificateNotFound = (404, "The specified certificate does not exist."),
    CertificateExists = (409, "The specified certificate already exists."),
    CertificateBeingDeleted = (409, "The specified certificate has been marked for deletion and is being deleted."),
    CertificateStateActive = (409, "The specified certificate is active; only a certificate whose deletion failed can have its deletion cancelled."),
    InvalidCertificateReferences = (400, "One or more of the specified certificate references are invalid."),
    InvalidApplicationPackageReferences = (409, "One or more of the specified application package references are invalid."),
    OperationInvalidForCurrentState = (409, "The operation is not valid for the current state of the resource."),
    PoolExists = (409, "The specified pool already exists."),
    PoolBeingDeleted = (409, "The specified pool has been marked for deletion and is being reclaimed."),
    PoolBeingResized = (409, "The specified pool is being resized."),
    NodeBeingCreated = (409, "The specified compute node is being created."),
    NodeBeingStarted = (409, "The specified compute node is being started."),
    NodeBeingRebooted = (409, "The specified compute node is being rebooted."),
    NodeBeingReimaged = (409, "The specified compute node is being reimaged."),
    NodeStateUnusable = (409, "The specified compute node is unusable."),
    NodeAlreadyInTargetSchedulingState = (409, "The compute node is already in the target scheduling state."),
    OperationNotValidOnNode = (409, "The operation is not valid on the compute node in its current state."),
    OperationNotValidOnPool = (409, "The operation is not valid on the pool in its current state."),
    NodeUserExists = (409, "The specified compute node user already exists."),
    JobExists = (409, "The specified job already exists."),
    JobScheduleExists = (409, "The specified job schedule already exists."),
    JobScheduleBeingDeleted = (409, "The specified job schedule has been marked for deletion and is being garbage collected."),
    JobScheduleBeingTerminated = (409, "The specified job schedule is being terminated."),
    JobScheduleCompleted = (409, "The specified job schedule is already in a completed state."),
    JobScheduleDisabled = (409, "The specified job schedule is disabled."),
    JobBeingDeleted = (409, "The specified job has been marked for deletion and is being garbage collected."),
    JobBeingTerminated = (409, "The specified job is being terminated."),
    JobDisabled = (409, "The specified job is disabled."),
    JobCompleted = (409, "The specified job is already in a completed state."),
    JobNotActive = (409, "The specified job is not in an active state."),
    TaskExists = (409, "The specified task already exists."),
    TaskCompleted = (409, "The specified task is already in a completed state."),
    TaskNotCompleted = (409, "The specified task is not in a completed state."),
    TaskSucceeded = (409, "The specified task completed successfully and cannot be reactivated."),
    TaskFilesUnavailable = (409, "The files of the specified task are not available."),
    TaskFilesCleanedup = (409, "The files of the specified task have been cleaned up."),
    JobPreparationTaskNotSpecified = (409, "The job does not have a job preparation task."),
    JobReleaseTaskNotSpecified = (409, "The job does not have a job release task."),
}

/// An error on its way to a client: a code from the table, a message, and
/// optional key/value details (`PropertyName`, `Reason`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub values: Vec<(String, String)>,
    /// A status other than the code's usual one (a missing Authorization
    /// header is `InvalidAuthenticationInfo` with 401, a malformed one 400).
    pub status_override: Option<u16>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode) -> Self {
        Error { code, message: code.default_message().to_string(), values: Vec::new(), status_override: None }
    }
    pub fn msg(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), values: Vec::new(), status_override: None }
    }
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.values.push((key.to_string(), value.into()));
        self
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::new(ErrorCode::InternalError).with("Reason", detail.to_string())
    }
    /// A required property is absent.
    pub fn missing_property(name: &str) -> Self {
        Error::new(ErrorCode::MissingRequiredProperty).with("PropertyName", name)
    }
    /// A property has an invalid value.
    pub fn invalid_property(name: &str, reason: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidPropertyValue).with("PropertyName", name).with("Reason", reason)
    }
    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or_else(|| self.code.status())
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status_override = Some(status);
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

/// The `BatchError` JSON body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    #[serde(rename = "odata.metadata")]
    pub metadata: String,
    pub code: &'a str,
    pub message: ErrorMessage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ErrorDetail<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ErrorMessage {
    pub lang: &'static str,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

impl Error {
    /// Renders the body; the message ends with the request id and time, as the service's do.
    pub fn body(&self, base_url: &str, request_id: &str, time: &str) -> String {
        let body = ErrorBody {
            metadata: format!("{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"),
            code: self.code.as_str(),
            message: ErrorMessage { lang: "en-US", value: format!("{}\nRequestId:{}\nTime:{}", self.message, request_id, time) },
            values: self.values.iter().map(|(k, v)| ErrorDetail { key: k, value: v }).collect(),
        };
        serde_json::to_string(&body).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for c in ErrorCode::ALL {
            assert!(matches!(c.status(), 304 | 400..=599), "{c:?}");
            assert!(!c.default_message().is_empty());
        }
        assert_eq!(ErrorCode::TaskExists.as_str(), "TaskExists");
        assert_eq!(ErrorCode::TaskExists.status(), 409);
    }

    #[test]
    fn body_shape() {
        let e = Error::new(ErrorCode::JobNotFound).with("k", "v");
        let b: serde_json::Value = serde_json::from_str(&e.body("http://h", "rid", "T")).unwrap();
        assert_eq!(b["code"], "JobNotFound");
        assert_eq!(b["message"]["lang"], "en-US");
        assert!(b["message"]["value"].as_str().unwrap().ends_with("\nRequestId:rid\nTime:T"));
        assert_eq!(b["values"][0]["key"], "k");
    }
}
