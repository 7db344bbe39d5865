//! Issue 11 part 5 (gateway side): weak or placeholder secrets stop the gateway (exit 2, one line, never the
//! secret), the shipped examples are refused, and NATS credentials in `nats.url` never reach a log or error.

use std::time::Duration;

use serde_json::Value;
use telegraphy::secret;

use crate::common::*;

/// A strong secret (the harness's) for cases where another value is under test.
const STRONG: &str = SECRET;

fn vectors() -> Value {
    let path = repo_root().join("proto/vectors/secrets.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `telegraphy-gateway check-config` with `env`: (exit code, stdout, stderr).
async fn check_config(env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = gateway_command("nats://127.0.0.1:4222", STRONG);
    cmd.envs(env.iter().copied()).arg("check-config");
    let out = tokio::time::timeout(WAIT, cmd.output()).await.expect("check-config timed out").unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The configuration error for `secret` under `key`: exit 2, one line naming the key, without the secret.
async fn assert_refused(key: &str, secret: &str, env: &[(&str, &str)]) {
    let (code, stdout, stderr) = check_config(env).await;
    assert_eq!(code, 2, "{key} = {secret:?}: exit status; stderr {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(key), "names {key}: {stderr}");
    assert!(secret.is_empty() || !stderr.contains(secret), "the secret is in the message: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_secrets_stop_the_gateway_with_one_line_without_the_secret() {
    let v = vectors();
    let refused = v["refused"].as_array().unwrap();
    for case in refused {
        let weak = case["secret"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        assert_refused("auth.secret", weak, &[("TELEGRAPHY_AUTH__SECRET", weak)]).await;
        if !weak.is_empty() {
            // The rule's name is in the line (except "missing", which says so).
            let (_, _, stderr) = check_config(&[("TELEGRAPHY_AUTH__SECRET", weak)]).await;
            assert!(stderr.contains(why), "{why}: {stderr}");
            assert_refused("auth.previous_secrets", weak, &[("TELEGRAPHY_AUTH__PREVIOUS_SECRETS", weak)]).await;
        }
    }
    for good in v["accepted"].as_array().unwrap() {
        let good = good.as_str().unwrap();
        let (code, _, stderr) = check_config(&[("TELEGRAPHY_AUTH__PREVIOUS_SECRETS", good)]).await;
        assert_eq!(code, 0, "{good:?} refused: {stderr}");
    }
    eprintln!(
        "{} refused and {} accepted secrets checked through the binary",
        refused.len(),
        v["accepted"].as_array().unwrap().len()
    );
}

/// Values assigned to `key` in a shipped example file (`KEY=value` or `KEY: "value"`), non-empty.
fn example_values(file: &str, keys: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let key = keys.iter().find(|k| l.starts_with(&format!("{k}=")) || l.starts_with(&format!("{k}:")))?;
            let value = l[key.len() + 1..].trim().trim_matches('"').trim_matches('\'');
            (!value.is_empty()).then(|| value.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_shipped_in_deploy_examples_are_refused() {
    let keys = ["TELEGRAPHY_SECRET", "TELEGRAPHY_AUTH__SECRET", "TELEGRAPHY_AUTH__PREVIOUS_SECRETS"];
    for file in ["deploy/.env.example", "deploy/k8s/secret.example.yaml"] {
        let values = example_values(file, &keys);
        assert!(!values.is_empty(), "{file}: no secret value found (parser out of date?)");
        for value in values {
            assert!(secret::weakness(&value).is_some(), "{file}: {value:?} would be accepted");
            assert_refused("auth.secret", &value, &[("TELEGRAPHY_AUTH__SECRET", &value)]).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_in_the_url_log_the_gateway_in() {
    // async-nats ignores `user:password@` in a URL; the gateway passes them on itself (percent-decoded),
    // as deploy/ does with its per-role NATS users. Wrong credentials are covered by the test below.
    let nats = NatsServer::start_with_args(&["--user", "gateway", "--pass", "pa@ss:w0rd-93b1"]);
    let url = format!("nats://gateway:pa%40ss%3Aw0rd-93b1@127.0.0.1:{}", nats.port);
    let env = [("TELEGRAPHY_HISTORY__ENABLED", "false")];
    let gateway = GatewayBinary::launch("gw-creds", &url, STRONG, &env).await;
    eventually_within("the gateway is ready with the URL's NATS user", Duration::from_secs(20), || async {
        gateway.readyz().await == 200
    })
    .await;
    assert!(!gateway.log().await.contains("authorization violation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_passwords_never_reach_the_log_or_errors() {
    const PASSWORD: &str = "Pa55-n0t-f0r-l0gs-7d1e";
    // A NATS that requires another password for this user, so the gateway's connects are refused.
    let nats = NatsServer::start_with_args(&["--user", "gateway", "--pass", "the-right-one-93b1"]);
    let url = format!("nats://gateway:{PASSWORD}@127.0.0.1:{}", nats.port);
    let env = [("TELEGRAPHY_LOG__LEVEL", "debug"), ("TELEGRAPHY_HISTORY__ENABLED", "false")];
    let gateway = GatewayBinary::launch("gw-pw", &url, STRONG, &env).await;
    eventually_within("the refused NATS connect is logged", Duration::from_secs(20), || async {
        gateway.log().await.contains("authorization violation")
    })
    .await;
    assert_eq!(gateway.readyz().await, 503, "not ready without NATS");
    // A NATS that is down: the one-shot `token` command fails with the (redacted) URL in its message.
    let down = format!("nats://gateway:{PASSWORD}@127.0.0.1:{}", free_port());
    let mut cmd = gateway_command(&down, STRONG);
    cmd.args(["token", "--user", "alice", "--allow", "a.>"]).env("TELEGRAPHY_LOG__LEVEL", "debug");
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("***@127.0.0.1"), "the URL is shown redacted: {stderr}");
    let log = gateway.log().await;
    eprintln!("gateway log ({} lines), token stderr: {stderr}", log.lines().count());
    for (what, text) in [("gateway log", log.as_str()), ("token stderr", &stderr)] {
        assert!(!text.contains(PASSWORD), "{what} shows the NATS password:\n{text}");
    }
}
