//! What an order needs to know before it is decided, held in memory on each node: every menu
//! item's price and whether it is published or retired, and whether each store is open.
//!
//! Placing an order used to cost one actor trip for its store and one Menu-actor trip per line.
//! The [`Catalogue`] answers those from memory, within the same staleness bound as the actors
//! ([`crate::freshness`]):
//!
//! - This node's [`crate::freshness::FreshnessFollower`] already reads every event of the journal;
//!   it also hands each menu and store event to the catalogue, which folds it with the decider's
//!   own `evolve` ([`MenuDecider`], [`StoreDecider`]): one rule for the actor and the catalogue.
//! - The follower starts at the journal's head, so it never sees what came before. An item or a
//!   store the catalogue does not hold is read once through its actor, and the state the actor
//!   answers is offered to the catalogue at the version it carries. The offer is taken only if the
//!   follower has not yet folded an event past that version (it would be missing) and the
//!   follower was already following when the read began. From then on the follower folds the
//!   stream's events one version after the other; a gap (an event skipped) forgets the entry,
//!   which is read again through its actor.
//! - A lookup answers only while this node's [`Freshness`](crate::freshness::Freshness) vouches
//!   for the entry (the follower was caught up less than the bound ago); otherwise the caller goes
//!   through the actor, which reads its stream. A decision made from the catalogue at time `t`
//!   therefore misses no menu or store event committed before `t − bound`, as one made by an actor.
//! - Writes made on this node through [`crate::cafe::Cafe`] are offered at once (their state and
//!   version), so a node prices its own re-price without waiting for its follower.
//! - Streams that do not exist (version 0) are never kept: a client naming random items cannot
//!   grow it. It holds one entry per menu item and store that exists.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

use events::domain::{streams, Cents};
use events::{DomainEvent, RecordedEvent};

use crate::domain::menu::{MenuDecider, MenuItem};
use crate::domain::store::{Store, StoreDecider, StoreStatus};
use crate::domain::Decider;

/// What an order line needs from a menu item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemForSale {
    pub published: bool,
    pub retired: bool,
    pub price_cents: Cents,
}

impl From<&MenuItem> for ItemForSale {
    fn from(item: &MenuItem) -> Self {
        ItemForSale { published: item.published, retired: item.retired, price_cents: item.price_cents }
    }
}

/// The menu and the stores as this node's freshness follower last folded them (module docs).
pub struct Catalogue {
    menu: Shelf<MenuDecider>,
    stores: Shelf<StoreDecider>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue { menu: Shelf::new("menu"), stores: Shelf::new("store") }
    }
}

impl Catalogue {
    /// The item as far as `vouched` trusts the time its entry was read; `None` sends the caller to
    /// the item's actor.
    pub fn item(&self, item_id: &str, vouched: impl Fn(Instant) -> bool) -> Option<ItemForSale> {
        self.menu.read(item_id, vouched, |item: &MenuItem| ItemForSale::from(item))
    }

    /// The store's status, as [`Catalogue::item`].
    pub fn store_status(&self, store_id: &str, vouched: impl Fn(Instant) -> bool) -> Option<StoreStatus> {
        self.stores.read(store_id, vouched, |store: &Store| store.status)
    }

    /// A menu item's state at `version`, read through its actor by a call that began at `asked_at`.
    pub fn offer_item(&self, item_id: &str, item: &MenuItem, version: u64, asked_at: Instant, vouched: bool) {
        self.menu.offer(item_id, item, version, asked_at, vouched);
    }

    /// A store's state at `version`, as [`Catalogue::offer_item`].
    pub fn offer_store(&self, store_id: &str, store: &Store, version: u64, asked_at: Instant, vouched: bool) {
        self.stores.offer(store_id, store, version, asked_at, vouched);
    }

    /// One event of the journal's global order, as the freshness follower reads them: menu and
    /// store events are folded, the rest cost one comparison of the stream's category.
    pub fn follow(&self, event: &RecordedEvent) {
        let Some((category, id)) = event.stream_id.split_once('-') else { return };
        let decoded = || {
            event.decode().map_err(|e| {
                tracing::warn!(stream_id = %event.stream_id, version = event.stream_version, error = %e,
                    "the catalogue cannot read an event; its entry is read through the actor again");
            })
        };
        if category == self.menu.category {
            self.menu.follow(id, event.stream_version, decoded().ok().as_ref());
        } else if category == self.stores.category {
            self.stores.follow(id, event.stream_version, decoded().ok().as_ref());
        }
    }

    /// Menu items and stores held, for metrics and tests.
    pub fn len(&self) -> usize {
        self.menu.known() + self.stores.known()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One aggregate's entries, keyed by the id in its stream name (`menu-{id}` → `id`).
struct Shelf<D: Decider> {
    category: &'static str,
    entries: RwLock<HashMap<String, Entry<D::State>>>,
}

struct Entry<S> {
    /// The highest version the follower saw the stream reach (0: none since it started).
    seen: u64,
    known: Option<Known<S>>,
}

impl<S> Default for Entry<S> {
    fn default() -> Self {
        Entry { seen: 0, known: None }
    }
}

/// A stream's state at `version`, first read through its actor by a call that began at `read_at`,
/// and folded forward by the follower since.
struct Known<S> {
    state: S,
    version: u64,
    read_at: Instant,
}

impl<D: Decider> Shelf<D> {
    fn new(category: &'static str) -> Self {
        debug_assert_eq!(streams::category(&format!("{category}-x")), category);
        Shelf { category, entries: RwLock::new(HashMap::new()) }
    }

    fn read<T>(&self, id: &str, vouched: impl Fn(Instant) -> bool, view: impl FnOnce(&D::State) -> T) -> Option<T> {
        let entries = self.entries.read().expect("catalogue lock");
        let known = entries.get(id)?.known.as_ref()?;
        vouched(known.read_at).then(|| view(&known.state))
    }

    fn offer(&self, id: &str, state: &D::State, version: u64, asked_at: Instant, vouched: bool) {
        if version == 0 || !vouched {
            return;
        }
        let mut entries = self.entries.write().expect("catalogue lock");
        if let Some(entry) = entries.get(id) {
            // The follower folded an event this state lacks, or holds this version or a later one.
            if entry.seen > version || entry.known.as_ref().is_some_and(|k| k.version >= version) {
                return;
            }
        }
        let entry = entries.entry(id.to_owned()).or_default();
        entry.known = Some(Known { state: state.clone(), version, read_at: asked_at });
    }

    /// The stream reached `version` with `event` (`None`: it could not be decoded).
    fn follow(&self, id: &str, version: u64, event: Option<&DomainEvent>) {
        let mut entries = self.entries.write().expect("catalogue lock");
        let entry = entries.entry(id.to_owned()).or_default();
        entry.seen = entry.seen.max(version);
        let Some(known) = entry.known.as_mut() else { return };
        if version <= known.version {
            return; // Already in the state it was read with (or this node's own write).
        }
        match event {
            Some(event) if version == known.version + 1 => {
                known.state = D::evolve(std::mem::take(&mut known.state), event);
                known.version = version;
            }
            // A version skipped, or an event this build cannot read: ask the actor again.
            _ => entry.known = None,
        }
    }

    fn known(&self) -> usize {
        self.entries.read().expect("catalogue lock").values().filter(|e| e.known.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::domain::{MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, Nutrition, StoreClosed};
    use events::{Causation, NewEvent};

    fn recorded(stream_id: &str, version: u64, event: DomainEvent) -> RecordedEvent {
        NewEvent::from_domain(&event, Causation::new_root()).unwrap().record(stream_id, version, &[0; 32])
    }

    fn latte(price: Cents) -> MenuItem {
        MenuDecider::evolve(
            MenuItem::default(),
            &MenuItemPublished {
                item_id: "latte".into(),
                name: "Latte".into(),
                category: "coffee".into(),
                price_cents: price,
                nutrition: Nutrition::default(),
                image_sha256: String::new(),
            }
            .into(),
        )
    }

    fn repriced(price: Cents) -> DomainEvent {
        MenuItemPriceChanged { item_id: "latte".into(), price_cents: price }.into()
    }

    fn always(_: Instant) -> bool {
        true
    }

    fn sale(price: Cents) -> Option<ItemForSale> {
        Some(ItemForSale { published: true, retired: false, price_cents: price })
    }

    #[test]
    fn given_an_item_read_once_when_the_follower_sees_it_repriced_and_retired_then_orders_see_both() {
        let catalogue = Catalogue::default();
        catalogue.offer_item("latte", &latte(450), 1, Instant::now(), true);
        assert_eq!(catalogue.item("latte", always), sale(450));
        catalogue.follow(&recorded("menu-latte", 2, repriced(525)));
        assert_eq!(catalogue.item("latte", always), sale(525), "the follower folds the new price");
        catalogue.follow(&recorded("menu-latte", 3, MenuItemRetired { item_id: "latte".into() }.into()));
        assert_eq!(catalogue.item("latte", always).map(|i| i.retired), Some(true));
        catalogue.follow(&recorded("menu-latte", 2, repriced(999)));
        assert_eq!(catalogue.item("latte", always).map(|i| i.price_cents), Some(525), "an old version changes nothing");
    }

    #[test]
    fn a_skipped_version_forgets_the_entry_and_a_state_older_than_what_was_followed_is_not_kept() {
        let catalogue = Catalogue::default();
        catalogue.offer_item("latte", &latte(450), 1, Instant::now(), true);
        catalogue.follow(&recorded("menu-latte", 3, repriced(600)));
        assert_eq!(catalogue.item("latte", always), None, "version 2 was never folded: ask the actor");
        catalogue.offer_item("latte", &latte(450), 1, Instant::now(), true);
        assert_eq!(catalogue.item("latte", always), None, "the follower already saw version 3");
        let mut current = latte(450);
        current.price_cents = 600;
        catalogue.offer_item("latte", &current, 3, Instant::now(), true);
        assert_eq!(catalogue.item("latte", always), sale(600));
        catalogue.offer_item("latte", &latte(450), 2, Instant::now(), true);
        assert_eq!(catalogue.item("latte", always), sale(600), "an older offer does not replace a newer state");
    }

    #[test]
    fn nothing_unborn_or_unvouched_is_kept_and_nothing_unvouched_is_answered() {
        let catalogue = Catalogue::default();
        catalogue.offer_item("ghost", &MenuItem::default(), 0, Instant::now(), true);
        catalogue.offer_item("latte", &latte(450), 1, Instant::now(), false);
        assert!(catalogue.is_empty());
        catalogue.offer_item("latte", &latte(450), 1, Instant::now(), true);
        assert_eq!(catalogue.item("latte", |_| false), None, "the follower lags: the actor answers");
    }

    #[test]
    fn a_store_closed_on_another_node_is_closed_here_once_followed() {
        let catalogue = Catalogue::default();
        let open = Store { status: StoreStatus::Open, store_id: "s1".into(), ..Store::default() };
        catalogue.offer_store("s1", &open, 1, Instant::now(), true);
        assert_eq!(catalogue.store_status("s1", always), Some(StoreStatus::Open));
        catalogue.follow(&recorded(
            "store-s1",
            2,
            StoreClosed { store_id: "s1".into(), reason: "flood".into() }.into(),
        ));
        assert_eq!(catalogue.store_status("s1", always), Some(StoreStatus::Closed));
        catalogue.follow(&recorded("order-1", 1, repriced(1)));
        assert_eq!(catalogue.item("latte", always), None, "other categories are not folded");
    }
}
