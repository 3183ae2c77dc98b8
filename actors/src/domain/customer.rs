//! A customer's profile: how they want to be told about their orders (email or text message).

use events::domain::{CustomerPreferencesSet, NotificationChannel};
use events::DomainEvent;
use serde::{Deserialize, Serialize};

use super::limits::{check_email, check_id, check_phone, Invalid};
use super::{Decider, Rejection};

/// Where a customer's notifications go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub channel: NotificationChannel,
    pub address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfile {
    pub customer_id: String,
    /// `None` until the customer chooses: the deployment's default applies.
    pub preferences: Option<Preferences>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomerCommand {
    /// Choose the channel and the address; choosing what is already chosen changes nothing.
    SetPreferences { customer_id: String, channel: NotificationChannel, address: String },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

impl Rejection for CustomerError {
    fn field(&self) -> Option<String> {
        match self {
            CustomerError::Invalid(i) => Some(i.field.clone()),
        }
    }
}

pub struct CustomerDecider;

impl Decider for CustomerDecider {
    type State = CustomerProfile;
    type Command = CustomerCommand;
    type Error = CustomerError;

    fn decide(profile: &CustomerProfile, command: &CustomerCommand) -> Result<Vec<DomainEvent>, CustomerError> {
        match command {
            CustomerCommand::SetPreferences { customer_id, channel, address } => {
                check_id("customer_id", customer_id)?;
                match channel {
                    NotificationChannel::Email => check_email("address", address)?,
                    NotificationChannel::Sms => check_phone("address", address)?,
                }
                let chosen = Preferences { channel: *channel, address: address.clone() };
                if profile.preferences.as_ref() == Some(&chosen) {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerPreferencesSet {
                    customer_id: customer_id.clone(),
                    channel: *channel,
                    address: address.clone(),
                }
                .into()])
            }
        }
    }

    fn evolve(mut profile: CustomerProfile, event: &DomainEvent) -> CustomerProfile {
        if let DomainEvent::CustomerPreferencesSet(e) = event {
            profile.customer_id.clone_from(&e.customer_id);
            profile.preferences = Some(Preferences { channel: e.channel, address: e.address.clone() });
        }
        profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};
    use crate::domain::limits::Problem;

    fn set(channel: NotificationChannel, address: &str) -> CustomerCommand {
        CustomerCommand::SetPreferences { customer_id: "c1".into(), channel, address: address.into() }
    }
    fn was_set(channel: NotificationChannel, address: &str) -> DomainEvent {
        CustomerPreferencesSet { customer_id: "c1".into(), channel, address: address.into() }.into()
    }

    #[test]
    fn a_customer_chooses_email_then_sms() {
        let profile = given_no_history::<CustomerDecider>()
            .when(set(NotificationChannel::Email, "ada@example.com"))
            .then([was_set(NotificationChannel::Email, "ada@example.com")]);
        assert_eq!(profile.preferences.unwrap().address, "ada@example.com");
        let profile = given::<CustomerDecider>([was_set(NotificationChannel::Email, "ada@example.com")])
            .when(set(NotificationChannel::Sms, "+15551234567"))
            .then([was_set(NotificationChannel::Sms, "+15551234567")]);
        assert_eq!(profile.preferences.unwrap().channel, NotificationChannel::Sms);
    }

    #[test]
    fn choosing_the_same_again_changes_nothing() {
        given::<CustomerDecider>([was_set(NotificationChannel::Sms, "+15551234567")])
            .when(set(NotificationChannel::Sms, "+15551234567"))
            .then_nothing_happens();
    }

    #[test]
    fn an_address_that_does_not_fit_its_channel_is_refused_naming_the_field() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "ada @example.com", "a@b@example.com"] {
            given_no_history::<CustomerDecider>().when(set(NotificationChannel::Email, bad)).then_rejected(|e| {
                matches!(e, CustomerError::Invalid(i) if i.problem == Problem::BadEmail)
                    && e.field().unwrap() == "address"
            });
        }
        given_no_history::<CustomerDecider>()
            .when(set(NotificationChannel::Email, &format!("{}@example.com", "a".repeat(250))))
            .then_rejected(|e| e.field().unwrap() == "address");
        // A phone number where an email belongs, and the other way round.
        given_no_history::<CustomerDecider>()
            .when(set(NotificationChannel::Email, "+15551234567"))
            .then_rejected(|e| e.field().unwrap() == "address");
        for bad in ["ada@example.com", "15551234567", "+1555", "+0155512345", "+1555123456789012", "+1 555 123 4567"] {
            given_no_history::<CustomerDecider>().when(set(NotificationChannel::Sms, bad)).then_rejected(|e| {
                matches!(e, CustomerError::Invalid(i) if i.problem == Problem::BadPhone)
                    && e.field().unwrap() == "address"
            });
        }
    }

    #[test]
    fn the_customer_id_must_be_an_id() {
        given_no_history::<CustomerDecider>()
            .when(CustomerCommand::SetPreferences {
                customer_id: "a b".into(),
                channel: NotificationChannel::Email,
                address: "ada@example.com".into(),
            })
            .then_rejected(|e| e.field().unwrap() == "customer_id");
    }
}
