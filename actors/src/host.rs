//! actix actors hosting the deciders.
//!
//! An [`AggregateActor`] owns one stream's `(state, version)`. It activates on its first message
//! (latest snapshot, then the events after it) and works in batches, one at a time: every command
//! queued while the previous batch was being appended is decided in order against the evolving
//! state, and all their events go to the journal in one append with one expected version. Each
//! caller gets its own answer; a rejected command rejects only itself; a version conflict reloads
//! the stream and decides the whole batch again, so no command is applied twice. A hot stream thus
//! pays one journal round trip per batch, not per command. The actor snapshots every N events and
//! stops itself after an idle timeout. A [`Registry`] finds or starts the actor for an id and
//! refuses work when its queue is full.
//!
//! Before each batch an actor reads the events its stream gained since it loaded, when this
//! node's [`Freshness`] says it moved or cannot vouch for it (see [`crate::freshness`]). An actor
//! whose stream does not exist (version 0 after its batch) stops at once unless another caller
//! waits for it: a read of something that does not exist keeps nothing in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use events::domain::CodecError;
use events::journal::read_stream_to_end;
use events::metric;
use events::{AppendError, AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent, StoreError};

use tokio::sync::oneshot;

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
    /// The most queued commands an actor decides together and appends in one append.
    pub max_batch: usize,
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
            max_batch: 256,
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

/// The journal, settings, registry and freshness that all actors of one registry share.
struct Shared<D: Decider> {
    journal: Arc<dyn Journal>,
    options: Arc<HostOptions>,
    entries: Entries<D>,
    freshness: Arc<Freshness>,
}

pub struct AggregateActor<D: Decider> {
    stream_id: String,
    loaded: Option<(D::State, u64)>,
    /// When the last read of the stream began (activation or catch-up).
    read_at: Instant,
    /// What every actor of the registry shares (one pointer, not four: a node holds a million actors).
    shared: Arc<Shared<D>>,
    use_: Arc<Use>,
    /// The highest version this node's freshness follower saw the stream reach.
    moved: Arc<AtomicU64>,
    /// Work that arrived while a batch was running; the next batch takes it.
    queue: Vec<Work<D>>,
    /// Whether a batch is running (at most one at a time).
    running: bool,
}

impl<D: Decider> AggregateActor<D> {
    /// Leaves the registry (under its lock, held by the caller), unless a successor took the id.
    fn leave(&self, entries: &mut HashMap<String, Entry<D>>) {
        if entries.get(&self.stream_id).is_some_and(|e| Arc::ptr_eq(&e.use_, &self.use_)) {
            entries.remove(&self.stream_id);
            self.shared.freshness.untrack(&self.stream_id, &self.moved);
        }
    }

    /// Whether the loaded state must be brought up to date before it is used: the stream moved
    /// past it, or this node's follower cannot vouch for it within the staleness bound.
    fn must_catch_up(&self) -> bool {
        let Some((_, version)) = &self.loaded else { return false };
        let trusted = self.shared.freshness.covers(self.read_at);
        let behind = *version < self.moved.load(Ordering::SeqCst);
        if behind || !trusted {
            let cause = if behind { "moved" } else { "unvouched" };
            metric::ACTOR_CATCH_UPS
                .counter(&[("category", category_of(&self.stream_id)), ("cause", cause)])
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

    /// After a batch that answered `answered` callers: a stream that does not exist keeps no
    /// actor, unless another caller waits.
    fn stop_if_unborn(&self, ctx: &mut Context<Self>, answered: usize) {
        if !matches!(self.loaded, Some((_, 0))) {
            return;
        }
        // Under the registry's lock, as the idle sweep: no caller is handed an actor that stops.
        // The callers just answered still count in the depth until they collect their answer.
        let mut entries = self.shared.entries.lock().expect("registry lock");
        if self.use_.depth.load(Ordering::SeqCst) <= answered {
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
        metric::ACTORS_ACTIVE.gauge(&[("category", category_of(&self.stream_id))]).increment(1.0);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        metric::ACTORS_ACTIVE.gauge(&[("category", category_of(&self.stream_id))]).decrement(1.0);
        let mut entries = self.shared.entries.lock().expect("registry lock");
        self.leave(&mut entries);
        drop(entries);
        // The idle sweep removed the entry without the mark: it goes with the actor (a successor's
        // mark is not this one and stays).
        self.shared.freshness.untrack(&self.stream_id, &self.moved);
    }
}

/// Registers the actors' metrics at zero for every aggregate, so that a node shows its conflicts and
/// busy rejections (0) before it has any.
pub fn register_metrics() {
    for category in metric::AGGREGATES {
        let category = *category;
        metric::ACTOR_CONFLICTS.register(&[("category", category)]);
        metric::ACTOR_BUSY_REJECTIONS.register(&[("category", category)]);
        metric::ACTORS_ACTIVE.register(&[("category", category)]);
        for cause in ["moved", "unvouched"] {
            metric::ACTOR_CATCH_UPS.register(&[("category", category), ("cause", cause)]);
        }
        for outcome in ["ok", "rejected", "busy", "unavailable", "contended"] {
            metric::COMMANDS.register(&[("category", category), ("outcome", outcome)]);
        }
    }
}

/// A stream's category as a metric label: one of the catalog's aggregates, or `other` (a bounded
/// set whatever the stream ids, and no allocation per command).
fn category_of(stream_id: &str) -> &'static str {
    let category = events::domain::streams::category(stream_id);
    metric::AGGREGATES.iter().copied().find(|a| *a == category).unwrap_or("other")
}

/// Folds the latest snapshot and the events after it.
pub async fn activate<D: Decider>(journal: &dyn Journal, stream_id: &str) -> Result<(D::State, u64), StoreError> {
    let started = Instant::now();
    let (mut state, mut version) = match journal.load_snapshot(stream_id).await? {
        Some(s) => match rmp_serde::from_slice::<D::State>(&s.state) {
            Ok(state) => (state, s.version),
            Err(e) => {
                tracing::warn!(stream_id, error = %events::ErrorChain(&e), "ignoring a snapshot this build cannot read");
                (D::State::default(), 0)
            }
        },
        None => (D::State::default(), 0),
    };
    (state, version) = catch_up::<D>(journal, stream_id, (state, version)).await?;
    metric::ACTOR_ACTIVATION_DURATION.histogram(metric::NO_LABELS).record(started.elapsed().as_secs_f64());
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

/// A caller's work waiting in an actor's queue, with where its answer goes.
enum Work<D: Decider> {
    Execute(Execute<D>, oneshot::Sender<ExecuteResult<D>>),
    Inspect(oneshot::Sender<InspectResult<D>>),
}

type ExecuteResult<D> = Result<Executed<Option<<D as Decider>::State>>, CommandError<<D as Decider>::Error>>;
type InspectResult<D> = Result<(<D as Decider>::State, u64), CommandError<<D as Decider>::Error>>;

/// What one piece of work in a batch came to, before the batch's append decides whether it stands.
enum Outcome<D: Decider> {
    Executed(ExecuteResult<D>),
    Inspected(D::State, u64),
}

/// Loads (or brings up to date) the stream, then decides every command of the batch in order against
/// the evolving state and appends all their events in one append with one expected version; on a
/// version conflict it reloads and decides the whole batch again. A rejected command rejects only
/// itself. Returns what the actor keeps and one outcome per piece of work, in order.
async fn run_batch<D: Decider>(
    journal: Arc<dyn Journal>,
    options: Arc<HostOptions>,
    stream_id: String,
    mut loaded: Option<(D::State, u64)>,
    mut refresh: bool,
    work: &[Work<D>],
) -> (Option<(D::State, u64)>, Vec<Outcome<D>>) {
    // A fresh id names a stream that cannot exist yet, if every command of the batch says so.
    let mut assume_new = work.iter().all(|w| matches!(w, Work::Execute(e, _) if e.options.new_stream));
    for _ in 0..=options.max_conflict_retries {
        let (state, base) = match loaded.take() {
            None if std::mem::take(&mut assume_new) => (D::State::default(), 0),
            l => match current::<D>(journal.as_ref(), &stream_id, l, std::mem::take(&mut refresh)).await {
                Ok(l) => l,
                Err(e) => return (None, unavailable_all(work, &e)),
            },
        };
        let (state, version, outcomes, encoded, first_write) = decide_batch::<D>(state, base, work);
        if encoded.is_empty() {
            return (Some((state, version)), outcomes);
        }
        let expected = if base == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(base) };
        match journal.append(AppendRequest { stream_id: stream_id.clone(), expected, events: encoded }).await {
            Ok(appended) => {
                debug_assert_eq!(appended.last_version, version, "the journal numbers a stream's events contiguously");
                metric::ACTOR_BATCH_SIZE.histogram(metric::NO_LABELS).record(work.len() as f64);
                snapshot_if_due::<D>(&journal, &options, &stream_id, &state, appended.first_version, version);
                return (Some((state, version)), outcomes);
            }
            Err(AppendError::Conflict { .. }) => {
                metric::ACTOR_CONFLICTS.counter(&[("category", category_of(&stream_id))]).increment(1);
                continue;
            }
            // Whether it committed is unknown: forget the state so the next command reloads it. What
            // was answered before the first write stands; everything decided after it depended on it.
            Err(AppendError::Store(e)) => {
                let mut outcomes = outcomes;
                outcomes.truncate(first_write);
                outcomes.extend(unavailable_all(&work[first_write..], &e));
                return (None, outcomes);
            }
        }
    }
    let contended = work.iter().map(|_| Outcome::Executed(Err(CommandError::Contended(stream_id.clone())))).collect();
    (None, contended)
}

/// The pure part of a batch: each command decided against the state its predecessors left, the
/// events to append, and the index of the first piece of work whose outcome depends on the append.
#[allow(clippy::type_complexity)]
fn decide_batch<D: Decider>(
    mut state: D::State,
    mut version: u64,
    work: &[Work<D>],
) -> (D::State, u64, Vec<Outcome<D>>, Vec<NewEvent>, usize) {
    let mut outcomes = Vec::with_capacity(work.len());
    let mut encoded = Vec::new();
    let mut first_write = work.len();
    for (i, w) in work.iter().enumerate() {
        let Work::Execute(Execute { command, causation, options: run }, _) = w else {
            outcomes.push(Outcome::Inspected(state.clone(), version));
            continue;
        };
        let new_events = match D::decide(&state, command) {
            Ok(events) => events,
            Err(rejection) => {
                outcomes.push(Outcome::Executed(Err(CommandError::Rejected(rejection))));
                continue;
            }
        };
        if !new_events.is_empty() {
            let batch: Result<Vec<NewEvent>, _> =
                new_events.iter().map(|e| NewEvent::from_domain(e, *causation)).collect();
            match batch {
                Ok(batch) => encoded.extend(batch),
                Err(e) => {
                    outcomes.push(Outcome::Executed(Err(CommandError::Unavailable(e.into()))));
                    continue;
                }
            }
            first_write = first_write.min(i);
            state = new_events.iter().fold(state, |s, e| D::evolve(s, e));
            version += new_events.len() as u64;
        }
        let executed = Executed { events: new_events, state: run.return_state.then(|| state.clone()), version };
        outcomes.push(Outcome::Executed(Ok(executed)));
    }
    (state, version, outcomes, encoded, first_write)
}

fn unavailable_all<D: Decider>(work: &[Work<D>], e: &StoreError) -> Vec<Outcome<D>> {
    work.iter().map(|_| Outcome::Executed(Err(CommandError::Unavailable(Unavailability::Journal(e.clone()))))).collect()
}

/// Saves a snapshot in the background when the stream's version passed a multiple of the setting.
fn snapshot_if_due<D: Decider>(
    journal: &Arc<dyn Journal>,
    options: &HostOptions,
    stream_id: &str,
    state: &D::State,
    first_version: u64,
    version: u64,
) {
    let every = options.snapshot_every;
    if every == 0 || version / every <= (first_version - 1) / every {
        return;
    }
    match encode_snapshot::<D>(stream_id, version, state) {
        Ok(snapshot) => {
            let (journal, stream_id) = (journal.clone(), snapshot.stream_id.clone());
            tokio::spawn(async move {
                if let Err(e) = journal.save_snapshot(snapshot).await {
                    tracing::warn!(stream_id, error = %events::ErrorChain(&e), "snapshot not saved");
                }
            });
        }
        Err(e) => tracing::warn!(stream_id, error = %events::ErrorChain(&e), "snapshot not encoded"),
    }
}

impl<D: Decider> AggregateActor<D> {
    /// Starts the next batch unless one is running: everything queued, up to `max_batch`.
    fn run_next(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.queue.is_empty() {
            return;
        }
        self.running = true;
        let take = self.queue.len().min(self.shared.options.max_batch.max(1));
        let work: Vec<Work<D>> = self.queue.drain(..take).collect();
        let refresh = self.prepare();
        let (journal, options, stream_id) =
            (self.shared.journal.clone(), self.shared.options.clone(), self.stream_id.clone());
        let loaded = self.loaded.take();
        let batch = async move {
            let (loaded, outcomes) = run_batch::<D>(journal, options, stream_id, loaded, refresh, &work).await;
            (loaded, outcomes, work)
        };
        ctx.spawn(batch.into_actor(self).map(|(loaded, outcomes, work), act, ctx| {
            act.loaded = loaded;
            act.running = false;
            let answered = work.len();
            for (w, outcome) in work.into_iter().zip(outcomes) {
                match (w, outcome) {
                    (Work::Execute(_, reply), Outcome::Executed(result)) => {
                        let _ = reply.send(result);
                    }
                    (Work::Inspect(reply), Outcome::Inspected(state, version)) => {
                        let _ = reply.send(Ok((state, version)));
                    }
                    (Work::Inspect(reply), Outcome::Executed(Err(e))) => {
                        let _ = reply.send(Err(e));
                    }
                    (Work::Inspect(_), Outcome::Executed(Ok(_))) | (Work::Execute(..), Outcome::Inspected(..)) => {
                        unreachable!("an outcome answers the work it was decided for")
                    }
                }
            }
            act.run_next(ctx);
            if !act.running {
                act.stop_if_unborn(ctx, answered);
            }
        }));
    }
}

/// The answer a caller waits for; a dropped reply means the actor stopped before answering.
fn await_reply<T: Send + 'static, E: std::error::Error + Send + 'static>(
    stream_id: String,
    reply: oneshot::Receiver<Result<T, CommandError<E>>>,
) -> ResponseFuture<Result<T, CommandError<E>>> {
    Box::pin(async move {
        reply.await.unwrap_or_else(|_| Err(CommandError::Unavailable(Unavailability::Restarting { stream_id })))
    })
}

impl<D: Decider> Handler<Execute<D>> for AggregateActor<D> {
    type Result = ResponseFuture<ExecuteResult<D>>;

    fn handle(&mut self, msg: Execute<D>, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queue.push(Work::Execute(msg, reply));
        self.run_next(ctx);
        await_reply(self.stream_id.clone(), answer)
    }
}

impl<D: Decider> Handler<InspectOf<D>> for AggregateActor<D> {
    type Result = ResponseFuture<InspectResult<D>>;

    fn handle(&mut self, _: InspectOf<D>, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queue.push(Work::Inspect(reply));
        self.run_next(ctx);
        await_reply(self.stream_id.clone(), answer)
    }
}

type Checkout<D> = (Addr<AggregateActor<D>>, Arc<Use>);

/// Finds or starts the actor of a stream; spreads actors over a fixed set of arbiters.
pub struct Registry<D: Decider> {
    entries: Entries<D>,
    freshness: Arc<Freshness>,
    options: Arc<HostOptions>,
    arbiters: Arc<[ArbiterHandle]>,
    next: AtomicUsize,
    clock: Clock,
    /// The same journal, settings, entries and freshness, as each actor holds them.
    shared: Arc<Shared<D>>,
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
        let entries: Entries<D> = Arc::new(Mutex::new(HashMap::new()));
        let options = Arc::new(options);
        let shared = Arc::new(Shared {
            journal,
            options: options.clone(),
            entries: entries.clone(),
            freshness: freshness.clone(),
        });
        let registry = Registry {
            entries,
            freshness,
            options,
            arbiters,
            next: AtomicUsize::new(0),
            clock: Clock(Instant::now()),
            shared,
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

    /// Passivates every actor no caller is waiting on now, as the idle sweep would once their idle
    /// timeout passed: their next message activates them again from the journal (a cold start).
    /// Returns how many were let go.
    pub fn passivate_unused(&self) -> usize {
        let unused: Vec<Entry<D>> = self
            .entries
            .lock()
            .expect("registry lock")
            .extract_if(|_, e| e.use_.depth.load(Ordering::SeqCst) == 0)
            .map(|(_, e)| e)
            .collect();
        // The addresses drop outside the lock: each wakes its actor to stop.
        unused.len()
    }

    /// The stream's actor (started if needed) and its queue depth, already counting this caller.
    fn checkout(&self, stream_id: &str) -> Result<Checkout<D>, CommandError<D::Error>> {
        let mut entries = self.entries.lock().expect("registry lock");
        if let Some(e) = entries.get(stream_id) {
            if e.addr.connected() {
                let depth = e.use_.depth.fetch_add(1, Ordering::SeqCst);
                if depth >= self.options.mailbox_capacity {
                    e.use_.depth.fetch_sub(1, Ordering::SeqCst);
                    metric::ACTOR_BUSY_REJECTIONS.counter(&[("category", category_of(stream_id))]).increment(1);
                    return Err(CommandError::Busy(stream_id.to_owned()));
                }
                e.use_.last.store(self.clock.now(), Ordering::SeqCst);
                metric::ACTOR_MAILBOX_DEPTH.histogram(metric::NO_LABELS).record((depth + 1) as f64);
                return Ok((e.addr.clone(), e.use_.clone()));
            }
        }
        let use_ = Arc::new(Use { depth: AtomicUsize::new(1), last: AtomicU64::new(self.clock.now()) });
        let actor = AggregateActor::<D> {
            stream_id: stream_id.to_owned(),
            loaded: None,
            read_at: Instant::now(),
            shared: self.shared.clone(),
            use_: use_.clone(),
            moved: self.freshness.track(stream_id),
            queue: Vec::new(),
            running: false,
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
        metric::COMMANDS.counter(&[("category", category), ("outcome", outcome)]).increment(1);
        metric::COMMAND_DURATION.histogram(&[("category", category)]).record(started.elapsed().as_secs_f64());
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
