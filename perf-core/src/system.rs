//! The machine's resources (CPU, memory, disks, network), through sysinfo, for the admin
//! API's `/system/resources` and the resource alerts.
//!
//! The sampler, [`SystemMonitor`], needs the `system` feature (on by default); the figures'
//! types are here without it.

#[cfg(feature = "system")]
use std::time::Instant;

#[cfg(feature = "system")]
use parking_lot::Mutex;
use serde::Serialize;
#[cfg(feature = "system")]
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, System};

/// The machine at one moment, from [`SystemMonitor::sample`]. Percentages are 0 to 100.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SystemResources {
    /// Over all cores, since the previous sample (0 on the first).
    pub cpu_percent: f64,
    /// Logical CPUs the operating system reports.
    pub cpu_cores: usize,
    /// The machine's RAM, in bytes (not a container's limit: see
    /// [`MemoryUsage`](crate::memory::MemoryUsage) for the process's).
    pub memory_total_bytes: u64,
    /// RAM that can be given to programs without swapping, in bytes (reclaimable caches
    /// included).
    pub memory_available_bytes: u64,
    /// RAM not available: `(total - available) / total`, in percent.
    pub memory_percent: f64,
    /// Every mounted disk with a size, in the operating system's order.
    pub disks: Vec<DiskUsage>,
    /// The fullest disk's use.
    pub disk_percent: f64,
    /// Bytes received since boot, over every interface.
    pub network_received_bytes: u64,
    /// Bytes sent since boot, over every interface.
    pub network_transmitted_bytes: u64,
}

/// One mounted disk in [`SystemResources::disks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DiskUsage {
    /// Where it is mounted, such as `/` or `/var/lib/data`.
    pub mount_point: String,
    /// Its size, in bytes.
    pub total_bytes: u64,
    /// Bytes this process could still write (space reserved for root excluded).
    pub available_bytes: u64,
    /// `(total - available) / total`, in percent.
    pub used_percent: f64,
}

/// Samples the machine; keeps sysinfo's state between samples, which CPU usage needs.
#[cfg(feature = "system")]
#[cfg_attr(docsrs, doc(cfg(feature = "system")))]
pub struct SystemMonitor {
    state: Mutex<State>,
}

#[cfg(feature = "system")]
struct State {
    system: System,
    disks: Disks,
    networks: Networks,
    last_cpu_refresh: Option<Instant>,
}

#[cfg(feature = "system")]
impl std::fmt::Debug for SystemMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemMonitor").finish_non_exhaustive()
    }
}

#[cfg(feature = "system")]
impl Default for SystemMonitor {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                system: System::new(),
                disks: Disks::new_with_refreshed_list(),
                networks: Networks::new_with_refreshed_list(),
                last_cpu_refresh: None,
            }),
        }
    }
}

#[cfg(feature = "system")]
impl SystemMonitor {
    /// A fresh sample (a few /proc reads; blocking, but short).
    pub fn sample(&self) -> SystemResources {
        let mut state = self.state.lock();
        let State {
            system,
            disks,
            networks,
            last_cpu_refresh,
        } = &mut *state;
        // CPU usage is the change since the previous refresh, which must be long enough ago.
        if last_cpu_refresh.is_none_or(|at| at.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL) {
            system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
            *last_cpu_refresh = Some(Instant::now());
        }
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        disks.refresh(true);
        networks.refresh(true);

        let disks: Vec<DiskUsage> = disks
            .iter()
            .filter(|disk| disk.total_space() > 0)
            .map(|disk| DiskUsage {
                mount_point: disk.mount_point().display().to_string(),
                total_bytes: disk.total_space(),
                available_bytes: disk.available_space(),
                used_percent: percent(
                    disk.total_space().saturating_sub(disk.available_space()),
                    disk.total_space(),
                ),
            })
            .collect();
        let (received, transmitted) = networks.values().fold((0, 0), |(rx, tx), data| {
            (rx + data.total_received(), tx + data.total_transmitted())
        });
        let total = system.total_memory();
        let available = system.available_memory();
        SystemResources {
            cpu_percent: f64::from(system.global_cpu_usage()),
            cpu_cores: system.cpus().len(),
            memory_total_bytes: total,
            memory_available_bytes: available,
            memory_percent: percent(total.saturating_sub(available), total),
            disk_percent: disks.iter().map(|d| d.used_percent).fold(0.0, f64::max),
            disks,
            network_received_bytes: received,
            network_transmitted_bytes: transmitted,
        }
    }
}

#[cfg(feature = "system")]
impl SystemResources {
    /// Sets `resource_usage_percent{type}` (`cpu`, `memory`, `disk`) and
    /// `network_io_bytes_total{direction}`.
    pub(crate) fn publish_metrics(&self) {
        use crate::metrics::{NETWORK_IO_BYTES_TOTAL, RESOURCE_USAGE_PERCENT, labels, name};
        for (kind, percent) in [
            ("cpu", self.cpu_percent),
            ("memory", self.memory_percent),
            ("disk", self.disk_percent),
        ] {
            ::metrics::gauge!(name(RESOURCE_USAGE_PERCENT), labels::TYPE => kind).set(percent);
        }
        // The operating system's totals, given as they are: a counter's value only rises
        // (an interface that went away lowers the sum; the recorder keeps the highest).
        for (direction, bytes) in [
            ("received", self.network_received_bytes),
            ("transmitted", self.network_transmitted_bytes),
        ] {
            ::metrics::counter!(name(NETWORK_IO_BYTES_TOTAL), labels::DIRECTION => direction)
                .absolute(bytes);
        }
    }
}

#[cfg(feature = "system")]
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(all(test, feature = "system"))]
mod tests {
    use super::*;

    #[test]
    fn a_sample_describes_this_machine() {
        let monitor = SystemMonitor::default();
        let first = monitor.sample();
        assert!(first.memory_total_bytes > 0);
        assert!(first.memory_percent > 0.0 && first.memory_percent <= 100.0);
        assert!(first.disk_percent >= 0.0 && first.disk_percent <= 100.0);
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let second = monitor.sample();
        assert!(second.cpu_cores > 0);
        assert!(
            (0.0..=100.0).contains(&second.cpu_percent),
            "{}",
            second.cpu_percent
        );
    }
}
