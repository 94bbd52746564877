use super::*;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt};

/// Runs `f` twice: with `openat2` (where the kernel has it) and with the
/// component-by-component walk.
fn both(f: impl Fn()) {
    f();
    FORCE_WALK.with(|w| w.set(true));
    f();
    FORCE_WALK.with(|w| w.set(false));
}

fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("a/b")).unwrap();
    std::fs::write(root.path().join("a/b/f.txt"), "inside").unwrap();
    std::fs::write(outside.path().join("secret"), "SECRET").unwrap();
    symlink(outside.path(), root.path().join("a/linkdir")).unwrap();
    symlink(outside.path().join("secret"), root.path().join("a/link")).unwrap();
    symlink("b/f.txt", root.path().join("a/inner")).unwrap();
    (root, outside)
}

#[test]
fn components_refuse_climbing() {
    assert_eq!(components("/a//./b/").unwrap(), ["a", "b"]);
    assert!(components("").unwrap().is_empty());
    assert!(components("a/../b").is_err());
    assert!(components("..").is_err());
    assert!(components("a\0b").is_err());
}

#[test]
fn links_are_never_followed() {
    both(|| {
        let (root, _outside) = tree();
        let d = Dir::open(root.path()).unwrap();
        let (mut f, meta) = d.open_file("a/b/f.txt").unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), meta.size), ("inside", 6));
        for p in ["a/link", "a/linkdir/secret", "a/inner"] {
            let e = d.open_file(p).unwrap_err();
            assert!(is_link(&e), "{p}: {e}");
        }
        let e = d.open_dir("a/linkdir").unwrap_err();
        assert!(is_link(&e), "walk={} {e:?}", FORCE_WALK.with(|w| w.get()));
        assert!(is_link(&d.stat("a/linkdir/secret").unwrap_err()));
        assert_eq!(d.stat("a/link").unwrap().kind, Kind::Symlink, "a link is described, not followed");
        assert_eq!(d.stat("a").unwrap().kind, Kind::Dir);
        assert!(is_missing(&d.open_file("a/nope").unwrap_err()));
        assert_eq!(d.open_file("a").unwrap_err().raw_os_error(), Some(Errno::ISDIR.raw_os_error()));
        assert!(d.open_file("a/../a/b/f.txt").is_err());
        let sub = d.open_dir("a/b").unwrap();
        assert_eq!(sub.path(), root.path().join("a/b"));
        assert!(sub.open_file("f.txt").is_ok());
    });
}

#[test]
fn beneath_follows_only_links_that_stay_inside() {
    let (root, _outside) = tree();
    let d = Dir::open(root.path()).unwrap();
    assert!(d.open_file_beneath("a/link").is_err());
    assert!(d.open_file_beneath("a/linkdir/secret").is_err());
    if use_openat2() {
        assert!(d.open_file_beneath("a/inner").is_ok(), "a link inside the root is fine");
    }
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o666) }, 0);
    let d = Dir::open(root.path()).unwrap();
    let e = d.open_file("fifo").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    // Appending to a FIFO in place of a log file replaces it.
    let mut f = d.append_file("fifo", 0o644, |_| true).unwrap();
    f.write_all(b"x").unwrap();
    assert!(std::fs::symlink_metadata(&fifo).unwrap().is_file());
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

#[test]
fn making_directories_never_passes_through_links() {
    both(|| {
        let (root, outside) = tree();
        let d = Dir::open(root.path()).unwrap();
        let made = d.make_dirs("x/y/z", None).unwrap();
        assert_eq!(made.path(), root.path().join("x/y/z"));
        assert!(root.path().join("x/y/z").is_dir());
        d.make_dirs("x/y/z", None).unwrap();
        assert!(is_link(&d.make_dirs("a/linkdir/new", None).unwrap_err()));
        assert!(!outside.path().join("new").exists());
        assert_eq!(d.make_dirs("a/b/f.txt/x", None).unwrap_err().raw_os_error(), Some(Errno::NOTDIR.raw_os_error()));
    });
}

#[test]
fn created_files_replace_whatever_is_in_their_place() {
    both(|| {
        let (root, outside) = tree();
        let d = Dir::open(root.path()).unwrap().open_dir("a").unwrap();
        let mut f = d.create_file("link", 0o600).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "SECRET");
        assert_eq!(std::fs::read_to_string(root.path().join("a/link")).unwrap(), "new");
        // A hard link to a file elsewhere is unlinked, not truncated.
        std::fs::hard_link(outside.path().join("secret"), root.path().join("a/hard")).unwrap();
        d.create_file("hard", 0o600).unwrap().write_all(b"mine").unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "SECRET");
        assert_eq!(d.create_file("b", 0o600).unwrap_err().raw_os_error(), Some(Errno::ISDIR.raw_os_error()));
    });
}

#[test]
fn appending_keeps_only_files_it_accepts() {
    let (root, outside) = tree();
    let d = Dir::open(root.path()).unwrap().open_dir("a").unwrap();
    std::fs::write(root.path().join("a/log"), "one\n").unwrap();
    d.append_file("log", 0o644, |m| m.nlink == 1).unwrap().write_all(b"two\n").unwrap();
    assert_eq!(std::fs::read_to_string(root.path().join("a/log")).unwrap(), "one\ntwo\n");
    // A link, or a file the caller does not accept, is replaced.
    d.append_file("link", 0o644, |_| true).unwrap().write_all(b"x").unwrap();
    assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "SECRET");
    std::fs::hard_link(outside.path().join("secret"), root.path().join("a/hard")).unwrap();
    d.append_file("hard", 0o644, |m| m.nlink == 1).unwrap().write_all(b"x").unwrap();
    assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "SECRET");
    assert_eq!(std::fs::read_to_string(root.path().join("a/hard")).unwrap(), "x");
}

#[test]
fn ensure_dir_replaces_a_link() {
    both(|| {
        let (root, outside) = tree();
        let d = Dir::open(root.path()).unwrap().open_dir("a").unwrap();
        let wd = d.ensure_dir("linkdir", None).unwrap();
        wd.create_file("out", 0o600).unwrap();
        assert!(std::fs::symlink_metadata(root.path().join("a/linkdir")).unwrap().is_dir());
        assert!(!outside.path().join("out").exists());
        assert!(outside.path().join("secret").exists());
    });
}

#[test]
fn removal_never_follows_links() {
    both(|| {
        let (root, outside) = tree();
        let d = Dir::open(root.path()).unwrap();
        assert_eq!(d.remove("a", false).unwrap_err().raw_os_error(), Some(Errno::NOTEMPTY.raw_os_error()));
        d.remove("a", true).unwrap();
        assert!(!root.path().join("a").exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "SECRET");
        assert!(is_missing(&d.remove("a", true).unwrap_err()));
    });
}

#[test]
fn entries_describe_links_as_links() {
    let (root, _outside) = tree();
    let d = Dir::open(root.path()).unwrap().open_dir("a").unwrap();
    let mut e = d.entries().unwrap();
    e.sort();
    assert_eq!(
        e,
        [
            ("b".to_string(), Kind::Dir),
            ("inner".to_string(), Kind::Symlink),
            ("link".to_string(), Kind::Symlink),
            ("linkdir".to_string(), Kind::Symlink)
        ]
    );
}

#[test]
fn owners_change_on_handles() {
    let (root, outside) = tree();
    let d = Dir::open(root.path()).unwrap();
    let me = std::fs::metadata(root.path()).unwrap();
    // Giving a directory to its owner again is a no-op anyone may do.
    d.open_dir("a").unwrap().chown(me.uid(), me.gid()).unwrap();
    if rustix::process::geteuid().is_root() {
        let victim = outside.path().join("secret");
        d.ensure_dir("linkdir", Some((4321, 4321))).unwrap();
        assert_eq!(std::fs::metadata(&victim).unwrap().uid(), me.uid());
        let made = d.make_dirs("m/n", Some((4321, 4321))).unwrap();
        assert_eq!(made.meta().unwrap().uid, 4321);
    } else {
        println!("not root: skipping the ownership half of this test");
    }
}
