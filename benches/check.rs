//! `check` on 10,000 references (1,000 pods × 10, many shared) against a local OpenBao
//! dev server: wall time per run (criterion) and the HTTP requests one run makes.
//!
//! Run with `cargo bench --bench check` (needs `bao`: scripts/install-test-deps.sh).

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use secretstore::analyze::check::{self, CheckOptions};
use secretstore::config::Settings;
use secretstore::render::Input;
use secretstore::vault::client::{VaultApi, VaultEnv};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::openbao::OpenBao;
use zeroize::Zeroizing;

const PODS: usize = 1_000;
const REFS_PER_POD: usize = 10;
const KV2_SECRETS: usize = 200;
const KV1_SECRETS: usize = 50;
const ROLES: usize = 20;
/// Request limits compared; 16 is the CLI's default.
const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];

fn world(vault: &OpenBao) {
    for i in 0..KV2_SECRETS {
        let data = json!({"k0": "a", "k1": "b", "k2": "c", "k3": "d", "k4": "e"});
        vault.kv2_put("secret", &format!("bench/app-{i}"), &data);
        vault.kv2_put("secret", &format!("bench/app-{i}"), &data);
    }
    vault.enable_secrets_engine("kv1", "kv", &json!({"options": {"version": "1"}}));
    for i in 0..KV1_SECRETS {
        vault.post_json(&format!("kv1/bench/app-{i}"), &json!({"k0": "a"}));
    }
    vault.post_json("sys/auth/kubernetes", &json!({"type": "kubernetes"}));
    for j in 0..ROLES {
        vault.put_policy(
            &format!("bench-{j}"),
            r#"path "secret/data/bench/*" { capabilities = ["read"] }
path "kv1/bench/*" { capabilities = ["read"] }"#,
        );
        vault.post_json(
            &format!("auth/kubernetes/role/role-{j}"),
            &json!({
                "bound_service_account_names": [format!("sa-{j}")],
                "bound_service_account_namespaces": ["bench"],
                "token_policies": [format!("bench-{j}")],
            }),
        );
    }
}

/// 1,000 pods of 10 env references each: KV v2 logical and pinned, KV v1.
fn manifest() -> String {
    let mut text = String::new();
    for p in 0..PODS {
        let role = p % ROLES;
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{p}\n  namespace: bench\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: role-{role}\nspec:\n  serviceAccountName: sa-{role}\n  containers:\n  - name: app\n    image: app\n    command: [/app]\n    env:\n"
        ));
        for r in 0..REFS_PER_POD {
            let reference = match r {
                8 => format!("kv1/bench/app-{}#k0", (p + r) % KV1_SECRETS),
                9 => format!("secret/bench/app-{}#k{}#1", (p * 3) % KV2_SECRETS, r % 5),
                _ => format!(
                    "secret/bench/app-{}#k{}",
                    (p * 7 + r * 13) % KV2_SECRETS,
                    r % 5
                ),
            };
            text.push_str(&format!(
                "    - name: V{r}\n      value: secretstore:vault:{reference}\n"
            ));
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let vault = OpenBao::start();
    world(&vault);
    let input = Input {
        name: "bench.yaml".into(),
        bytes: manifest().into_bytes(),
    };
    let settings = Settings::default();
    let options = CheckOptions {
        auth_path: settings.auth_path.clone(),
        ..CheckOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let run = |concurrency: usize| {
        let scan = secretstore::analyze::scan::scan(&input, &settings);
        let api = VaultApi::new(
            VaultEnv {
                address: vault.addr().to_string(),
                token: Zeroizing::new(vault.token().to_string()),
                namespace: None,
                ca_cert: None,
            },
            concurrency,
        )
        .expect("client");
        let (findings, stats) = rt
            .block_on(check::check(Arc::new(api), &scan.pods, &options))
            .expect("check ran");
        assert!(findings.is_empty(), "{findings:?}");
        stats
    };
    let stats = run(16);
    assert_eq!(stats.references, PODS * REFS_PER_POD);
    eprintln!("check: {stats} per run");
    let mut group = c.benchmark_group("check");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(15));
    for concurrency in CONCURRENCY {
        group.bench_with_input(
            BenchmarkId::new(
                "10k references, 1k pods, local OpenBao, concurrency",
                concurrency,
            ),
            &concurrency,
            |b, &c| b.iter(|| run(c)),
        );
    }
    group.bench_function("scan only (10k references)", |b| {
        b.iter(|| {
            secretstore::analyze::scan::scan(&input, &settings)
                .pods
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
