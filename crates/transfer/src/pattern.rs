//! Output file patterns, with the rules Azure Batch documents for Linux
//! nodes: `*` (any characters but `/`), `**` (any number of directories),
//! `?`, `[abc]`, `[a-c]`, `[!abc]`; a wildcard never matches a name that
//! starts with `.` unless the pattern's component starts with `.` itself;
//! `[*]` escapes a wildcard character. `$VAR` and `${VAR}` are expanded from
//! the task's environment first.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// `$VAR` / `${VAR}` replaced by their values (unknown variables by nothing).
pub fn expand_env(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let (name, next) = if b.get(i + 1) == Some(&b'{') {
                match s[i + 2..].find('}') {
                    Some(end) => (&s[i + 2..i + 2 + end], i + 3 + end),
                    None => ("", i),
                }
            } else {
                let len = s[i + 1..].bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
                (&s[i + 1..i + 1 + len], i + 1 + len)
            };
            if !name.is_empty() {
                out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
                i = next;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Whether a pattern component holds an (unescaped) wildcard.
pub fn has_wildcard(component: &str) -> bool {
    let mut chars = component.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => return true,
            '[' => {
                // `[x]` with a single wildcard character inside is an escape.
                let rest: String = chars.clone().collect();
                if rest.len() >= 2 && rest.as_bytes()[1] == b']' && matches!(rest.as_bytes()[0], b'*' | b'?' | b'[') {
                    chars.next();
                    chars.next();
                    continue;
                }
                return true;
            }
            _ => {}
        }
    }
    false
}

/// The literal name a component without wildcards stands for (escapes removed).
pub fn unescape(component: &str) -> String {
    let mut out = String::new();
    let b: Vec<char> = component.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '[' && i + 2 < b.len() && b[i + 2] == ']' && matches!(b[i + 1], '*' | '?' | '[') {
            out.push(b[i + 1]);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Whether one path component (a file or directory name) matches one
/// pattern component.
pub fn match_component(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') && has_wildcard(pattern) {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

fn glob(p: &[char], n: &[char]) -> bool {
    // Backtracking over the last `*`: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let (mut star_p, mut star_n) = (None, 0);
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star_p = Some(pi);
                    star_n = ni;
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star_p {
            Some(sp) => {
                pi = sp + 1;
                star_n += 1;
                ni = star_n;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A bracket expression at the start of `p`: whether `c` matches it, and its
/// length; None when it is not closed (then `[` is literal).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Whether a relative path (components) matches pattern components, where
/// `**` stands for any number (zero included) of directories.
pub fn match_path(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|skip| {
                // `**` does not descend into hidden directories.
                path[..skip].iter().all(|d| !d.starts_with('.')) && match_path(rest, &path[skip..])
            })
        }
        Some((p, rest)) => match path.split_first() {
            Some((name, path_rest)) => match_component(p, name) && match_path(rest, path_rest),
            None => false,
        },
    }
}

/// A pattern resolved against the working directory: the directory to walk
/// (its components before the first wildcard) and the components to match
/// below it; or a single file when it has no wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    File(PathBuf),
    Walk { base: PathBuf, pattern: Vec<String> },
}

/// Resolves `pattern` (relative to `wd`, or absolute), normalising `.` and
/// `..` lexically.
pub fn resolve(pattern: &str, wd: &Path) -> Resolved {
    let joined = if pattern.starts_with('/') { PathBuf::from(pattern) } else { wd.join(pattern) };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
        }
    }
    match parts.iter().position(|p| p == "**" || has_wildcard(p)) {
        None => Resolved::File(PathBuf::from("/").join(parts.iter().map(|p| unescape(p)).collect::<PathBuf>())),
        Some(at) => Resolved::Walk {
            base: PathBuf::from("/").join(parts[..at].iter().map(|p| unescape(p)).collect::<PathBuf>()),
            pattern: parts[at..].to_vec(),
        },
    }
}

/// The blob name for a matched file: with a wildcard pattern, `path` (a
/// virtual directory) plus the file's path below the walked directory; for
/// a single file, `path` itself, or the file's name.
pub fn blob_name(path: Option<&str>, relative: &str, single: bool) -> String {
    let path = path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty());
    match (path, single) {
        (Some(p), true) => p.to_string(),
        (Some(p), false) => format!("{p}/{relative}"),
        (None, _) => relative.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<String> {
        s.split('/').map(str::to_string).collect()
    }

    #[test]
    fn wildcards_in_one_component() {
        assert!(match_component("*.txt", "a.txt"));
        assert!(!match_component("*.txt", "a.txt.bak"));
        assert!(match_component("abc*", "abc"));
        assert!(match_component("abc*", "abcdef"));
        assert!(match_component("a?c", "abc"));
        assert!(!match_component("a?c", "ac"));
        assert!(match_component("[abc].log", "b.log"));
        assert!(!match_component("[abc].log", "d.log"));
        assert!(match_component("[a-c]1", "c1"));
        assert!(!match_component("[!abc]1", "a1"));
        assert!(match_component("[!abc]1", "x1"));
        assert!(match_component("abc[*]", "abc*"));
        assert!(!match_component("abc[*]", "abcd"));
        assert!(match_component("*a*b*c", "xxaybzzc"));
    }

    #[test]
    fn dot_files_need_an_explicit_dot() {
        assert!(!match_component("*.gif", ".a.gif"));
        assert!(match_component(".*.gif", ".a.gif"));
        assert!(match_component(".hidden", ".hidden"), "a literal name is not a wildcard");
        assert!(!match_path(&parts("**/*.txt"), &parts(".git/a.txt")));
    }

    #[test]
    fn double_star_spans_directories() {
        let p = parts("**/*.txt");
        assert!(match_path(&p, &parts("a.txt")), "zero directories");
        assert!(match_path(&p, &parts("sub/c.txt")));
        assert!(match_path(&p, &parts("x/y/z.txt")));
        assert!(!match_path(&p, &parts("x/y/z.bin")));
        assert!(!match_path(&parts("*.txt"), &parts("sub/c.txt")), "one star stays in its directory");
        assert!(match_path(&parts("out/**/r?.csv"), &parts("out/a/b/r1.csv")));
    }

    #[test]
    fn resolving_patterns() {
        let wd = Path::new("/n/workitems/j/job-1/t/wd");
        assert_eq!(resolve("../stdout.txt", wd), Resolved::File("/n/workitems/j/job-1/t/stdout.txt".into()));
        assert_eq!(
            resolve("../std*.txt", wd),
            Resolved::Walk { base: "/n/workitems/j/job-1/t".into(), pattern: vec!["std*.txt".into()] }
        );
        assert_eq!(
            resolve("out/**/*.log", wd),
            Resolved::Walk { base: "/n/workitems/j/job-1/t/wd/out".into(), pattern: parts("**/*.log") }
        );
        assert_eq!(resolve("/abs/f[*]", wd), Resolved::File("/abs/f*".into()));
    }

    #[test]
    fn blob_names() {
        assert_eq!(blob_name(Some("renamed/d.bin"), "data.bin", true), "renamed/d.bin");
        assert_eq!(blob_name(None, "data.bin", true), "data.bin");
        assert_eq!(blob_name(Some("txt/"), "sub/a.txt", false), "txt/sub/a.txt");
        assert_eq!(blob_name(None, "sub/a.txt", false), "sub/a.txt");
    }

    #[test]
    fn environment_expansion() {
        let env: BTreeMap<String, String> = [("AZ_BATCH_TASK_DIR".to_string(), "/t".to_string()), ("X".into(), "1".into())].into();
        assert_eq!(expand_env("$AZ_BATCH_TASK_DIR/out/*.txt", &env), "/t/out/*.txt");
        assert_eq!(expand_env("${X}a$X.$NOPE", &env), "1a1.");
        assert_eq!(expand_env("cost$", &env), "cost$");
    }
}
