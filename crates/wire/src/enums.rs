//! Enumerations with their exact wire values.
//!
//! The service emits the values listed in the REST spec (mostly lower-case);
//! the 15.x SDK compares them case-sensitively, so output must be exact.
//! Input is accepted in any case, as the service does.

/// Declares an enum whose variants map to fixed wire strings; parsing is
/// case-insensitive, printing is exact.
#[macro_export]
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                $(if s.eq_ignore_ascii_case($text) { return Some($name::$variant); })+
                None
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    let allowed: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    serde::de::Error::custom(format!(
                        "The value must be one of: {}; it is '{}'.",
                        allowed.join(", "), s
                    ))
                })
            }
        }
    };
}

wire_enum!(TaskState { Active = "active", Preparing = "preparing", Running = "running", Completed = "completed" });
wire_enum!(SubtaskState { Preparing = "preparing", Running = "running", Completed = "completed" });
wire_enum!(JobState {
    Active = "active",
    Disabling = "disabling",
    Disabled = "disabled",
    Enabling = "enabling",
    Terminating = "terminating",
    Completed = "completed",
    Deleting = "deleting",
});
wire_enum!(
    /// A compute node's state (`ComputeNodeState`).
    ComputeNodeState {
        Idle = "idle",
        Rebooting = "rebooting",
        Reimaging = "reimaging",
        Running = "running",
        Unusable = "unusable",
        Creating = "creating",
        Starting = "starting",
        WaitingForStartTask = "waitingforstarttask",
        StartTaskFailed = "starttaskfailed",
        Unknown = "unknown",
        LeavingPool = "leavingpool",
        Offline = "offline",
        Preempted = "preempted",
        UpgradingOs = "upgradingos",
        Deallocated = "deallocated",
        Deallocating = "deallocating",
    }
);
wire_enum!(ExecutionResult { Success = "success", Failure = "failure" });
wire_enum!(ErrorCategory { UserError = "usererror", ServerError = "servererror" });
wire_enum!(TaskAddStatus { Success = "success", ClientError = "clienterror", ServerError = "servererror" });
wire_enum!(JobAction { None = "none", Disable = "disable", Terminate = "terminate" });
wire_enum!(DependencyAction { Satisfy = "satisfy", Block = "block" });
wire_enum!(UploadCondition { TaskSuccess = "tasksuccess", TaskFailure = "taskfailure", TaskCompletion = "taskcompletion" });
wire_enum!(AutoUserScope { Task = "task", Pool = "pool" });
wire_enum!(ElevationLevel { NonAdmin = "nonadmin", Admin = "admin" });
wire_enum!(OnAllTasksComplete { NoAction = "noaction", TerminateJob = "terminatejob" });
wire_enum!(OnTaskFailure { NoAction = "noaction", PerformExitOptionsJobAction = "performexitoptionsjobaction" });
wire_enum!(DisableJobOption { Requeue = "requeue", Terminate = "terminate", Wait = "wait" });
wire_enum!(ContainerWorkingDirectory {
    TaskWorkingDirectory = "taskWorkingDirectory",
    ContainerImageDefault = "containerImageDefault",
});
wire_enum!(ContainerHostDataPath {
    Shared = "Shared",
    Startup = "Startup",
    VfsMounts = "VfsMounts",
    Task = "Task",
    JobPrep = "JobPrep",
    Applications = "Applications",
});
wire_enum!(AccessScope { Job = "job" });
wire_enum!(
    /// A certificate's state (`CertificateState`).
    CertificateState { Active = "active", Deleting = "deleting", DeleteFailed = "deletefailed" }
);
wire_enum!(CertificateFormat { Pfx = "pfx", Cer = "cer" });
wire_enum!(CertificateStoreLocation { CurrentUser = "currentuser", LocalMachine = "localmachine" });
wire_enum!(
    /// Which accounts of a node see a certificate (`CertificateVisibility`).
    CertificateVisibility { StartTask = "starttask", Task = "task", RemoteUser = "remoteuser" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_any_case_and_print_exactly() {
        assert_eq!(TaskAddStatus::parse("clientError"), Some(TaskAddStatus::ClientError));
        assert_eq!(TaskAddStatus::ClientError.as_str(), "clienterror");
        let v: ElevationLevel = serde_json::from_str("\"nonAdmin\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"nonadmin\"");
        assert!(serde_json::from_str::<JobState>("\"sleeping\"").is_err());
        assert_eq!(ContainerWorkingDirectory::parse("TASKWORKINGDIRECTORY").unwrap().as_str(), "taskWorkingDirectory");
    }
}
