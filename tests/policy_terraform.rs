//! `secretstore policy --format terraform`: the exact text (insta snapshots), that it
//! parses as HCL, and that its content applied through OpenBao's API (what the Vault
//! provider would create: policies, the jwt auth backends and the roles of every
//! configured cluster) makes `secretstore check` pass for every cluster.

mod support;

use std::collections::BTreeMap;

use hcl::expr::{Expression, ObjectKey, TemplateExpr, TraversalOperator};
use serde_json::{json, Value};
use support::jwt::ServiceAccountIssuer;
use support::openbao::OpenBao;

const CONFIG: &str = "testdata/policy/clusters.config.yaml";
const MANIFESTS: &str = "testdata/policy/shop.yaml";
const CLUSTERS: [&str; 2] = ["eu-west", "us-east"];

fn policy(args: &[&str]) -> String {
    let root = support::repo_root();
    let output = support::secretstore()
        .current_dir(&root)
        .args(["policy", "--format", "terraform", "--kv-version", "kv1=1"])
        .args(args)
        .arg(MANIFESTS)
        .output()
        .expect("run policy");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn terraform_snapshots_parse_as_hcl() {
    for (name, args) in [
        ("kubernetes-one-auth-path", vec![]),
        (
            "kubernetes-all-clusters",
            vec!["--all-clusters", "--config", CONFIG],
        ),
        (
            "jwt-all-clusters",
            vec!["--all-clusters", "--auth-method", "jwt", "--config", CONFIG],
        ),
    ] {
        let text = policy(&args);
        hcl::parse(&text).unwrap_or_else(|e| panic!("{name}: not HCL: {e}\n{text}"));
        insta::with_settings!({snapshot_path => "snapshots/policy", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name, text);
        });
    }
    let usage = support::secretstore()
        .args(["policy", "--all-clusters", MANIFESTS])
        .current_dir(support::repo_root())
        .output()
        .expect("run policy");
    assert_eq!(
        usage.status.code(),
        Some(2),
        "--all-clusters without terraform"
    );
}

/// Resources by (type, name), as their HCL bodies.
type Resources = BTreeMap<(String, String), hcl::Body>;

/// The value of an expression of the generated Terraform: literals, heredocs, `var.X`
/// and references to other resources' attributes.
fn eval(expr: &Expression, resources: &Resources, vars: &BTreeMap<String, Value>) -> Value {
    match expr {
        Expression::String(s) => Value::from(s.as_str()),
        Expression::Array(items) => items.iter().map(|e| eval(e, resources, vars)).collect(),
        Expression::Object(object) => object
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    ObjectKey::Identifier(i) => i.to_string(),
                    ObjectKey::Expression(e) => eval(e, resources, vars)
                        .as_str()
                        .expect("string key")
                        .to_owned(),
                    other => panic!("unexpected key {other:?}"),
                };
                (key, eval(v, resources, vars))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Expression::TemplateExpr(t) => match t.as_ref() {
            TemplateExpr::Heredoc(h) => Value::from(h.template.replace("$${", "${")),
            TemplateExpr::QuotedString(s) => Value::from(s.as_str()),
        },
        Expression::Traversal(t) => {
            let Expression::Variable(root) = &t.expr else {
                panic!("unexpected traversal {t:?}");
            };
            let names: Vec<String> = t
                .operators
                .iter()
                .map(|op| match op {
                    TraversalOperator::GetAttr(i) => i.to_string(),
                    other => panic!("unexpected operator {other:?}"),
                })
                .collect();
            if root.as_str() == "var" {
                return vars[&names[0]].clone();
            }
            let body = &resources[&(root.to_string(), names[0].clone())];
            let attribute = body
                .attributes()
                .find(|a| a.key.as_str() == names[1])
                .expect("referenced attribute");
            eval(&attribute.expr, resources, vars)
        }
        other => panic!("unexpected expression {other:?}"),
    }
}

fn attributes(
    body: &hcl::Body,
    resources: &Resources,
    vars: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    body.attributes()
        .map(|a| (a.key.to_string(), eval(&a.expr, resources, vars)))
        .collect()
}

#[test]
fn applied_through_the_api_check_passes_for_every_cluster() {
    let text = policy(&["--all-clusters", "--auth-method", "jwt", "--config", CONFIG]);
    let body = hcl::parse(&text).expect("HCL");
    let mut resources = Resources::new();
    for block in body
        .blocks()
        .filter(|b| b.identifier.as_str() == "resource")
    {
        let labels: Vec<String> = block.labels.iter().map(|l| l.as_str().to_owned()).collect();
        resources.insert((labels[0].clone(), labels[1].clone()), block.body.clone());
    }
    let issuer = ServiceAccountIssuer::new();
    let mut vars = BTreeMap::new();
    for cluster in CLUSTERS {
        let id = cluster.replace('-', "_");
        vars.insert(
            format!("{id}_jwt_validation_pubkeys"),
            json!([issuer.public_key_pem()]),
        );
        vars.insert(format!("{id}_bound_issuer"), json!(issuer.issuer()));
    }

    let vault = OpenBao::start();
    vault.enable_secrets_engine("kv1", "kv", &json!({ "options": { "version": "1" } }));
    vault.kv2_put("secret", "shop/db", &json!({ "password": "pw" }));
    vault.kv2_put("secret", "shop/config", &json!({ "a": "b" }));
    vault.put_json("kv1/reporting/api", &json!({ "token": "t" }));

    // What the Vault provider does for each resource, in dependency order.
    let of_type = |t: &str| {
        resources
            .iter()
            .filter(|((rt, _), _)| rt == t)
            .map(|(_, b)| attributes(b, &resources, &vars))
            .collect::<Vec<_>>()
    };
    for p in of_type("vault_policy") {
        vault.put_policy(p["name"].as_str().unwrap(), p["policy"].as_str().unwrap());
    }
    let backends = of_type("vault_jwt_auth_backend");
    assert_eq!(backends.len(), CLUSTERS.len());
    for b in backends {
        let path = b["path"].as_str().unwrap();
        vault.post_json(&format!("sys/auth/{path}"), &json!({ "type": "jwt" }));
        vault.post_json(
            &format!("auth/{path}/config"),
            &json!({
                "jwt_validation_pubkeys": b["jwt_validation_pubkeys"],
                "bound_issuer": b["bound_issuer"],
            }),
        );
    }
    let roles = of_type("vault_jwt_auth_backend_role");
    assert_eq!(roles.len(), 2 * CLUSTERS.len(), "two roles on each cluster");
    for r in roles {
        // The provider sends a comma-separated bound claim as a list.
        let claims: serde_json::Map<String, Value> = r["bound_claims"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let list: Vec<&str> = v.as_str().unwrap().split(',').collect();
                (k.clone(), json!(list))
            })
            .collect();
        vault.post_json(
            &format!(
                "auth/{}/role/{}",
                r["backend"].as_str().unwrap(),
                r["role_name"].as_str().unwrap()
            ),
            &json!({
                "role_type": r["role_type"],
                "user_claim": r["user_claim"],
                "bound_audiences": r["bound_audiences"],
                "bound_claims": claims,
                "token_policies": r["token_policies"],
            }),
        );
    }

    for cluster in CLUSTERS {
        let output = support::secretstore()
            .current_dir(support::repo_root())
            .args(["check", "--config", CONFIG, "--cluster", cluster, MANIFESTS])
            .envs(vault.env())
            .output()
            .expect("run check");
        assert_eq!(
            output.status.code(),
            Some(0),
            "check on {cluster}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Without the roles of a cluster, check fails there: the roles above are what it saw.
    vault.request("DELETE", "auth/k8s-us-east/role/shop", None);
    let output = support::secretstore()
        .current_dir(support::repo_root())
        .args([
            "check",
            "--config",
            CONFIG,
            "--cluster",
            "us-east",
            MANIFESTS,
        ])
        .envs(vault.env())
        .output()
        .expect("run check");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("SS310"));
}

/// One opted-in Pod per (role, namespace, service account), as one stream.
fn pods(specs: &[(&str, &str, &str)]) -> String {
    specs
        .iter()
        .enumerate()
        .map(|(i, (role, namespace, account))| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: {namespace}\n  annotations:\n    rafay.dev/secretstore: vault\n    vault.secretstore.rafay.dev/role: {role}\n    vault.secretstore.rafay.dev/filesecret-config-1: '{{\"vaultSecretRef\": \"secret/app{i}#k\", \"secretFileName\": \"k\", \"volumeMountPath\": \"/s\"}}'\nspec:\n  serviceAccountName: {account}\n  containers:\n  - name: app\n    image: app\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn policy_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut command = support::secretstore();
    command.arg("policy").args(args);
    support::run_with_stdin(&mut command, input.as_bytes())
}

/// Roles whose names Terraform would merge (`a-b`, `a_b`, `a.b` are all `a_b`) get
/// resources of their own; a name that is a Terraform name already keeps it.
#[test]
fn roles_terraform_would_merge_get_their_own_resources() {
    let input = pods(&[
        ("a-b", "shop", "x"),
        ("a_b", "shop", "y"),
        ("a.b", "shop", "z"),
    ]);
    let output = policy_stdin(&["--format", "terraform"], &input);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let body = hcl::parse(&text).unwrap_or_else(|e| panic!("not HCL: {e}\n{text}"));
    let mut names = std::collections::BTreeSet::new();
    for block in body.blocks().filter(|b| b.identifier() == "resource") {
        let labels: Vec<String> = block
            .labels()
            .iter()
            .map(|l| l.as_str().to_string())
            .collect();
        assert!(names.insert(labels.clone()), "{labels:?} twice:\n{text}");
    }
    assert_eq!(names.len(), 6, "three policies and three roles:\n{text}");
    insta::with_settings!({snapshot_path => "snapshots/policy", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("terraform-similar-role-names", text);
    });
}

/// Vault lowercases role and policy names: `Shop` and `shop` would overwrite each other,
/// so no policy is written; nor for a role bound to every service account or namespace.
#[test]
fn roles_vault_would_merge_or_bind_to_everyone_are_refused() {
    let mut report = String::new();
    for (name, input, args) in [
        (
            "case",
            pods(&[("Shop", "shop", "web"), ("shop", "shop", "api")]),
            vec![],
        ),
        ("account", pods(&[("web", "shop", "'*'")]), vec![]),
        ("namespace", pods(&[("web", "'*'", "web")]), vec![]),
        (
            "flag",
            pods(&[("web", "shop", "web")]).replace("  namespace: shop\n", ""),
            vec!["--namespace", "team-*"],
        ),
    ] {
        for format in ["hcl", "terraform"] {
            let mut all = vec!["--format", format];
            all.extend(&args);
            let output = policy_stdin(&all, &input);
            assert_eq!(output.status.code(), Some(1), "{name} {format}");
            assert!(
                output.stdout.is_empty(),
                "{name} {format}: a policy was written"
            );
            if format == "hcl" {
                report.push_str(&format!(
                    "--- {name}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
    }
    insta::with_settings!({snapshot_path => "snapshots/policy", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("refused-role-names", report);
    });
}
