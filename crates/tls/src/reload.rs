//! A TLS configuration rebuilt from its files when they change or the process gets SIGHUP.
//! New connections use the new one; established connections keep theirs.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use super::TlsError;
use super::files::stamps;

/// How often the files are checked for changes.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(5);

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// The current configuration and how to build it again.
pub(crate) struct Reloading<T> {
    current: RwLock<Arc<T>>,
    build: Build<T>,
    files: Vec<PathBuf>,
    stamps: std::sync::Mutex<Vec<Option<SystemTime>>>,
    what: &'static str,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the configuration now (an error is the caller's) and, inside a tokio runtime,
    /// starts watching `files` (every [`CHECK_EVERY`]); the watch ends when the last handle
    /// is dropped.
    pub(crate) fn start(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        Self::start_checking(what, files, build, CHECK_EVERY)
    }

    /// [`Reloading::start`], checking the files every `every`.
    pub(crate) fn start_checking(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
        every: Duration,
    ) -> Result<Arc<Self>, TlsError> {
        let stamps = stamps(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        let first = build()?;
        let this = Arc::new(Self {
            current: RwLock::new(Arc::new(first)),
            build: Box::new(build),
            files,
            stamps: std::sync::Mutex::new(stamps),
            what,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(Arc::downgrade(&this), every));
        }
        Ok(this)
    }

    /// A configuration that is never rebuilt (made from PEM text, not files).
    pub(crate) fn fixed(what: &'static str, value: T) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(value)),
            build: Box::new(|| {
                Err(TlsError::Config(
                    "built from PEM text: nothing to reload".into(),
                ))
            }),
            files: Vec::new(),
            stamps: std::sync::Mutex::new(Vec::new()),
            what,
        })
    }

    pub(crate) fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds from the files; on failure the current configuration stays (and the error
    /// is returned to be logged).
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let next = (self.build)()?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Whether a file changed since the last look.
    fn changed(&self) -> bool {
        let now = stamps(&self.files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        let mut last = self
            .stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == now {
            return false;
        }
        *last = now;
        true
    }

    fn reload_logged(&self, why: &str) {
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        match self.reload() {
            Ok(()) => tracing::info!(what = self.what, ?files, why, "TLS files reloaded"),
            Err(e) => tracing::error!(
                what = self.what,
                error = %e,
                why,
                "TLS files not reloaded: the previous certificate stays in use"
            ),
        }
    }
}

async fn watch<T: Send + Sync + 'static>(this: Weak<Reloading<T>>, every: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).ok();
    loop {
        let sighup = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let Some(this) = this.upgrade() else { return };
        let changed = this.changed();
        if sighup {
            this.reload_logged("SIGHUP");
        } else if changed {
            this.reload_logged("a file changed");
        }
    }
}
