//! The DocumentDB read models (feature `documentdb`; the MongoDB wire protocol through the `mongodb`
//! driver):
//!
//! - `menu`: one document per item, `_id` = item id, with `name`, `category`, `price_cents`,
//!   `retired`, `nutrition {calories, caffeine_mg, sugar_g}`, `image_sha256` and `version`.
//! - `order_documents`: the whole order as one document, as a mobile app reads it: `_id` = order id,
//!   `customer_id`, `store_id`, `status`, `total_cents`, `created_at_us`, `cancel_reason`,
//!   `lines [{item_id, quantity, unit_price_cents}]` and `version`; indexed on
//!   `(customer_id, created_at_us)` for "a customer's orders, newest first".
//!
//! Effectively-once without transactions (DocumentDB on one node refuses multi-document ones): a
//! document that an event creates (`OrderPlaced`, `MenuItemPublished`) is upserted with the filter
//! `{_id, version < v or missing}`; when a newer version is already there the filter matches nothing,
//! the upsert tries to insert a second `_id` and the server answers E11000, which is success. Later
//! events update only a document older than them, without upsert. The events of one document within
//! a page are folded into one write. The position (collection `projection_offsets`, `_id` = the
//! projection's name) is written after the page's documents and only ever moves forward.
//!
//! A rebuild writes `menu_rebuild` and `order_documents_rebuild` with their own position document.
//! Promotion renames each shadow collection over the live one (`renameCollection`, `dropTarget`),
//! then moves the position: **atomic per collection, not across both**. Between the two renames a
//! reader can see the new menu beside the old order documents; both are correct models of a prefix
//! of the journal, so each answer is right on its own, and re-applying events to either changes
//! nothing. A promotion interrupted there resumes: a shadow collection already renamed is skipped.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use events::domain::{Cents, Nutrition, OrderLine};
use events::secret::redact;
use events::RecordedEvent;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use uuid::Uuid;

use crate::read_models::fold::{changes, Change, MenuItemView, OrderView};
use crate::read_models::storefront::canonical;
use crate::read_models::PositionWrite;
use crate::{CanonicalRow, Rebuildable, Sink, SinkError};

/// The name under which the live models' position is stored.
pub const NAME: &str = "documents";
pub const MENU: &str = "menu";
pub const ORDER_DOCUMENTS: &str = "order_documents";
pub const OFFSETS: &str = "projection_offsets";
/// Appended to a collection's name for the shadow a rebuild writes.
pub const SHADOW_SUFFIX: &str = "_rebuild";
/// The index of `order_documents` on `(customer_id, created_at_us)`.
pub const CUSTOMER_INDEX: &str = "customer_id_created_at_us";

/// Writes in flight at once within a page (each to a different document).
const CONCURRENT_WRITES: usize = 16;

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;
const NAMESPACE_EXISTS: i32 = 48;

/// `menu` and `order_documents` in one database. See the module docs.
pub struct DocumentSink {
    db: Database,
    /// `""` for the live collections, [`SHADOW_SUFFIX`] for the shadow.
    suffix: &'static str,
    name: String,
}

impl DocumentSink {
    /// Opens the live read models in `db`, creating the collections, the index and the position
    /// document if absent. `db` comes from a client the caller built (URI, TLS, credentials).
    pub async fn open(db: Database) -> Result<Self, SinkError> {
        let sink = DocumentSink { db, suffix: "", name: NAME.to_owned() };
        sink.ensure().await?;
        Ok(sink)
    }

    fn shadow_sink(&self) -> DocumentSink {
        DocumentSink { db: self.db.clone(), suffix: SHADOW_SUFFIX, name: format!("{NAME}{SHADOW_SUFFIX}") }
    }

    fn collection(&self, base: &str) -> Collection<Document> {
        self.db.collection(&format!("{base}{}", self.suffix))
    }

    fn offsets(&self) -> Collection<Document> {
        self.db.collection(OFFSETS)
    }

    /// Creates this handle's collections, index and position document if absent. The collections are
    /// created even while empty so that a promotion always has both to rename.
    async fn ensure(&self) -> Result<(), SinkError> {
        for base in [MENU, ORDER_DOCUMENTS] {
            let name = format!("{base}{}", self.suffix);
            match self.db.create_collection(&name).await {
                Ok(()) => {}
                Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {}
                Err(e) => return Err(unavailable(&name, e)),
            }
        }
        let orders = self.collection(ORDER_DOCUMENTS);
        let index = IndexModel::builder()
            .keys(doc! { "customer_id": 1, "created_at_us": -1 })
            .options(IndexOptions::builder().name(CUSTOMER_INDEX.to_owned()).build())
            .build();
        orders.create_index(index).await.map_err(|e| unavailable(orders.name(), e))?;
        self.set_position(0, PositionWrite::IfAbsent).await
    }

    async fn read_position(&self) -> Result<u64, SinkError> {
        let found = self.offsets().find_one(doc! { "_id": &self.name }).await.map_err(|e| unavailable(OFFSETS, e))?;
        match found {
            Some(d) => Ok(u64::try_from(int(&d, "position", OFFSETS)?).unwrap_or(0)),
            None => Ok(0),
        }
    }

    async fn set_position(&self, position: u64, how: PositionWrite) -> Result<(), SinkError> {
        let position = to_i64(position);
        let offsets = self.offsets();
        let result = match how {
            PositionWrite::IfAbsent => {
                offsets
                    .update_one(doc! { "_id": &self.name }, doc! { "$setOnInsert": { "position": position } })
                    .upsert(true)
                    .await
            }
            // Two runners of one projection never move the position back; E11000 means it is ahead.
            PositionWrite::Forward => {
                offsets
                    .update_one(
                        doc! { "_id": &self.name, "position": { "$lt": position } },
                        doc! { "$set": { "position": position } },
                    )
                    .upsert(true)
                    .await
            }
            PositionWrite::Exactly => {
                offsets
                    .update_one(doc! { "_id": &self.name }, doc! { "$set": { "position": position } })
                    .upsert(true)
                    .await
            }
        };
        accept_duplicate(result.map(|_| ()), OFFSETS)
    }

    async fn write(&self, write: Write) -> Result<(), SinkError> {
        match write {
            Write::Create { base, id, fields, version } => {
                let collection = self.collection(base);
                let mut set = fields;
                set.insert("version", to_i64(version));
                let upsert =
                    collection.update_one(newer_than_stored(&id, version), doc! { "$set": set }).upsert(true).await;
                accept_duplicate(upsert.map(|_| ()), collection.name())
            }
            Write::Update { base, id, fields, version } => {
                // Not an upsert: a change to a document this model never saw created (a rebuild that
                // started past it) changes nothing, as in the SQL storefront.
                let collection = self.collection(base);
                let mut set = fields;
                set.insert("version", to_i64(version));
                collection
                    .update_one(doc! { "_id": &id, "version": { "$lt": to_i64(version) } }, doc! { "$set": set })
                    .await
                    .map_err(|e| write_failure(collection.name(), e))?;
                Ok(())
            }
        }
    }

    /// One order document.
    pub async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError> {
        let collection = self.collection(ORDER_DOCUMENTS);
        let found = collection
            .find_one(doc! { "_id": order_id.to_string() })
            .await
            .map_err(|e| unavailable(collection.name(), e))?;
        found.map(|d| order_view(&d, collection.name())).transpose()
    }

    /// A customer's orders, newest first (through the `(customer_id, created_at_us)` index).
    pub async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError> {
        let collection = self.collection(ORDER_DOCUMENTS);
        let documents: Vec<Document> = collection
            .find(doc! { "customer_id": customer_id })
            .sort(doc! { "created_at_us": -1, "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| unavailable(collection.name(), e))?
            .try_collect()
            .await
            .map_err(|e| unavailable(collection.name(), e))?;
        documents.iter().map(|d| order_view(d, collection.name())).collect()
    }

    /// Every menu item, retired ones included, by category then id.
    pub async fn menu(&self) -> Result<Vec<MenuItemView>, SinkError> {
        let collection = self.collection(MENU);
        let documents: Vec<Document> = collection
            .find(doc! {})
            .sort(doc! { "category": 1, "_id": 1 })
            .await
            .map_err(|e| unavailable(collection.name(), e))?
            .try_collect()
            .await
            .map_err(|e| unavailable(collection.name(), e))?;
        documents.iter().map(|d| menu_item(d, collection.name())).collect()
    }

    async fn all(&self, base: &str) -> Result<Vec<Document>, SinkError> {
        let collection = self.collection(base);
        collection
            .find(doc! {})
            .await
            .map_err(|e| unavailable(collection.name(), e))?
            .try_collect()
            .await
            .map_err(|e| unavailable(collection.name(), e))
    }
}

#[async_trait]
impl Sink for DocumentSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<u64, SinkError> {
        self.read_position().await
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position) else { return Ok(()) };
        let at = self.read_position().await?;
        if last <= at {
            return Ok(());
        }
        self.write_documents(events.iter().filter(|e| e.global_position > at)).await?;
        // After the documents: a crash before this line re-applies the page, which changes nothing.
        self.set_position(last, PositionWrite::Forward).await
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        let mut rows = Vec::new();
        let menu = format!("{MENU}{}", self.suffix);
        for d in self.all(MENU).await? {
            let item = menu_item(&d, &menu)?;
            rows.push(CanonicalRow { key: format!("{MENU}/{}", item.item_id), ..canonical::menu_item(&item) });
        }
        let orders = format!("{ORDER_DOCUMENTS}{}", self.suffix);
        for d in self.all(ORDER_DOCUMENTS).await? {
            let order = order_view(&d, &orders)?;
            rows.push(CanonicalRow {
                key: format!("{ORDER_DOCUMENTS}/{}", order.order_id),
                ..canonical::order(&order)
            });
        }
        Ok(rows)
    }
}

/// Every document write is conditional on its stream's version: the sink can follow a Kinesis shard.
#[async_trait]
impl crate::StreamOrderedSink for DocumentSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply_in_stream_order(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        self.write_documents(events.iter()).await
    }
}

impl DocumentSink {
    /// The conditional document writes of `events`, without moving the position.
    async fn write_documents<'a>(&self, events: impl Iterator<Item = &'a RecordedEvent>) -> Result<(), SinkError> {
        let writes = plan(events)?;
        futures::stream::iter(writes.into_iter().map(|w| self.write(w)))
            .buffer_unordered(CONCURRENT_WRITES)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Rebuildable for DocumentSink {
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        let shadow = self.shadow_sink();
        shadow.ensure().await?;
        Ok(Arc::new(shadow))
    }

    async fn reset_shadow(&self, position: u64) -> Result<(), SinkError> {
        self.discard_shadow().await?;
        let shadow = self.shadow_sink();
        shadow.ensure().await?;
        shadow.set_position(position, PositionWrite::Exactly).await
    }

    /// Renames each shadow collection over its live one, then moves the position: atomic per
    /// collection, not across both (see the module docs).
    async fn promote_shadow(&self) -> Result<(), SinkError> {
        let shadow = self.shadow_sink();
        let Some(position) = self
            .offsets()
            .find_one(doc! { "_id": &shadow.name })
            .await
            .map_err(|e| unavailable(OFFSETS, e))?
            .map(|d| int(&d, "position", OFFSETS))
            .transpose()?
        else {
            return Err(SinkError::unavailable("no shadow to promote"));
        };
        let admin = self.db.client().database("admin");
        let db = self.db.name();
        for base in [MENU, ORDER_DOCUMENTS] {
            let rename = doc! {
                "renameCollection": format!("{db}.{base}{SHADOW_SUFFIX}"),
                "to": format!("{db}.{base}"),
                "dropTarget": true,
            };
            match admin.run_command(rename).await {
                Ok(_) => {}
                // Renamed already by a promotion that was interrupted before moving the position.
                Err(e) if command_code(&e) == Some(NAMESPACE_NOT_FOUND) => {}
                Err(e) => return Err(unavailable(base, e)),
            }
        }
        self.offsets()
            .update_one(doc! { "_id": &self.name }, doc! { "$set": { "position": position } })
            .upsert(true)
            .await
            .map_err(|e| unavailable(OFFSETS, e))?;
        self.offsets().delete_one(doc! { "_id": &shadow.name }).await.map_err(|e| unavailable(OFFSETS, e))?;
        Ok(())
    }

    async fn discard_shadow(&self) -> Result<(), SinkError> {
        let shadow = self.shadow_sink();
        for base in [MENU, ORDER_DOCUMENTS] {
            let collection = shadow.collection(base);
            collection.drop().await.map_err(|e| unavailable(collection.name(), e))?;
        }
        self.offsets().delete_one(doc! { "_id": &shadow.name }).await.map_err(|e| unavailable(OFFSETS, e))?;
        Ok(())
    }
}

/// One write of a page; no two writes of a page touch the same document.
enum Write {
    /// The document as of `version`, created or replacing an older one.
    Create { base: &'static str, id: String, fields: Document, version: u64 },
    /// Fields of an existing document older than `version`.
    Update { base: &'static str, id: String, fields: Document, version: u64 },
}

/// What a page does to one document: the fields it sets (later events overwrite earlier ones) and
/// whether the page holds the event that creates it.
struct Fold {
    base: &'static str,
    id: String,
    creates: bool,
    fields: Document,
    version: u64,
}

/// A page folded into one write per document.
///
/// Folding is exact because a page is a contiguous range of the global order, so it holds every
/// event of a stream between the first and the last of that stream it holds, and each event sets
/// whole fields.
fn plan<'a>(events: impl Iterator<Item = &'a RecordedEvent>) -> Result<Vec<Write>, SinkError> {
    let mut folds: Vec<Fold> = Vec::new();
    let mut index: HashMap<(&'static str, String), usize> = HashMap::new();
    let mut fold = |base: &'static str, id: String, creates: bool, fields: Document, version: u64| match index
        .get(&(base, id.clone()))
    {
        Some(&i) => {
            let f = &mut folds[i];
            if creates {
                f.creates = true;
                f.fields = fields;
            } else {
                f.fields.extend(fields);
            }
            f.version = version;
        }
        None => {
            index.insert((base, id.clone()), folds.len());
            folds.push(Fold { base, id, creates, fields, version });
        }
    };
    for e in events {
        match changes(e)? {
            Some(Change::OrderPlaced { order, version }) => {
                fold(ORDER_DOCUMENTS, order.order_id.to_string(), true, order_fields(&order), version);
            }
            Some(Change::OrderStatus { order_id, status, cancel_reason, version }) => {
                let fields = doc! { "status": status, "cancel_reason": cancel_reason };
                fold(ORDER_DOCUMENTS, order_id.to_string(), false, fields, version);
            }
            Some(Change::MenuItem { item, version }) => {
                fold(MENU, item.item_id.clone(), true, menu_fields(&item), version);
            }
            Some(Change::MenuPrice { item_id, price_cents, version }) => {
                fold(MENU, item_id, false, doc! { "price_cents": price_cents }, version);
            }
            Some(Change::MenuRetired { item_id, version }) => {
                fold(MENU, item_id, false, doc! { "retired": true }, version);
            }
            _ => {}
        }
    }
    Ok(folds
        .into_iter()
        .map(|f| match f.creates {
            true => Write::Create { base: f.base, id: f.id, fields: f.fields, version: f.version },
            false => Write::Update { base: f.base, id: f.id, fields: f.fields, version: f.version },
        })
        .collect())
}

fn order_fields(o: &OrderView) -> Document {
    let lines: Vec<Bson> = o
        .lines
        .iter()
        .map(|l| {
            Bson::Document(doc! {
                "item_id": &l.item_id,
                "quantity": i64::from(l.quantity),
                "unit_price_cents": l.unit_price_cents,
            })
        })
        .collect();
    doc! {
        "customer_id": &o.customer_id,
        "store_id": &o.store_id,
        "status": &o.status,
        "total_cents": o.total_cents,
        "created_at_us": o.created_at_us,
        "cancel_reason": o.cancel_reason.as_deref(),
        "lines": lines,
    }
}

fn menu_fields(m: &MenuItemView) -> Document {
    doc! {
        "name": &m.name,
        "category": &m.category,
        "price_cents": m.price_cents,
        "retired": m.retired,
        "nutrition": {
            "calories": i64::from(m.nutrition.calories),
            "caffeine_mg": i64::from(m.nutrition.caffeine_mg),
            "sugar_g": i64::from(m.nutrition.sugar_g),
        },
        "image_sha256": &m.image_sha256,
    }
}

/// Matches the document `id` only while it is older than `version` (or has none).
/// Matches the document only if it holds an older version. Every document this sink writes carries
/// its version, so an upsert with this filter either updates an older document, inserts a missing
/// one, or fails with E11000 on a newer one (which [`accept_duplicate`] takes as done). A plain
/// `_id` + `version` filter, not an `$or`, so that the `_id` index answers it.
fn newer_than_stored(id: &str, version: u64) -> Document {
    doc! { "_id": id, "version": { "$lt": to_i64(version) } }
}

fn order_view(d: &Document, collection: &str) -> Result<OrderView, SinkError> {
    let id = text(d, "_id", collection)?;
    let lines = match d.get("lines") {
        Some(Bson::Array(lines)) => lines
            .iter()
            .map(|l| match l {
                Bson::Document(l) => Ok(OrderLine {
                    item_id: text(l, "item_id", collection)?,
                    quantity: u32::try_from(int(l, "quantity", collection)?)
                        .map_err(|_| malformed(collection, "quantity"))?,
                    unit_price_cents: int(l, "unit_price_cents", collection)?,
                }),
                _ => Err(malformed(collection, "lines")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(malformed(collection, "lines")),
    };
    Ok(OrderView {
        order_id: id.parse().map_err(|_| malformed(collection, "_id"))?,
        customer_id: text(d, "customer_id", collection)?,
        store_id: text(d, "store_id", collection)?,
        status: text(d, "status", collection)?,
        total_cents: int(d, "total_cents", collection)?,
        cancel_reason: match d.get("cancel_reason") {
            Some(Bson::String(r)) => Some(r.clone()),
            Some(Bson::Null) | None => None,
            Some(_) => return Err(malformed(collection, "cancel_reason")),
        },
        created_at_us: int(d, "created_at_us", collection)?,
        lines,
    })
}

fn menu_item(d: &Document, collection: &str) -> Result<MenuItemView, SinkError> {
    let nutrition = d.get_document("nutrition").map_err(|_| malformed(collection, "nutrition"))?;
    let small = |key: &str| u32::try_from(int(nutrition, key, collection)?).map_err(|_| malformed(collection, key));
    Ok(MenuItemView {
        item_id: text(d, "_id", collection)?,
        name: text(d, "name", collection)?,
        category: text(d, "category", collection)?,
        price_cents: int(d, "price_cents", collection)?,
        retired: d.get_bool("retired").map_err(|_| malformed(collection, "retired"))?,
        nutrition: Nutrition {
            calories: small("calories")?,
            caffeine_mg: small("caffeine_mg")?,
            sugar_g: small("sugar_g")?,
        },
        image_sha256: text(d, "image_sha256", collection)?,
    })
}

fn malformed(collection: &str, field: &str) -> SinkError {
    SinkError::unavailable(format!("{collection}: a document without a valid `{field}`"))
}

fn text(d: &Document, field: &str, collection: &str) -> Result<String, SinkError> {
    d.get_str(field).map(str::to_owned).map_err(|_| malformed(collection, field))
}

/// An integer field, whichever width the server stored it in.
fn int(d: &Document, field: &str, collection: &str) -> Result<Cents, SinkError> {
    match d.get(field) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        _ => Err(malformed(collection, field)),
    }
}

/// Versions and positions are stored as BSON int64.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The DocumentDB (MongoDB wire protocol) client for `url`, the one way the node opens it.
/// `ca_file` (PEM; the RDS global bundle for DocumentDB) turns TLS on and is what the server's
/// chain must end at; without it the URL's own `tls` and `tlsCAFile` apply. Errors show the URL
/// without its password.
pub async fn open_documentdb(url: &str, ca_file: Option<&std::path::Path>) -> Result<mongodb::Client, SinkError> {
    open_documentdb_with(url, ca_file, None).await
}

/// [`open_documentdb`], with the user's password given apart from the URL (a mounted secret, or
/// what ECS injects from Secrets Manager); it wins over one in the URL.
pub async fn open_documentdb_with(
    url: &str,
    ca_file: Option<&std::path::Path>,
    password: Option<&events::secret::Password>,
) -> Result<mongodb::Client, SinkError> {
    let mut options = documentdb_options(url, ca_file).await?;
    if let Some(password) = password {
        with_password(&mut options, password)
            .map_err(|reason| SinkError::unavailable(format!("{reason} ({})", redact(url))))?;
    }
    mongodb::Client::with_options(options).map_err(|e| unavailable(&format!("open DocumentDB at {}", redact(url)), e))
}

/// Sets the password of the URL's user; a URL without a user has no one to give it to.
pub fn with_password(
    options: &mut mongodb::options::ClientOptions,
    password: &events::secret::Password,
) -> Result<(), String> {
    let credential = options
        .credential
        .as_mut()
        .filter(|c| c.username.is_some())
        .ok_or_else(|| "a DocumentDB password needs a user in the URL (mongodb://USER@host/)".to_owned())?;
    credential.password = Some(password.expose().to_owned());
    Ok(())
}

/// The client options [`open_documentdb`] uses.
pub async fn documentdb_options(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<mongodb::options::ClientOptions, SinkError> {
    // The driver's parse errors may quote the URL: only their redacted text is kept.
    let mut options = mongodb::options::ClientOptions::parse(url).await.map_err(|e| {
        SinkError::unavailable(format!("bad DocumentDB URL {}: {}", redact(url), redact(&e.to_string())))
    })?;
    if let Some(path) = ca_file {
        let mut tls = match options.tls.take() {
            Some(mongodb::options::Tls::Enabled(tls)) => tls,
            _ => mongodb::options::TlsOptions::default(),
        };
        tls.ca_file_path = Some(path.to_owned());
        options.tls = Some(mongodb::options::Tls::Enabled(tls));
    }
    Ok(options)
}

fn unavailable(what: &str, e: mongodb::error::Error) -> SinkError {
    SinkError::unavailable_because(what, e)
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// A conditional upsert answered with E11000 found a newer document under its `_id`: already applied.
fn accept_duplicate(result: Result<(), mongodb::error::Error>, what: &str) -> Result<(), SinkError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY) => {
            Ok(())
        }
        Err(e) => Err(write_failure(what, e)),
    }
}

/// Server codes that refuse a document for what it holds: BadValue (2), Overflow (15),
/// DocumentValidationFailure (121), BSONObjectTooLarge (10334), KeyTooLong (17280), and a document
/// too large after an update (17419) or to upsert (17420).
const DATA_REFUSALS: &[i32] = &[2, 15, 121, 10334, 17280, 17419, 17420];

/// A failed document write: poison when the driver or the server refused the document itself (too
/// large, a value it cannot hold: trying again will not help), else the read model is unavailable.
fn write_failure(what: &str, e: mongodb::error::Error) -> SinkError {
    let refused = match e.kind.as_ref() {
        ErrorKind::InvalidArgument { .. } | ErrorKind::BsonSerialization(_) => true,
        ErrorKind::Command(c) => DATA_REFUSALS.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => DATA_REFUSALS.contains(&w.code),
        _ => false,
    };
    if refused {
        SinkError::poison_because(format!("{what}: the document store refused the document"), e)
    } else {
        unavailable(what, e)
    }
}
