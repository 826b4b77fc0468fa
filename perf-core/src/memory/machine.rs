//! The machine's memory and the process's cgroup limit, for [`SystemUsage`](super::SystemUsage).
//! On Linux they are read from `/proc/meminfo` and the cgroup files, as sysinfo reads them, so
//! that the memory manager needs no sysinfo there; elsewhere they come through sysinfo.

/// The machine's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MachineMemory {
    pub(crate) total: u64,
    pub(crate) available: u64,
}

/// The machine's memory: one read of `/proc/meminfo`.
#[cfg(target_os = "linux")]
pub(crate) fn machine_memory() -> std::io::Result<MachineMemory> {
    std::fs::read_to_string("/proc/meminfo").map(|meminfo| parse_meminfo(&meminfo))
}

/// The total and available memory of `/proc/meminfo`, which gives KiB (though it writes
/// "kB"). Kernels before 3.14 give no `MemAvailable`: it is then free memory, buffers, page
/// cache and reclaimable slab, less shared memory, as sysinfo estimates it.
#[cfg(target_os = "linux")]
fn parse_meminfo(meminfo: &str) -> MachineMemory {
    let field = |name: &str| {
        meminfo
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    };
    let available = field("MemAvailable").unwrap_or_else(|| {
        let [free, buffers, cached, reclaimable, shared] =
            ["MemFree", "Buffers", "Cached", "SReclaimable", "Shmem"]
                .map(|name| field(name).unwrap_or(0));
        free.saturating_add(buffers)
            .saturating_add(cached)
            .saturating_add(reclaimable)
            .saturating_sub(shared)
    });
    MachineMemory {
        total: field("MemTotal").unwrap_or(0),
        available,
    }
}

/// The memory limit of the process's cgroup, if one is set: cgroup v2's `memory.max` (`max`
/// when unlimited), else cgroup v1's `memory.limit_in_bytes` (a huge number when unlimited).
/// Both are read at the root of the cgroup file system, which in a container is the
/// container's own cgroup.
#[cfg(target_os = "linux")]
pub(crate) fn cgroup_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    match read("/sys/fs/cgroup/memory.max") {
        Some(max) => max.trim().parse().ok(),
        None => read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?
            .trim()
            .parse()
            .ok(),
    }
}

/// The machine's memory, through sysinfo.
#[cfg(not(target_os = "linux"))]
pub(crate) fn machine_memory() -> std::io::Result<MachineMemory> {
    use sysinfo::{MemoryRefreshKind, System};

    let mut system = System::new();
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    Ok(MachineMemory {
        total: system.total_memory(),
        available: system.available_memory(),
    })
}

/// Cgroups are Linux's.
#[cfg(not(target_os = "linux"))]
pub(crate) fn cgroup_limit() -> Option<u64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_kib() {
        let meminfo = "MemTotal:       16303748 kB\nMemFree:         1000 kB\n\
                       MemAvailable:    8000000 kB\nBuffers:          500 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            MachineMemory {
                total: 16_303_748 * 1024,
                available: 8_000_000 * 1024,
            }
        );
    }

    #[test]
    fn old_kernels_available_memory_is_estimated() {
        let meminfo = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\n\
                       Shmem: 50 kB\nSReclaimable: 40 kB\n";
        assert_eq!(
            parse_meminfo(meminfo).available,
            (100 + 10 + 200 + 40 - 50) * 1024
        );
        assert_eq!(
            parse_meminfo("garbage\n:\nMemTotal: x kB"),
            MachineMemory::default()
        );
    }

    #[test]
    fn this_machine_has_memory() {
        let memory = machine_memory().expect("/proc/meminfo");
        assert!(memory.total > 0);
        assert!(memory.available <= memory.total, "{memory:?}");
    }

    /// The same figures as sysinfo, which the memory manager read them through before.
    #[cfg(feature = "system")]
    #[test]
    fn agrees_with_sysinfo() {
        use sysinfo::{MemoryRefreshKind, System};

        let mut system = System::new();
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let total = machine_memory().expect("/proc/meminfo").total;
        assert_eq!(total, system.total_memory());
        let ours = cgroup_limit().map(|limit| limit.min(total));
        let theirs = system.cgroup_limits().map(|limits| limits.total_memory);
        let limited = |limit: Option<u64>| limit.filter(|&limit| limit > 0 && limit < total);
        assert_eq!(limited(ours), limited(theirs));
    }
}
