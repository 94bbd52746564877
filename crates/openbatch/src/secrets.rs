//! Keeping the account keys and the agent join token out of sight of other
//! local users: read from files or the environment, and — when given on the
//! command line after all — wiped from the process's argument area.
//!
//! On Linux every local user (and so every task) can read
//! `/proc/<pid>/cmdline`; `/proc/<pid>/environ` only the process's own user.

use std::path::Path;

/// Reads a secret from a file: its content without surrounding whitespace.
/// A file that other users may read is used, with a warning.
pub fn read_file(flag: &str, path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o044 != 0 {
            tracing::warn!(
                "{flag} {}: the file is readable by other users (mode {:o}); make it 0600",
                path.display(),
                m.permissions().mode() & 0o777
            );
        }
    }
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{flag} {}: the file is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// Warns that a secret came on the command line (`flag`, e.g. `--key`).
pub fn warn_command_line(flag: &str, instead: &str) {
    tracing::warn!(
        "the secret given with {flag} on the command line is visible to every local user in /proc/<pid>/cmdline \
         until openbatch wipes it there after start; use {instead} instead"
    );
}

/// Where this process's arguments are in its memory: the
/// `arg_start`/`arg_end` fields of `/proc/self/stat` (Linux 3.5+).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (in parentheses, which may hold spaces);
    // the first of them is field 3, arg_start and arg_end are fields 48 and 49.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start: usize = fields.get(45)?.parse().ok()?;
    let end: usize = fields.get(46)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// The byte ranges to wipe in an argument area holding `area`: every
/// argument equal to a secret, and the value part of `--name=secret`.
fn wipe_ranges(area: &[u8], secrets: &[&str]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut offset = 0;
    for arg in area.split(|b| *b == 0) {
        for secret in secrets.iter().map(|s| s.as_bytes()).filter(|s| !s.is_empty()) {
            if arg == secret {
                ranges.push((offset, offset + arg.len()));
            } else if arg.starts_with(b"--")
                && arg.ends_with(secret)
                && arg.len() > secret.len()
                && arg[arg.len() - secret.len() - 1] == b'='
            {
                ranges.push((offset + arg.len() - secret.len(), offset + arg.len()));
            }
        }
        offset += arg.len() + 1;
    }
    ranges
}

/// Overwrites each command-line argument that is one of `secrets` (or the
/// value of `--name=secret`) with `x`s in the process's own argument area,
/// which is what `/proc/<pid>/cmdline` shows. Call it before any other
/// thread starts. Returns how many arguments were wiped.
///
/// The Rust runtime and clap read their own copies of the arguments, so
/// nothing depends on the original bytes afterwards; the area keeps its
/// length and its NUL separators.
pub fn wipe_from_command_line(secrets: &[&str]) -> usize {
    let Some((start, end)) = argument_area() else { return 0 };
    // SAFETY: [arg_start, arg_end) is the argument area the kernel set up on
    // the main thread's stack at exec: mapped and writable for the life of
    // the process. No Rust reference points into it (the runtime keeps raw
    // pointers and copies on every read), and no other thread runs yet.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let ranges = wipe_ranges(area, secrets);
    for &(a, b) in &ranges {
        area[a..b].fill(b'x');
    }
    ranges.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secrets_as_arguments_and_flag_values() {
        let area = b"openbatch\0serve\0--key\0S3cr3t==\0--account\0a\0--key2=K2\0--data-dir\0/x/S3cr3t==\0--x=S3cr3t==\0-=K2\0";
        let ranges = wipe_ranges(area, &["S3cr3t==", "K2", ""]);
        let mut wiped = area.to_vec();
        for (a, b) in ranges {
            wiped[a..b].fill(b'x');
        }
        assert_eq!(
            String::from_utf8(wiped).unwrap(),
            "openbatch\0serve\0--key\0xxxxxxxx\0--account\0a\0--key2=xx\0--data-dir\0/x/S3cr3t==\0--x=xxxxxxxx\0-=K2\0"
        );
    }

    #[test]
    fn the_argument_area_is_found() {
        let (start, end) = argument_area().expect("Linux reports the argument area");
        // SAFETY: reading this process's own argument area.
        let area = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(area, &cmdline[..], "what /proc/self/cmdline shows");
    }

    #[test]
    fn files_hold_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "  a2V5\n").unwrap();
        assert_eq!(read_file("--key-file", &p).unwrap(), "a2V5");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_file("--key-file", &p).unwrap_err().contains("empty"));
        assert!(read_file("--key-file", &dir.path().join("missing")).is_err());
    }
}
