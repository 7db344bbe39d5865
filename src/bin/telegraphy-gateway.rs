//! `telegraphy-gateway`: runs a gateway node, or mints/revokes tokens for scripts and other backends.
//! Thin on purpose: parsing arguments, loading settings and mapping errors to exit codes; the rest is the
//! `telegraphy` library. Exit status 2 = bad configuration or arguments, 1 = runtime failure.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use telegraphy::{
    config::Settings, node::auth, node::nats, protocol::token::Grants, server::Application, shutdown, telemetry,
};

#[derive(Parser)]
#[command(name = "telegraphy-gateway", version, about = "Telegraphy WebSocket gateway (protocol v1)")]
struct Cli {
    /// TOML configuration file (environment TELEGRAPHY_<SECTION>__<KEY> overrides it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Mint a single-use connect token, register it in NATS KV and print it.
    Token {
        /// User id ("" = anonymous).
        #[arg(long, default_value = "")]
        user: String,
        /// Pattern the token may subscribe to (repeat for several).
        #[arg(long = "allow", value_name = "PATTERN")]
        allow: Vec<String>,
        /// Lifetime in seconds (default auth.token_ttl).
        #[arg(long)]
        ttl: Option<u64>,
        /// Presence `info` claim: a JSON object of at most 256 bytes, e.g. '{"name":"Alice"}'.
        #[arg(long, value_parser = parse_info)]
        info: Option<serde_json::Value>,
        /// Event pattern the token may publish, stored (repeat for several; proto/PROTOCOL.md section 13).
        #[arg(long = "publish", value_name = "PATTERN")]
        publish: Vec<String>,
        /// Event pattern the token may publish, ephemeral: never stored (repeat for several).
        #[arg(long = "publish-ephemeral", value_name = "PATTERN")]
        publish_ephemeral: Vec<String>,
        /// RPC method pattern the token may call (repeat for several).
        #[arg(long = "rpc", value_name = "PATTERN")]
        rpc: Vec<String>,
    },
    /// Check the configuration (defaults < --config file < environment) and exit: 0 if valid, 2 if not.
    CheckConfig,
    /// Revoke a user or a session on every gateway: live sockets close with 4003, older tokens are refused.
    Revoke {
        #[arg(long, conflicts_with = "session", required_unless_present = "session")]
        user: Option<String>,
        #[arg(long)]
        session: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("telegraphy-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Token { user, allow, ttl, info, publish, publish_ephemeral, rpc } => {
            mint(settings, user, allow, ttl, info, Grants { publish, publish_ephemeral, rpc }).await
        }
        Command::Revoke { user, session } => revoke(settings, user, session).await,
        Command::CheckConfig => settings.secrets().map(|_| println!("configuration ok")).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telegraphy-gateway: {}", report(&e));
            // Bad configuration or arguments exit 2; runtime failures (NATS unreachable...) exit 1.
            let config_error = e.chain().any(|c| {
                c.downcast_ref::<telegraphy::config::ConfigError>().is_some()
                    || matches!(
                        c.downcast_ref::<auth::MintError>(),
                        Some(m) if !matches!(m, auth::MintError::Nats(_) | auth::MintError::Register(_))
                    )
            });
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// The error and its causes on one line, each text once: the library's errors end their message with their
/// source's text (so a log line that prints only the error is complete), which `{:#}` would print again.
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(&settings.log);
    settings.secrets()?;
    let app = Application::build(settings).await?;
    app.run_until(shutdown::signal()).await.context("HTTP server failed")
}

/// `--info`: JSON text holding a small object (checked here, so a bad one exits 2 before NATS is reached).
fn parse_info(text: &str) -> Result<serde_json::Value, String> {
    let info: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    telegraphy::protocol::token::check_info(&info).map_err(|e| e.to_string())?;
    Ok(info)
}

async fn mint(
    settings: Settings,
    user: String,
    allow: Vec<String>,
    ttl: Option<u64>,
    info: Option<serde_json::Value>,
    grants: Grants,
) -> anyhow::Result<()> {
    settings.secrets()?;
    let ttl = ttl.unwrap_or(settings.auth.token_ttl);
    auth::check_mint_request(&user, &allow, ttl)?;
    auth::check_grants(&grants)?;
    let client = nats::connect_once(&settings.nats.url).await?;
    let auth = auth::Auth::new(&settings, client.clone())?;
    let token = tokio::time::timeout(
        auth::MINT_RETRY_FOR + Duration::from_secs(10),
        auth.mint_with_grants(&user, &allow, ttl, info, grants),
    )
    .await
    .context("timed out registering the token in NATS KV")??;
    client.flush().await.context("flushing NATS")?;
    println!("{token}");
    Ok(())
}

async fn revoke(settings: Settings, user: Option<String>, session: Option<String>) -> anyhow::Result<()> {
    let client = nats::connect_once(&settings.nats.url).await?;
    let key = match (user, session) {
        (Some(user), _) => auth::user_key(&user),
        (None, Some(session)) => auth::session_key(&session),
        (None, None) => unreachable!("clap requires --user or --session"),
    };
    tokio::time::timeout(
        Duration::from_secs(10),
        auth::revoke_in(&client, &settings.auth.revocations_bucket, &key, settings.history.replicas),
    )
    .await
    .context("timed out writing the revocation")??;
    println!("revoked {key}");
    Ok(())
}
