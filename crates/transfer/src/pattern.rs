//! Output file patterns, with the rules Azure Batch documents for Linux
//! nodes: `*` (any characters but `/`), `**` (any number of directories),
//! `?`, `[abc]`, `[a-c]`, `[!abc]`; a wildcard never matches a name that
//! starts with `.` unless the pattern's component starts with `.` itself;
//! a one-character class such as `[*]` escapes a wildcard character. `$VAR`
//! and `${VAR}` are expanded from the task's environment first.
//!
//! Matching walks only the directories a pattern can reach, on open
//! directory handles, never through a symbolic link (at any component, from
//! the task directory's handle, or from `/` for paths outside it), and
//! yields regular files only: a link is not uploaded, whatever it points to.

use nodefs::{Dir, Kind};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// `$VAR` / `${VAR}` replaced by their values; an unknown variable expands
/// to nothing, as in a shell. A `$` not followed by a name stays as it is.
pub fn expand_env(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if is_name(&braced[..end]) => (&braced[..end], end + 2),
                _ => ("", 0),
            }
        } else {
            let len = after.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
            if is_name(&after[..len]) {
                (&after[..len], len)
            } else {
                ("", 0)
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
            rest = &after[consumed..];
        }
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// One element of a path component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    Any,
    /// `*`
    Star,
    /// `[...]`: single characters and inclusive ranges.
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// Splits one path component of a pattern into tokens. A class of one
/// character (`[*]`, `[a]`) is that character: the documented escape. An
/// unclosed `[` is a literal `[`.
fn tokenize(component: &str) -> Vec<Token> {
    let chars: Vec<char> = component.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '[' => {
                if let Some((token, len)) = class(&chars[i..]) {
                    out.push(token);
                    i += len;
                    continue;
                }
                out.push(Token::Char('['));
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

/// The bracket expression at the start of `p` and its length, or None when
/// it is not closed. `]` right after `[` or `[!` is a member, not the end.
fn class(p: &[char]) -> Option<(Token, usize)> {
    let mut i = 1;
    let negated = matches!(p.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < p.len() {
        let c = p[i];
        if c == ']' && !first {
            let token = match items.as_slice() {
                [(a, b)] if a == b && !negated => Token::Char(*a),
                _ => Token::Class { negated, items },
            };
            return Some((token, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            items.push((c, p[i + 2]));
            i += 3;
        } else {
            items.push((c, c));
            i += 1;
        }
    }
    None
}

fn literal(tokens: &[Token]) -> Option<String> {
    tokens.iter().map(|t| if let Token::Char(c) = t { Some(*c) } else { None }).collect()
}

/// Whether a pattern component holds a wildcard (`**` included); escapes
/// like `[*]` are not wildcards.
pub fn has_wildcard(component: &str) -> bool {
    literal(&tokenize(component)).is_none()
}

/// The file name a component without wildcards stands for (escapes removed).
pub fn unescape(component: &str) -> String {
    tokenize(component)
        .into_iter()
        .map(|t| match t {
            Token::Char(c) => c.to_string(),
            Token::Any => "?".into(),
            Token::Star => "*".into(),
            Token::Class { .. } => String::new(),
        })
        .collect()
}

/// Whether a file or directory name matches one pattern component. A name
/// starting with `.` is matched by a wildcard only when the component
/// starts with an explicit `.`.
pub fn match_component(pattern: &str, name: &str) -> bool {
    let tokens = tokenize(pattern);
    if name.starts_with('.') && tokens.first() != Some(&Token::Char('.')) {
        return literal(&tokens).is_some_and(|l| l == name);
    }
    let chars: Vec<char> = name.chars().collect();
    glob(&tokens, &chars)
}

/// Token matching with backtracking to the last `*` (linear in practice).
fn glob(p: &[Token], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(Token::Star) => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some(Token::Any) => true,
            Some(Token::Char(c)) => *c == n[ni],
            Some(Token::Class { negated, items }) => items.iter().any(|(a, b)| *a <= n[ni] && n[ni] <= *b) != *negated,
            None => false,
        };
        if step {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|t| *t == Token::Star)
}

/// Whether a relative path (its components) matches pattern components,
/// `**` standing for any number of directories (none included) whose names
/// do not start with `.`. A trailing `**` matches every file below.
pub fn match_path(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            if rest.is_empty() {
                return !path.is_empty() && path.iter().all(|c| !c.starts_with('.'));
            }
            (0..=path.len()).any(|skip| path[..skip].iter().all(|d| !d.starts_with('.')) && match_path(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((name, path_rest)) => match_component(p, name) && match_path(rest, path_rest),
            None => false,
        },
    }
}

/// A pattern resolved against the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// No wildcard: one file.
    File(PathBuf),
    /// The pattern's leading directory without wildcards, and the
    /// components to match below it.
    Walk { base: PathBuf, pattern: Vec<String> },
}

impl Resolved {
    /// Whether the pattern names one specific file.
    pub fn is_single(&self) -> bool {
        matches!(self, Resolved::File(_))
    }
}

/// Resolves an (env-expanded) pattern: relative to `wd` unless absolute;
/// `.` and `..` are applied lexically.
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
    let to_path = |ps: &[String]| -> PathBuf {
        let mut p = PathBuf::from("/");
        p.extend(ps.iter().map(|c| unescape(c)));
        p
    };
    match parts.iter().position(|p| has_wildcard(p)) {
        None => Resolved::File(to_path(&parts)),
        Some(at) => Resolved::Walk { base: to_path(&parts[..at]), pattern: parts[at..].to_vec() },
    }
}

/// A file a pattern matched: its path, and its name relative to the
/// pattern's leading directory (for a single file: its file name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Match {
    pub path: PathBuf,
    pub relative: String,
}

/// Where a path is opened from: below the task directory `guard` (its
/// handle) when it lies there, else from `/`; in both cases no component
/// may be a symbolic link.
pub fn locate(path: &Path, guard: &Dir) -> std::io::Result<(Dir, String)> {
    match path.strip_prefix(guard.path()) {
        Ok(rel) => Ok((guard.clone(), rel.to_string_lossy().into_owned())),
        Err(_) => Ok((Dir::open(Path::new("/"))?, path.to_string_lossy().trim_start_matches('/').to_string())),
    }
}

/// The regular files a resolved pattern names, sorted. No symbolic link is
/// followed, to a file or a directory, anywhere on a file's path: a task
/// must not be able to have the agent upload a file it could not read
/// itself. Paths below `guard` (the task directory) are walked from its
/// handle; other absolute paths from `/`.
pub fn find(resolved: &Resolved, guard: &Dir) -> Vec<Match> {
    match resolved {
        Resolved::File(p) => {
            let regular = locate(p, guard).and_then(|(at, rel)| at.stat(&rel)).is_ok_and(|m| m.kind == Kind::File);
            match p.file_name() {
                Some(name) if regular => vec![Match { path: p.clone(), relative: name.to_string_lossy().into_owned() }],
                _ => Vec::new(),
            }
        }
        Resolved::Walk { base, pattern } => {
            let mut out = Vec::new();
            if let Ok(dir) = locate(base, guard).and_then(|(at, rel)| at.open_dir(&rel)) {
                walk(&dir, base, "", pattern, &mut out);
            }
            out.sort();
            out.dedup();
            out
        }
    }
}

/// Entries of a directory as (name, is a directory, is a regular file);
/// links are neither; unreadable directories have none.
fn entries(dir: &Dir) -> Vec<(String, bool, bool)> {
    dir.entries().unwrap_or_default().into_iter().map(|(name, kind)| (name, kind == Kind::Dir, kind == Kind::File)).collect()
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// Matches `pattern` below `dir` (reached as `base`/`rel`); every
/// directory is entered by its handle, never through a link.
fn walk(dir: &Dir, base: &Path, rel: &str, pattern: &[String], out: &mut Vec<Match>) {
    let Some((comp, rest)) = pattern.split_first() else { return };
    let found = |r: String| Match { path: base.join(&r), relative: r };
    if comp == "**" {
        if rest.is_empty() {
            // Every (non-hidden) file below.
            for (name, is_dir, is_file) in entries(dir) {
                if name.starts_with('.') {
                    continue;
                }
                let r = join_rel(rel, &name);
                if is_file {
                    out.push(found(r));
                } else if is_dir {
                    if let Ok(sub) = dir.open_dir(&name) {
                        walk(&sub, base, &r, pattern, out);
                    }
                }
            }
            return;
        }
        walk(dir, base, rel, rest, out);
        for (name, is_dir, _) in entries(dir) {
            if is_dir && !name.starts_with('.') {
                if let Ok(sub) = dir.open_dir(&name) {
                    walk(&sub, base, &join_rel(rel, &name), pattern, out);
                }
            }
        }
        return;
    }
    if !has_wildcard(comp) {
        let name = unescape(comp);
        let Ok(meta) = dir.stat(&name) else { return };
        let r = join_rel(rel, &name);
        if rest.is_empty() && meta.kind == Kind::File {
            out.push(found(r));
        } else if !rest.is_empty() && meta.kind == Kind::Dir {
            if let Ok(sub) = dir.open_dir(&name) {
                walk(&sub, base, &r, rest, out);
            }
        }
        return;
    }
    for (name, is_dir, is_file) in entries(dir) {
        if !match_component(comp, &name) {
            continue;
        }
        let r = join_rel(rel, &name);
        if rest.is_empty() && is_file {
            out.push(found(r));
        } else if !rest.is_empty() && is_dir {
            if let Ok(sub) = dir.open_dir(&name) {
                walk(&sub, base, &r, rest, out);
            }
        }
    }
}

/// The blob name of a matched file. With a wildcard pattern `path` is a
/// virtual directory put before the file's path relative to the pattern's
/// leading directory; for a single file `path` is the blob name itself.
/// Without `path`: the relative path (a single file's name).
pub fn blob_name(path: Option<&str>, relative: &str, single: bool) -> String {
    let path = path.map(|p| p.trim_start_matches('/')).filter(|p| !p.is_empty());
    match (path, single) {
        (Some(p), true) => p.to_string(),
        (Some(p), false) => match p.trim_end_matches('/') {
            "" => relative.to_string(),
            dir => format!("{dir}/{relative}"),
        },
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
        assert!(!match_component("abc*", "ab"));
        assert!(match_component("a?c", "abc"));
        assert!(!match_component("a?c", "ac"));
        assert!(!match_component("a?c", "abbc"));
        assert!(match_component("[abc].log", "b.log"));
        assert!(!match_component("[abc].log", "d.log"));
        assert!(match_component("[a-c]1", "c1"));
        assert!(!match_component("[a-c]1", "d1"));
        assert!(!match_component("[!abc]1", "a1"));
        assert!(match_component("[!abc]1", "x1"));
        assert!(match_component("[^a-c]1", "x1"));
        assert!(match_component("[]a]", "]"), "a leading ] is a member");
        assert!(match_component("x[a-]", "x-"), "a trailing - is a member");
        assert!(match_component("*a*b*c", "xxaybzzc"));
        assert!(!match_component("*a*b*c", "xxaybzzcd"));
        assert!(match_component("**", "anything"));
        assert!(match_component("a[", "a["), "an unclosed bracket is literal");
        assert!(match_component("ünï*", "ünïcode"));
    }

    #[test]
    fn escapes_are_literals_not_wildcards() {
        assert!(match_component("abc[*]", "abc*"));
        assert!(!match_component("abc[*]", "abcd"));
        assert!(match_component("q[?]", "q?"));
        assert!(!match_component("q[?]", "qx"));
        assert!(!has_wildcard("abc[*]"));
        assert!(!has_wildcard("plain.txt"));
        assert!(!has_wildcard("a["));
        assert!(has_wildcard("a[bc]"));
        assert!(has_wildcard("a[!b]"));
        assert!(has_wildcard("**"));
        assert_eq!(unescape("abc[*]"), "abc*");
        assert_eq!(unescape("[[]x[]]"), "[x]");
    }

    #[test]
    fn dot_files_need_an_explicit_dot() {
        assert!(!match_component("*.gif", ".a.gif"));
        assert!(match_component(".*.gif", ".a.gif"));
        assert!(!match_component("?a", ".a"));
        assert!(!match_component("[.]a", "xa"));
        assert!(match_component(".hidden", ".hidden"), "a literal name is not a wildcard");
        assert!(match_component("[.]hidden", ".hidden"), "an escaped dot is explicit too");
        assert!(!match_component("*", ".bashrc"));
        assert!(!match_path(&parts("**/*.txt"), &parts(".git/a.txt")), "** skips hidden directories");
        assert!(!match_path(&parts("*/a.txt"), &parts(".git/a.txt")));
        assert!(match_path(&parts(".git/*.txt"), &parts(".git/a.txt")));
        assert!(!match_path(&parts("**"), &parts("d/.env")));
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
        assert!(match_path(&parts("out/**/r?.csv"), &parts("out/r1.csv")));
        assert!(!match_path(&parts("out/**/r?.csv"), &parts("in/a/r1.csv")));
        assert!(match_path(&parts("a/**"), &parts("a/b/c")));
        assert!(!match_path(&parts("a/**"), &parts("a")));
    }

    #[test]
    fn environment_expansion() {
        let env: BTreeMap<String, String> =
            [("AZ_BATCH_TASK_DIR".to_string(), "/t".to_string()), ("X".into(), "1".into()), ("_y2".into(), "z".into())].into();
        assert_eq!(expand_env("$AZ_BATCH_TASK_DIR/out/*.txt", &env), "/t/out/*.txt");
        assert_eq!(expand_env("${X}a$X.$NOPE", &env), "1a1.");
        assert_eq!(expand_env("${_y2}/$_y2-", &env), "z/z-");
        assert_eq!(expand_env("cost$", &env), "cost$");
        assert_eq!(expand_env("a$5b", &env), "a$5b", "not a name");
        assert_eq!(expand_env("${X", &env), "${X", "unclosed");
        assert_eq!(expand_env("${}", &env), "${}");
        assert_eq!(expand_env("ü$X€", &env), "ü1€");
    }

    #[test]
    fn resolving_patterns() {
        let wd = Path::new("/n/workitems/j/job-1/t/wd");
        assert_eq!(resolve("../stdout.txt", wd), Resolved::File("/n/workitems/j/job-1/t/stdout.txt".into()));
        assert_eq!(resolve("../std*.txt", wd), Resolved::Walk { base: "/n/workitems/j/job-1/t".into(), pattern: vec!["std*.txt".into()] });
        assert_eq!(
            resolve("out/**/*.log", wd),
            Resolved::Walk { base: "/n/workitems/j/job-1/t/wd/out".into(), pattern: parts("**/*.log") }
        );
        assert_eq!(resolve("./a/./b", wd), Resolved::File("/n/workitems/j/job-1/t/wd/a/b".into()));
        assert_eq!(resolve("/abs/f[*]", wd), Resolved::File("/abs/f*".into()));
        assert_eq!(resolve("/abs/*/x", wd), Resolved::Walk { base: "/abs".into(), pattern: parts("*/x") });
        assert!(resolve("a.txt", wd).is_single());
        assert!(!resolve("a?.txt", wd).is_single());
    }

    #[test]
    fn blob_names() {
        assert_eq!(blob_name(Some("renamed/d.bin"), "data.bin", true), "renamed/d.bin");
        assert_eq!(blob_name(None, "data.bin", true), "data.bin");
        assert_eq!(blob_name(Some("txt/"), "sub/a.txt", false), "txt/sub/a.txt");
        assert_eq!(blob_name(Some("res"), "a/b.txt", false), "res/a/b.txt");
        assert_eq!(blob_name(Some("/"), "a.txt", false), "a.txt");
        assert_eq!(blob_name(None, "sub/a.txt", false), "sub/a.txt");
        assert_eq!(blob_name(Some(""), "a.txt", true), "a.txt");
    }

    /// Builds a tree: names ending in `/` are directories.
    fn tree(entries: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for e in entries {
            let p = dir.path().join(e);
            if e.ends_with('/') {
                std::fs::create_dir_all(p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, e).unwrap();
            }
        }
        dir
    }

    fn found(root: &Path, wd: &str, pattern: &str) -> Vec<String> {
        let guard = Dir::open(root).unwrap();
        let matched = find(&resolve(pattern, &root.join(wd)), &guard);
        for m in &matched {
            assert!(m.path.ends_with(&m.relative), "{m:?}");
        }
        matched.into_iter().map(|m| m.relative).collect()
    }

    #[test]
    fn finding_files_on_disk() {
        let t = tree(&[
            "stdout.txt",
            "stderr.txt",
            "wd/a.txt",
            "wd/b.bin",
            "wd/.hidden.txt",
            "wd/.git/c.txt",
            "wd/out/x/y/r1.csv",
            "wd/out/r2.csv",
            "wd/out/r10.csv",
            "wd/empty/",
            "wd/star*",
            "wd/dir.txt/",
        ]);
        let root = t.path();
        assert_eq!(found(root, "wd", "*.txt"), ["a.txt"], "no dot files, no directories");
        assert_eq!(found(root, "wd", ".*.txt"), [".hidden.txt"]);
        assert_eq!(found(root, "wd", "**/*.txt"), ["a.txt"]);
        assert_eq!(found(root, "wd", "out/**/r?.csv"), ["r2.csv", "x/y/r1.csv"], "relative to the leading directory");
        assert_eq!(found(root, "wd", "out/**"), ["r10.csv", "r2.csv", "x/y/r1.csv"]);
        assert_eq!(found(root, "wd", "../std*.txt"), ["stderr.txt", "stdout.txt"]);
        assert_eq!(found(root, "wd", "../stdout.txt"), ["stdout.txt"]);
        assert_eq!(found(root, "wd", "star[*]"), ["star*"]);
        assert_eq!(found(root, "wd", "*/x/*/r1.csv"), ["out/x/y/r1.csv"]);
        assert!(found(root, "wd", "missing.txt").is_empty());
        assert!(found(root, "wd", "dir.txt").is_empty(), "a directory is not uploaded");
        assert!(found(root, "wd", "nowhere/*.txt").is_empty());
        assert_eq!(found(root, "wd", &format!("{}/wd/*.bin", root.display())), ["b.bin"], "absolute patterns");
        assert_eq!(found(root, "wd", "**/**/r2.csv"), ["out/r2.csv"], "no duplicates");
    }

    #[test]
    fn symbolic_links_are_not_followed() {
        let t = tree(&["outside/secret.txt", "wd/real.txt"]);
        let wd = t.path().join("wd");
        std::os::unix::fs::symlink(t.path().join("outside"), wd.join("linkdir")).unwrap();
        std::os::unix::fs::symlink(t.path().join("outside/secret.txt"), wd.join("link.txt")).unwrap();
        assert_eq!(found(t.path(), "wd", "**/*.txt"), ["real.txt"]);
        assert!(found(t.path(), "wd", "linkdir/*.txt").is_empty(), "a linked leading directory");
        assert!(found(t.path(), "wd", "linkdir/secret.txt").is_empty());
        assert!(found(t.path(), "wd", "link.txt").is_empty());
        assert_eq!(found(t.path(), "wd", "../outside/*.txt"), ["secret.txt"], "real directories are fine");
        assert!(found(t.path(), "wd", "*/secret.txt").is_empty());
    }
}
