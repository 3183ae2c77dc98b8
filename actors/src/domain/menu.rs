//! One menu item: published, repriced, retired.

use events::domain::{Cents, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, Nutrition};
use events::DomainEvent;
use serde::{Deserialize, Serialize};

use super::limits::{self, Invalid};
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
    /// A value outside the domain's limits ([`super::limits`]).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("menu item is already published with other details")]
    AlreadyPublished,
    #[error("menu item does not exist")]
    Unknown,
    #[error("menu item is retired")]
    Retired,
}

impl Rejection for MenuError {
    fn field(&self) -> Option<String> {
        match self {
            MenuError::Invalid(i) => Some(i.field.clone()),
            MenuError::AlreadyPublished => Some("item_id".into()),
            _ => None,
        }
    }
    fn is_not_found(&self) -> bool {
        matches!(self, MenuError::Unknown)
    }
}

pub struct MenuDecider;

impl Decider for MenuDecider {
    type State = MenuItem;
    type Command = MenuCommand;
    type Error = MenuError;

    fn decide(item: &MenuItem, command: &MenuCommand) -> Result<Vec<DomainEvent>, MenuError> {
        match command {
            MenuCommand::Publish { item_id, name, category, price_cents, nutrition, image_sha256 } => {
                limits::check_id("item_id", item_id)?;
                limits::check_text("name", name, limits::MAX_NAME_CHARS)?;
                limits::check_text("category", category, limits::MAX_CATEGORY_CHARS)?;
                limits::check_unit_price("price_cents", *price_cents)?;
                limits::check_nutrition("nutrition", nutrition)?;
                limits::check_image_hash("image_sha256", image_sha256)?;
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
                limits::check_unit_price("price_cents", *price_cents)?;
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
    use crate::domain::limits::{Problem, MAX_NAME_CHARS};

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
            .then_rejected(|e| e.field().as_deref() == Some("item_id"));
        given_no_history::<MenuDecider>()
            .when(publish_as("ab", "", ""))
            .then_rejected(|e| matches!(e, MenuError::Invalid(i) if i.field == "name" && i.problem == Problem::Empty));
        given_no_history::<MenuDecider>()
            .when(publish_as("ab", "x", "not-a-hash"))
            .then_rejected(|e| e.field().unwrap() == "image_sha256");
    }

    fn rejected_for(command: MenuCommand, field: &str, problem: Problem) {
        given_no_history::<MenuDecider>().when(command).then_rejected(|e| {
            matches!(e, MenuError::Invalid(i) if i.field == field && i.problem == problem)
                && e.field().unwrap() == field
        });
    }

    #[test]
    fn a_name_is_printable_and_short() {
        rejected_for(publish_as("ab", "Lat\0te", ""), "name", Problem::ControlCharacter(0));
        rejected_for(publish_as("ab", "Latte\u{7}", ""), "name", Problem::ControlCharacter(7));
        rejected_for(publish_as("ab", &"x".repeat(10 * 1024), ""), "name", Problem::TooLong { max: MAX_NAME_CHARS });
        rejected_for(publish_as("ab", " Latte", ""), "name", Problem::Untrimmed);
        given_no_history::<MenuDecider>().when(publish_as("ab", &"x".repeat(MAX_NAME_CHARS), "")).then([
            MenuItemPublished {
                item_id: "ab".into(),
                name: "x".repeat(MAX_NAME_CHARS),
                category: "c".into(),
                price_cents: 1,
                nutrition: Nutrition::default(),
                image_sha256: String::new(),
            }
            .into(),
        ]);
    }

    #[test]
    fn a_category_price_and_nutrition_stay_within_limits() {
        let MenuCommand::Publish { item_id, name, category, price_cents, nutrition, image_sha256 } = publish(450)
        else {
            unreachable!()
        };
        let with = |category: &str, price_cents: Cents, nutrition: Nutrition| MenuCommand::Publish {
            item_id: item_id.clone(),
            name: name.clone(),
            category: category.into(),
            price_cents,
            nutrition,
            image_sha256: image_sha256.clone(),
        };
        rejected_for(with("cof\u{1b}fee", price_cents, nutrition), "category", Problem::ControlCharacter(0x1b));
        rejected_for(with(&"c".repeat(51), price_cents, nutrition), "category", Problem::TooLong { max: 50 });
        rejected_for(with(&category, 100_001, nutrition), "price_cents", Problem::OutOfRange { min: 1, max: 100_000 });
        let huge = Nutrition { calories: u32::MAX, ..nutrition };
        rejected_for(
            with(&category, price_cents, huge),
            "nutrition.calories",
            Problem::OutOfRange { min: 0, max: 10_000 },
        );
        let huge = Nutrition { caffeine_mg: 1_001, ..nutrition };
        rejected_for(
            with(&category, price_cents, huge),
            "nutrition.caffeine_mg",
            Problem::OutOfRange { min: 0, max: 1_000 },
        );
        given::<MenuDecider>([published()])
            .when(MenuCommand::ChangePrice { price_cents: 100_001 })
            .then_rejected(|e| e.field().unwrap() == "price_cents");
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
