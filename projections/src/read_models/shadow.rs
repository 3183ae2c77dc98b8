//! Shadow copies of the SQL read models (the PostgreSQL storefront, the Redshift analytics), and
//! their promotion.
//!
//! One naming scheme for every SQL model: a shadow's tables are the live tables with the prefix
//! [`SHADOW_PREFIX`] (`rebuild_orders` beside `orders`), and its position is stored in the model's
//! offsets table under [`shadow_position_name`] (`storefront.rebuild` beside `storefront`).
//!
//! A shadow may be loaded without the secondary indexes and foreign keys of the live model (they
//! cost a check or an index insert per row; built once at the end they cost one pass), and gets them
//! at promotion ([`SqlShadow::finish`]).
//!
//! Promotion is one transaction: the shadow gets what it lacks of the live shape, each live table is
//! dropped and its shadow renamed in its place, indexes and constraints get their live names back (a
//! table rename keeps them), and the live position becomes the shadow's. Readers see the old model or the new one, never a mix. The SQL is
//! built by pure functions ([`SqlShadow::promotion`], [`SqlShadow::removal`]) and only run here.

use deadpool_postgres::Pool;
use events::postgres::{pg, pool_error};

use crate::SinkError;

/// Table prefix of the shadow model that `cloudcafe replay` builds.
pub const SHADOW_PREFIX: &str = "rebuild_";

/// The name under which the shadow of `model` stores its position: `{model}.rebuild`.
pub fn shadow_position_name(model: &str) -> String {
    format!("{model}.{}", SHADOW_PREFIX.trim_end_matches('_'))
}

/// What a promotion does with objects that depend on a live table (views, foreign keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependents {
    /// `DROP TABLE ... CASCADE`: they go with the table.
    Cascade,
    /// Plain `DROP TABLE`: a dependent object makes the promotion fail.
    Restrict,
}

/// An index or constraint of a live table, named as in the live model; its shadow twin carries
/// [`SHADOW_PREFIX`] and gets this name back on promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveName {
    Index(&'static str),
    /// `(table, constraint)`.
    Constraint(&'static str, &'static str),
}

/// A SQL read model's tables and bookkeeping, as seen by its shadow's promotion and removal.
#[derive(Clone, Copy, Debug)]
pub struct SqlShadow {
    /// The name of the live model's position, e.g. `storefront`.
    pub model: &'static str,
    /// The table of positions, `(name, position)`.
    pub offsets_table: &'static str,
    /// The live tables, in the order a promotion replaces them (referencing tables first).
    pub tables: &'static [&'static str],
    /// Indexes and constraints that must keep their live names.
    pub live_names: &'static [LiveName],
    pub dependents: Dependents,
    /// SQL that gives the shadow (its tables named with `{p}`) what the live model has and a bulk
    /// load leaves out (an index, a foreign key), and does nothing where it is there already; the
    /// promotion runs it first, in its transaction. Empty for none.
    pub finish: &'static str,
}

impl SqlShadow {
    /// The name of the shadow's position.
    pub fn position_name(&self) -> String {
        shadow_position_name(self.model)
    }

    fn drop_table(&self, table: &str) -> String {
        match self.dependents {
            Dependents::Cascade => format!("DROP TABLE IF EXISTS {table} CASCADE;"),
            Dependents::Restrict => format!("DROP TABLE IF EXISTS {table};"),
        }
    }

    /// The table statements of a promotion: the shadow's finish (if any), one batch per table, then
    /// one for the live names.
    pub fn promotion(&self) -> Vec<String> {
        let finish = self.finish.trim();
        let mut batches: Vec<String> =
            if finish.is_empty() { Vec::new() } else { vec![finish.replace("{p}", SHADOW_PREFIX)] };
        batches.extend(
            self.tables.iter().map(|t| format!("{} ALTER TABLE {SHADOW_PREFIX}{t} RENAME TO {t};", self.drop_table(t))),
        );
        let renames: String = self
            .live_names
            .iter()
            .map(|name| match name {
                LiveName::Index(index) => format!("ALTER INDEX {SHADOW_PREFIX}{index} RENAME TO {index};"),
                LiveName::Constraint(table, constraint) => {
                    format!("ALTER TABLE {table} RENAME CONSTRAINT {SHADOW_PREFIX}{constraint} TO {constraint};")
                }
            })
            .collect();
        if !renames.is_empty() {
            batches.push(renames);
        }
        batches
    }

    /// The statements that drop the shadow's tables, one per table.
    pub fn removal(&self) -> Vec<String> {
        self.tables.iter().map(|t| self.drop_table(&format!("{SHADOW_PREFIX}{t}"))).collect()
    }

    /// Replaces the live model with the shadow in one transaction; the shadow's position is gone after.
    pub async fn promote(&self, pool: &Pool) -> Result<(), SinkError> {
        let mut client = pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(sql_error)?;
        for batch in self.promotion() {
            tx.batch_execute(&batch).await.map_err(sql_error)?;
        }
        let offsets = self.offsets_table;
        let shadow = self.position_name();
        tx.execute(
            &format!(
                "UPDATE {offsets} SET position = (SELECT position FROM {offsets} WHERE name = $2) WHERE name = $1"
            ),
            &[&self.model, &shadow],
        )
        .await
        .map_err(sql_error)?;
        tx.execute(&format!("DELETE FROM {offsets} WHERE name = $1"), &[&shadow]).await.map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)?;
        Ok(())
    }

    /// Drops the shadow's tables and position, leaving the live model as it is.
    pub async fn discard(&self, pool: &Pool) -> Result<(), SinkError> {
        let client = pool.get().await.map_err(pool_error)?;
        for statement in self.removal() {
            client.batch_execute(&statement).await.map_err(sql_error)?;
        }
        client
            .execute(&format!("DELETE FROM {} WHERE name = $1", self.offsets_table), &[&self.position_name()])
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    /// Sets the shadow's stored position (its row must exist).
    pub async fn set_position(&self, pool: &Pool, position: u64) -> Result<(), SinkError> {
        let client = pool.get().await.map_err(pool_error)?;
        client
            .execute(
                &format!("UPDATE {} SET position = $2 WHERE name = $1", self.offsets_table),
                &[&self.position_name(), &(position as i64)],
            )
            .await
            .map_err(sql_error)?;
        Ok(())
    }
}

fn sql_error(e: tokio_postgres::Error) -> SinkError {
    SinkError::from(pg(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: SqlShadow = SqlShadow {
        model: "m",
        offsets_table: "offsets",
        tables: &["lines", "heads"],
        live_names: &[LiveName::Index("heads_by_time"), LiveName::Constraint("lines", "lines_pkey")],
        dependents: Dependents::Cascade,
        finish: "",
    };

    #[test]
    fn the_shadow_is_named_by_prefix_and_position_suffix() {
        assert_eq!(shadow_position_name("storefront"), "storefront.rebuild");
        assert_eq!(MODEL.position_name(), "m.rebuild");
    }

    #[test]
    fn promotion_replaces_each_table_in_order_then_gives_the_live_names_back() {
        assert_eq!(
            MODEL.promotion(),
            vec![
                "DROP TABLE IF EXISTS lines CASCADE; ALTER TABLE rebuild_lines RENAME TO lines;".to_owned(),
                "DROP TABLE IF EXISTS heads CASCADE; ALTER TABLE rebuild_heads RENAME TO heads;".to_owned(),
                "ALTER INDEX rebuild_heads_by_time RENAME TO heads_by_time;\
                 ALTER TABLE lines RENAME CONSTRAINT rebuild_lines_pkey TO lines_pkey;"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn restrict_drops_without_cascade_and_no_names_means_no_rename_batch() {
        let plain = SqlShadow { live_names: &[], dependents: Dependents::Restrict, ..MODEL };
        assert_eq!(
            plain.promotion(),
            vec![
                "DROP TABLE IF EXISTS lines; ALTER TABLE rebuild_lines RENAME TO lines;".to_owned(),
                "DROP TABLE IF EXISTS heads; ALTER TABLE rebuild_heads RENAME TO heads;".to_owned(),
            ]
        );
        assert_eq!(plain.removal(), vec!["DROP TABLE IF EXISTS rebuild_lines;", "DROP TABLE IF EXISTS rebuild_heads;"]);
    }

    #[test]
    fn the_finish_goes_first_with_the_shadow_names() {
        let finished =
            SqlShadow { finish: "\n  CREATE INDEX IF NOT EXISTS {p}heads_by_time ON {p}heads (t);\n", ..MODEL };
        let batches = finished.promotion();
        assert_eq!(batches[0], "CREATE INDEX IF NOT EXISTS rebuild_heads_by_time ON rebuild_heads (t);");
        assert_eq!(batches[1..], MODEL.promotion()[..]);
    }
}
