//! `cloudcafe token issue`: a bearer token from the node's local signing key, so that the README's
//! demo stays copy-and-paste: `TOKEN=$(cloudcafe token issue --role customer --sub alice)`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use gateways::auth::token::{parse_ttl, DEFAULT_AUDIENCE, LOCAL_ISSUER};
use gateways::auth::Role;

use super::auth::KeyArgs;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a token from the local key (made if absent) and print it on stdout.
    Issue(IssueArgs),
}

#[derive(Args)]
pub struct IssueArgs {
    /// What the token may do: a customer acts for themselves, staff for their store, an admin for all.
    #[arg(long, value_enum)]
    pub role: Role,
    /// The subject: for a customer, their customer id.
    #[arg(long)]
    pub sub: String,
    /// The store staff work at (required for --role staff).
    #[arg(long, required_if_eq("role", "staff"))]
    pub store: Option<String>,
    /// How long the token is valid: 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
    /// The `aud` to write (the nodes' --jwt-audience).
    #[arg(long, env = "CLOUDCAFE_JWT_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub audience: String,
    /// The node's data directory, where the key is by default.
    #[arg(long, env = "CLOUDCAFE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Issue(args) => {
            if args.role != Role::Staff && args.store.is_some() {
                anyhow::bail!("--store is for staff tokens");
            }
            let path = args.key.path(&args.data_dir);
            let key = args
                .key
                .load_or_create(&args.data_dir)
                .with_context(|| format!("the signing key ({} or {})", super::auth::AUTH_KEY_ENV, path.display()))?;
            let token = key.issue(LOCAL_ISSUER, &args.audience, &args.sub, args.role, args.store.as_deref(), args.ttl);
            println!("{token}");
            Ok(())
        }
    }
}
