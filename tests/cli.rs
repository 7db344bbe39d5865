//! The real `telegraphy-gateway` binary (issue 3): `token` and `revoke` subcommands, configuration errors
//! (exit 2, one line naming the key, no secret), SIGTERM drain (1012, exit 0), and no secret or token in the
//! log. The gateway under test is the binary itself where its process behaviour matters, else in-process.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use telegraphy::{
    node::auth::Auth,
    protocol::token::{self, Keyring},
};
use tokio::process::Command;

/// Secret of the binary in the tests that run it as a gateway (distinct from the harness' SECRET so the log
/// check below cannot be fooled by the other one).
const CLI_SECRET: &str = "cli-test-secret-NEVER-LOGGED-0123456789";

/// Runs a short command (bounded) and returns (exit code, stdout, stderr).
async fn run(mut cmd: Command) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.expect("command timed out").unwrap();
    (
        out.status.code().expect("exited normally"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn mint_cli(nats_url: &str, args: &[&str]) -> String {
    let mut cmd = gateway_command(nats_url, SECRET);
    cmd.arg("token").args(args);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 0, "token failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly the token on stdout: {stdout:?}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommand_prints_a_token_that_connects_once() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let token =
        mint_cli(&nats.url(), &["--user", "alice", "--allow", "shop.>", "--allow", "chat.lobby.*", "--ttl", "30"])
            .await;
    let (_, claims) = Keyring::new(&[SECRET.to_string()]).unwrap().verify(&token, token::now_unix()).unwrap();
    assert_eq!((claims.sub.as_str(), claims.exp - claims.iat), ("alice", 30));
    assert_eq!(claims.allow, ["shop.>", "chat.lobby.*"]);

    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    client.subscribe("chat.lobby.general").await;
    client.send(json!({"type":"subscribe","id":5,"event":"chat.>"})).await;
    assert_eq!(client.recv().await["code"], "forbidden");
    let mut again = WsClient::connect(&app.ws_url()).await;
    assert_eq!(again.connect_with(json!({"type":"connect","id":1,"token":token})).await["code"], "unauthorized");
    assert_eq!(again.expect_close().await, 4001);

    // Anonymous token, default ttl (auth.token_ttl = 60).
    let anonymous = mint_cli(&nats.url(), &["--user", "", "--allow", "public.>"]).await;
    let (_, claims) = Keyring::new(&[SECRET.to_string()]).unwrap().verify(&anonymous, token::now_unix()).unwrap();
    assert_eq!((claims.sub.as_str(), claims.exp - claims.iat), ("", 60));
    let mut anon = WsClient::connect(&app.ws_url()).await;
    assert_eq!(anon.connect_with(json!({"type":"connect","token":anonymous})).await["type"], "connected");

    // The presence `info` claim; a bad one exits 2 before NATS is asked.
    let with_info = mint_cli(&nats.url(), &["--user", "bo", "--allow", "x.>", "--info", r#"{"name":"Bo"}"#]).await;
    let (_, claims) = Keyring::new(&[SECRET.to_string()]).unwrap().verify(&with_info, token::now_unix()).unwrap();
    assert_eq!(claims.info, Some(json!({"name": "Bo"})));
    let big = format!(r#"{{"n":"{}"}}"#, "x".repeat(256));
    for info in ["[1]", "not json", big.as_str()] {
        let mut cmd = gateway_command("nats://127.0.0.1:1", SECRET);
        cmd.arg("token").args(["--allow", "x.>", "--info", info]);
        let (code, stdout, stderr) = run(cmd).await;
        assert_eq!(code, 2, "{info}: {stderr}");
        assert!(stdout.is_empty() && stderr.contains("--info"), "{info}: {stderr}");
    }

    // Bad arguments are refused without minting.
    for args in [&["--allow", "shop..x"][..], &["--allow", "x.>", "--ttl", "0"], &["--allow", "x.>", "--ttl", "99999"]]
    {
        let mut cmd = gateway_command(&nats.url(), SECRET);
        cmd.arg("token").args(args);
        let (code, stdout, stderr) = run(cmd).await;
        assert_ne!(code, 0, "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: printed {stdout:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_2_with_one_line_naming_the_key_and_no_secret() {
    let nats = NatsServer::start();
    const WEAK: &str = "weak-SECRET-value";
    /// (subcommand, extra environment, key the message must name, auth.secret or None for unset)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
    let cases: &[Case] = &[
        ("serve", &[("TELEGRAPHY_LIMITS__MAX_CONNECTIONS", "abc")], "max_connections", Some(CLI_SECRET)),
        ("token", &[("TELEGRAPHY_LIMITS__MAX_CONNECTIONS", "abc")], "max_connections", Some(CLI_SECRET)),
        ("serve", &[], "auth.secret", None),
        ("token", &[], "auth.secret", None),
        ("serve", &[], "auth.secret", Some(WEAK)),
        ("serve", &[("TELEGRAPHY_AUTH__PREVIOUS_SECRETS", WEAK)], "auth.previous_secrets", Some(CLI_SECRET)),
        ("serve", &[("TELEGRAPHY_HTTP__BIND", "not-an-address")], "http.bind", Some(CLI_SECRET)),
        ("serve", &[("TELEGRAPHY_NATS__URL", "http://127.0.0.1:1")], "nats.url", Some(CLI_SECRET)),
        ("serve", &[("TELEGRAPHY_AUTH__TOKEN_TTL", "7200")], "auth.token_ttl", Some(CLI_SECRET)),
        ("serve", &[("TELEGRAPHY_AUTH__ANONYMOUS_ALLOW", "ok.>,bad..x")], "auth.anonymous_allow", Some(CLI_SECRET)),
    ];
    for (command, env, key, secret) in cases {
        let mut cmd = gateway_command(&nats.url(), secret.unwrap_or_default());
        if secret.is_none() {
            cmd.env_remove("TELEGRAPHY_AUTH__SECRET");
        }
        cmd.env("TELEGRAPHY_HTTP__BIND", "127.0.0.1:0").envs(env.iter().copied());
        cmd.arg(command);
        if *command == "token" {
            cmd.args(["--user", "alice", "--allow", "x.>"]);
        }
        let what = format!("{command} {env:?}");
        let (code, stdout, stderr) = run(cmd).await;
        assert_eq!(code, 2, "{what}: exit status; stderr: {stderr}");
        assert!(stdout.is_empty(), "{what}: stdout {stdout:?}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line on stderr, got:\n{stderr}");
        assert!(stderr.contains(key), "{what}: names {key}: {stderr}");
        for secret in [CLI_SECRET, WEAK] {
            assert!(!stderr.contains(secret), "{what}: the secret is in the message: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_nats_exits_1_saying_each_cause_once() {
    let closed = format!("nats://127.0.0.1:{}", free_port());
    let mut cmd = gateway_command(&closed, CLI_SECRET);
    cmd.args(["token", "--user", "alice", "--allow", "x.>"]);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect to NATS at"), "{stderr}");
    // Each part of the chain once: the error's message already ends with its source's text.
    let parts: Vec<&str> = stderr.trim_end().split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(part), "{part:?} repeated in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_subcommand_closes_the_users_sockets_with_4003() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    eventually("revocations loaded", || async { app.gateway.auth().revocations_loaded() }).await;
    let mut alice = app.client(&["a.>"]).await; // sub "tester"
    let alice_token = app.token("alice", &["a.>"]).await;
    let mut alice_own = WsClient::connect(&app.ws_url()).await;
    assert_eq!(alice_own.connect_with(json!({"type":"connect","token":alice_token})).await["type"], "connected");
    let bob_token = app.token("bob", &["b.>"]).await;
    let mut bob = WsClient::connect(&app.ws_url()).await;
    let bob_connected = bob.connect_with(json!({"type":"connect","token":bob_token})).await;
    let bob_session = bob_connected["session"].as_str().unwrap().to_string();

    let mut cmd = gateway_command(&nats.url(), SECRET);
    cmd.args(["revoke", "--user", "alice"]);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), format!("revoked {}", telegraphy::node::auth::user_key("alice")));
    let closed = tokio::time::timeout(Duration::from_secs(1), alice_own.expect_close()).await.expect("within 1 s");
    assert_eq!(closed, 4003);
    alice.send(json!({"type":"ping","id":1})).await;
    assert_eq!(alice.recv().await, json!({"type":"pong","id":1}), "another user's socket stays open");

    let mut cmd = gateway_command(&nats.url(), SECRET);
    cmd.args(["revoke", "--session", &bob_session]);
    let (code, _, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), bob.expect_close()).await.expect("within 1 s"), 4003);

    let mut cmd = gateway_command(&nats.url(), SECRET);
    cmd.arg("revoke");
    let (code, _, _) = run(cmd).await;
    assert_eq!(code, 2, "revoke needs --user or --session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_1012_and_exits_0_within_the_shutdown_timeout() {
    let nats = NatsServer::start();
    let env = [("TELEGRAPHY_SHUTDOWN_TIMEOUT", "5")];
    let mut gateway = GatewayBinary::start("gw-cli", &nats.url(), CLI_SECRET, &env).await;
    let mut settings = test_settings(&nats.url());
    settings.auth.secret = CLI_SECRET.into();
    let minter = Auth::new(&settings, publisher(&nats.url()).await).unwrap();
    let token = minter.mint("alice", &["x.>".into()], 60).await.unwrap();
    let mut client = WsClient::connect(&gateway.ws_url()).await;
    let connected = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!((connected["type"].as_str(), connected["node"].as_str()), (Some("connected"), Some("gw-cli")));
    client.subscribe("x.>").await;

    let started = tokio::time::Instant::now();
    gateway.sigterm();
    assert_eq!(client.expect_close().await, 1012);
    assert_eq!(gateway.wait_exit(Duration::from_secs(5 + 2)).await, 0, "log:\n{}", gateway.log().await);
    assert!(started.elapsed() < Duration::from_secs(6), "exited within shutdown_timeout: {:?}", started.elapsed());
    assert!(gateway.log().await.contains("SIGTERM"), "the drain is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_even_when_nats_was_never_reached() {
    let closed_port = free_port();
    let nats_url = format!("nats://127.0.0.1:{closed_port}");
    let mut gateway =
        GatewayBinary::launch("gw-cli", &nats_url, CLI_SECRET, &[("TELEGRAPHY_SHUTDOWN_TIMEOUT", "3")]).await;
    assert_eq!(gateway.readyz().await, 503, "not ready without NATS");
    let started = tokio::time::Instant::now();
    gateway.sigterm();
    assert_eq!(gateway.wait_exit(Duration::from_secs(3 + 3)).await, 0, "log:\n{}", gateway.log().await);
    assert!(started.elapsed() < Duration::from_secs(5), "exited within shutdown_timeout: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_reach_the_log() {
    const API_KEY: &str = "api-key-NEVER-LOGGED-0123456789-q7Zx";
    let nats = NatsServer::start();
    let env = [("TELEGRAPHY_LOG__LEVEL", "debug"), ("TELEGRAPHY_HTTP__API_KEY", API_KEY)];
    let mut gateway = GatewayBinary::start("gw-cli", &nats.url(), CLI_SECRET, &env).await;
    let mut settings = test_settings(&nats.url());
    settings.auth.secret = CLI_SECRET.into();
    let minter = Auth::new(&settings, publisher(&nats.url()).await).unwrap();
    let now = token::now_unix();
    let keyring = Keyring::new(&[CLI_SECRET.to_string()]).unwrap();

    let mut presented: Vec<String> = Vec::new();
    let good = minter.mint("alice", &["x.>".into()], 60).await.unwrap();
    let (claims_part, _) = good.rsplit_once('.').unwrap();
    presented.push(format!("{claims_part}.{}", "A".repeat(43))); // forged signature
    presented.push(
        keyring.sign(token::TokenKind::Connect, &token::Claims::new("alice", vec!["x.>".into()], now - 100, 10, None)),
    );
    presented.push(good.clone()); // accepted
    presented.push(good.clone()); // replayed
    presented.push("tg1.garbage".into());
    let mut resume = None;
    for token in &presented {
        let mut client = WsClient::connect(&gateway.ws_url()).await;
        let reply = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
        match reply["type"].as_str() {
            Some("connected") => resume = reply["resume"].as_str().map(str::to_string),
            _ => assert_eq!(client.expect_close().await, 4001),
        }
    }
    let resume = resume.expect("the good token connected");
    let mut resumed = WsClient::connect(&gateway.ws_url()).await;
    assert_eq!(resumed.connect_with(json!({"type":"connect","resume":resume})).await["type"], "connected");
    presented.push(resume);
    // The HTTP API: a wrong key and a mint with the right one.
    let http = reqwest::Client::new();
    let api = gateway.http("/api/v1/tokens");
    let wrong =
        http.post(&api).bearer_auth(format!("{API_KEY}-wrong")).json(&json!({"allow":[]})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let minted: serde_json::Value = http
        .post(&api)
        .bearer_auth(API_KEY)
        .json(&json!({"allow":["x.>"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    presented.push(minted["token"].as_str().unwrap().to_string());

    gateway.sigterm();
    assert_eq!(gateway.wait_exit(Duration::from_secs(15)).await, 0);
    let log = gateway.log().await;
    assert!(
        log.matches("connect refused").count() >= 4,
        "the refusals are logged (else this test proves nothing):\n{log}"
    );
    for secret in [CLI_SECRET, API_KEY] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
    for token in &presented {
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(!log.contains(part), "a token (part {part}) is in the log");
        }
    }
}

/// `--version` prints the project's one version (the VERSION file, which scripts/gen-constants copies into
/// Cargo.toml, the Python and the JS packages).
#[tokio::test]
async fn version_is_the_version_file() {
    let version = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/VERSION")).unwrap();
    let mut cmd = gateway_command("nats://127.0.0.1:1", CLI_SECRET);
    cmd.arg("--version");
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 0, "--version failed: {stderr}");
    assert_eq!(stdout.trim(), format!("telegraphy-gateway {}", version.trim()));
}
