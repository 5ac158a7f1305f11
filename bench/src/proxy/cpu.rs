//! Where the CPU goes during a round, from /proc: the load generator's
//! threads, the rest of this process (the proxy, plus the in-process control
//! plane idling), the echo pod's process, and the machine as a whole.

use std::ops::{AddAssign, Sub};

use super::load::THREAD_NAME;

/// CPU time in clock ticks, by consumer.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// The load generator's threads.
    pub load: u64,
    /// Every other thread of this process: the proxy and the control plane.
    pub moor: u64,
    /// The echo pod's process.
    pub echo: u64,
    /// The whole machine, busy (all but idle and iowait), summed over cores.
    pub busy: u64,
    /// The whole machine, in softirq (most of the network stack's receive side).
    pub softirq: u64,
    /// The whole machine, busy or not, summed over cores.
    pub total: u64,
}

// === impl Cpu ===

impl Cpu {
    /// Reads the counters now; `echo` is the echo pod's pid.
    pub fn read(echo: u32) -> anyhow::Result<Self> {
        let mut cpu = Self::default();
        for task in std::fs::read_dir("/proc/self/task")? {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
                continue;
            };
            let Some((comm, ticks)) = thread_ticks(&stat) else {
                continue;
            };
            if comm.starts_with(THREAD_NAME) {
                cpu.load += ticks;
            } else {
                cpu.moor += ticks;
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{echo}/stat"))?;
        cpu.echo = thread_ticks(&stat).map_or(0, |(_, ticks)| ticks);
        let machine = std::fs::read_to_string("/proc/stat")?;
        let fields: Vec<u64> = machine
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        cpu.total = fields.iter().take(8).sum();
        cpu.busy = cpu.total - field(3) - field(4);
        cpu.softirq = field(6);
        Ok(cpu)
    }
}

impl Sub for Cpu {
    type Output = Cpu;

    fn sub(self, earlier: Cpu) -> Cpu {
        Cpu {
            load: self.load.saturating_sub(earlier.load),
            moor: self.moor.saturating_sub(earlier.moor),
            echo: self.echo.saturating_sub(earlier.echo),
            busy: self.busy.saturating_sub(earlier.busy),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            total: self.total.saturating_sub(earlier.total),
        }
    }
}

impl AddAssign for Cpu {
    fn add_assign(&mut self, other: Cpu) {
        self.load += other.load;
        self.moor += other.moor;
        self.echo += other.echo;
        self.busy += other.busy;
        self.softirq += other.softirq;
        self.total += other.total;
    }
}

/// A task's name and its user plus system ticks, from its `stat` line.
fn thread_ticks(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may itself hold spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After the name: state (field 3), ... utime (14), stime (15).
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_of_a_thread_with_spaces_in_its_name() {
        let stat = "42 (tokio (w) 1) S 1 1 1 0 -1 4194304 98 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(thread_ticks(stat), Some(("tokio (w) 1", 12)));
    }
}
