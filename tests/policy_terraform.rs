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
