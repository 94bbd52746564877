//! What the node's operating system says of its use, sent with each
//! heartbeat (`proto::NodeUsage`): the server samples it for autoscale
//! formulas (`$CPUPercent`, `$MemoryBytes`, `$DiskBytes`, the disk and
//! network counters). Read from `/proc` (through the `procfs` crate) and
//! `statvfs` of the node root: four small files and one system call,
//! cheap enough for every heartbeat. A value that cannot be read is left
//! out rather than guessed.
//!
//! These are the machine's figures: on Azure a node is a machine of its
//! own; several local nodes on one machine each report the whole machine.

use procfs::{Current, CurrentSI};
use proto::NodeUsage;
use std::path::Path;

/// Measures the node now; `root` is the node root (for `$DiskBytes`).
pub fn measure(root: &Path) -> NodeUsage {
    let mut u = NodeUsage::default();
    if let Ok(k) = procfs::KernelStats::current() {
        let t = &k.total;
        let idle = t.idle + t.iowait.unwrap_or(0);
        let busy = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
        u.cpu_busy = Some(busy);
        u.cpu_total = Some(busy + idle);
    }
    if let Ok(m) = procfs::Meminfo::current() {
        // MemAvailable is the kernel's own estimate of what could be had
        // without swapping; older kernels lack it.
        let free = m.mem_available.unwrap_or(m.mem_free + m.cached + m.buffers);
        u.memory_bytes = Some(m.mem_total.saturating_sub(free));
    }
    if let Ok(disks) = procfs::diskstats() {
        let (mut rb, mut wb, mut ro, mut wo) = (0u64, 0u64, 0u64, 0u64);
        for d in disks.iter().filter(|d| is_disk(&d.name)) {
            // Sectors in /proc/diskstats are 512 bytes whatever the device's.
            rb += d.sectors_read * 512;
            wb += d.sectors_written * 512;
            ro += d.reads;
            wo += d.writes;
        }
        (u.disk_read_bytes, u.disk_write_bytes, u.disk_read_ops, u.disk_write_ops) = (Some(rb), Some(wb), Some(ro), Some(wo));
    }
    if let Ok(devs) = procfs::net::dev_status() {
        let up = devs.values().filter(|d| d.name != "lo");
        let (rx, tx) = up.fold((0u64, 0u64), |(rx, tx), d| (rx + d.recv_bytes, tx + d.sent_bytes));
        (u.net_in_bytes, u.net_out_bytes) = (Some(rx), Some(tx));
    }
    u.disk_bytes = used_bytes(root);
    u
}

/// A whole disk, counted once: partitions repeat their disk's I/O, and
/// device-mapper and loop devices repeat the I/O of the disks below them.
fn is_disk(name: &str) -> bool {
    !["loop", "ram", "zram", "dm-", "sr"].iter().any(|p| name.starts_with(p)) && Path::new("/sys/block").join(name).exists()
}

/// Bytes in use on the file system holding `path`.
fn used_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) fills the zeroed struct; `c` is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_blocks as u64).saturating_sub(s.f_bfree as u64) * s.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every figure is read on Linux, and the counters only grow.
    #[test]
    fn measures_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let a = measure(dir.path());
        assert!(a.cpu_total.unwrap() > 0 && a.cpu_busy.unwrap() <= a.cpu_total.unwrap());
        assert!(a.memory_bytes.unwrap() > 0);
        assert!(a.disk_bytes.unwrap() > 0);
        assert!(a.net_in_bytes.is_some() && a.disk_read_ops.is_some());
        // Busy for a while (the counters tick every 10 ms): they move.
        std::fs::write(dir.path().join("f"), vec![1u8; 1 << 20]).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let b = loop {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let b = measure(dir.path());
            if b.cpu_total > a.cpu_total || start.elapsed() > std::time::Duration::from_secs(3) {
                break b;
            }
        };
        assert!(b.cpu_total.unwrap() > a.cpu_total.unwrap());
        assert!(b.cpu_busy.unwrap() >= a.cpu_busy.unwrap());
        assert!(b.disk_read_bytes.unwrap() >= a.disk_read_bytes.unwrap());
        assert!(b.net_out_bytes.unwrap() >= a.net_out_bytes.unwrap());
    }
}
