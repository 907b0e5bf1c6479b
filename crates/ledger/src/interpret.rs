//! Interpretation of commands into transactions, with Daml-style authorization.
//!
//! Scripts call back into the interpreter (`create`, `exercise`, ...) through Rhai native
//! functions, which must be `'static`; they therefore cannot borrow the caller's
//! [`ContractLookup`]. Instead a run that meets a contract it does not know yet stops, the
//! contract is looked up, and the (deterministic) run starts again with it known. Commands
//! touch few contracts, so the few re-runs are cheap, and the core stays free of I/O.
//!
//! Building an engine took about a microsecond and a half, a tenth to a fifth of
//! interpreting a small command or view (`benches/transfer.rs`), so each thread builds one,
//! once (`ENGINE`). Its native functions capture nothing: they act on the machine the
//! thread is running (`CURRENT`, set by `Machine::with_engine`), and the step budget is that
//! machine's. A reused engine behaves as a fresh one: Rhai keeps each evaluation's state
//! (scopes, caches, operation counts) in the call, and the engine's only mutable part is
//! its string interner, which changes no result.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ordo_core::{Hash, PartyId};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position};
use serde::{Deserialize, Serialize};

use crate::LedgerError;
use crate::package::{ARCHIVE, Package, PackageStore, Template};
use crate::script::{Script, from_dynamic, parties_from_dynamic, sandboxed_engine, to_dynamic};
use crate::transaction::{ContractInstance, Node, NodeId, Transaction, key_hash};
use crate::types::{ContractId, TemplateId, Type};
use crate::value::Value;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Create {
        template: TemplateId,
        payload: Value,
    },
    Exercise {
        template: TemplateId,
        contract_id: ContractId,
        choice: String,
        argument: Value,
    },
    CreateAndExercise {
        template: TemplateId,
        payload: Value,
        choice: String,
        argument: Value,
    },
    /// Exercises a choice on the active contract of `template` with `key`.
    ExerciseByKey {
        template: TemplateId,
        key: Value,
        choice: String,
        argument: Value,
    },
}

/// Bounds on one interpretation, identical on every participant so that all reach the same
/// verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Script operations over the whole transaction (all bodies and expressions).
    pub max_operations: u64,
    pub max_nodes: usize,
    /// Canonical size of one contract instance.
    pub max_payload_bytes: usize,
    /// Nesting of exercises inside choice bodies.
    pub max_exercise_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_nodes: 1_000,
            max_payload_bytes: 64 * 1024,
            max_exercise_depth: 8,
        }
    }
}

/// The active contracts an interpretation may use.
pub trait ContractLookup {
    fn lookup(&self, cid: &ContractId) -> Option<ContractInstance>;

    /// The active contract of `template` with `key`, if one is visible.
    fn lookup_key(
        &self,
        template: &TemplateId,
        key: &Value,
    ) -> Option<(ContractId, ContractInstance)> {
        let _ = (template, key);
        None
    }
}

impl ContractLookup for BTreeMap<ContractId, ContractInstance> {
    fn lookup(&self, cid: &ContractId) -> Option<ContractInstance> {
        self.get(cid).cloned()
    }

    fn lookup_key(
        &self,
        template: &TemplateId,
        key: &Value,
    ) -> Option<(ContractId, ContractInstance)> {
        self.iter()
            .find(|(_, c)| c.template == *template && c.key.as_ref() == Some(key))
            .map(|(cid, c)| (*cid, c.clone()))
    }
}

/// Interprets `cmd` submitted by `act_as`. Contract ids are derived from `seed`, so the same
/// inputs give the same transaction.
pub fn interpret(
    packages: &PackageStore,
    cmd: &Command,
    act_as: &BTreeSet<PartyId>,
    lookup: &dyn ContractLookup,
    seed: Hash,
    limits: &Limits,
) -> Result<Transaction, LedgerError> {
    interpret_all(
        packages,
        std::slice::from_ref(cmd),
        act_as,
        lookup,
        seed,
        limits,
    )
}

/// [`interpret`] of several commands as one transaction, in order (Daml's multi-command
/// submission): each command's actions are roots of the transaction, a later command sees
/// what an earlier one created or archived, and the limits bound them together. One
/// failing fails them all.
pub fn interpret_all(
    packages: &PackageStore,
    cmds: &[Command],
    act_as: &BTreeSet<PartyId>,
    lookup: &dyn ContractLookup,
    seed: Hash,
    limits: &Limits,
) -> Result<Transaction, LedgerError> {
    let mut known = BTreeMap::new();
    for cmd in cmds {
        if let Command::Exercise { contract_id, .. } = cmd
            && let Some(c) = lookup.lookup(contract_id)
        {
            known.insert(*contract_id, c);
        }
    }
    let machine = Machine::new(packages, limits, seed);
    machine.with(|s| s.lookup_keys = true);
    machine.with_engine(|engine| {
        loop {
            // Each run interprets the whole command again, under a budget of its own.
            machine.reset_steps();
            machine.reset(known.clone(), 0, act_as.clone());
            let outcome = cmds
                .iter()
                .try_for_each(|cmd| machine.run_command(engine, cmd));
            if let Some(cid) = machine.with(|s| s.missing.take()) {
                match lookup.lookup(&cid) {
                    Some(c) => {
                        known.insert(cid, c);
                        continue;
                    }
                    None => return Err(LedgerError::ContractNotFound(cid)),
                }
            }
            if let Some((template, key)) = machine.with(|s| s.missing_key.take()) {
                if let Some((cid, c)) = lookup.lookup_key(&template, &key)
                    && c.template == template
                    && c.key.as_ref() == Some(&key)
                {
                    known.insert(cid, c);
                }
                machine.with(|s| s.resolved.insert(key_hash(&template, &key)));
                continue;
            }
            outcome?;
            return machine.transaction(act_as);
        }
    })
}

/// The argument of an exercise: from a command (a value to check) or a script (to convert).
pub(crate) enum Arg {
    Value(Value),
    Dynamic(Dynamic),
}

/// A contract key: from a command or a node (a value to check) or a script (to convert).
pub(crate) enum Key {
    Value(Value),
    Dynamic(Dynamic),
}

/// A key as JSON, for messages.
fn key_text(key: &Value) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"))
}

struct Frame {
    template: TemplateId,
    authorizers: BTreeSet<PartyId>,
    children: Vec<NodeId>,
}

struct State {
    packages: PackageStore,
    limits: Limits,
    seed: Hash,
    /// Contracts from the lookup (or a view's inputs).
    known: BTreeMap<ContractId, ContractInstance>,
    /// A contract the run needed and did not know.
    missing: Option<ContractId>,
    /// Whether a key not resolved yet is looked up (interpretation: `missing_key` stops the
    /// run) or taken as free (re-interpretation of a view, whose inputs hold every contract
    /// its key lookups found).
    lookup_keys: bool,
    /// A key the run needed and had not looked up.
    missing_key: Option<(TemplateId, Value)>,
    /// The keys looked up so far (those found are in `known`); kept across runs.
    resolved: BTreeSet<Hash>,
    /// The id of the first node (non-zero when re-interpreting a view's subtree).
    base: NodeId,
    root_authorizers: BTreeSet<PartyId>,
    nodes: Vec<Option<Node>>,
    roots: Vec<NodeId>,
    created: BTreeMap<ContractId, ContractInstance>,
    consumed: BTreeSet<ContractId>,
    used: BTreeMap<ContractId, ContractInstance>,
    frames: Vec<Frame>,
    /// What is running, for error messages.
    contexts: Vec<String>,
    /// Inside signatories/observers/ensure/key/controllers, which must not act.
    pure_depth: usize,
    /// The ledger error a native function raised, to be returned instead of Rhai's.
    error: Option<LedgerError>,
}

impl State {
    fn authorizers(&self) -> BTreeSet<PartyId> {
        self.frames
            .last()
            .map_or_else(|| self.root_authorizers.clone(), |f| f.authorizers.clone())
    }

    fn context(&self) -> String {
        self.contexts
            .last()
            .cloned()
            .unwrap_or_else(|| "command".into())
    }

    fn contract(&mut self, cid: &ContractId) -> Result<ContractInstance, LedgerError> {
        if self.consumed.contains(cid) {
            return Err(LedgerError::ContractNotActive(*cid));
        }
        if let Some(c) = self.created.get(cid) {
            return Ok(c.clone());
        }
        if let Some(c) = self.known.get(cid) {
            self.used.insert(*cid, c.clone());
            return Ok(c.clone());
        }
        self.missing = Some(*cid);
        Err(LedgerError::ContractNotFound(*cid))
    }

    /// The active contract of `template` with `key` as of this point of the transaction:
    /// one it created and did not consume, else a known one it did not consume. `Err` when
    /// the key must be looked up first (the run stops, as for a missing contract).
    fn resolve_key(
        &mut self,
        template: &TemplateId,
        key: &Value,
    ) -> Result<Option<ContractId>, LedgerError> {
        let holds = |c: &ContractInstance| c.template == *template && c.key.as_ref() == Some(key);
        let found = self
            .created
            .iter()
            .chain(self.known.iter())
            .find(|(cid, c)| !self.consumed.contains(*cid) && holds(c))
            .map(|(cid, _)| *cid);
        if found.is_some() || !self.lookup_keys || self.resolved.contains(&key_hash(template, key))
        {
            return Ok(found);
        }
        self.missing_key = Some((template.clone(), key.clone()));
        Err(LedgerError::ContractKeyNotFound {
            template: template.clone(),
            key: key_text(key),
        })
    }

    fn next_id(&self) -> Result<NodeId, LedgerError> {
        if self.nodes.len() >= self.limits.max_nodes {
            return Err(LedgerError::LimitExceeded {
                what: "number of transaction nodes".into(),
                limit: self.limits.max_nodes as u64,
            });
        }
        Ok(self.base + self.nodes.len())
    }

    fn push(&mut self, node: Option<Node>) -> Result<NodeId, LedgerError> {
        let id = self.next_id()?;
        self.nodes.push(node);
        match self.frames.last_mut() {
            Some(f) => f.children.push(id),
            None => self.roots.push(id),
        }
        Ok(id)
    }
}

#[derive(Clone)]
pub(crate) struct Machine {
    state: Arc<Mutex<State>>,
    steps: Arc<AtomicU64>,
    max_operations: u64,
}

thread_local! {
    /// This thread's engine, with the sandbox and the ledger functions.
    static ENGINE: Engine = ledger_engine();
    /// The machine whose scripts run on this thread, if any.
    static CURRENT: RefCell<Option<Machine>> = const { RefCell::new(None) };
}

/// The machine the thread is running, for a native function.
fn current() -> Result<Machine, Box<EvalAltResult>> {
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        EvalAltResult::ErrorRuntime("no interpretation running".into(), Position::NONE).into()
    })
}

/// Puts back the machine that ran before (none, unless interpretations nest) when the
/// current one is done, panics included.
struct Restore(Option<Machine>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

fn unit_record() -> Value {
    Value::Record(BTreeMap::new())
}

impl Machine {
    pub(crate) fn new(packages: &PackageStore, limits: &Limits, seed: Hash) -> Machine {
        Machine {
            state: Arc::new(Mutex::new(State {
                packages: packages.clone(),
                limits: limits.clone(),
                seed,
                known: BTreeMap::new(),
                missing: None,
                lookup_keys: false,
                missing_key: None,
                resolved: BTreeSet::new(),
                base: 0,
                root_authorizers: BTreeSet::new(),
                nodes: Vec::new(),
                roots: Vec::new(),
                created: BTreeMap::new(),
                consumed: BTreeSet::new(),
                used: BTreeMap::new(),
                frames: Vec::new(),
                contexts: Vec::new(),
                pure_depth: 0,
                error: None,
            })),
            steps: Arc::new(AtomicU64::new(0)),
            max_operations: limits.max_operations,
        }
    }

    /// Runs `f` with the thread's engine, whose scripts act on this machine meanwhile.
    pub(crate) fn with_engine<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        let _restore = Restore(previous);
        ENGINE.with(f)
    }

    /// Counts one script operation; `Some` stops the script when the budget is spent.
    fn step(&self) -> Option<Dynamic> {
        (self.steps.fetch_add(1, Ordering::Relaxed) >= self.max_operations).then_some(Dynamic::UNIT)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Starts a fresh run. The step counter goes on: one budget covers every run of the
    /// machine until [`Machine::reset_steps`].
    pub(crate) fn reset(
        &self,
        known: BTreeMap<ContractId, ContractInstance>,
        base: NodeId,
        authorizers: BTreeSet<PartyId>,
    ) {
        self.with(|s| {
            s.known = known;
            s.missing = None;
            s.missing_key = None;
            s.base = base;
            s.root_authorizers = authorizers;
            s.nodes.clear();
            s.roots.clear();
            s.created.clear();
            s.consumed.clear();
            s.used.clear();
            s.frames.clear();
            s.contexts.clear();
            s.pure_depth = 0;
            s.error = None;
        });
    }

    /// A fresh budget.
    pub(crate) fn reset_steps(&self) {
        self.steps.store(0, Ordering::Relaxed);
    }

    /// The script operations run since the budget was last reset.
    pub(crate) fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Runs a native function's body; a ledger error is parked in the state (the first one
    /// wins) and surfaces as a Rhai error that `Machine::eval` turns back into it.
    fn native<T>(
        &self,
        f: impl FnOnce(&Machine) -> Result<T, LedgerError>,
    ) -> Result<T, Box<EvalAltResult>> {
        let acting_in_pure = self.with(|s| (s.pure_depth > 0).then(|| s.context()));
        match acting_in_pure {
            Some(context) => Err(self.park(LedgerError::Script {
                context,
                message: "only choice bodies may create, exercise, fetch or archive".into(),
            })),
            None => f(self).map_err(|e| self.park(e)),
        }
    }

    fn park(&self, e: LedgerError) -> Box<EvalAltResult> {
        self.with(|s| {
            if s.error.is_none() {
                s.error = Some(e);
            }
        });
        EvalAltResult::ErrorRuntime("ledger error".into(), Position::NONE).into()
    }

    /// Runs a script; `pure` ones (signatories, ensure, ...) may not act on the ledger.
    fn eval(
        &self,
        engine: &Engine,
        script: &Script,
        this: &Dynamic,
        arg: &Dynamic,
        context: String,
        pure: bool,
    ) -> Result<Dynamic, LedgerError> {
        self.with(|s| {
            s.contexts.push(context.clone());
            s.pure_depth += usize::from(pure);
        });
        let result = script.run(engine, this, arg);
        let (parked, limit) = self.with(|s| {
            s.contexts.pop();
            s.pure_depth -= usize::from(pure);
            (s.error.take(), s.limits.max_operations)
        });
        match (result, parked) {
            (_, Some(e)) => Err(e),
            (Ok(d), None) => Ok(d),
            (Err(e), None) => Err(rhai_error(*e, context, limit)),
        }
    }

    /// A template a script names: `pkg:T`, or `T` of the running choice's package.
    fn script_template(&self, name: &str) -> Result<TemplateId, LedgerError> {
        if name.contains(':') {
            return name.parse();
        }
        let package = self.with(|s| {
            s.frames
                .last()
                .map(|f| f.template.package_name.clone())
                .unwrap_or_default()
        });
        TemplateId::new(&package, name)
    }

    fn template(&self, tid: &TemplateId) -> Result<(Arc<Package>, Template), LedgerError> {
        self.with(|s| {
            let (p, t) = s.packages.template(tid)?;
            Ok((p.clone(), t.clone()))
        })
    }

    /// Computes the parties, key and ensure of a payload of `tid` (already typed).
    pub(crate) fn instantiate(
        &self,
        engine: &Engine,
        tid: &TemplateId,
        payload: Value,
    ) -> Result<ContractInstance, LedgerError> {
        let (package, t) = self.template(tid)?;
        let this = to_dynamic(&payload);
        let none = Dynamic::UNIT;
        let parties = |what: &str, script: &Script| -> Result<BTreeSet<PartyId>, LedgerError> {
            let context = format!("template {tid} {what}");
            let d = self.eval(engine, script, &this, &none, context.clone(), true)?;
            parties_from_dynamic(&d).map_err(|message| LedgerError::Script { context, message })
        };
        let signatories = parties("signatories", &t.signatories)?;
        if signatories.is_empty() {
            return Err(LedgerError::Script {
                context: format!("template {tid} signatories"),
                message: "no signatory: a contract needs at least one".into(),
            });
        }
        let observers = match &t.observers {
            Some(script) => parties("observers", script)?,
            None => BTreeSet::new(),
        };
        if let Some(ensure) = &t.ensure {
            let context = format!("template {tid} ensure");
            let d = self.eval(engine, ensure, &this, &none, context.clone(), true)?;
            match d.as_bool() {
                Ok(true) => {}
                Ok(false) => {
                    return Err(LedgerError::EnsureFailed {
                        template: tid.clone(),
                    });
                }
                Err(got) => {
                    return Err(LedgerError::Script {
                        context,
                        message: format!("expected a bool, got {got}"),
                    });
                }
            }
        }
        let (key, maintainers) = match &t.key {
            Some(k) => {
                let context = format!("template {tid} key");
                let d = self.eval(engine, &k.script, &this, &none, context.clone(), true)?;
                let key = from_dynamic(&d, &k.ty, &context)?;
                let maintainers = self.maintainers(engine, tid, &key)?;
                if !maintainers.is_subset(&signatories) {
                    return Err(LedgerError::Script {
                        context: format!("template {tid} maintainers"),
                        message: "the key's maintainers must be signatories of the contract".into(),
                    });
                }
                (Some(key), maintainers)
            }
            None => (None, BTreeSet::new()),
        };
        Ok(ContractInstance {
            template: tid.clone(),
            package_id: package.id,
            payload,
            signatories,
            observers,
            key,
            maintainers,
        })
    }

    /// The maintainers of `key` of `tid` (computed from the key alone; never empty).
    fn maintainers(
        &self,
        engine: &Engine,
        tid: &TemplateId,
        key: &Value,
    ) -> Result<BTreeSet<PartyId>, LedgerError> {
        let (_, t) = self.template(tid)?;
        let k = t.key.as_ref().ok_or_else(|| LedgerError::Script {
            context: format!("template {tid}"),
            message: "the template has no key".into(),
        })?;
        let context = format!("template {tid} maintainers");
        let d = self.eval(
            engine,
            &k.maintainers,
            &Dynamic::UNIT,
            &to_dynamic(key),
            context.clone(),
            true,
        )?;
        let parties = parties_from_dynamic(&d).map_err(|message| LedgerError::Script {
            context: context.clone(),
            message,
        })?;
        if parties.is_empty() {
            return Err(LedgerError::Script {
                context,
                message: "no maintainer: a key needs at least one".into(),
            });
        }
        Ok(parties)
    }

    /// `key` as a value of `tid`'s key type.
    fn typed_key(&self, tid: &TemplateId, key: Key) -> Result<Value, LedgerError> {
        let (_, t) = self.template(tid)?;
        let ty = &t
            .key
            .as_ref()
            .ok_or_else(|| LedgerError::Script {
                context: format!("template {tid}"),
                message: "the template has no key".into(),
            })?
            .ty;
        let path = format!("key of {tid}");
        match key {
            Key::Value(v) => v.conform(ty, &path),
            Key::Dynamic(d) => from_dynamic(&d, ty, &path),
        }
    }

    /// The contract of `tid` with `key` (`fetch_by_key`, `exercise_by_key`), which must be
    /// active and visible.
    pub(crate) fn by_key(&self, tid: &TemplateId, key: Key) -> Result<ContractId, LedgerError> {
        let key = self.typed_key(tid, key)?;
        self.with(|s| s.resolve_key(tid, &key))?
            .ok_or_else(|| LedgerError::ContractKeyNotFound {
                template: tid.clone(),
                key: key_text(&key),
            })
    }

    /// `lookup_by_key`: the contract of `tid` with `key`, or none, recorded as a node the
    /// key's maintainers confirm; they must authorize it (Daml's rule).
    pub(crate) fn lookup_by_key(
        &self,
        engine: &Engine,
        tid: &TemplateId,
        key: Key,
        authorizers: &BTreeSet<PartyId>,
    ) -> Result<Option<ContractId>, LedgerError> {
        let key = self.typed_key(tid, key)?;
        let maintainers = self.maintainers(engine, tid, &key)?;
        require(&maintainers, authorizers, || {
            format!("lookup of {tid} by key {}", key_text(&key))
        })?;
        self.with(|s| {
            let result = s.resolve_key(tid, &key)?;
            if let Some(cid) = &result {
                s.contract(cid)?;
            }
            s.push(Some(Node::LookupByKey {
                template: tid.clone(),
                key,
                maintainers,
                result,
            }))?;
            Ok(result)
        })
    }

    /// Creates a contract of `tid` with a typed, canonical payload.
    pub(crate) fn create(
        &self,
        engine: &Engine,
        tid: &TemplateId,
        payload: Value,
        authorizers: &BTreeSet<PartyId>,
    ) -> Result<ContractId, LedgerError> {
        let contract = self.instantiate(engine, tid, payload)?;
        require(&contract.signatories, authorizers, || {
            format!("create of {tid}")
        })?;
        if let Some(key) = &contract.key
            && self.with(|s| s.resolve_key(tid, key))?.is_some()
        {
            return Err(LedgerError::DuplicateContractKey {
                template: tid.clone(),
                key: key_text(key),
            });
        }
        let bytes = contract.canonical_bytes();
        self.with(|s| {
            if bytes.len() > s.limits.max_payload_bytes {
                return Err(LedgerError::LimitExceeded {
                    what: format!("contract of {tid} ({} bytes)", bytes.len()),
                    limit: s.limits.max_payload_bytes as u64,
                });
            }
            let id = s.next_id()?;
            let index = (id as u64).to_be_bytes();
            let cid = ContractId(Hash::of_parts([
                s.seed.0.as_slice(),
                index.as_slice(),
                bytes.as_slice(),
            ]));
            s.push(Some(Node::Create {
                contract_id: cid,
                contract: contract.clone(),
            }))?;
            s.created.insert(cid, contract);
            Ok(cid)
        })
    }

    pub(crate) fn exercise(
        &self,
        engine: &Engine,
        cid: &ContractId,
        expected: Option<&TemplateId>,
        choice_name: &str,
        arg: Arg,
        authorizers: &BTreeSet<PartyId>,
    ) -> Result<Value, LedgerError> {
        let contract = self.with(|s| s.contract(cid))?;
        let tid = contract.template.clone();
        if let Some(expected) = expected.filter(|e| **e != tid) {
            return Err(LedgerError::TemplateMismatch {
                contract_id: *cid,
                expected: Box::new(expected.clone()),
                actual: Box::new(tid),
            });
        }
        let (package, t) = self.template(&tid)?;
        if package.id != contract.package_id {
            return Err(LedgerError::UnknownPackage(contract.package_id.to_string()));
        }
        let choice =
            if choice_name == ARCHIVE {
                None
            } else {
                Some(t.choices.get(choice_name).cloned().ok_or_else(|| {
                    LedgerError::UnknownChoice {
                        template: tid.clone(),
                        choice: choice_name.to_owned(),
                    }
                })?)
            };
        let arg_type = choice.as_ref().map_or_else(
            || Type::Record(BTreeMap::new()),
            |c| c.argument_type.clone(),
        );
        let path = format!("exercise {choice_name} on {tid}: argument");
        let argument = match arg {
            Arg::Value(v) => v.conform(&arg_type, &path)?,
            Arg::Dynamic(d) => from_dynamic(&d, &arg_type, &path)?,
        };
        let context = format!("template {tid}, choice {choice_name}");
        let this = to_dynamic(&contract.payload);
        let argd = to_dynamic(&argument);
        let controllers = match &choice {
            None => contract.signatories.clone(),
            Some(c) => {
                let ctx = format!("{context} controllers");
                let d = self.eval(engine, &c.controllers, &this, &argd, ctx.clone(), true)?;
                let parties = parties_from_dynamic(&d).map_err(|message| LedgerError::Script {
                    context: ctx.clone(),
                    message,
                })?;
                if parties.is_empty() {
                    return Err(LedgerError::Script {
                        context: ctx,
                        message: "no controller".into(),
                    });
                }
                parties
            }
        };
        require(&controllers, authorizers, || {
            format!("exercise of {choice_name} on {tid} contract {cid}")
        })?;
        let choice_observers = match choice.as_ref().and_then(|c| c.observers.as_ref()) {
            None => BTreeSet::new(),
            Some(script) => {
                let ctx = format!("{context} observers");
                let d = self.eval(engine, script, &this, &argd, ctx.clone(), true)?;
                parties_from_dynamic(&d).map_err(|message| LedgerError::Script {
                    context: ctx,
                    message,
                })?
            }
        };
        let consuming = choice.as_ref().is_none_or(|c| c.consuming);
        let id = self.with(|s| {
            if s.frames.len() >= s.limits.max_exercise_depth {
                return Err(LedgerError::LimitExceeded {
                    what: format!("{context}: nesting of exercises"),
                    limit: s.limits.max_exercise_depth as u64,
                });
            }
            let id = s.push(None)?;
            if consuming {
                s.consumed.insert(*cid);
            }
            s.frames.push(Frame {
                template: tid.clone(),
                authorizers: contract.signatories.union(&controllers).cloned().collect(),
                children: Vec::new(),
            });
            Ok(id)
        })?;
        let body = choice.as_ref().and_then(|c| c.body.as_ref());
        let result = match body {
            Some(body) => self.eval(engine, body, &this, &argd, context.clone(), false),
            None => Ok(Dynamic::UNIT),
        };
        let frame = self.with(|s| s.frames.pop());
        let result = result?;
        let result = match choice.as_ref().map(|c| &c.returns) {
            None | Some(Type::Unit) => Value::Unit,
            Some(ty) => from_dynamic(&result, ty, &format!("{context}: result"))?,
        };
        self.with(|s| {
            let slot = id - s.base;
            s.nodes[slot] = Some(Node::Exercise {
                contract_id: *cid,
                template: tid,
                choice: choice_name.to_owned(),
                consuming,
                actors: controllers,
                argument,
                children: frame.map(|f| f.children).unwrap_or_default(),
                result: result.clone(),
                stakeholders: contract.stakeholders(),
                signatories: contract.signatories,
                choice_observers,
            });
        });
        Ok(result)
    }

    pub(crate) fn fetch(
        &self,
        cid: &ContractId,
        expected: Option<&TemplateId>,
        authorizers: &BTreeSet<PartyId>,
    ) -> Result<ContractInstance, LedgerError> {
        self.with(|s| {
            let contract = s.contract(cid)?;
            if let Some(expected) = expected.filter(|e| **e != contract.template) {
                return Err(LedgerError::TemplateMismatch {
                    contract_id: *cid,
                    expected: Box::new(expected.clone()),
                    actual: Box::new(contract.template),
                });
            }
            let stakeholders = contract.stakeholders();
            let actors: BTreeSet<PartyId> =
                authorizers.intersection(&stakeholders).cloned().collect();
            if actors.is_empty() {
                return Err(LedgerError::NotAuthorized {
                    action: format!(
                        "fetch of {} contract {cid} (any one stakeholder suffices)",
                        contract.template
                    ),
                    required: stakeholders,
                    authorizers: authorizers.clone(),
                });
            }
            s.push(Some(Node::Fetch {
                contract_id: *cid,
                template: contract.template.clone(),
                actors,
                signatories: contract.signatories.clone(),
                stakeholders,
            }))?;
            Ok(contract)
        })
    }

    fn run_command(&self, engine: &Engine, cmd: &Command) -> Result<(), LedgerError> {
        let authorizers = self.with(|s| s.root_authorizers.clone());
        let create = |template: &TemplateId, payload: &Value| {
            let (_, t) = self.template(template)?;
            let payload = payload.conform(&t.payload_type, "payload")?;
            self.create(engine, template, payload, &authorizers)
        };
        match cmd {
            Command::Create { template, payload } => {
                create(template, payload)?;
            }
            Command::Exercise {
                template,
                contract_id,
                choice,
                argument,
            } => {
                self.exercise(
                    engine,
                    contract_id,
                    Some(template),
                    choice,
                    Arg::Value(argument.clone()),
                    &authorizers,
                )?;
            }
            Command::ExerciseByKey {
                template,
                key,
                choice,
                argument,
            } => {
                let cid = self.by_key(template, Key::Value(key.clone()))?;
                self.exercise(
                    engine,
                    &cid,
                    Some(template),
                    choice,
                    Arg::Value(argument.clone()),
                    &authorizers,
                )?;
            }
            Command::CreateAndExercise {
                template,
                payload,
                choice,
                argument,
            } => {
                let cid = create(template, payload)?;
                self.exercise(
                    engine,
                    &cid,
                    Some(template),
                    choice,
                    Arg::Value(argument.clone()),
                    &authorizers,
                )?;
            }
        }
        Ok(())
    }

    /// The nodes of the finished run, in order.
    pub(crate) fn nodes(&self) -> Vec<Node> {
        self.with(|s| s.nodes.iter().flatten().cloned().collect())
    }

    fn transaction(&self, act_as: &BTreeSet<PartyId>) -> Result<Transaction, LedgerError> {
        self.with(|s| {
            let nodes: Vec<Node> = s.nodes.iter().flatten().cloned().collect();
            if nodes.len() != s.nodes.len() {
                return Err(LedgerError::Script {
                    context: "interpretation".into(),
                    message: "an exercise node was left unfinished".into(),
                });
            }
            Ok(Transaction {
                seed: s.seed,
                submitters: act_as.clone(),
                roots: s.roots.clone(),
                nodes,
                input_contracts: s.used.clone(),
            })
        })
    }
}

/// The sandboxed engine with the ledger functions, which act on the thread's current machine.
fn ledger_engine() -> Engine {
    let mut engine = sandboxed_engine();
    engine.on_progress(|_| {
        CURRENT.with(|c| match c.borrow().as_ref() {
            Some(m) => m.step(),
            // Nothing runs outside an interpretation.
            None => Some(Dynamic::UNIT),
        })
    });
    engine.register_fn(
        "create",
        |ctx: NativeCallContext, template: ImmutableString, payload: Map| {
            current()?.native(|m| {
                let tid = m.script_template(&template)?;
                let (_, t) = m.template(&tid)?;
                let path = format!("create {tid}: payload");
                let payload = from_dynamic(&Dynamic::from_map(payload), &t.payload_type, &path)?;
                let authorizers = m.with(|s| s.authorizers());
                Ok(m.create(ctx.engine(), &tid, payload, &authorizers)?
                    .to_string())
            })
        },
    );
    engine.register_fn(
        "exercise",
        |ctx: NativeCallContext, cid: ImmutableString, choice: ImmutableString, arg: Map| {
            current()?.native(|m| {
                let cid = script_cid(&cid)?;
                let authorizers = m.with(|s| s.authorizers());
                let result = m.exercise(
                    ctx.engine(),
                    &cid,
                    None,
                    &choice,
                    Arg::Dynamic(Dynamic::from_map(arg)),
                    &authorizers,
                )?;
                Ok(to_dynamic(&result))
            })
        },
    );
    engine.register_fn("fetch", |cid: ImmutableString| {
        current()?.native(|m| {
            let cid = script_cid(&cid)?;
            let authorizers = m.with(|s| s.authorizers());
            Ok(to_dynamic(&m.fetch(&cid, None, &authorizers)?.payload))
        })
    });
    engine.register_fn(
        "lookup_by_key",
        |ctx: NativeCallContext, template: ImmutableString, key: Dynamic| {
            current()?.native(|m| {
                let tid = m.script_template(&template)?;
                let authorizers = m.with(|s| s.authorizers());
                let found = m.lookup_by_key(ctx.engine(), &tid, Key::Dynamic(key), &authorizers)?;
                Ok(found.map_or(Dynamic::UNIT, |cid| Dynamic::from(cid.to_string())))
            })
        },
    );
    engine.register_fn("fetch_by_key", |template: ImmutableString, key: Dynamic| {
        current()?.native(|m| {
            let tid = m.script_template(&template)?;
            let cid = m.by_key(&tid, Key::Dynamic(key))?;
            let authorizers = m.with(|s| s.authorizers());
            let contract = m.fetch(&cid, Some(&tid), &authorizers)?;
            let mut found = Map::new();
            found.insert("contract_id".into(), Dynamic::from(cid.to_string()));
            found.insert("payload".into(), to_dynamic(&contract.payload));
            Ok(found)
        })
    });
    engine.register_fn(
        "exercise_by_key",
        |ctx: NativeCallContext,
         template: ImmutableString,
         key: Dynamic,
         choice: ImmutableString,
         arg: Map| {
            current()?.native(|m| {
                let tid = m.script_template(&template)?;
                let cid = m.by_key(&tid, Key::Dynamic(key))?;
                let authorizers = m.with(|s| s.authorizers());
                let result = m.exercise(
                    ctx.engine(),
                    &cid,
                    Some(&tid),
                    &choice,
                    Arg::Dynamic(Dynamic::from_map(arg)),
                    &authorizers,
                )?;
                Ok(to_dynamic(&result))
            })
        },
    );
    engine.register_fn("archive", |ctx: NativeCallContext, cid: ImmutableString| {
        current()?.native(|m| {
            let cid = script_cid(&cid)?;
            let authorizers = m.with(|s| s.authorizers());
            m.exercise(
                ctx.engine(),
                &cid,
                None,
                ARCHIVE,
                Arg::Value(unit_record()),
                &authorizers,
            )?;
            Ok(())
        })
    });
    engine.register_fn(
        "abort",
        |message: ImmutableString| -> Result<Dynamic, Box<EvalAltResult>> {
            let m = current()?;
            let context = m.with(|s| s.context());
            Err(m.park(LedgerError::Aborted {
                context,
                message: message.to_string(),
            }))
        },
    );
    engine
}

fn script_cid(s: &str) -> Result<ContractId, LedgerError> {
    s.parse()
        .map_err(|_| LedgerError::type_error("contract id", format!("invalid contract id {s:?}")))
}

/// `required ⊆ authorizers`, else `NotAuthorized` naming the action.
fn require(
    required: &BTreeSet<PartyId>,
    authorizers: &BTreeSet<PartyId>,
    action: impl FnOnce() -> String,
) -> Result<(), LedgerError> {
    if required.is_subset(authorizers) {
        Ok(())
    } else {
        Err(LedgerError::NotAuthorized {
            action: action(),
            required: required.clone(),
            authorizers: authorizers.clone(),
        })
    }
}

fn rhai_error(e: EvalAltResult, context: String, limit: u64) -> LedgerError {
    match e {
        EvalAltResult::ErrorTerminated(..) | EvalAltResult::ErrorTooManyOperations(..) => {
            LedgerError::StepLimit { context, limit }
        }
        EvalAltResult::ErrorDataTooLarge(..)
        | EvalAltResult::ErrorStackOverflow(..)
        | EvalAltResult::ErrorTooManyVariables(..) => LedgerError::ScriptLimit {
            context,
            message: e.to_string(),
        },
        other => LedgerError::Script {
            context,
            message: other.to_string(),
        },
    }
}
