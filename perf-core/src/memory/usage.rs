//! One sample of the process's memory, and where samples come from.

use std::fmt;

use serde::Serialize;

use super::{allocator, machine, tracking};

/// The process's memory, sampled at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryUsage {
    /// Resident set size: the process's pages in RAM.
    pub rss_bytes: u64,
    /// Virtual size: every mapping of the process, resident or not.
    pub virtual_bytes: u64,
    /// The allocator's own figures, where it reports them.
    pub allocator: Option<allocator::AllocatorStats>,
    /// Counts from [`TrackingAllocator`](super::TrackingAllocator), when it is installed.
    pub tracked: Option<tracking::TrackedStats>,
    /// The machine's memory (`MemTotal` on Linux).
    pub system_total_bytes: u64,
    /// Memory the machine can give new work without swapping (`MemAvailable` on Linux).
    pub system_available_bytes: u64,
    /// The limit usage is measured against.
    pub limit_bytes: u64,
    /// Where `limit_bytes` comes from.
    pub limit_source: LimitSource,
    /// `rss_bytes / limit_bytes`.
    pub usage_fraction: f64,
}

/// Where the effective memory limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitSource {
    /// `memory_limit_bytes` in the configuration.
    Configured,
    /// The memory limit of the process's cgroup (a container's limit).
    Cgroup,
    /// Physical memory.
    Physical,
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitSource::Configured => "configured",
            LimitSource::Cgroup => "cgroup",
            LimitSource::Physical => "physical",
        })
    }
}

/// Where [`MemoryManager`](super::MemoryManager) gets its samples: the operating system, or a
/// test's own figures.
pub trait UsageSource: Send + Sync + 'static {
    /// The process's memory now. An error makes the sample missing: no pressure change, and
    /// a cleanup reports [`CleanupSkipped::NoSample`](super::CleanupSkipped::NoSample).
    fn sample(&self) -> std::io::Result<MemoryUsage>;

    /// The resident set size alone, read around each step of a cleanup to say what the step
    /// freed. By default the `rss_bytes` of a full [`sample`](Self::sample).
    fn rss_bytes(&self) -> std::io::Result<u64> {
        self.sample().map(|usage| usage.rss_bytes)
    }
}

impl UsageSource for Box<dyn UsageSource> {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        (**self).sample()
    }

    fn rss_bytes(&self) -> std::io::Result<u64> {
        (**self).rss_bytes()
    }
}

/// Samples this process from the operating system. On Linux the process figures come from
/// `/proc/self/statm` and the system's from `/proc/meminfo` (elsewhere through sysinfo); the
/// limit is resolved once, when the source is made.
pub struct SystemUsage {
    limit_bytes: u64,
    limit_source: LimitSource,
}

impl fmt::Debug for SystemUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemUsage")
            .field("limit_bytes", &self.limit_bytes)
            .field("limit_source", &self.limit_source)
            .finish_non_exhaustive()
    }
}

impl SystemUsage {
    /// A source measuring against `configured_limit`, else the cgroup's limit, else physical
    /// memory.
    pub fn new(configured_limit: Option<u64>) -> Self {
        let physical = machine::machine_memory().unwrap_or_default().total;
        // cgroup v1 writes an unlimited cgroup as a number past the machine's memory.
        let cgroup = machine::cgroup_limit().filter(|&limit| limit > 0 && limit < physical);
        let (limit_bytes, limit_source) = match (configured_limit, cgroup) {
            (Some(limit), _) => (limit, LimitSource::Configured),
            (None, Some(limit)) => (limit, LimitSource::Cgroup),
            (None, None) => (physical.max(1), LimitSource::Physical),
        };
        Self {
            limit_bytes,
            limit_source,
        }
    }
}

impl UsageSource for SystemUsage {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        let process = process_memory()?;
        // The machine's figures are 0 where they cannot be read; the process's still count.
        let machine = machine::machine_memory().unwrap_or_default();
        Ok(MemoryUsage {
            rss_bytes: process.rss,
            virtual_bytes: process.virtual_size,
            allocator: allocator::stats(),
            tracked: tracking::tracked_stats(),
            system_total_bytes: machine.total,
            system_available_bytes: machine.available,
            limit_bytes: self.limit_bytes,
            limit_source: self.limit_source,
            usage_fraction: process.rss as f64 / self.limit_bytes as f64,
        })
    }

    /// One small read of `/proc/self/statm` on Linux, without the system's figures.
    fn rss_bytes(&self) -> std::io::Result<u64> {
        process_memory().map(|process| process.rss)
    }
}

pub(crate) struct ProcessMemory {
    pub(crate) rss: u64,
    pub(crate) virtual_size: u64,
}

/// The process's resident and virtual size: one small read of `/proc/self/statm`.
#[cfg(target_os = "linux")]
pub(crate) fn process_memory() -> std::io::Result<ProcessMemory> {
    use std::io::{Error, ErrorKind};

    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let mut pages = statm.split_ascii_whitespace().map(str::parse::<u64>);
    let mut next = || {
        pages
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "unexpected /proc/self/statm"))
    };
    let (virtual_pages, resident_pages) = (next()?, next()?);
    let page = page_size();
    Ok(ProcessMemory {
        rss: resident_pages * page,
        virtual_size: virtual_pages * page,
    })
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// The process's resident and virtual size, through sysinfo (this process only).
#[cfg(not(target_os = "linux"))]
pub(crate) fn process_memory() -> std::io::Result<ProcessMemory> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

    let pid = sysinfo::get_current_pid()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::Unsupported, e))?;
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_memory(),
    );
    let process = system.process(pid).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "this process is not listed")
    })?;
    Ok(ProcessMemory {
        rss: process.memory(),
        virtual_size: process.virtual_memory(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_sees_this_process_and_the_machine() {
        let source = SystemUsage::new(None);
        let usage = source.sample().expect("sampled");
        assert!(
            usage.rss_bytes > 1 << 20,
            "at least a MiB resident: {usage:?}"
        );
        assert!(usage.virtual_bytes >= usage.rss_bytes);
        assert!(usage.system_total_bytes >= usage.system_available_bytes);
        assert!(usage.system_total_bytes > usage.rss_bytes);
        assert!(usage.limit_bytes <= usage.system_total_bytes);
        assert!(usage.usage_fraction > 0.0 && usage.usage_fraction < 1.0);
    }

    #[test]
    fn a_configured_limit_wins() {
        let usage = SystemUsage::new(Some(1 << 40)).sample().expect("sampled");
        assert_eq!(usage.limit_bytes, 1 << 40);
        assert_eq!(usage.limit_source, LimitSource::Configured);
        let expected = usage.rss_bytes as f64 / (1u64 << 40) as f64;
        assert!((usage.usage_fraction - expected).abs() < 1e-12);
    }

    #[test]
    fn rss_follows_touched_memory() {
        let before = process_memory().expect("sampled").rss;
        let block = vec![1u8; 64 << 20];
        let during = process_memory().expect("sampled").rss;
        assert!(
            during >= before + (48 << 20),
            "64 MiB touched: {before} -> {during}"
        );
        drop(block);
    }
}
