//! CPU and memory of the network's processes, read from /proc on this machine: every node
//! network.json lists with a `pid` that is alive and runs `ordo`, and the private Postgres
//! of `ordo up` (its postmaster from `postgres/data/postmaster.pid` beside network.json,
//! with its backends). Nodes on other machines are simply not listed.
//!
//! CPU % is the (user + system) time a process spent during the run over the run's wall
//! time: 100% is one core busy. A Postgres backend that ends during the run hands its time
//! to the postmaster's "children" fields, so the postmaster's own, its reaped children's
//! and its live children's times together cover every backend.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ordo_ledger_client::Network;
use serde::Serialize;

/// One process (or Postgres with its backends) over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeUsage {
    pub name: String,
    pub pid: u32,
    /// Busy time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the end, in MiB. For Postgres: every process's private memory
    /// plus the largest shared part once (shared buffers are mapped by every backend).
    pub rss_mb: f64,
}

/// The fields of `/proc/<pid>/stat` that are used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime: the reaped children's.
    children: u64,
}

/// Parses `/proc/<pid>/stat`. The command name in parentheses may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        ppid: num(1)? as u32,
        own: num(11)? + num(12)?,
        children: num(13)? + num(14)?,
    })
}

/// Resident memory from `/proc/<pid>/status`, in KiB: (VmRSS, RssAnon, RssFile + RssShmem).
fn parse_status(text: &str) -> Option<(u64, u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let rss = field("VmRSS:")?;
    let anon = field("RssAnon:").unwrap_or(rss);
    let shared = field("RssFile:").unwrap_or(0) + field("RssShmem:").unwrap_or(0);
    Some((rss, anon, shared))
}

fn read(pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&read(pid, "stat")?)
}

fn status(pid: u32) -> Option<(u64, u64, u64)> {
    parse_status(&read(pid, "status")?)
}

/// Whether `pid` still runs the program network.json says (pids are reused).
fn runs(pid: u32, program: &str) -> bool {
    read(pid, "cmdline").is_some_and(|c| c.contains(program))
}

/// The live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| stat(*child).is_some_and(|s| s.ppid == pid))
        .collect()
}

#[derive(Clone, Debug)]
enum Target {
    Node { name: String, pid: u32 },
    Postgres { pid: u32 },
}

impl Target {
    fn pid(&self) -> u32 {
        match self {
            Target::Node { pid, .. } | Target::Postgres { pid } => *pid,
        }
    }

    fn name(&self) -> String {
        match self {
            Target::Node { name, .. } => name.clone(),
            Target::Postgres { .. } => "postgres".into(),
        }
    }

    /// Busy ticks so far.
    fn ticks(&self) -> Option<u64> {
        match self {
            Target::Node { pid, .. } => runs(*pid, "ordo").then(|| stat(*pid))?.map(|s| s.own),
            Target::Postgres { pid } => {
                let pm = stat(*pid)?;
                let live: u64 = children(*pid)
                    .into_iter()
                    .filter_map(stat)
                    .map(|s| s.own)
                    .sum();
                Some(pm.own + pm.children + live)
            }
        }
    }

    /// Resident memory in KiB.
    fn rss_kb(&self) -> Option<u64> {
        match self {
            Target::Node { pid, .. } => status(*pid).map(|(rss, _, _)| rss),
            Target::Postgres { pid } => {
                let all: Vec<_> = std::iter::once(*pid)
                    .chain(children(*pid))
                    .filter_map(status)
                    .collect();
                let private: u64 = all.iter().map(|(_, anon, _)| anon).sum();
                let shared = all.iter().map(|(_, _, shared)| *shared).max()?;
                Some(private + shared)
            }
        }
    }
}

/// The postmaster's pid of the Postgres `ordo up` manages for the network at `file`.
fn postmaster(file: &Path) -> Option<u32> {
    let pidfile: PathBuf = file.parent()?.join("postgres/data/postmaster.pid");
    let text = std::fs::read_to_string(pidfile).ok()?;
    let pid = text.lines().next()?.trim().parse().ok()?;
    runs(pid, "postgres").then_some(pid)
}

/// Busy ticks per second of CPU time.
fn clock_ticks() -> f64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        // USER_HZ on every Linux this runs on.
        _ => 100.0,
    }
}

/// The processes' CPU ticks at the start of the run.
pub(crate) struct Sampler {
    targets: Vec<(Target, u64)>,
    started: Instant,
}

impl Sampler {
    /// Finds the network's processes on this machine and reads their CPU times.
    pub(crate) fn start(network: &Network) -> Self {
        let n = network;
        let nodes = n
            .sequencers
            .iter()
            .chain(&n.topology)
            .chain(&n.mediators)
            .chain(&n.gateways)
            .map(|e| (e.name.clone(), e.pid))
            .chain(n.participants.iter().map(|p| (p.name.clone(), p.pid)));
        let mut targets: Vec<Target> = nodes
            .filter_map(|(name, pid)| Some(Target::Node { name, pid: pid? }))
            .collect();
        if n.postgres.managed
            && let Some(pid) = postmaster(&n.path)
        {
            targets.push(Target::Postgres { pid });
        }
        let targets = targets
            .into_iter()
            .filter_map(|t| {
                let ticks = t.ticks()?;
                Some((t, ticks))
            })
            .collect();
        Self {
            targets,
            started: Instant::now(),
        }
    }

    /// Each process still alive: its CPU % over the run and its memory now.
    pub(crate) fn finish(self) -> Vec<NodeUsage> {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let hz = clock_ticks();
        self.targets
            .into_iter()
            .filter_map(|(t, before)| {
                let after = t.ticks()?;
                let busy = after.saturating_sub(before) as f64 / hz;
                Some(NodeUsage {
                    name: t.name(),
                    pid: t.pid(),
                    cpu_percent: (busy / seconds * 1000.0).round() / 10.0,
                    rss_mb: (t.rss_kb()? as f64 / 1024.0 * 10.0).round() / 10.0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line = "4242 (ordo (x) y) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0 123 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                own: 300,
                children: 10
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_resident_memory() {
        let text = "Name:\tpostgres\nVmRSS:\t  2048 kB\nRssAnon:\t   512 kB\nRssFile:\t  1024 kB\nRssShmem:\t   512 kB\n";
        assert_eq!(parse_status(text), Some((2048, 512, 1536)));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        let target = Target::Postgres { pid: me };
        assert!(target.ticks().is_some());
        assert!(target.rss_kb().is_some_and(|kb| kb > 0));
        // Not an `ordo` process: a node entry with this pid is not measured.
        let node = Target::Node {
            name: "x".into(),
            pid: me,
        };
        assert_eq!(node.ticks().is_some(), runs(me, "ordo"));
    }
}
