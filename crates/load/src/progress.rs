//! The live progress bar (indicatif, on stderr): during setup a spinner saying what is
//! being set up, during the run the share done (of `--count`, or of `--duration`) with
//! the committed commands, the last second's rate and latency, and the errors so far.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::Live;

/// Whether to show the live progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Hidden,
    /// On stderr.
    Stderr,
}

impl Progress {
    /// On stderr when it is a terminal and not `quiet`; hidden otherwise (a pipe, a log
    /// file, `--json`).
    pub fn for_terminal(quiet: bool) -> Self {
        if !quiet && std::io::stderr().is_terminal() {
            Progress::Stderr
        } else {
            Progress::Hidden
        }
    }
}

/// What measures the bar's length.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Length {
    /// Commands answered of `--count`.
    Count(u64),
    /// Seconds of `--duration`.
    Seconds(u64),
}

pub(crate) struct Bar {
    bar: ProgressBar,
    length: Option<Length>,
}

impl Bar {
    pub(crate) fn new(progress: Progress) -> Self {
        let bar = match progress {
            Progress::Hidden => ProgressBar::hidden(),
            Progress::Stderr => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        Self { bar, length: None }
    }

    /// A setup step.
    pub(crate) fn status(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    /// The measured run starts.
    pub(crate) fn measuring(&mut self, length: Length) {
        let (len, template) = match length {
            Length::Count(n) => (
                n,
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            ),
            Length::Seconds(n) => (
                n,
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.reset_elapsed();
        self.length = Some(length);
    }

    pub(crate) fn update(&self, live: &Live, elapsed: Duration) {
        match self.length {
            Some(Length::Count(n)) => self.bar.set_position(live.answered.min(n)),
            Some(Length::Seconds(n)) => self.bar.set_position(elapsed.as_secs().min(n)),
            None => {}
        }
        self.bar.set_message(format!(
            "{} committed · {} in flight · {}/s · p50 {:.1} ms · p99 {:.1} ms · {} errors",
            live.committed,
            live.submitted.saturating_sub(live.answered),
            live.rate,
            live.p50_ms,
            live.p99_ms,
            live.failed
        ));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
