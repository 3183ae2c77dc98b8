//! Who may do what: one pure function, [`authorize`], over the caller's verified claims
//! ([`Principal`]) and what a request touches ([`Access`]). The HTTP layer only works out the
//! [`Access`] of a request (from its route, its body, or the resource it loaded) and maps the
//! [`Denial`] to a status; every rule is here, and the tests below state each one Given/When/Then.
//!
//! The rules:
//! - [`Access::Public`] (the menu listing, the health checks, the OpenAPI document): anyone.
//! - Everything else needs a verified token; without one, [`Denial::Unauthenticated`] (401).
//! - An *admin* may do everything: publish the menu, `/admin/*`, replay, the stress and chaos
//!   triggers, and act for any customer or store (the operator's role, which floods and
//!   experiments drive the system with).
//! - A *customer* acts for themselves only: their orders, payments and loyalty. Another customer's
//!   is [`Denial::Hidden`] (404, the same answer as a resource that does not exist), so that ids
//!   cannot be probed.
//! - *Staff* of a store restock that store and read its inventory and analytics; another store's
//!   is [`Denial::Forbidden`] (403: store ids are public, on the storefront). Staff act for no
//!   customer (their orders are hidden from staff, as from other customers).
//! - [`Access::SignedIn`]: any verified caller (a store's public details).

use serde::{Deserialize, Serialize};

/// A caller's role, from the token's `role` claim or its Cognito groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Staff,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "customer" => Some(Role::Customer),
            "staff" => Some(Role::Staff),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A verified caller: what the token's claims say, once its signature, issuer, audience and times
/// have been checked ([`super::token::Verifier`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject: for a customer, their `customer_id`.
    pub subject: String,
    pub role: Role,
    /// For staff: the store they work at.
    pub store: Option<String>,
}

impl Principal {
    pub fn customer(subject: &str) -> Self {
        Principal { subject: subject.to_owned(), role: Role::Customer, store: None }
    }
    pub fn staff(subject: &str, store: &str) -> Self {
        Principal { subject: subject.to_owned(), role: Role::Staff, store: Some(store.to_owned()) }
    }
    pub fn admin(subject: &str) -> Self {
        Principal { subject: subject.to_owned(), role: Role::Admin, store: None }
    }
}

/// What a request touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// Open to anyone, with or without a token.
    Public,
    /// Any verified caller.
    SignedIn,
    /// A customer's own data or commands (orders, payments, loyalty): the customer's id.
    Customer(&'a str),
    /// A store's stock and figures: the store's id.
    Store(&'a str),
    /// The menu's commands and the admin plane.
    Admin,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// 401: no token, or one that did not verify.
    #[error("this route needs a bearer token")]
    Unauthenticated,
    /// 404: another customer's resource, answered as if it did not exist.
    #[error("not found")]
    Hidden,
    /// 403: the caller is known, and their role does not allow this.
    #[error("the caller's role does not allow this")]
    Forbidden,
}

/// Whether `who` (None: no verified token) may do what `access` names.
pub fn authorize(who: Option<&Principal>, access: Access<'_>) -> Result<(), Denial> {
    if access == Access::Public {
        return Ok(());
    }
    let who = who.ok_or(Denial::Unauthenticated)?;
    if who.role == Role::Admin {
        return Ok(());
    }
    match access {
        Access::Public | Access::SignedIn => Ok(()),
        Access::Customer(customer) => {
            if who.role == Role::Customer && who.subject == customer {
                Ok(())
            } else {
                Err(Denial::Hidden)
            }
        }
        Access::Store(store) => {
            if who.role == Role::Staff && who.store.as_deref() == Some(store) {
                Ok(())
            } else {
                Err(Denial::Forbidden)
            }
        }
        Access::Admin => Err(Denial::Forbidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Given a caller, when they ask for an access, then the answer is...
    fn given(who: Option<Principal>) -> When {
        When { who }
    }
    struct When {
        who: Option<Principal>,
    }
    impl When {
        fn when(self, access: Access<'_>) -> Result<(), Denial> {
            authorize(self.who.as_ref(), access)
        }
    }

    #[test]
    fn anyone_reads_what_is_public() {
        assert_eq!(given(None).when(Access::Public), Ok(()));
        assert_eq!(given(Some(Principal::customer("alice"))).when(Access::Public), Ok(()));
    }

    #[test]
    fn without_a_token_nothing_else_is_allowed() {
        for access in [Access::SignedIn, Access::Customer("alice"), Access::Store("store-1"), Access::Admin] {
            assert_eq!(given(None).when(access), Err(Denial::Unauthenticated), "{access:?}");
        }
    }

    #[test]
    fn a_customer_acts_for_themselves() {
        assert_eq!(given(Some(Principal::customer("alice"))).when(Access::Customer("alice")), Ok(()));
    }

    #[test]
    fn another_customers_resource_is_hidden_not_forbidden() {
        assert_eq!(given(Some(Principal::customer("alice"))).when(Access::Customer("bob")), Err(Denial::Hidden));
    }

    #[test]
    fn a_customer_touches_no_store_and_not_the_admin_plane() {
        let alice = Some(Principal::customer("alice"));
        assert_eq!(given(alice.clone()).when(Access::Store("store-1")), Err(Denial::Forbidden));
        assert_eq!(given(alice).when(Access::Admin), Err(Denial::Forbidden));
    }

    #[test]
    fn staff_work_on_their_own_store() {
        assert_eq!(given(Some(Principal::staff("sam", "store-1"))).when(Access::Store("store-1")), Ok(()));
    }

    #[test]
    fn staff_of_another_store_are_forbidden() {
        assert_eq!(
            given(Some(Principal::staff("sam", "store-1"))).when(Access::Store("store-2")),
            Err(Denial::Forbidden)
        );
    }

    #[test]
    fn staff_without_a_store_claim_work_on_no_store() {
        let sam = Principal { subject: "sam".into(), role: Role::Staff, store: None };
        assert_eq!(given(Some(sam)).when(Access::Store("store-1")), Err(Denial::Forbidden));
    }

    #[test]
    fn staff_see_no_customers_data_even_one_named_like_them() {
        let sam = Some(Principal::staff("sam", "store-1"));
        assert_eq!(given(sam.clone()).when(Access::Customer("alice")), Err(Denial::Hidden));
        assert_eq!(given(sam.clone()).when(Access::Customer("sam")), Err(Denial::Hidden));
        assert_eq!(given(sam).when(Access::Admin), Err(Denial::Forbidden));
    }

    #[test]
    fn a_customer_claiming_a_store_is_still_a_customer() {
        let alice = Principal { subject: "alice".into(), role: Role::Customer, store: Some("store-1".into()) };
        assert_eq!(given(Some(alice)).when(Access::Store("store-1")), Err(Denial::Forbidden));
    }

    #[test]
    fn an_admin_may_do_everything() {
        let root = Some(Principal::admin("ops"));
        for access in
            [Access::Public, Access::SignedIn, Access::Customer("alice"), Access::Store("store-9"), Access::Admin]
        {
            assert_eq!(given(root.clone()).when(access), Ok(()), "{access:?}");
        }
    }

    #[test]
    fn every_signed_in_role_reads_what_needs_only_a_token() {
        for who in [Principal::customer("alice"), Principal::staff("sam", "store-1"), Principal::admin("ops")] {
            assert_eq!(given(Some(who)).when(Access::SignedIn), Ok(()));
        }
    }
}
