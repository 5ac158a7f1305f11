//! `moor token create|list|delete`: join tokens, kept by the apiserver as
//! Secrets (`moor-system/bootstrap-token-<id>`, the secret only hashed), so
//! this is an ordinary API client, run as an administrator.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use moor_api::core::v1::Secret;
use moor_api::meta::v1::ObjectMeta;
use moor_api::well_known::join_token;
use moor_client::{Client, DeleteParams, ListParams};

use crate::pki::ClientArgs;

/// `moor token` subcommands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it: a join token for `moor join` on a new machine, or with
    /// --user a bearer token for scripts.
    Create(CreateArgs),
    /// List the join tokens: ids, expiry and descriptions, never the secrets.
    List(ClientArgs),
    /// Delete (revoke) a join token by its id.
    Delete(DeleteArgs),
}

/// Flags of `moor token create`.
#[derive(Args)]
pub struct CreateArgs {
    /// How long the token is valid: 90s, 30m, 24h, 7d; 0 for no expiry.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    ttl: Duration,
    /// A note `moor token list` shows.
    #[arg(long, default_value = "")]
    description: String,
    /// Make a token that authenticates as this user (for scripts and other languages' clients)
    /// instead of a join token.
    #[arg(long)]
    user: Option<String>,
    /// A group of --user (repeatable), e.g. system:masters for an administrator.
    #[arg(long, requires = "user")]
    group: Vec<String>,
    /// Make a token that joins a server to the control plane (`moor join --control-plane`).
    /// Its holder receives the cluster's CA keys: hand it over as you would those.
    #[arg(long, conflicts_with = "user")]
    control_plane: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Flags of `moor token delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The token's id (the six characters after the CA digest).
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs a `token` subcommand.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List(client) => list(&client).await,
        TokenCommand::Delete(args) => delete(args).await,
    }
}

fn client(args: &ClientArgs) -> anyhow::Result<(Client, String)> {
    let (server, credentials) = args.resolve()?;
    Ok((Client::connect(&server, &credentials)?, server))
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let ca = args.client.ca_pem()?.context(
        "the token pins the cluster CA, and none is known: pass --certificate-authority or run \
         this where `moor up` wrote its context",
    )?;
    let token = moor_pki::Token::generate(&moor_pki::ca_digest(&ca)?)?;
    let (client, server) = client(&args.client)?;
    let mut secret = Secret {
        metadata: Some(ObjectMeta {
            namespace: join_token::NAMESPACE.to_string(),
            name: format!("{}{}", join_token::SECRET_PREFIX, token.id()),
            ..Default::default()
        }),
        r#type: join_token::SECRET_TYPE.to_string(),
        ..Default::default()
    };
    secret
        .data
        .insert(join_token::HASH_KEY.to_string(), token.hash().into_bytes());
    if !args.ttl.is_zero() {
        let expires = SystemTime::now()
            .checked_add(args.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .context("--ttl is too long")?;
        secret.data.insert(
            join_token::EXPIRATION_KEY.to_string(),
            expires.as_secs().to_string().into_bytes(),
        );
    }
    if let Some(user) = &args.user {
        anyhow::ensure!(
            !user.is_empty() && !user.contains(','),
            "--user {user:?}: a user name is not empty and has no comma"
        );
        if let Some(bad) = args.group.iter().find(|g| g.is_empty() || g.contains(',')) {
            anyhow::bail!("--group {bad:?}: a group name is not empty and has no comma");
        }
        secret
            .data
            .insert(join_token::USER_KEY.to_string(), user.clone().into_bytes());
        secret.data.insert(
            join_token::GROUPS_KEY.to_string(),
            args.group.join(",").into_bytes(),
        );
    }
    if args.control_plane {
        secret.data.insert(
            join_token::USAGE_KEY.to_string(),
            join_token::USAGE_CONTROL_PLANE.as_bytes().to_vec(),
        );
    }
    if !args.description.is_empty() {
        secret.data.insert(
            join_token::DESCRIPTION_KEY.to_string(),
            args.description.into_bytes(),
        );
    }
    client
        .api::<Secret>()
        .create(&secret)
        .await
        .with_context(|| format!("storing the token at {server}"))?;
    println!("{}", token.reveal());
    match &args.user {
        Some(user) => eprintln!(
            "a token for {user}: send it as `authorization: Bearer <token>` to {server} over TLS"
        ),
        None if args.control_plane => eprintln!(
            "join a server with: moor join {server} --token <the token above> --control-plane"
        ),
        None => eprintln!("join a machine with: moor join {server} --token <the token above>"),
    }
    Ok(())
}

async fn list(args: &ClientArgs) -> anyhow::Result<()> {
    let (client, _) = client(args)?;
    let (secrets, _) = client
        .api::<Secret>()
        .list(&ListParams {
            namespace: join_token::NAMESPACE.to_string(),
            ..Default::default()
        })
        .await?;
    let now = SystemTime::now();
    println!("{:<8} {:<22} {:<28} DESCRIPTION", "ID", "EXPIRES", "FOR");
    for secret in secrets
        .iter()
        .filter(|s| s.r#type == join_token::SECRET_TYPE)
    {
        let name = secret.metadata.as_ref().map_or("", |m| m.name.as_str());
        let id = name.strip_prefix(join_token::SECRET_PREFIX).unwrap_or(name);
        let text = |key: &str| {
            secret
                .data
                .get(key)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let expires = match text(join_token::EXPIRATION_KEY).and_then(|t| t.parse::<u64>().ok()) {
            None => "never".to_string(),
            Some(at) => {
                let at = UNIX_EPOCH + Duration::from_secs(at);
                match at.duration_since(now) {
                    Ok(left) => format!("in {}", short(left)),
                    Err(_) => "expired".to_string(),
                }
            }
        };
        let usage = match text(join_token::USER_KEY) {
            Some(user) => format!("user {user}"),
            None if text(join_token::USAGE_KEY).as_deref()
                == Some(join_token::USAGE_CONTROL_PLANE) =>
            {
                "joining a server".to_string()
            }
            None => "joining a node".to_string(),
        };
        println!(
            "{id:<8} {expires:<22} {usage:<28} {}",
            text(join_token::DESCRIPTION_KEY).unwrap_or_default()
        );
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let (client, _) = client(&args.client)?;
    let name = format!("{}{}", join_token::SECRET_PREFIX, args.id);
    match client
        .api::<Secret>()
        .delete(join_token::NAMESPACE, &name, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            println!("token {} deleted", args.id);
            Ok(())
        }
        Err(moor_client::Error::NotFound(_)) => {
            anyhow::bail!(
                "no join token has the id {:?} (moor token list shows them)",
                args.id
            )
        }
        Err(err) => Err(err.into()),
    }
}

/// `90s`, `30m`, `24h`, `7d` or `0`.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: use s, m, h or d (e.g. 24h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    number
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A duration as its largest whole unit: 90s, 23h, 6d.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_a_unit_and_refuse_nonsense() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        assert!(parse_ttl("24").unwrap_err().contains("no unit"));
        assert!(parse_ttl("2w").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
        assert!(
            parse_ttl("9999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }
}
