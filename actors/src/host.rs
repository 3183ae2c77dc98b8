//! actix actors hosting the deciders.
//!
//! An [`AggregateActor`] owns one stream's `(state, version)`. It activates on its first message
//! (latest snapshot, then the events after it), handles one command at a time inside an
//! `AtomicResponse` (decide, append with the expected version, evolve), reloads and decides again
//! on a version conflict, snapshots every N events and stops itself after an idle timeout.
//! A [`Registry`] finds or starts the actor for an id and refuses work when its mailbox is full.
//!
//! Before each message an actor reads the events its stream gained since it loaded, when this
//! node's [`Freshness`] says it moved or cannot vouch for it (see [`crate::freshness`]). An actor
//! whose stream does not exist (version 0 after its message) stops at once unless another caller
//! waits for it: a read of something that does not exist keeps nothing in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use events::domain::CodecError;
use events::journal::read_stream_to_end;
use events::{AppendError, AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent, StoreError};

use crate::domain::Decider;
use crate::freshness::Freshness;

/// Settings shared by all actors of a registry.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Take a snapshot each time a stream's version passes a multiple of this (0 = never).
    pub snapshot_every: u64,
    /// An actor with no work for this long stops and frees its memory.
    pub idle_timeout: Duration,
    /// Commands queued for one actor before new ones are refused with [`CommandError::Busy`].
    pub mailbox_capacity: usize,
    /// How long a caller waits for a command before giving up with [`CommandError::Unavailable`].
    pub command_timeout: Duration,
    /// How often a command is decided again after losing a version race.
    pub max_conflict_retries: u32,
    /// The oldest state a decision or read may use: past it, an actor reads its stream before
    /// deciding (see [`crate::freshness`]).
    pub staleness_bound: Duration,
    /// How often the node's freshness follower looks for other nodes' commits.
    pub freshness_poll: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            snapshot_every: 100,
            idle_timeout: Duration::from_secs(300),
            mailbox_capacity: 256,
            command_timeout: Duration::from_secs(10),
            max_conflict_retries: 8,
            staleness_bound: Duration::from_millis(250),
            freshness_poll: Duration::from_millis(25),
        }
    }
}

/// Why a command produced no events.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The domain said no; nothing was written.
    #[error(transparent)]
    Rejected(E),
    /// The actor's mailbox is full: try again later.
    #[error("too many commands queued for {0}")]
    Busy(String),
    /// The journal could not be reached or did not answer in time; the command may or may not
    /// have been committed (retry with the same idempotency key).
    #[error("journal unavailable: {0}")]
    Unavailable(#[source] Unavailability),
    /// Lost the version race more often than allowed.
    #[error("stream {0} is too contended")]
    Contended(String),
}

/// Why a command's outcome is unknown: what failed between the actor and the journal.
#[derive(Debug, thiserror::Error)]
pub enum Unavailability {
    /// The journal failed to load the stream or to append (an append's commit is then unknown).
    #[error(transparent)]
    Journal(#[from] StoreError),
    /// A decided event could not be encoded for the journal (a fault of this build, not of the store).
    #[error(transparent)]
    Encoding(#[from] CodecError),
    /// The stream's actor did not answer within the command timeout.
    #[error("{stream_id} did not answer in time")]
    TimedOut { stream_id: String },
    /// The stream's actor stopped while the command was being delivered, twice.
    #[error("{stream_id} is restarting")]
    Restarting { stream_id: String },
}

/// What a command did.
#[derive(Clone, Debug)]
pub struct Executed<S> {
    pub events: Vec<DomainEvent>,
    pub state: S,
    pub version: u64,
}

/// How the caller wants a command run.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecuteOptions {
    /// The stream was just named by a fresh id (e.g. a new UUIDv7), so it cannot exist yet: skip
    /// reading it on activation. Should it exist after all, the append conflicts and the actor reloads.
    pub new_stream: bool,
    /// Return a copy of the state after the command (it costs a clone of the whole state).
    pub return_state: bool,
}

pub struct Execute<D: Decider> {
    pub command: D::Command,
    pub causation: Causation,
    pub options: ExecuteOptions,
}

impl<D: Decider> Message for Execute<D> {
    type Result = Result<Executed<Option<D::State>>, CommandError<D::Error>>;
}

impl<D: Decider> Message for InspectOf<D> {
    type Result = Result<(D::State, u64), CommandError<D::Error>>;
}

/// Reads the current state without changing it (activating the actor if needed).
pub struct InspectOf<D>(std::marker::PhantomData<fn() -> D>);

type Entries<D> = Arc<Mutex<HashMap<String, Entry<D>>>>;

struct Entry<D: Decider> {
    addr: Addr<AggregateActor<D>>,
    use_: Arc<Use>,
}

/// How an actor is being used, shared by its registry entry, its callers and the actor.
struct Use {
    /// Callers that checked the actor out and have not had their answer yet.
    depth: AtomicUsize,
    /// When a caller last checked it out or got its answer ([`Clock`] ticks).
    last: AtomicU64,
}

/// The registry's time for [`Use::last`]: milliseconds since the registry started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

pub struct AggregateActor<D: Decider> {
    stream_id: String,
    loaded: Option<(D::State, u64)>,
    /// When the last read of the stream began (activation or catch-up).
    read_at: Instant,
    journal: Arc<dyn Journal>,
    options: Arc<HostOptions>,
    use_: Arc<Use>,
    entries: Entries<D>,
    freshness: Arc<Freshness>,
    /// The highest version this node's freshness follower saw the stream reach.
    moved: Arc<AtomicU64>,
}

impl<D: Decider> AggregateActor<D> {
    /// Leaves the registry (under its lock, held by the caller), unless a successor took the id.
    fn leave(&self, entries: &mut HashMap<String, Entry<D>>) {
        if entries.get(&self.stream_id).is_some_and(|e| Arc::ptr_eq(&e.use_, &self.use_)) {
            entries.remove(&self.stream_id);
            self.freshness.untrack(&self.stream_id, &self.moved);
        }
    }

    /// Whether the loaded state must be brought up to date before it is used: the stream moved
    /// past it, or this node's follower cannot vouch for it within the staleness bound.
    fn must_catch_up(&self) -> bool {
        let Some((_, version)) = &self.loaded else { return false };
        let trusted = self.freshness.covers(self.read_at);
        let behind = *version < self.moved.load(Ordering::SeqCst);
        if behind || !trusted {
            let cause = if behind { "moved" } else { "unvouched" };
            metrics::counter!("actor_catch_ups_total", "category" => category_of(&self.stream_id), "cause" => cause)
                .increment(1);
        }
        behind || !trusted
    }

    /// Called before a message's work starts: whether to catch up, and the read time it implies.
    fn prepare(&mut self) -> bool {
        let catch_up = self.must_catch_up();
        if catch_up || self.loaded.is_none() {
            self.read_at = Instant::now();
        }
        catch_up
    }

    /// After a message: a stream that does not exist keeps no actor, unless another caller waits.
    fn stop_if_unborn(&self, ctx: &mut Context<Self>) {
        if !matches!(self.loaded, Some((_, 0))) {
            return;
        }
        // Under the registry's lock, as the idle sweep: no caller is handed an actor that stops.
        let mut entries = self.entries.lock().expect("registry lock");
        if self.use_.depth.load(Ordering::SeqCst) <= 1 {
            self.leave(&mut entries);
            drop(entries);
            ctx.stop();
        }
    }
}

impl<D: Decider> Actor for AggregateActor<D> {
    type Context = Context<Self>;

    /// No timer of its own: the registry's idle sweep drops the actor's entry, and with it the
    /// last address, once it is idle; actix then stops the actor (see [`Registry::with_freshness`]).
    fn started(&mut self, _: &mut Context<Self>) {
        metrics::gauge!("actors_active", "category" => category_of(&self.stream_id)).increment(1.0);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        metrics::gauge!("actors_active", "category" => category_of(&self.stream_id)).decrement(1.0);
        let mut entries = self.entries.lock().expect("registry lock");
        self.leave(&mut entries);
        drop(entries);
        // The idle sweep removed the entry without the mark: it goes with the actor (a successor's
        // mark is not this one and stays).
        self.freshness.untrack(&self.stream_id, &self.moved);
    }
}

fn category_of(stream_id: &str) -> String {
    events::domain::streams::category(stream_id).to_owned()
}

/// Folds the latest snapshot and the events after it.
pub async fn activate<D: Decider>(journal: &dyn Journal, stream_id: &str) -> Result<(D::State, u64), StoreError> {
    let started = Instant::now();
    let (mut state, mut version) = match journal.load_snapshot(stream_id).await? {
        Some(s) => match rmp_serde::from_slice::<D::State>(&s.state) {
            Ok(state) => (state, s.version),
            Err(e) => {
                tracing::warn!(stream_id, error = %e, "ignoring a snapshot this build cannot read");
                (D::State::default(), 0)
            }
        },
        None => (D::State::default(), 0),
    };
    (state, version) = catch_up::<D>(journal, stream_id, (state, version)).await?;
    metrics::histogram!("actor_activation_seconds").record(started.elapsed().as_secs_f64());
    Ok((state, version))
}

/// The snapshot of a stream's state at `version`, in the encoding [`activate`] reads.
pub fn encode_snapshot<D: Decider>(
    stream_id: &str,
    version: u64,
    state: &D::State,
) -> Result<events::Snapshot, rmp_serde::encode::Error> {
    Ok(events::Snapshot { stream_id: stream_id.to_owned(), version, state: rmp_serde::to_vec_named(state)? })
}

/// Folds the events a stream gained after `loaded`'s version.
pub async fn catch_up<D: Decider>(
    journal: &dyn Journal,
    stream_id: &str,
    loaded: (D::State, u64),
) -> Result<(D::State, u64), StoreError> {
    let (mut state, mut version) = loaded;
    for e in read_stream_to_end(journal, stream_id, version + 1).await? {
        let event =
            e.decode().map_err(|err| StoreError::Corrupt(format!("{stream_id} v{}: {err}", e.stream_version)))?;
        state = D::evolve(state, &event);
        version = e.stream_version;
    }
    Ok((state, version))
}

/// The loaded state, brought up to date first when `refresh` says so; activated when there is none.
async fn current<D: Decider>(
    journal: &dyn Journal,
    stream_id: &str,
    loaded: Option<(D::State, u64)>,
    refresh: bool,
) -> Result<(D::State, u64), StoreError> {
    match loaded {
        Some(l) if refresh => catch_up::<D>(journal, stream_id, l).await,
        Some(l) => Ok(l),
        None => activate::<D>(journal, stream_id).await,
    }
}

/// Decides, appends with the expected version, and on a conflict reloads and decides again.
async fn execute<D: Decider>(
    journal: Arc<dyn Journal>,
    options: Arc<HostOptions>,
    stream_id: String,
    mut loaded: Option<(D::State, u64)>,
    mut refresh: bool,
    Execute { command, causation, options: run }: Execute<D>,
) -> (Option<(D::State, u64)>, Result<Executed<Option<D::State>>, CommandError<D::Error>>) {
    let mut assume_new = run.new_stream;
    for _ in 0..=options.max_conflict_retries {
        let (state, version) = match loaded.take() {
            None if std::mem::take(&mut assume_new) => (D::State::default(), 0),
            l => match current::<D>(journal.as_ref(), &stream_id, l, std::mem::take(&mut refresh)).await {
                Ok(l) => l,
                Err(e) => return (None, Err(CommandError::Unavailable(e.into()))),
            },
        };
        let new_events = match D::decide(&state, &command) {
            Ok(events) => events,
            Err(rejection) => return (Some((state, version)), Err(CommandError::Rejected(rejection))),
        };
        if new_events.is_empty() {
            let executed = Executed { events: vec![], state: run.return_state.then(|| state.clone()), version };
            return (Some((state, version)), Ok(executed));
        }
        let encoded: Result<Vec<NewEvent>, _> =
            new_events.iter().map(|e| NewEvent::from_domain(e, causation)).collect();
        let encoded = match encoded {
            Ok(e) => e,
            Err(e) => return (Some((state, version)), Err(CommandError::Unavailable(e.into()))),
        };
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        match journal.append(AppendRequest { stream_id: stream_id.clone(), expected, events: encoded }).await {
            Ok(appended) => {
                let state = new_events.iter().fold(state, |s, e| D::evolve(s, e));
                let version = appended.last_version;
                if options.snapshot_every > 0
                    && version / options.snapshot_every > (appended.first_version - 1) / options.snapshot_every
                {
                    if let Ok(bytes) = rmp_serde::to_vec_named(&state) {
                        let journal = journal.clone();
                        let snapshot = events::Snapshot { stream_id: stream_id.clone(), version, state: bytes };
                        tokio::spawn(async move {
                            if let Err(e) = journal.save_snapshot(snapshot).await {
                                tracing::warn!(error = %e, "snapshot not saved");
                            }
                        });
                    }
                }
                let executed = Executed { events: new_events, state: run.return_state.then(|| state.clone()), version };
                return (Some((state, version)), Ok(executed));
            }
            Err(AppendError::Conflict { .. }) => {
                metrics::counter!("actor_conflicts_total", "category" => category_of(&stream_id)).increment(1);
                continue;
            }
            // Whether it committed is unknown: forget the state so the next command reloads it.
            Err(AppendError::Store(e)) => return (None, Err(CommandError::Unavailable(e.into()))),
        }
    }
    (None, Err(CommandError::Contended(stream_id)))
}

impl<D: Decider> Handler<Execute<D>> for AggregateActor<D> {
    type Result = AtomicResponse<Self, Result<Executed<Option<D::State>>, CommandError<D::Error>>>;

    fn handle(&mut self, msg: Execute<D>, _: &mut Context<Self>) -> Self::Result {
        let refresh = self.prepare();
        let work = execute::<D>(
            self.journal.clone(),
            self.options.clone(),
            self.stream_id.clone(),
            self.loaded.take(),
            refresh,
            msg,
        );
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(loaded, result), act, ctx| {
            act.loaded = loaded;
            act.stop_if_unborn(ctx);
            result
        })))
    }
}

impl<D: Decider> Handler<InspectOf<D>> for AggregateActor<D> {
    type Result = AtomicResponse<Self, Result<(D::State, u64), CommandError<D::Error>>>;

    fn handle(&mut self, _: InspectOf<D>, _: &mut Context<Self>) -> Self::Result {
        let refresh = self.prepare();
        let loaded = self.loaded.take();
        let journal = self.journal.clone();
        let stream_id = self.stream_id.clone();
        let work = async move { current::<D>(journal.as_ref(), &stream_id, loaded, refresh).await };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(l) => {
                act.loaded = Some(l.clone());
                act.stop_if_unborn(ctx);
                Ok(l)
            }
            Err(e) => Err(CommandError::Unavailable(e.into())),
        })))
    }
}

type Checkout<D> = (Addr<AggregateActor<D>>, Arc<Use>);

/// Finds or starts the actor of a stream; spreads actors over a fixed set of arbiters.
pub struct Registry<D: Decider> {
    entries: Entries<D>,
    freshness: Arc<Freshness>,
    journal: Arc<dyn Journal>,
    options: Arc<HostOptions>,
    arbiters: Arc<[ArbiterHandle]>,
    next: AtomicUsize,
    clock: Clock,
}

impl<D: Decider> Registry<D> {
    /// A registry that no freshness follower serves: its actors read their stream's new events
    /// before each message (see [`Registry::with_freshness`]).
    pub fn new(journal: Arc<dyn Journal>, options: HostOptions, arbiters: Arc<[ArbiterHandle]>) -> Self {
        let freshness = Arc::new(Freshness::new(options.staleness_bound));
        Registry::with_freshness(journal, options, arbiters, freshness)
    }

    /// A registry whose actors trust their state as far as `freshness` vouches for it: give every
    /// registry of a node the same one, and run one [`crate::freshness::FreshnessFollower`] for it.
    pub fn with_freshness(
        journal: Arc<dyn Journal>,
        options: HostOptions,
        arbiters: Arc<[ArbiterHandle]>,
        freshness: Arc<Freshness>,
    ) -> Self {
        assert!(!arbiters.is_empty(), "a registry needs at least one arbiter");
        let registry = Registry {
            entries: Arc::new(Mutex::new(HashMap::new())),
            freshness,
            journal,
            options: Arc::new(options),
            arbiters,
            next: AtomicUsize::new(0),
            clock: Clock(Instant::now()),
        };
        registry.arbiters[0].spawn(sweep_idle(
            Arc::downgrade(&registry.entries),
            registry.clock,
            registry.options.idle_timeout,
        ));
        registry
    }

    /// Actors currently in memory.
    pub fn resident(&self) -> usize {
        self.entries.lock().expect("registry lock").len()
    }

    /// The stream's actor (started if needed) and its queue depth, already counting this caller.
    fn checkout(&self, stream_id: &str) -> Result<Checkout<D>, CommandError<D::Error>> {
        let mut entries = self.entries.lock().expect("registry lock");
        if let Some(e) = entries.get(stream_id) {
            if e.addr.connected() {
                let depth = e.use_.depth.fetch_add(1, Ordering::SeqCst);
                if depth >= self.options.mailbox_capacity {
                    e.use_.depth.fetch_sub(1, Ordering::SeqCst);
                    metrics::counter!("actor_mailbox_full_total", "category" => category_of(stream_id)).increment(1);
                    return Err(CommandError::Busy(stream_id.to_owned()));
                }
                e.use_.last.store(self.clock.now(), Ordering::SeqCst);
                metrics::histogram!("actor_mailbox_depth").record((depth + 1) as f64);
                return Ok((e.addr.clone(), e.use_.clone()));
            }
        }
        let use_ = Arc::new(Use { depth: AtomicUsize::new(1), last: AtomicU64::new(self.clock.now()) });
        let actor = AggregateActor::<D> {
            stream_id: stream_id.to_owned(),
            loaded: None,
            read_at: Instant::now(),
            journal: self.journal.clone(),
            options: self.options.clone(),
            use_: use_.clone(),
            entries: self.entries.clone(),
            freshness: self.freshness.clone(),
            moved: self.freshness.track(stream_id),
        };
        let arbiter = &self.arbiters[self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len()];
        let addr = AggregateActor::start_in_arbiter(arbiter, move |_| actor);
        entries.insert(stream_id.to_owned(), Entry { addr: addr.clone(), use_: use_.clone() });
        Ok((addr, use_))
    }

    async fn call<M>(&self, stream_id: &str, make: impl Fn() -> M) -> Result<M::Result, CommandError<D::Error>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        AggregateActor<D>: Handler<M>,
        <AggregateActor<D> as Actor>::Context: actix::dev::ToEnvelope<AggregateActor<D>, M>,
    {
        // A second try covers an actor that stopped between lookup and delivery.
        for _ in 0..2 {
            let (addr, use_) = self.checkout(stream_id)?;
            let sent = tokio::time::timeout(self.options.command_timeout, addr.send(make())).await;
            // The time first: the sweep never sees no callers with the time before this one's answer.
            use_.last.store(self.clock.now(), Ordering::SeqCst);
            use_.depth.fetch_sub(1, Ordering::SeqCst);
            match sent {
                Ok(Ok(result)) => return Ok(result),
                Ok(Err(MailboxError::Closed)) => continue,
                Ok(Err(MailboxError::Timeout)) | Err(_) => {
                    let stream_id = stream_id.to_owned();
                    return Err(CommandError::Unavailable(Unavailability::TimedOut { stream_id }));
                }
            }
        }
        Err(CommandError::Unavailable(Unavailability::Restarting { stream_id: stream_id.to_owned() }))
    }

    /// Runs a command on the stream's actor and returns the state it leaves.
    pub async fn execute(
        &self,
        stream_id: &str,
        command: D::Command,
        causation: Causation,
    ) -> Result<Executed<D::State>, CommandError<D::Error>>
    where
        D::Command: Clone,
    {
        let options = ExecuteOptions { return_state: true, ..ExecuteOptions::default() };
        self.execute_with(stream_id, command, causation, options).await.map(|e| Executed {
            events: e.events,
            state: e.state.unwrap_or_default(),
            version: e.version,
        })
    }

    /// Runs a command; the state after it comes back only if `options.return_state`.
    pub async fn execute_with(
        &self,
        stream_id: &str,
        command: D::Command,
        causation: Causation,
        options: ExecuteOptions,
    ) -> Result<Executed<Option<D::State>>, CommandError<D::Error>>
    where
        D::Command: Clone,
    {
        let started = Instant::now();
        let result = self
            .call(stream_id, || Execute::<D> { command: command.clone(), causation, options })
            .await
            .and_then(|r| r);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Busy(_)) => "busy",
            Err(CommandError::Unavailable(_)) => "unavailable",
            Err(CommandError::Contended(_)) => "contended",
        };
        let category = category_of(stream_id);
        metrics::counter!("commands_total", "category" => category.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("command_seconds", "category" => category).record(started.elapsed().as_secs_f64());
        result
    }

    /// The stream's current state and version.
    pub async fn inspect(&self, stream_id: &str) -> Result<(D::State, u64), CommandError<D::Error>> {
        self.call(stream_id, || InspectOf::<D>(std::marker::PhantomData)).await.and_then(|r| r)
    }
}

/// The registry's idle sweep, one per registry instead of a timer per actor: every half idle
/// timeout, drops the entry of each actor that no caller holds and nobody used for the idle timeout.
/// Its address was the last one, so actix stops the actor once its work is done; under the registry's
/// lock, no caller is handed an actor that stops. Ends once the registry and its actors are gone.
async fn sweep_idle<D: Decider>(
    entries: std::sync::Weak<Mutex<HashMap<String, Entry<D>>>>,
    clock: Clock,
    idle: Duration,
) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let every = (idle / 2).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let Some(entries) = entries.upgrade() else { return };
        let now = clock.now();
        let idle: Vec<Entry<D>> = entries
            .lock()
            .expect("registry lock")
            .extract_if(|_, e| {
                e.use_.depth.load(Ordering::SeqCst) == 0
                    && now.saturating_sub(e.use_.last.load(Ordering::SeqCst)) >= idle_ms
            })
            .map(|(_, e)| e)
            .collect();
        // The addresses drop outside the lock: each wakes its actor to stop.
        drop(idle);
    }
}

/// Starts `n` arbiters (threads with their own event loop) for actors to live on.
pub fn start_arbiters(n: usize) -> Arc<[ArbiterHandle]> {
    (0..n.max(1))
        .map(|_| {
            let arbiter = Arbiter::new();
            let handle = arbiter.handle();
            std::mem::forget(arbiter);
            handle
        })
        .collect()
}
