//! A node process started from a binary, its output kept in a log file, killable with any
//! signal. It runs in a process group of its own, which is killed (SIGKILL) on drop, so a
//! failing test leaves nothing running: not the process, and not the processes it started
//! (`ordo up`'s nodes).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

pub struct NodeProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts `bin args…`, appending stdout and stderr to `log`.
    pub fn spawn(name: &str, bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<Self> {
        Self::spawn_with_env(name, bin, args, &[], log)
    }

    /// [`NodeProcess::spawn`] with `env` added to the inherited environment (the processes
    /// it starts inherit it too).
    pub fn spawn_with_env(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(bin);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group, led by it: `kill` reaches whatever it started too.
            .process_group(0);
        // SIGTERM when the test process dies without dropping it (killed, or Ctrl-C, which
        // no longer reaches the group), so `ordo up` still stops the nodes it started. The
        // signal comes when the spawning *thread* ends: callers spawn from the test's
        // runtime threads, which live as long as the test.
        // SAFETY: `pre_exec` runs between fork and exec; `prctl` is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {}", bin.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("process already reaped")?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        kill(Pid::from_raw(pid), sig).with_context(|| format!("{sig} to {}", self.name))
    }

    /// SIGKILL to the process and every process of its group (what it started), and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit (SIGKILL to its group after
    /// that). Returns whether it exited by itself.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
