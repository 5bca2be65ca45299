//! A deterministic, synthetic `helm template`-style stream: the input of the render
//! benchmark (`benches/render.rs`, `scripts/bench.sh` through `cargo run --example
//! gen-big-stream`) and of the parser agreement tests (`tests/tree_block.rs`).
//!
//! What it exercises, because real Helm output has it:
//! - every document follows `---` and a `# Source: <chart>/templates/<file>` comment, and
//!   now and then a template renders to nothing (a comment-only document);
//! - Deployments (about 40% of documents), Services (35%), ConfigMaps (20%) and the
//!   other pod-template kinds (StatefulSet, DaemonSet, Job, CronJob);
//! - about one pod template in seven opts in (`rafay.dev/secretstore: vault`) with env
//!   references and file secrets, so roughly 7% of the documents change; some other
//!   workloads carry Vault Agent annotations on the workload's own metadata (a decoy that
//!   must not opt anything in);
//! - a few Deployments with many containers and long env lists;
//! - ConfigMaps with block scalars (`|`, `|-`, `|+`, `>`) of embedded configuration, some
//!   holding indented `---` and `#` lines that are content, not structure;
//! - YAML 1.1 octal modes (`0644`), flow `[]`/`{}`, and whitespace-only lines.
//!
//! The same seed gives the same bytes on every platform: the generator has its own PRNG.

use std::fmt::Write as _;

/// The seed the benchmark uses, so every machine measures the same stream.
pub const DEFAULT_SEED: u64 = 0x5EC2_E75D_0C5E_ED01;

const WORDS: &[&str] = &[
    "api", "web", "worker", "cache", "queue", "db", "auth", "billing", "search", "ingest",
    "report", "notify", "gateway", "proxy", "frontend", "backend", "metrics", "audit", "amber",
    "basalt", "cedar", "dune", "ember", "fjord", "granite", "harbor", "iris", "jade", "kestrel",
    "lagoon", "meadow", "nectar", "onyx", "prairie", "quartz", "reef", "summit", "tundra", "umber",
    "valley", "willow", "yarrow", "zephyr",
];
const CHARTS: &[&str] = &[
    "platform",
    "payments",
    "catalog",
    "ingest",
    "observability",
    "identity",
    "storefront",
    "analytics",
];
const IMAGES: &[&str] = &[
    "nginx:1.27.3",
    "docker.io/bitnami/redis:7.4.2-debian-12-r0",
    "ghcr.io/example/api:v2.14.1",
    "registry.k8s.io/pause:3.10",
    "quay.io/prometheus/node-exporter:v1.8.2",
    "busybox:1.37",
    "gcr.io/distroless/static:nonroot",
    "postgres:17.2-alpine",
];

/// SplitMix64: tiny, fast, and identical everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.range(0, items.len() - 1)]
    }

    fn word(&mut self) -> &'static str {
        self.pick(WORDS)
    }

    fn words(&mut self, n: usize, sep: &str) -> String {
        (0..n).map(|_| self.word()).collect::<Vec<_>>().join(sep)
    }
}

struct Release {
    chart: &'static str,
    name: String,
    namespace: String,
    app: String,
}

/// `documents` documents (not counting comment-only ones) from `seed`.
pub fn generate(documents: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(documents * 3200);
    for _ in 0..documents {
        let chart = rng.pick(CHARTS);
        let release = format!("{chart}-{}", rng.range(1, 99));
        let namespace = match rng.range(0, 3) {
            0 => "default".to_string(),
            1 => "prod".to_string(),
            2 => "staging".to_string(),
            _ => chart.to_string(),
        };
        let app = format!("{release}-{}-{}", rng.word(), rng.word());
        let r = Release {
            chart,
            name: release,
            namespace,
            app,
        };
        let templates = if rng.chance(200) {
            format!("{chart}/charts/{}/templates", rng.word())
        } else {
            format!("{chart}/templates")
        };
        if rng.chance(10) {
            // A template whose `{{- if }}` was false: a comment-only document.
            let _ = write!(out, "---\n# Source: {templates}/poddisruptionbudget.yaml\n");
        }
        let roll = rng.range(0, 999);
        let (file, doc) = match roll {
            0..=399 => ("deployment.yaml", deployment(&mut rng, &r)),
            400..=749 => ("service.yaml", service(&mut rng, &r)),
            750..=949 => ("configmap.yaml", configmap(&mut rng, &r)),
            950..=962 => ("statefulset.yaml", statefulset(&mut rng, &r)),
            963..=975 => ("daemonset.yaml", daemonset(&mut rng, &r)),
            976..=987 => ("hooks/migrate-job.yaml", job(&mut rng, &r)),
            _ => ("cronjob.yaml", cronjob(&mut rng, &r)),
        };
        let _ = write!(out, "---\n# Source: {templates}/{file}\n{doc}");
    }
    out.into_bytes()
}

fn labels(rng: &mut Rng, out: &mut String, indent: usize, r: &Release) {
    let p = " ".repeat(indent);
    let _ = write!(
        out,
        "{p}app.kubernetes.io/name: {}\n{p}app.kubernetes.io/instance: {}\n\
         {p}app.kubernetes.io/managed-by: Helm\n{p}helm.sh/chart: {}-{}.{}.{}\n",
        r.app,
        r.name,
        r.chart,
        rng.range(0, 9),
        rng.range(0, 40),
        rng.range(0, 9)
    );
}

/// A workload's own metadata; `decoy` puts Vault Agent annotations on it, which opt nothing in.
fn workload_metadata(rng: &mut Rng, out: &mut String, api: &str, kind: &str, r: &Release) {
    let _ = write!(
        out,
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n",
        r.app, r.namespace
    );
    labels(rng, out, 4, r);
    if rng.chance(50) {
        let role = rng.word();
        let _ = write!(
            out,
            "  annotations:\n    vault.hashicorp.com/agent-inject: \"true\"\n    vault.hashicorp.com/role: \"{role}\"\n"
        );
        for i in 0..rng.range(1, 3) {
            let name = rng.word();
            let _ = write!(
                out,
                "    vault.hashicorp.com/agent-inject-secret-{name}-{i}: \"secret/data/{role}/{name}\"\n    \
                 vault.hashicorp.com/agent-inject-template-{name}-{i}: |\n      \
                 {{{{- with secret \"secret/data/{role}/{name}\" -}}}}\n      \
                 {}_PASSWORD={{{{ .Data.data.password }}}}\n      {{{{- end }}}}\n",
                name.to_uppercase()
            );
        }
    }
}

fn env(rng: &mut Rng, out: &mut String, p: &str, plain: usize, refs: usize) {
    if plain + refs == 0 {
        return;
    }
    let _ = writeln!(out, "{p}env:");
    for i in 0..refs {
        let (a, b, key) = (rng.word(), rng.word(), rng.word());
        let _ = write!(
            out,
            "{p}  - name: SECRET_{}_{i}\n{p}    value: \"secretstore:vault:secret/data/{a}/{b}#{key}\"\n",
            a.to_uppercase()
        );
    }
    for i in 0..plain {
        let name = format!("{}_{}_{i}", rng.word(), rng.word()).to_uppercase();
        match rng.range(0, 9) {
            0..=6 => {
                let value = match rng.range(0, 4) {
                    0 => format!("\"{}\"", rng.range(0, 99_999)),
                    1 => format!("\"{}\"", rng.words(3, " ")),
                    2 => "\"true\"".to_string(),
                    3 => format!("\"http://{}.{}.svc:8080\"", rng.word(), rng.word()),
                    _ => "''".to_string(),
                };
                let _ = write!(out, "{p}  - name: {name}\n{p}    value: {value}\n");
            }
            7 | 8 => {
                let _ = write!(
                    out,
                    "{p}  - name: {name}\n{p}    valueFrom:\n{p}      secretKeyRef:\n\
                     {p}        name: {}-{}\n{p}        key: {}\n",
                    rng.word(),
                    rng.word(),
                    rng.word()
                );
            }
            _ => {
                let _ = write!(
                    out,
                    "{p}  - name: {name}\n{p}    valueFrom:\n{p}      fieldRef:\n\
                     {p}        fieldPath: metadata.namespace\n"
                );
            }
        }
    }
}

/// One container, as a sequence entry at `indent`.
fn container(
    rng: &mut Rng,
    out: &mut String,
    indent: usize,
    name: &str,
    many_env: bool,
    refs: usize,
) {
    let p = " ".repeat(indent);
    let _ = write!(
        out,
        "{p}- name: {name}\n{p}  image: \"{}\"\n{p}  imagePullPolicy: IfNotPresent\n\
         {p}  ports:\n{p}    - name: http\n{p}      containerPort: {}\n{p}      protocol: TCP\n",
        rng.pick(IMAGES),
        [80, 8080, 8443, 9090, 6379][rng.range(0, 4)]
    );
    // A wrapped container needs its command spelled out (render cannot see an image's
    // ENTRYPOINT), so every container with references has one.
    if refs > 0 || rng.chance(300) {
        let _ = write!(
            out,
            "{p}  command:\n{p}    - /bin/sh\n{p}    - -c\n{p}    - |\n{p}      set -e\n\
             {p}      exec /app/{} --port=8080 --log-level=info\n",
            rng.word()
        );
    }
    let plain = if many_env {
        rng.range(15, 40)
    } else {
        rng.range(0, 8)
    };
    env(rng, out, &format!("{p}  "), plain, refs);
    let _ = write!(
        out,
        "{p}  resources:\n{p}    limits:\n{p}      cpu: {}\n{p}      memory: {}\n\
         {p}    requests:\n{p}      cpu: 50m\n{p}      memory: 64Mi\n\
         {p}  securityContext:\n{p}    runAsNonRoot: true\n{p}    readOnlyRootFilesystem: true\n\
         {p}  volumeMounts:\n{p}    - name: config\n{p}      mountPath: /etc/{}\n",
        ["100m", "250m", "1", "2"][rng.range(0, 3)],
        ["128Mi", "256Mi", "1Gi"][rng.range(0, 2)],
        rng.word()
    );
    if rng.chance(500) {
        let _ = write!(
            out,
            "{p}  livenessProbe:\n{p}    httpGet:\n{p}      path: /healthz\n{p}      port: http\n\
             {p}    initialDelaySeconds: 10\n{p}    periodSeconds: 10\n"
        );
    }
}

/// A pod template's `metadata:` and `spec:` at `indent` (the children of `template:`).
fn pod_template(
    rng: &mut Rng,
    out: &mut String,
    indent: usize,
    r: &Release,
    many: bool,
    restart: Option<&str>,
) {
    let p = " ".repeat(indent);
    let _ = write!(out, "{p}metadata:\n{p}  labels:\n");
    labels(rng, out, indent + 4, r);
    let count = if many {
        rng.range(4, 8)
    } else {
        rng.range(1, 2)
    };
    let names: Vec<String> = (0..count)
        .map(|i| {
            if count == 1 {
                r.app.clone()
            } else {
                format!("{}-{i}", r.app)
            }
        })
        .collect();
    let opted = rng.chance(150);
    let checksum = rng.chance(500);
    if opted || checksum {
        let _ = writeln!(out, "{p}  annotations:");
    }
    if checksum {
        let _ = writeln!(
            out,
            "{p}    checksum/config: {:016x}{:016x}{:016x}{:016x}",
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next()
        );
    }
    if opted {
        let role = rng.word();
        let _ = write!(out, "{p}    rafay.dev/secretstore: vault\n{p}    vault.secretstore.rafay.dev/role: {role}\n");
        for i in 1..=rng.range(0, 2) {
            let secret = rng.word();
            let target = &names[rng.range(0, names.len() - 1)];
            let _ = write!(
                out,
                "{p}    vault.secretstore.rafay.dev/filesecret-config-{i}: |\n{p}      \
                 {{\"vaultSecretRef\": \"secret/data/{role}/{secret}\", \"secretFileName\": \"{secret}.json\", \
                 \"volumeMountPath\": \"/etc/secrets/{secret}-{i}\", \"containers\": [\"{target}\"]}}\n"
            );
        }
    }
    let _ = writeln!(out, "{p}spec:");
    if let Some(policy) = restart {
        let _ = writeln!(out, "{p}  restartPolicy: {policy}");
    }
    if rng.chance(600) {
        let _ = writeln!(out, "{p}  serviceAccountName: {}", r.app);
    }
    let _ = write!(out, "{p}  securityContext:\n{p}    fsGroup: 1001\n");
    if rng.chance(200) {
        let _ = writeln!(out, "{p}  initContainers:");
        let name = format!("init-{}", rng.word());
        container(rng, out, indent + 4, &name, false, 0);
    }
    let _ = writeln!(out, "{p}  containers:");
    for name in &names {
        let refs = if opted { rng.range(0, 3) } else { 0 };
        container(rng, out, indent + 4, name, many, refs);
    }
    if rng.chance(300) {
        // Helm leaves whitespace-only lines where a template's `{{- if }}` ate the rest.
        let _ = writeln!(out, "{}", " ".repeat(indent + 2));
    }
    let _ = write!(
        out,
        "{p}  volumes:\n{p}    - name: config\n{p}      configMap:\n{p}        name: {}-config\n\
         {p}        defaultMode: {}\n",
        r.app,
        ["0644", "0755", "420"][rng.range(0, 2)]
    );
}

fn deployment(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    workload_metadata(rng, &mut out, "apps/v1", "Deployment", r);
    let _ = write!(
        out,
        "spec:\n  replicas: {}\n  revisionHistoryLimit: 10\n  selector:\n    matchLabels:\n      \
         app.kubernetes.io/name: {}\n      app.kubernetes.io/instance: {}\n  strategy:\n    \
         type: RollingUpdate\n  template:\n",
        rng.range(1, 5),
        r.app,
        r.name
    );
    let many = rng.chance(60);
    pod_template(rng, &mut out, 4, r, many, None);
    out
}

fn statefulset(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    workload_metadata(rng, &mut out, "apps/v1", "StatefulSet", r);
    let _ = write!(
        out,
        "spec:\n  serviceName: {}-headless\n  replicas: 3\n  selector:\n    matchLabels:\n      \
         app.kubernetes.io/name: {}\n  template:\n",
        r.app, r.app
    );
    pod_template(rng, &mut out, 4, r, false, None);
    out.push_str(
        "  volumeClaimTemplates:\n    - metadata:\n        name: data\n      spec:\n        \
         accessModes: [ \"ReadWriteOnce\" ]\n        resources:\n          requests:\n            \
         storage: \"8Gi\"\n",
    );
    out
}

fn daemonset(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    workload_metadata(rng, &mut out, "apps/v1", "DaemonSet", r);
    let _ = write!(
        out,
        "spec:\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {}\n  template:\n",
        r.app
    );
    pod_template(rng, &mut out, 4, r, false, None);
    out
}

fn job(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {}-migrate\n  namespace: {}\n  \
         annotations:\n    \"helm.sh/hook\": pre-install,pre-upgrade\n    \
         \"helm.sh/hook-delete-policy\": before-hook-creation\n  labels:\n",
        r.app, r.namespace
    );
    labels(rng, &mut out, 4, r);
    out.push_str("spec:\n  backoffLimit: 3\n  template:\n");
    pod_template(rng, &mut out, 4, r, false, Some("OnFailure"));
    out
}

fn cronjob(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    workload_metadata(rng, &mut out, "batch/v1", "CronJob", r);
    let _ = write!(
        out,
        "spec:\n  schedule: \"{} */6 * * *\"\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    \
         spec:\n      template:\n",
        rng.range(0, 59)
    );
    pod_template(rng, &mut out, 8, r, false, Some("OnFailure"));
    out
}

fn service(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n",
        r.app, r.namespace
    );
    labels(rng, &mut out, 4, r);
    let _ = writeln!(
        out,
        "spec:\n  type: {}",
        ["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer"][rng.range(0, 3)]
    );
    if rng.chance(100) {
        out.push_str("  clusterIP: None\n");
    }
    out.push_str("  ports:\n");
    for i in 0..rng.range(1, 3) {
        let _ = write!(
            out,
            "    - name: {}-{i}\n      port: {}\n      targetPort: {}\n      protocol: TCP\n",
            rng.word(),
            [80, 443, 8080, 9090, 5432][rng.range(0, 4)],
            ["http", "8080", "9090"][rng.range(0, 2)]
        );
    }
    let _ = write!(
        out,
        "  selector:\n    app.kubernetes.io/name: {}\n    app.kubernetes.io/instance: {}\n",
        r.app, r.name
    );
    out
}

/// Lines of configuration-file text at indentation 4, about `size` bytes. With
/// `embedded_yaml`, some lines are `---`: an embedded multi-document file, not a separator.
fn config_text(rng: &mut Rng, out: &mut String, size: usize, embedded_yaml: bool) {
    let start = out.len();
    let mut section = 0;
    let _ = writeln!(
        out,
        "    {}_{} = {}",
        rng.word(),
        rng.word(),
        rng.range(0, 99)
    );
    while out.len() - start < size {
        match rng.range(0, 99) {
            0..=3 if embedded_yaml => out.push_str("    ---\n"),
            0..=11 => {
                let _ = writeln!(out, "    # {}", rng.words(6, " "));
            }
            12..=19 => {
                section += 1;
                let _ = writeln!(out, "    [{}.{section}]", rng.word());
            }
            20..=24 => out.push('\n'),
            25..=29 => {
                let _ = writeln!(out, "      - {}: \"{}\"", rng.word(), rng.words(2, "-"));
            }
            _ => {
                let value = match rng.range(0, 4) {
                    0 => rng.range(0, 1_000_000).to_string(),
                    1 => rng.words(3, "/"),
                    2 => "true".to_string(),
                    3 => "{{ .Values.x }}".to_string(),
                    _ => "key: value".to_string(),
                };
                let _ = writeln!(out, "    {}_{} = {value}", rng.word(), rng.word());
            }
        }
    }
}

fn configmap(rng: &mut Rng, r: &Release) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}-config\n  namespace: {}\n  labels:\n",
        r.app, r.namespace
    );
    labels(rng, &mut out, 4, r);
    out.push_str("data:\n");
    for i in 0..rng.range(1, 3) {
        let style = ["|", "|", "|-", "|+", ">"][rng.range(0, 4)];
        let size = if rng.chance(15) {
            32 * 1024
        } else {
            [512, 1024, 2048, 3072][rng.range(0, 3)]
        };
        let _ = writeln!(
            out,
            "  {}-{i}.{}: {style}",
            rng.word(),
            ["conf", "yaml", "ini", "toml"][rng.range(0, 3)]
        );
        let embedded_yaml = rng.chance(250);
        config_text(rng, &mut out, size, embedded_yaml);
        if style == "|+" {
            out.push('\n');
        }
    }
    let _ = write!(
        out,
        "  small-{}: \"{}\"\n  port: \"8080\"\n",
        rng.word(),
        rng.words(2, "-")
    );
    out
}
