//! Every diagnostic code: its stable id, name, severity and one-line summary, in one
//! table. Render, lint, check, policy, convert and the agent's spec checks all report
//! through it, and the codes page of the book and SARIF's rule metadata are generated
//! from it (`tests/docs.rs` fails when the page drifts).

use super::Severity;
use serde::{Serialize, Serializer};
use std::fmt;

/// Where the book's codes page lives, for links from reports (SARIF `helpUri`).
pub const CODES_PAGE_URL: &str =
    "https://github.com/secretstore/secretstore/blob/main/docs/src/reference/codes.md";

/// Which command reports a code, by its hundreds: the codes page has a table for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SS0xx, SS1xx: what render refuses (lint and check report the same).
    Render,
    /// SS2xx: lint's warnings.
    Lint,
    /// SS3xx: check's findings against a live Vault.
    Check,
    /// SS6xx: what convert could not convert.
    Convert,
    /// SS7xx: what add refused, or warns about.
    Add,
}

macro_rules! codes {
    ($(
        $variant:ident = $id:literal, $severity:ident, $summary:literal
            $(, or $alternative:ident $when:literal)?;
    )*) => {
        /// A diagnostic code. The variant's name is the code's stable name (SARIF
        /// `rule.name`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in the order of their ids.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable id, e.g. `SS101`.
            pub const fn id(self) -> &'static str {
                match self { $(Code::$variant => $id,)* }
            }

            /// The stable name, e.g. `UnknownProvider`.
            pub const fn name(self) -> &'static str {
                match self { $(Code::$variant => stringify!($variant),)* }
            }

            /// The severity the code is reported at.
            pub const fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// The one other severity a code may be reported at, and when: only where one
            /// finding means different things to two commands.
            pub const fn alternative(self) -> Option<(Severity, &'static str)> {
                match self {
                    $(Code::$variant => codes!(@alternative $($alternative $when)?),)*
                }
            }

            /// One line on what the code means.
            pub const fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
    (@alternative) => { None };
    (@alternative $alternative:ident $when:literal) => {
        Some((Severity::$alternative, $when))
    };
}

codes! {
    YamlSyntax = "SS001", Error, "The document is not valid YAML/JSON or not UTF-8.";
    InputLimit = "SS002", Error, "A document exceeds a size, nesting or node limit.";
    EmptyInput = "SS003", Error, "The input holds no Kubernetes objects (render only).";
    UnknownProvider = "SS101", Error, "`rafay.dev/secretstore` names a provider other than `vault`.";
    MissingRole = "SS102", Error, "An opted-in pod has no (or an empty) Vault role annotation.";
    UnknownAnnotation = "SS103", Error, "An unknown key under `vault.secretstore.rafay.dev/`.";
    BadFileSecretSuffix = "SS104", Error, "A `filesecret-config-<N>` suffix is not made of a-z, 0-9 and -.";
    BadAnnotationType = "SS105", Error, "A file secret annotation is not a string.";
    LiveBadValue = "SS106", Error, "A live-mode setting (refresh, on-change, onChange, revoke-on-stop, metrics-port) has an invalid value.";
    DuplicateAnnotation = "SS107", Error, "A pod template's annotations hold one key twice.";
    FileSecretBadJson = "SS110", Error, "A file secret configuration is not valid JSON.";
    FileSecretMissingField = "SS111", Error, "A file secret lacks vaultSecretRef, secretFileName or volumeMountPath.";
    FileSecretUnknownField = "SS112", Error, "A file secret configuration has an unknown field.";
    FileSecretBadName = "SS113", Error, "secretFileName is not a plain file name.";
    FileSecretRelativeMount = "SS114", Error, "volumeMountPath is not absolute.";
    UnknownContainer = "SS115", Error, "A file secret names a container the pod does not have.";
    FileSecretPathClash = "SS116", Error, "Two file secrets give one container the same path.";
    MountPathInUse = "SS117", Error, "A file secret's volumeMountPath is already mounted in the container.";
    FileSecretBadFormat = "SS118", Error, "A file secret's format or mode is invalid.";
    FileSecretBadFiles = "SS119", Error, "A file secret's `files` is not a map of file names to keys, {key, mode} or {template, mode}, or is combined with secretFileName, a #key or format.";
    BadReference = "SS120", Error, "A secret reference is not `<path>[#<key>[#<version>]]`.";
    ReferenceNotOptedIn = "SS121", Error, "An env secret reference (`secretstore:vault:` or `secretstore:file:`) in a pod that is not opted in.";
    NoCommand = "SS122", Error, "A container with env references has no command to wrap.";
    BadParams = "SS123", Error, "A file secret's `params` is not a JSON object or comes with a #key/#version, or its `renewBefore` is not a duration.";
    UnknownPodVariable = "SS124", Error, "A param string has a `$(...)` that is not one of the pod variables (POD_NAME, POD_NAMESPACE, POD_IP, POD_SERVICE_ACCOUNT, NODE_NAME).";
    TemplateError = "SS125", Error, "A template has a syntax error, names an unknown alias, filter or test, or uses a construct templates do not have (located at the spot inside the annotation where the YAML allows).";
    BadSources = "SS126", Error, "A file secret's `sources` or `template` is malformed or misplaced: a bad alias or source, both vaultSecretRef and sources, a key file or no template with sources, a top-level template without secretFileName.";
    BadFileReference = "SS127", Error, "A `secretstore:file:<N>/<file name>` env value names no config or file of the pod.";
    CannotEdit = "SS130", Error, "Render cannot insert its wiring into this document.";
    LiveNeedsKubernetes129 = "SS131", Error, "Live mode needs native sidecars (Kubernetes 1.29+), but the target version is older.";
    KeysOnWorkloadMetadata = "SS201", Warning, "Dialect keys on a workload's own metadata have no effect.";
    NoServiceAccount = "SS202", Warning, "An opted-in pod has no serviceAccountName, so it logs in to Vault as `default`.";
    FileSecretUnreadable = "SS203", Warning, "A container cannot read a file secret with its mode, user and fsGroup.";
    IstioInitOrder = "SS204", Warning, "An Istio-injected pod: the init container has no network before the proxy starts.";
    VersionConflict = "SS205", Warning, "One secret path is read at different versions in one pod.";
    RefreshTooShort = "SS206", Warning, "A live-mode refresh interval under 30 seconds loads Vault with little gain.";
    OnChangeWithoutRefresh = "SS207", Warning, "on-change, onChange, revoke-on-stop or metrics-port on a pod without live mode: nothing will change.";
    CertificateWithoutLiveMode = "SS208", Warning, "A long-running workload gets a certificate without live mode: it is issued once and expires while the pod runs.";
    RefreshOddValue = "SS210", Warning, "A refresh value render accepts but reads in a way its author may not mean: a number without a unit, a zero other than `off`, a sign.";
    EnvOnlyConfigUnused = "SS211", Warning, "A file secret with `\"containers\": []` is mounted nowhere and no `secretstore:file:` env value uses it.";
    MountNotFound = "SS301", Error, "No secrets engine is mounted at a prefix of the reference's path (check).", or Warning "in `policy`, which then assumes a KV mount";
    VersionNotSupported = "SS302", Error, "A version is pinned on a mount that has no versions (KV v1, non-KV) (check).";
    SecretNotFound = "SS303", Error, "No secret at the path, or its latest version is deleted or destroyed (check).";
    KeyNotFound = "SS304", Error, "The secret has no such key, or has no key a template reads of it (check).";
    VersionNotFound = "SS305", Error, "The pinned KV v2 version does not exist (check).";
    VersionDeleted = "SS306", Error, "The pinned KV v2 version is soft-deleted (check).";
    VersionDestroyed = "SS307", Error, "The pinned KV v2 version is destroyed (check).";
    EnvFormatKeys = "SS308", Error, "A file secret in format env reads a secret whose keys are not all shell variable names (check).";
    WriteToKvMount = "SS309", Error, "A file secret with params writes to a KV mount, which would overwrite the secret (check).";
    RoleNotFound = "SS310", Error, "The pod's Vault role does not exist on the auth path (check).";
    ServiceAccountNotBound = "SS311", Error, "The role is not bound to the pod's service account (check).";
    NamespaceNotBound = "SS312", Error, "The role is not bound to the pod's namespace (check).";
    JwtSubjectMismatch = "SS313", Error, "A jwt role's bound_subject is not the pod's service-account subject (check).";
    JwtClaimMismatch = "SS314", Error, "A jwt role's bound_claims do not match the pod's service-account token (check).";
    AudienceMismatch = "SS315", Error, "The role's audience binding does not accept the pod's token audience (check).", or Warning "when no audience is configured";
    NotAJwtRole = "SS316", Error, "The role's role_type does not accept a JWT login (check).";
    PolicyDeniesRead = "SS320", Error, "The role's policies do not grant `read` on a path the pod reads (check).";
    PolicyDeniesLeases = "SS321", Error, "A live pod reads a leased secret, but the role's policies do not grant `update` on sys/leases/renew and sys/leases/revoke (check).";
    PolicyDeniesUpdate = "SS322", Error, "The role's policies do not grant `update` on a path the pod writes to issue a secret (check).";
    NamespaceAtDeployTime = "SS330", Warning, "The manifest sets no namespace, so the role's namespace binding cannot be decided (check, policy).", or Error "in `policy`, which must write the namespace into the binding";
    BindingNotCheckable = "SS331", Warning, "Part of the role's binding depends on the cluster (namespace selector, claims) (check).";
    PolicyNotCheckable = "SS332", Warning, "The policies deny the path unless an identity-templated path allows it (check).";
    RoleNameCollision = "SS340", Error, "Two role names differ only in case, and Vault lowercases role and policy names (policy).";
    RoleBoundToEveryone = "SS341", Error, "A role would be bound to a service account or namespace with `*`, a glob matching others (policy).";
    PkiRoleNotFound = "SS342", Error, "The PKI role a file secret issues from does not exist (check).";
    PkiNameNotAllowed = "SS343", Error, "The PKI role does not allow a requested common_name, alt_names or ip_sans (check).";
    PkiTtlOverMax = "SS344", Error, "The requested ttl is longer than the PKI role's max_ttl (check).";
    CannotCheck = "SS390", Error, "A lookup was refused or failed, so an item could not be checked (check).";
    ConvertUnsupportedAnnotation = "SS601", Error, "A source tool's annotation has no equivalent that convert writes (convert).";
    ConvertTemplate = "SS602", Error, "A Vault Agent template uses a construct convert does not translate, or the injector's default template (convert).";
    ConvertReference = "SS603", Error, "A source reference uses a form env references do not express (convert).";
    ConvertPlaceholderElsewhere = "SS604", Error, "An argocd-vault-plugin placeholder is not a pod's whole env value (convert).";
    ConvertConfigurationMismatch = "SS605", Error, "The pod's Vault address, auth path or namespace differs from the configuration (convert).";
    ConvertNoRole = "SS606", Error, "No single Vault role for the converted pod (convert).";
    ConvertNoCommand = "SS607", Error, "A container that gets env references has no command to wrap (convert).";
    ConvertCannotEdit = "SS608", Error, "Convert cannot rewrite the pod in this layout (convert).";
    ConvertBehaviourChange = "SS609", Warning, "Converted, but the pod behaves differently from the source tool in a stated way (convert).";
    ConvertCannotWrite = "SS610", Error, "A converted file is left as it was: a symbolic link, hard links, an owner or group that cannot be kept, or a write error (convert).";
    AddBadArgument = "SS701", Error, "An add argument is not NAME=REF, PATH=REF, KIND/NAME or a role (add).";
    AddNoWorkload = "SS702", Error, "The file has no workload with a pod template, or none that --workload names (add).";
    AddChooseWorkload = "SS703", Error, "The file holds several workloads and --workload chooses none (add).";
    AddChooseContainer = "SS704", Error, "The pod has several app containers (or none) and --container chooses none (add).";
    AddRoleMismatch = "SS705", Error, "--role names another role than the one the opted-in pod uses (add).";
    AddCannotEdit = "SS706", Error, "Add cannot put the reference into this layout (an alias, a non-list env, a flow-style valueFrom) (add).";
    AddReplacedLiteral = "SS707", Warning, "A literal env value was replaced by a reference; the old value is still in the Git history (add).";
}

impl Code {
    pub fn family(self) -> Family {
        match self.id().as_bytes().get(2) {
            Some(b'0' | b'1') => Family::Render,
            Some(b'2') => Family::Lint,
            Some(b'3') => Family::Check,
            Some(b'7') => Family::Add,
            _ => Family::Convert,
        }
    }

    /// The code's row on the book's codes page.
    pub fn help_url(self) -> String {
        format!("{CODES_PAGE_URL}#{}", self.id().to_ascii_lowercase())
    }

    /// The rows of the codes page's table for one family, as the page holds them.
    pub fn markdown_rows(family: Family) -> String {
        let mut rows = String::new();
        for code in Code::ALL.iter().filter(|c| c.family() == family) {
            let severity = match code.alternative() {
                Some((other, when)) => format!("{}; {other} {when}", code.severity()),
                None => code.severity().to_string(),
            };
            rows.push_str(&format!(
                "| <a id=\"{}\"></a>`{}` | {severity} | {} | {} |\n",
                code.id().to_ascii_lowercase(),
                code.id(),
                code.name(),
                code.summary()
            ));
        }
        rows
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A code is written as its id (`"SS101"`) in every report.
impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_well_formed_and_in_order() {
        let ids: Vec<&str> = Code::ALL.iter().map(|c| c.id()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "ids must be unique and listed in order");
        for code in Code::ALL {
            let id = code.id();
            assert!(id.len() == 5 && id.starts_with("SS"), "{id}");
            assert!(id[2..].bytes().all(|b| b.is_ascii_digit()), "{id}");
            assert!(
                code.summary().ends_with('.'),
                "{id}: summary ends with a full stop"
            );
            if let Some((other, _)) = code.alternative() {
                assert_ne!(other, code.severity(), "{id}: the alternative differs");
            }
        }
    }
}
