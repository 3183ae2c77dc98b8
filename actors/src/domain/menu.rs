//! One menu item: published, repriced, retired.

use events::domain::{Cents, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, Nutrition};
use events::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Decider, Rejection};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItem {
    pub published: bool,
    pub retired: bool,
    pub item_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: Cents,
    pub nutrition: Nutrition,
    pub image_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MenuCommand {
    Publish {
        item_id: String,
        name: String,
        category: String,
        price_cents: Cents,
        nutrition: Nutrition,
        /// Hex SHA-256 of the item's image, or empty.
        image_sha256: String,
    },
    ChangePrice {
        price_cents: Cents,
    },
    Retire,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MenuError {
    #[error("{0} must not be empty")]
    Missing(&'static str),
    #[error("item_id may hold only letters, digits, `-` and `_`, at most 64")]
    BadItemId,
    #[error("price must be positive and at most 100000 cents")]
    BadPrice,
    #[error("menu item is already published with other details")]
    AlreadyPublished,
    #[error("menu item does not exist")]
    Unknown,
    #[error("menu item is retired")]
    Retired,
    #[error("image_sha256 must be 64 lowercase hex digits or empty")]
    BadImageHash,
}

impl Rejection for MenuError {
    fn field(&self) -> Option<String> {
        match self {
            MenuError::Missing(f) => Some((*f).into()),
            MenuError::BadItemId | MenuError::AlreadyPublished => Some("item_id".into()),
            MenuError::BadPrice => Some("price_cents".into()),
            MenuError::BadImageHash => Some("image_sha256".into()),
            _ => None,
        }
    }
    fn is_not_found(&self) -> bool {
        matches!(self, MenuError::Unknown)
    }
}

pub fn valid_item_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_price(p: Cents) -> bool {
    p > 0 && p <= 100_000
}

pub struct MenuDecider;

impl Decider for MenuDecider {
    type State = MenuItem;
    type Command = MenuCommand;
    type Error = MenuError;

    fn decide(item: &MenuItem, command: &MenuCommand) -> Result<Vec<DomainEvent>, MenuError> {
        match command {
            MenuCommand::Publish { item_id, name, category, price_cents, nutrition, image_sha256 } => {
                if !valid_item_id(item_id) {
                    return Err(MenuError::BadItemId);
                }
                if name.trim().is_empty() {
                    return Err(MenuError::Missing("name"));
                }
                if category.trim().is_empty() {
                    return Err(MenuError::Missing("category"));
                }
                if !valid_price(*price_cents) {
                    return Err(MenuError::BadPrice);
                }
                let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
                if !(image_sha256.is_empty() || (image_sha256.len() == 64 && image_sha256.chars().all(hex))) {
                    return Err(MenuError::BadImageHash);
                }
                if item.published {
                    let same = item.name == *name
                        && item.category == *category
                        && item.price_cents == *price_cents
                        && item.nutrition == *nutrition
                        && item.image_sha256 == *image_sha256;
                    return if same && !item.retired { Ok(vec![]) } else { Err(MenuError::AlreadyPublished) };
                }
                Ok(vec![MenuItemPublished {
                    item_id: item_id.clone(),
                    name: name.clone(),
                    category: category.clone(),
                    price_cents: *price_cents,
                    nutrition: *nutrition,
                    image_sha256: image_sha256.clone(),
                }
                .into()])
            }
            MenuCommand::ChangePrice { price_cents } => {
                if !item.published {
                    return Err(MenuError::Unknown);
                }
                if item.retired {
                    return Err(MenuError::Retired);
                }
                if !valid_price(*price_cents) {
                    return Err(MenuError::BadPrice);
                }
                if *price_cents == item.price_cents {
                    return Ok(vec![]);
                }
                Ok(vec![MenuItemPriceChanged { item_id: item.item_id.clone(), price_cents: *price_cents }.into()])
            }
            MenuCommand::Retire => match (item.published, item.retired) {
                (false, _) => Err(MenuError::Unknown),
                (true, true) => Ok(vec![]),
                (true, false) => Ok(vec![MenuItemRetired { item_id: item.item_id.clone() }.into()]),
            },
        }
    }

    fn evolve(mut item: MenuItem, event: &DomainEvent) -> MenuItem {
        match event {
            DomainEvent::MenuItemPublished(e) => {
                item.published = true;
                item.item_id.clone_from(&e.item_id);
                item.name.clone_from(&e.name);
                item.category.clone_from(&e.category);
                item.price_cents = e.price_cents;
                item.nutrition = e.nutrition;
                item.image_sha256.clone_from(&e.image_sha256);
            }
            DomainEvent::MenuItemPriceChanged(e) => item.price_cents = e.price_cents,
            DomainEvent::MenuItemRetired(_) => item.retired = true,
            _ => {}
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};

    fn publish(price: Cents) -> MenuCommand {
        MenuCommand::Publish {
            item_id: "latte".into(),
            name: "Latte".into(),
            category: "coffee".into(),
            price_cents: price,
            nutrition: Nutrition { calories: 190, caffeine_mg: 150, sugar_g: 17 },
            image_sha256: String::new(),
        }
    }
    fn published() -> DomainEvent {
        MenuItemPublished {
            item_id: "latte".into(),
            name: "Latte".into(),
            category: "coffee".into(),
            price_cents: 450,
            nutrition: Nutrition { calories: 190, caffeine_mg: 150, sugar_g: 17 },
            image_sha256: String::new(),
        }
        .into()
    }
    fn publish_as(item_id: &str, name: &str, image_sha256: &str) -> MenuCommand {
        MenuCommand::Publish {
            item_id: item_id.into(),
            name: name.into(),
            category: "c".into(),
            price_cents: 1,
            nutrition: Nutrition::default(),
            image_sha256: image_sha256.into(),
        }
    }

    #[test]
    fn an_item_is_published_once() {
        given_no_history::<MenuDecider>().when(publish(450)).then([published()]);
        given::<MenuDecider>([published()]).when(publish(450)).then_nothing_happens();
        given::<MenuDecider>([published()]).when(publish(500)).then_rejected(|e| *e == MenuError::AlreadyPublished);
    }

    #[test]
    fn an_item_needs_a_valid_id_name_and_price() {
        given_no_history::<MenuDecider>().when(publish(0)).then_rejected(|e| e.field().unwrap() == "price_cents");
        given_no_history::<MenuDecider>()
            .when(publish_as("a b", "x", ""))
            .then_rejected(|e| *e == MenuError::BadItemId);
        given_no_history::<MenuDecider>()
            .when(publish_as("ab", "", ""))
            .then_rejected(|e| *e == MenuError::Missing("name"));
        given_no_history::<MenuDecider>()
            .when(publish_as("ab", "x", "not-a-hash"))
            .then_rejected(|e| *e == MenuError::BadImageHash && e.field().unwrap() == "image_sha256");
    }

    #[test]
    fn a_retired_item_cannot_be_repriced_and_retires_once() {
        let retired: DomainEvent = MenuItemRetired { item_id: "latte".into() }.into();
        given::<MenuDecider>([published()]).when(MenuCommand::Retire).then([retired.clone()]);
        given::<MenuDecider>([published(), retired.clone()]).when(MenuCommand::Retire).then_nothing_happens();
        given::<MenuDecider>([published(), retired])
            .when(MenuCommand::ChangePrice { price_cents: 500 })
            .then_rejected(|e| *e == MenuError::Retired);
    }

    #[test]
    fn an_unknown_item_cannot_be_retired() {
        given_no_history::<MenuDecider>().when(MenuCommand::Retire).then_rejected(|e| e.is_not_found());
    }
}
