//! The lease's deciding core: a pure state machine over instants of the local monotonic
//! clock. The runtime feeds it inputs (ticks, results of SQL statements, step-down
//! requests) and executes the commands it returns; it does no I/O itself, so every rule is
//! unit-tested on plain data.
//!
//! Safety rule: the replica believes it is active only until `expires_at - safety_margin`,
//! where `expires_at` is the instant the acquire/renew statement was *sent* plus the
//! validity the database granted. The database started the TTL no earlier than that send,
//! so the local belief ends before the database's, and the fence check in every write
//! transaction catches whatever slips through (a paused process, a skewed clock).

use std::time::Duration;

use tokio::time::Instant;

/// The role the application sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Passive,
    /// This replica holds the lease; writes are fenced with `token`.
    Active {
        token: i64,
    },
}

/// The machine's timing, checked by `LeaseConfig::validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub ttl: Duration,
    pub renew_period: Duration,
    pub safety_margin: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not holding the lease; the next acquisition attempt is at `retry_at`.
    Passive { retry_at: Instant },
    /// An acquire statement was sent at `sent_at`. `step_down` records a handover request
    /// that arrived meanwhile: a won lease is then released at once.
    Acquiring { sent_at: Instant, step_down: bool },
    Active {
        token: i64,
        /// Local end of validity (see the module comment).
        expires_at: Instant,
        next_renew: Instant,
        /// When the renew statement in flight was sent.
        renewing: Option<Instant>,
    },
    /// A release of `token` was sent at `sent_at`; `handover` keeps this replica out of the
    /// next acquisition round so that another one takes the lease.
    SteppingDown {
        token: i64,
        sent_at: Instant,
        handover: bool,
    },
}

/// How long after the holder's expiry (as reported) a passive replica tries again.
pub const EXPIRY_SLACK: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquireResult {
    /// The lease is ours with `token`, valid for `valid_for` from the statement's start.
    Won {
        token: i64,
        valid_for: Duration,
    },
    /// Someone else holds an unexpired lease, which (by the database's clock, at the
    /// statement) expires in `expires_in` unless renewed.
    Lost {
        holder: Option<String>,
        expires_in: Option<Duration>,
    },
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewResult {
    Ok {
        valid_for: Duration,
    },
    /// The row no longer carries our holder and token, or it had expired: deposed.
    Lost,
    /// The statement failed (connection, timeout): the outcome is unknown.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Tick,
    Acquired(AcquireResult),
    Renewed(RenewResult),
    /// The release statement finished (whatever its outcome: a failed release only
    /// delays the takeover until the TTL).
    Released,
    /// Graceful handover (or shutdown): release the lease and stay out for one TTL.
    StepDown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    TryAcquire,
    Renew {
        token: i64,
    },
    /// Release the lease held with `token` (best effort; guarded by the token in SQL).
    StepDown {
        token: i64,
    },
    /// The role changed; always emitted before the commands that follow from it, so the
    /// application stops writing before the lease is released.
    Report(Role),
}

#[derive(Clone, Debug)]
pub struct Machine {
    timing: Timing,
    state: State,
}

impl Machine {
    /// A passive machine that tries to acquire at its first tick.
    pub fn new(timing: Timing, now: Instant) -> Self {
        Self {
            timing,
            state: State::Passive { retry_at: now },
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn role(&self) -> Role {
        match self.state {
            State::Active { token, .. } => Role::Active { token },
            _ => Role::Passive,
        }
    }

    /// When the runtime must tick next, even if nothing else happens.
    pub fn next_wakeup(&self) -> Instant {
        let t = self.timing;
        match self.state {
            State::Passive { retry_at } => retry_at,
            // A statement that hangs longer than a TTL is given up (see `tick`).
            State::Acquiring { sent_at, .. } | State::SteppingDown { sent_at, .. } => {
                sent_at + t.ttl
            }
            State::Active {
                expires_at,
                next_renew,
                renewing,
                ..
            } => {
                let deadline = expires_at - t.safety_margin;
                match renewing {
                    Some(_) => deadline,
                    None => next_renew.min(deadline),
                }
            }
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Command> {
        match input {
            Input::Tick => self.tick(now),
            Input::Acquired(r) => self.acquired(now, r),
            Input::Renewed(r) => self.renewed(now, r),
            Input::Released => self.released(now),
            Input::StepDown => self.step_down(now),
        }
    }

    fn tick(&mut self, now: Instant) -> Vec<Command> {
        let t = self.timing;
        match self.state {
            State::Passive { retry_at } if now >= retry_at => {
                self.state = State::Acquiring {
                    sent_at: now,
                    step_down: false,
                };
                vec![Command::TryAcquire]
            }
            State::Acquiring { sent_at, .. } if now >= sent_at + t.ttl => {
                self.passive(now + t.renew_period);
                vec![]
            }
            State::SteppingDown {
                sent_at, handover, ..
            } if now >= sent_at + t.ttl => {
                self.after_release(now, handover);
                vec![]
            }
            State::Active {
                token,
                expires_at,
                next_renew,
                renewing,
            } => {
                if now >= expires_at - t.safety_margin {
                    // No successful renew in time: stop at once, then release in case the
                    // database still counts us (lets the next holder in without waiting).
                    return self.begin_step_down(now, token, false);
                }
                if renewing.is_none() && now >= next_renew {
                    self.state = State::Active {
                        token,
                        expires_at,
                        next_renew,
                        renewing: Some(now),
                    };
                    return vec![Command::Renew { token }];
                }
                vec![]
            }
            _ => vec![],
        }
    }

    fn acquired(&mut self, now: Instant, result: AcquireResult) -> Vec<Command> {
        let State::Acquiring { sent_at, step_down } = self.state else {
            return vec![]; // a stale answer (given up on): ignore
        };
        let t = self.timing;
        match result {
            AcquireResult::Won { token, valid_for } => {
                let expires_at = sent_at + valid_for;
                if step_down || now >= expires_at - t.safety_margin {
                    // Unwanted, or the answer came too late to be used safely.
                    self.state = State::SteppingDown {
                        token,
                        sent_at: now,
                        handover: step_down,
                    };
                    return vec![Command::StepDown { token }];
                }
                self.state = State::Active {
                    token,
                    expires_at,
                    next_renew: sent_at + t.renew_period,
                    renewing: None,
                };
                vec![Command::Report(Role::Active { token })]
            }
            AcquireResult::Lost {
                expires_in: Some(expires_in),
                ..
            } if !step_down => {
                // A live holder renews long before its lease expires; one that has not
                // renewed for a while may be gone. Try again right after the expiry
                // (judged early from the send, plus a little for the statement's
                // latency) if that comes before the regular retry, so that a dead
                // holder is replaced within ttl of its last renew rather than up to a
                // renew period later.
                let at_expiry = sent_at + expires_in + EXPIRY_SLACK;
                self.passive(at_expiry.clamp(now, now + t.renew_period));
                vec![]
            }
            AcquireResult::Lost { .. } | AcquireResult::Failed => {
                self.after_release(now, step_down);
                vec![]
            }
        }
    }

    fn renewed(&mut self, now: Instant, result: RenewResult) -> Vec<Command> {
        let State::Active {
            token,
            expires_at,
            renewing: Some(sent_at),
            ..
        } = self.state
        else {
            return vec![];
        };
        let t = self.timing;
        match result {
            RenewResult::Ok { valid_for } => {
                let renewed_until = sent_at + valid_for;
                if now >= renewed_until - t.safety_margin {
                    return self.begin_step_down(now, token, false);
                }
                self.state = State::Active {
                    token,
                    expires_at: renewed_until.max(expires_at),
                    next_renew: sent_at + t.renew_period,
                    renewing: None,
                };
                vec![]
            }
            RenewResult::Lost => {
                // Someone else holds the lease (or it expired): nothing of ours to release.
                self.passive(now + t.renew_period);
                vec![Command::Report(Role::Passive)]
            }
            RenewResult::Failed => {
                // Retry soon: a transient error must not cost a whole renew period of the
                // remaining validity. The expiry deadline still applies.
                self.state = State::Active {
                    token,
                    expires_at,
                    next_renew: now + t.renew_period / 4,
                    renewing: None,
                };
                if now >= expires_at - t.safety_margin {
                    return self.begin_step_down(now, token, false);
                }
                vec![]
            }
        }
    }

    fn released(&mut self, now: Instant) -> Vec<Command> {
        if let State::SteppingDown { handover, .. } = self.state {
            self.after_release(now, handover);
        }
        vec![]
    }

    fn step_down(&mut self, now: Instant) -> Vec<Command> {
        let t = self.timing;
        match &mut self.state {
            State::Active { token, .. } => {
                let token = *token;
                self.begin_step_down(now, token, true)
            }
            State::Acquiring { step_down, .. } => {
                *step_down = true;
                vec![]
            }
            State::Passive { retry_at } => {
                *retry_at = (*retry_at).max(now + t.ttl);
                vec![]
            }
            State::SteppingDown { handover, .. } => {
                *handover = true;
                vec![]
            }
        }
    }

    fn begin_step_down(&mut self, now: Instant, token: i64, handover: bool) -> Vec<Command> {
        self.state = State::SteppingDown {
            token,
            sent_at: now,
            handover,
        };
        vec![Command::Report(Role::Passive), Command::StepDown { token }]
    }

    /// Back to passive. After a handover this replica stays out for one TTL, so that the
    /// others (polling every renew period) take the lease; otherwise it competes again
    /// after one renew period.
    fn after_release(&mut self, now: Instant, handover: bool) {
        let t = self.timing;
        let wait = if handover { t.ttl } else { t.renew_period };
        self.passive(now + wait);
    }

    fn passive(&mut self, retry_at: Instant) {
        self.state = State::Passive { retry_at };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);
    const RENEW: Duration = Duration::from_secs(1);
    const MARGIN: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn machine(t0: Instant) -> Machine {
        Machine::new(
            Timing {
                ttl: TTL,
                renew_period: RENEW,
                safety_margin: MARGIN,
            },
            t0,
        )
    }

    /// A machine that acquired token 7 with a statement sent at `t0`.
    fn active(t0: Instant) -> Machine {
        let mut m = machine(t0);
        assert_eq!(m.handle(t0, Input::Tick), vec![Command::TryAcquire]);
        let out = m.handle(
            t0 + ms(10),
            Input::Acquired(AcquireResult::Won {
                token: 7,
                valid_for: TTL,
            }),
        );
        assert_eq!(out, vec![Command::Report(Role::Active { token: 7 })]);
        m
    }

    #[test]
    fn passive_tries_to_acquire_at_first_tick_and_not_twice() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        assert_eq!(m.role(), Role::Passive);
        assert_eq!(m.handle(t0, Input::Tick), vec![Command::TryAcquire]);
        assert_eq!(m.handle(t0 + ms(100), Input::Tick), vec![]);
    }

    #[test]
    fn winning_makes_active_with_expiry_from_the_send_instant() {
        let t0 = Instant::now();
        let m = active(t0);
        assert_eq!(m.role(), Role::Active { token: 7 });
        let State::Active { expires_at, .. } = *m.state() else {
            panic!("not active: {:?}", m.state());
        };
        assert_eq!(expires_at, t0 + TTL, "judged from the send, not the answer");
        assert_eq!(m.next_wakeup(), t0 + RENEW);
    }

    #[test]
    fn losing_retries_after_one_renew_period() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        let lost = AcquireResult::Lost {
            holder: Some("b".into()),
            expires_in: Some(TTL - ms(100)),
        };
        assert_eq!(m.handle(t0 + ms(5), Input::Acquired(lost)), vec![]);
        assert_eq!(m.role(), Role::Passive);
        assert_eq!(m.handle(t0 + ms(900), Input::Tick), vec![]);
        assert_eq!(
            m.handle(t0 + ms(5) + RENEW, Input::Tick),
            vec![Command::TryAcquire]
        );
    }

    #[test]
    fn a_lease_about_to_expire_is_tried_again_right_after_its_expiry() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        // The holder last renewed 2.7 s ago: its lease runs out in 300 ms.
        let lost = AcquireResult::Lost {
            holder: Some("b".into()),
            expires_in: Some(ms(300)),
        };
        m.handle(t0 + ms(5), Input::Acquired(lost));
        assert_eq!(m.role(), Role::Passive);
        assert_eq!(m.next_wakeup(), t0 + ms(300) + EXPIRY_SLACK);
        assert_eq!(
            m.handle(t0 + ms(300) + EXPIRY_SLACK, Input::Tick),
            vec![Command::TryAcquire]
        );
        // Already expired by the time the answer arrives: at once.
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        let lost = AcquireResult::Lost {
            holder: Some("b".into()),
            expires_in: Some(ms(1)),
        };
        m.handle(t0 + ms(50), Input::Acquired(lost));
        assert_eq!(m.next_wakeup(), t0 + ms(50));
    }

    #[test]
    fn failed_acquire_retries_after_one_renew_period() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        m.handle(t0, Input::Acquired(AcquireResult::Failed));
        assert_eq!(m.next_wakeup(), t0 + RENEW);
    }

    #[test]
    fn a_win_that_arrives_too_late_is_released_not_used() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        let out = m.handle(
            t0 + TTL - ms(400),
            Input::Acquired(AcquireResult::Won {
                token: 3,
                valid_for: TTL,
            }),
        );
        assert_eq!(out, vec![Command::StepDown { token: 3 }]);
        assert_eq!(m.role(), Role::Passive);
    }

    #[test]
    fn a_hung_acquire_is_given_up_after_one_ttl() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        assert_eq!(m.next_wakeup(), t0 + TTL);
        m.handle(t0 + TTL, Input::Tick);
        assert_eq!(
            *m.state(),
            State::Passive {
                retry_at: t0 + TTL + RENEW
            }
        );
        // Its late answer is ignored.
        let late = AcquireResult::Won {
            token: 1,
            valid_for: TTL,
        };
        assert_eq!(m.handle(t0 + TTL + ms(1), Input::Acquired(late)), vec![]);
        assert_eq!(m.role(), Role::Passive);
    }

    #[test]
    fn active_renews_every_renew_period() {
        let t0 = Instant::now();
        let mut m = active(t0);
        assert_eq!(m.handle(t0 + ms(999), Input::Tick), vec![]);
        assert_eq!(
            m.handle(t0 + RENEW, Input::Tick),
            vec![Command::Renew { token: 7 }]
        );
        // One renew in flight at a time.
        assert_eq!(m.handle(t0 + RENEW + ms(1), Input::Tick), vec![]);
        let ok = RenewResult::Ok { valid_for: TTL };
        assert_eq!(m.handle(t0 + RENEW + ms(20), Input::Renewed(ok)), vec![]);
        let State::Active {
            expires_at,
            next_renew,
            ..
        } = *m.state()
        else {
            panic!("not active");
        };
        assert_eq!(expires_at, t0 + RENEW + TTL);
        assert_eq!(next_renew, t0 + RENEW * 2);
        assert_eq!(
            m.handle(t0 + RENEW * 2, Input::Tick),
            vec![Command::Renew { token: 7 }]
        );
    }

    #[test]
    fn no_successful_renew_before_the_margin_steps_down_at_once() {
        let t0 = Instant::now();
        let mut m = active(t0);
        m.handle(t0 + RENEW, Input::Tick); // renew sent, never answered
        assert_eq!(m.next_wakeup(), t0 + TTL - MARGIN);
        assert_eq!(m.handle(t0 + TTL - MARGIN - ms(1), Input::Tick), vec![]);
        assert_eq!(m.role(), Role::Active { token: 7 });
        let out = m.handle(t0 + TTL - MARGIN, Input::Tick);
        assert_eq!(
            out,
            vec![
                Command::Report(Role::Passive),
                Command::StepDown { token: 7 }
            ]
        );
        assert_eq!(m.role(), Role::Passive);
        // The renew's late success changes nothing.
        let late = RenewResult::Ok { valid_for: TTL };
        assert_eq!(m.handle(t0 + TTL, Input::Renewed(late)), vec![]);
        assert_eq!(m.role(), Role::Passive);
    }

    #[test]
    fn a_slow_renew_counts_from_its_send_and_can_arrive_too_late() {
        let t0 = Instant::now();
        let mut m = active(t0);
        m.handle(t0 + RENEW, Input::Tick);
        // Sent at 1 s, answered at 3.6 s: valid locally until 1 s + 3 s - 0.5 s = 3.5 s.
        let ok = RenewResult::Ok { valid_for: TTL };
        let out = m.handle(t0 + RENEW + TTL - ms(400), Input::Renewed(ok));
        assert_eq!(
            out,
            vec![
                Command::Report(Role::Passive),
                Command::StepDown { token: 7 }
            ]
        );
    }

    #[test]
    fn a_lost_renew_steps_down_without_release() {
        let t0 = Instant::now();
        let mut m = active(t0);
        m.handle(t0 + RENEW, Input::Tick);
        let out = m.handle(t0 + RENEW + ms(5), Input::Renewed(RenewResult::Lost));
        assert_eq!(out, vec![Command::Report(Role::Passive)]);
        assert_eq!(
            *m.state(),
            State::Passive {
                retry_at: t0 + RENEW + ms(5) + RENEW
            }
        );
    }

    #[test]
    fn a_failed_renew_is_retried_soon_but_the_deadline_holds() {
        let t0 = Instant::now();
        let mut m = active(t0);
        m.handle(t0 + RENEW, Input::Tick);
        let at = t0 + RENEW + ms(10);
        assert_eq!(m.handle(at, Input::Renewed(RenewResult::Failed)), vec![]);
        assert_eq!(m.role(), Role::Active { token: 7 });
        assert_eq!(m.next_wakeup(), at + RENEW / 4);
        assert_eq!(
            m.handle(at + RENEW / 4, Input::Tick),
            vec![Command::Renew { token: 7 }]
        );
        m.handle(at + RENEW / 2, Input::Renewed(RenewResult::Failed));
        m.handle(at + RENEW, Input::Tick);
        m.handle(at + RENEW + ms(1), Input::Renewed(RenewResult::Failed));
        let out = m.handle(t0 + TTL - MARGIN, Input::Tick);
        assert_eq!(
            out,
            vec![
                Command::Report(Role::Passive),
                Command::StepDown { token: 7 }
            ]
        );
    }

    #[test]
    fn after_an_expiry_step_down_it_competes_again_after_one_renew_period() {
        let t0 = Instant::now();
        let mut m = active(t0);
        m.handle(t0 + RENEW, Input::Tick);
        let down = t0 + TTL - MARGIN;
        m.handle(down, Input::Tick);
        assert!(matches!(m.state(), State::SteppingDown { .. }));
        m.handle(down + ms(5), Input::Released);
        assert_eq!(
            *m.state(),
            State::Passive {
                retry_at: down + ms(5) + RENEW
            }
        );
        assert_eq!(
            m.handle(down + ms(5) + RENEW, Input::Tick),
            vec![Command::TryAcquire]
        );
    }

    #[test]
    fn a_hung_release_is_given_up_after_one_ttl() {
        let t0 = Instant::now();
        let mut m = active(t0);
        m.handle(t0 + ms(100), Input::StepDown);
        assert_eq!(m.next_wakeup(), t0 + ms(100) + TTL);
        m.handle(t0 + ms(100) + TTL, Input::Tick);
        assert!(matches!(m.state(), State::Passive { .. }));
    }

    #[test]
    fn handover_releases_and_stays_out_for_one_ttl() {
        let t0 = Instant::now();
        let mut m = active(t0);
        let at = t0 + ms(200);
        let out = m.handle(at, Input::StepDown);
        assert_eq!(
            out,
            vec![
                Command::Report(Role::Passive),
                Command::StepDown { token: 7 }
            ]
        );
        m.handle(at + ms(3), Input::Released);
        assert_eq!(
            *m.state(),
            State::Passive {
                retry_at: at + ms(3) + TTL
            }
        );
        assert_eq!(m.handle(at + ms(3) + RENEW, Input::Tick), vec![]);
    }

    #[test]
    fn step_down_while_acquiring_releases_a_won_lease() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.handle(t0, Input::Tick);
        assert_eq!(m.handle(t0 + ms(1), Input::StepDown), vec![]);
        let won = AcquireResult::Won {
            token: 9,
            valid_for: TTL,
        };
        let out = m.handle(t0 + ms(2), Input::Acquired(won));
        assert_eq!(out, vec![Command::StepDown { token: 9 }]);
        assert_eq!(m.role(), Role::Passive);
        m.handle(t0 + ms(3), Input::Released);
        assert_eq!(
            *m.state(),
            State::Passive {
                retry_at: t0 + ms(3) + TTL
            }
        );
    }

    #[test]
    fn step_down_while_passive_postpones_the_next_attempt() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        assert_eq!(m.handle(t0, Input::StepDown), vec![]);
        assert_eq!(m.handle(t0 + RENEW, Input::Tick), vec![]);
        assert_eq!(m.handle(t0 + TTL, Input::Tick), vec![Command::TryAcquire]);
    }

    #[test]
    fn stale_results_in_the_wrong_state_are_ignored() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        let ok = RenewResult::Ok { valid_for: TTL };
        assert_eq!(m.handle(t0, Input::Renewed(ok)), vec![]);
        assert_eq!(m.handle(t0, Input::Released), vec![]);
        let won = AcquireResult::Won {
            token: 1,
            valid_for: TTL,
        };
        assert_eq!(m.handle(t0, Input::Acquired(won)), vec![]);
        assert_eq!(m.role(), Role::Passive);
        // A renew result without a renew in flight is ignored too.
        let mut a = active(t0);
        assert_eq!(
            a.handle(t0 + ms(20), Input::Renewed(RenewResult::Lost)),
            vec![]
        );
        assert_eq!(a.role(), Role::Active { token: 7 });
    }

    /// The same rules driven by tokio's paused clock, the way the runtime drives them.
    #[tokio::test(start_paused = true)]
    async fn on_paused_time_a_silent_database_ends_the_lease_before_its_ttl() {
        let t0 = Instant::now();
        let mut m = active(t0);
        let mut renews = 0;
        loop {
            tokio::time::sleep_until(m.next_wakeup()).await;
            let out = m.handle(Instant::now(), Input::Tick);
            renews += out
                .iter()
                .filter(|c| matches!(c, Command::Renew { .. }))
                .count();
            if out.contains(&Command::Report(Role::Passive)) {
                break;
            }
        }
        assert_eq!(renews, 1, "one renew in flight, never answered");
        assert_eq!(Instant::now() - t0, TTL - MARGIN);
    }
}
