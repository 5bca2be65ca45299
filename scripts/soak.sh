#!/usr/bin/env bash
# Soak run of live mode (not part of CI; docs/src/dev/soak.md has the results):
#   - one OpenBao with integrated (raft) storage on disk (so that it can be restarted: a
#     dev server would lose its data; OpenBao has no `file` storage), initialised with one unseal key, an audit log, KV v2 at secret/ and jwt
#     auth at auth/kubernetes;
#   - N live sidecars (`secretstore agent`, each with the spec render writes for a pod,
#     its volumes moved under a work directory), each with metrics on its own port,
#     reading a secret shared by all (changed every 30 s) and one of its own;
#   - on the way, OpenBao is restarted twice (down, then up sealed until unsealed) and
#     sealed twice.
# It reports whether every change reached every pod (and how late), the Vault requests
# per pod per minute (the sidecars' metrics and OpenBao's audit log), and each sidecar's
# RSS and open-descriptor growth from minute 1 to the end (targets: under 1 MiB and 0;
# the baseline is taken at the first moment after minute 1 when OpenBao has been up for
# a refresh interval).
#
# Usage: scripts/soak.sh [--pods N] [--minutes D] [--refresh SECONDS] [--keep]
#   defaults: 50 pods, 10 minutes (at least 3), refresh 10 s. The binary is
#   target/release/secretstore (cargo build --release) or $SECRETSTORE_BIN. Needs bao (.tools/bin, or $BAO), curl,
#   jq, openssl and python3. Exit status: 0 when every target was met, 1 when one was
#   missed, 2 when the run could not be set up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PODS=50
MINUTES=10
REFRESH=10
CHANGE_EVERY=30
KEEP=0
while (($#)); do
    case "$1" in
    --pods) PODS="$2"; shift 2 ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --refresh) REFRESH="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: scripts/soak.sh [--pods N] [--minutes D] [--refresh SECONDS] [--keep]" >&2; exit 2 ;;
    esac
done

die() { echo "error: $*" >&2; exit 2; }
[[ "$PODS" =~ ^[1-9][0-9]*$ && "$MINUTES" =~ ^[1-9][0-9]*$ && "$REFRESH" =~ ^[1-9][0-9]*$ ]] ||
    die "--pods, --minutes and --refresh take positive whole numbers"
((MINUTES >= 3)) || die "--minutes must be at least 3 (growth is measured from after minute 1, between the disturbances)"
BIN="${SECRETSTORE_BIN:-$ROOT/target/release/secretstore}"
[[ -x "$BIN" ]] || die "$BIN is missing: run cargo build --release (or set SECRETSTORE_BIN)"
BAO="${BAO:-$ROOT/.tools/bin/bao}"
[[ -x "$BAO" ]] || die "bao is missing: run scripts/install-test-deps.sh (or set BAO)"
for tool in curl jq openssl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/secretstore-soak.XXXXXX")"
BACKGROUND=()
cleanup() {
    local pid
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in $(cat "$WORK/pids" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    # The server running now: a restart (in a subshell) writes its new pid there.
    if [[ -s "$WORK/bao.pid" ]]; then
        pid="$(cat "$WORK/bao.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    wait 2>/dev/null || true
    if ((KEEP)); then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Free loopback ports: one per sidecar, then OpenBao's API and cluster ports.
mapfile -t PORTS < <(python3 - "$((PODS + 3))" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
)
ADDR="http://127.0.0.1:${PORTS[$((PODS + 1))]}"
export BAO_ADDR="$ADDR"
unset VAULT_ADDR BAO_TOKEN VAULT_TOKEN

mkdir -p "$WORK/bao-data"
cat >"$WORK/bao.hcl" <<EOF
storage "raft" {
  path    = "$WORK/bao-data"
  node_id = "soak"
}
listener "tcp" {
  address         = "127.0.0.1:${PORTS[$((PODS + 1))]}"
  cluster_address = "127.0.0.1:${PORTS[$((PODS + 2))]}"
  tls_disable     = true
}
api_addr     = "$ADDR"
cluster_addr = "http://127.0.0.1:${PORTS[$((PODS + 2))]}"
# OpenBao creates audit devices from its configuration only.
audit "file" "soak" {
  options {
    file_path = "$WORK/audit.log"
  }
}
EOF

now() { date +%s; }
health() { curl -s -o /dev/null -w '%{http_code}' "$ADDR/v1/sys/health" || true; }
wait_health() { # wait until sys/health answers one of the given statuses
    local i
    for i in $(seq 1 300); do
        [[ " $* " == *" $(health) "* ]] && return 0
        sleep 0.2
    done
    die "OpenBao did not answer sys/health with $* (log: $WORK/bao.log)"
}
start_bao() {
    "$BAO" server -config="$WORK/bao.hcl" >>"$WORK/bao.log" 2>&1 &
    echo "$!" >"$WORK/bao.pid"
}
unseal() {
    "$BAO" operator unseal "$UNSEAL_KEY" >/dev/null
    wait_health 200
}
api() { # api METHOD PATH [JSON]: one call as root; fails on an HTTP error
    curl -sS --fail-with-body -H "X-Vault-Token: $ROOT_TOKEN" -X "$1" "$ADDR/v1/$2" \
        ${3:+-H "Content-Type: application/json" -d "$3"} >/dev/null
}

echo "setting up OpenBao (raft storage) at $ADDR in $WORK" >&2
start_bao
wait_health 501
"$BAO" operator init -key-shares=1 -key-threshold=1 -format=json >"$WORK/init.json"
UNSEAL_KEY="$(jq -r '.unseal_keys_b64[0]' "$WORK/init.json")"
ROOT_TOKEN="$(jq -r '.root_token' "$WORK/init.json")"
unseal
api POST sys/mounts/secret '{"type": "kv", "options": {"version": "2"}}'
api POST sys/auth/kubernetes '{"type": "jwt"}'
openssl genrsa -out "$WORK/issuer.key" 2048 2>/dev/null
openssl rsa -in "$WORK/issuer.key" -pubout -out "$WORK/issuer.pub" 2>/dev/null
api POST auth/kubernetes/config "$(jq -n --rawfile k "$WORK/issuer.pub" '{jwt_validation_pubkeys: [$k]}')"
api PUT sys/policies/acl/soak "$(jq -n '{policy: "path \"secret/data/soak/*\" { capabilities = [\"read\"] }"}')"
# Short token TTLs, so that renewals and new logins happen during the run.
api POST auth/kubernetes/role/app \
    '{"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"], "token_policies": ["soak"], "token_ttl": "2m", "token_max_ttl": "6m"}'
# KV writes retry through outages; the first is the only one that may not.
put_secret() { # put_secret PATH JSON: retries until OpenBao takes it (it may be down or sealed)
    until api POST "secret/data/$1" "{\"data\": $2}" 2>/dev/null; do sleep 1; done
}
put_secret soak/shared '{"value": "change-0"}'

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt() { # jwt SUBJECT: an RS256 service-account token valid for a day
    local header payload input t
    t="$(now)"
    header="$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)"
    payload="$(jq -cn --arg sub "$1" --argjson t "$t" \
        '{iss: "soak", sub: $sub, aud: ["vault"], iat: $t, nbf: $t, exp: ($t + 86400)}' | b64url)"
    input="$header.$payload"
    printf '%s.%s' "$input" "$(printf '%s' "$input" | openssl dgst -sha256 -sign "$WORK/issuer.key" | b64url)"
}

# One pod as JSON (so that render answers in JSON): pod N, its metrics port.
manifest() {
    jq -n --arg n "$1" --arg port "$2" --arg refresh "${REFRESH}s" '{
        apiVersion: "v1", kind: "Pod",
        metadata: {name: "soak-\($n)", namespace: "soak", annotations: {
            "rafay.dev/secretstore": "vault",
            "vault.secretstore.rafay.dev/role": "app",
            "vault.secretstore.rafay.dev/refresh": $refresh,
            "vault.secretstore.rafay.dev/metrics-port": $port,
            "vault.secretstore.rafay.dev/filesecret-config-1": ({vaultSecretRef: "secret/soak/shared#value", secretFileName: "shared", volumeMountPath: "/etc/soak"} | tojson),
            "vault.secretstore.rafay.dev/filesecret-config-2": ({vaultSecretRef: "secret/soak/pod-\($n)", secretFileName: "own.json", volumeMountPath: "/etc/soak"} | tojson)}},
        spec: {serviceAccountName: "pod-\($n)", containers: [{name: "app", image: "busybox", command: ["sleep", "infinity"]}]}}'
}

echo "starting $PODS sidecars (refresh ${REFRESH}s)" >&2
: >"$WORK/pids"
for i in $(seq 1 "$PODS"); do
    dir="$WORK/pod-$i"
    mkdir -p "$dir/secrets" "$dir/bin"
    put_secret "soak/pod-$i" "{\"id\": \"pod-$i-$RANDOM$RANDOM\"}"
    jwt "system:serviceaccount:soak:pod-$i" >"$dir/token"
    spec="$(manifest "$i" "${PORTS[$i]}" |
        "$BIN" render --vault-addr "$ADDR" --kube-version 1.30 |
        jq -c --arg root "$dir/secrets" --arg bin "$dir/bin" --arg token "$dir/token" '
            .spec.initContainers[0].env[0].value | fromjson
            | .secrets_root = $root | .bin_root = $bin | .vault.token_file = $token
            | .files[].path |= sub("^/secretstore/secrets"; $root)')"
    SECRETSTORE_SPEC="$spec" "$BIN" agent 2>"$dir/agent.log" &
    echo "$!" >>"$WORK/pids"
    echo "$i $! ${PORTS[$i]}" >>"$WORK/pods"
done
for i in $(seq 1 "$PODS"); do
    for _ in $(seq 1 600); do
        [[ -e "$WORK/pod-$i/secrets/.secretstore-ready" ]] && break
        sleep 0.1
    done
    [[ -e "$WORK/pod-$i/secrets/.secretstore-ready" ]] || die "pod $i never became ready: $(tail -3 "$WORK/pod-$i/agent.log")"
done
START="$(now)"
END=$((START + MINUTES * 60))
echo "all ready at $(date -u +%H:%M:%S); running for $MINUTES minutes" >&2

# The shared secret changes every $CHANGE_EVERY s (a write delayed by an outage is
# followed by a full interval, so that no change is hidden by the next).
(
    k=0
    echo "0 change-0 $START" >"$WORK/changes"
    while true; do
        sleep "$CHANGE_EVERY"
        (($(now) + 25 < END)) || break
        k=$((k + 1))
        put_secret soak/shared "{\"value\": \"change-$k\"}"
        echo "$k change-$k $(now)" >>"$WORK/changes"
    done
) &
BACKGROUND+=("$!")

# OpenBao restarted twice and sealed twice, at 25, 45, 65 and 85 % of the run.
restart_bao() {
    event "OpenBao stopped"
    kill -TERM "$(cat "$WORK/bao.pid")"
    while kill -0 "$(cat "$WORK/bao.pid")" 2>/dev/null; do sleep 0.2; done
    sleep 10
    start_bao
    wait_health 503
    event "OpenBao started again, sealed"
    sleep 5
    unseal
    event "OpenBao unsealed"
}
seal_bao() {
    BAO_TOKEN="$ROOT_TOKEN" "$BAO" operator seal >/dev/null
    event "OpenBao sealed"
    sleep 15
    unseal
    event "OpenBao unsealed"
}
event() { echo "$(now) $*" >>"$WORK/events"; }
(
    for step in "25 restart_bao" "45 seal_bao" "65 restart_bao" "85 seal_bao"; do
        read -r percent action <<<"$step"
        wait_for=$((START + MINUTES * 60 * percent / 100 - $(now)))
        ((wait_for > 0)) && sleep "$wait_for"
        "$action"
    done
) &
BACKGROUND+=("$!")

sample() { # sample LABEL: each sidecar's RSS (KiB) and open descriptors
    local i pid port
    while read -r i pid port; do
        if [[ -d /proc/$pid ]]; then
            echo "$1 $i $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") $(ls "/proc/$pid/fd" | wc -l) $(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "secretstore_vault_requests_total" {print $2}')"
        else
            echo "$1 $i dead"
        fi
    done <"$WORK/pods" >>"$WORK/samples"
}

# Whether OpenBao has been up and unsealed for a refresh interval: the baseline sample is
# taken then, so that no sidecar is between connections (a pooled keep-alive connection
# is one descriptor) or in the middle of its retries.
settled() {
    local last kind
    [[ "$(health)" == 200 ]] || return 1
    [[ -s "$WORK/events" ]] || return 0
    last="$(tail -1 "$WORK/events")"
    kind="${last#* }"
    [[ "$kind" == "OpenBao unsealed" ]] && (($(now) - ${last%% *} > REFRESH + 2))
}

# Poll every pod's copy of the shared secret once a second; record each new content.
declare -A SEEN
BASELINE=
while (($(now) < END)); do
    t="$(now)"
    for i in $(seq 1 "$PODS"); do
        value="$(<"$WORK/pod-$i/secrets/files/app/0/shared")" || value="(unreadable)"
        if [[ "${SEEN[$i]:-}" != "$value" ]]; then
            SEEN[$i]="$value"
            echo "$t $i $value" >>"$WORK/seen"
        fi
    done
    if [[ -z "$BASELINE" ]] && ((t >= START + 60)) && settled; then
        sample baseline
        BASELINE="$t"
    fi
    sleep 1
done
sample end
[[ -n "$BASELINE" ]] || die "no baseline sample: OpenBao was never up for a whole refresh interval after minute 1 (a longer --minutes or a shorter --refresh helps)"
ELAPSED_MIN="$(awk -v s="$START" -v e="$(now)" 'BEGIN {printf "%.2f", (e - s) / 60}')"
MEASURED_MIN="$(awk -v s="$BASELINE" -v e="$(now)" 'BEGIN {printf "%.2f", (e - s) / 60}')"

# The report.
REACHED="$(awk -v pods="$PODS" '
    FNR == NR { key = $3 " " $2; if (!(key in first)) first[key] = $1; next }
    { for (i = 1; i <= pods; i++) if (!(($2 " " i) in first)) missed++ }
    END { print missed ? "no" : "yes" }' "$WORK/seen" "$WORK/changes")"
{
    echo "secretstore soak: $PODS sidecars, $MINUTES min, refresh ${REFRESH}s, shared secret changed every ${CHANGE_EVERY}s"
    echo "binary: $BIN ($("$BIN" --version))"
    echo
    echo "OpenBao events (seconds from start):"
    awk -v s="$START" '{t = $1; $1 = ""; printf "  %4ds%s\n", t - s, $0}' "$WORK/events"
    echo
    echo "Changes of the shared secret: pods that saw each, and the latest arrival"
    awk -v pods="$PODS" -v s="$START" '
        FNR == NR { key = $3 " " $2; if (!(key in first)) first[key] = $1; next }
        {
            seen = 0; worst = 0
            for (i = 1; i <= pods; i++) {
                key = $2 " " i
                if (key in first) { seen++; late = first[key] - $3; if (late > worst) worst = late }
            }
            printf "  %-9s written at %4ds: %d/%d pods, the last after %ds\n", $2, $3 - s, seen, pods, worst
        }' "$WORK/seen" "$WORK/changes"
    echo "every change reached every pod: $REACHED"
    echo
    echo "Baseline sample at $((BASELINE - START))s (after minute 1, with OpenBao up for an interval); the end at $(($(now) - START))s."
    echo
    echo "Vault requests per pod per minute, baseline to the end (each sidecar's secretstore_vault_requests_total):"
    awk -v mins="$MEASURED_MIN" '
        $1 == "baseline" { a[$2] = $5 }
        $1 == "end" && ($2 in a) && $5 != "" && mins > 0 {
            r = ($5 - a[$2]) / mins; sum += r
            if (!n++ || r < lo) lo = r
            if (r > hi) hi = r
        }
        END { if (n) printf "  mean %.1f, min %.1f, max %.1f (%d pods)\n", sum / n, lo, hi, n; else print "  no samples" }
    ' "$WORK/samples"
    echo "  OpenBao's audit log, whole run: $(jq -r 'select(.type == "request") | .request.path' "$WORK/audit.log" |
        awk -v pods="$PODS" -v mins="$ELAPSED_MIN" '
            /^secret\/data\/soak\/|^auth\/kubernetes\/login|^auth\/token\/|^sys\/internal\/ui\/mounts|^sys\/leases\// { n++ }
            END { printf "%d sidecar requests handled, %.1f per pod per minute", n, n / pods / mins }')"
    echo
    echo "Growth from the baseline to the end, per sidecar (targets: RSS under 1024 KiB, descriptors 0):"
    awk '
        $1 == "baseline" { rss[$2] = $3; fd[$2] = $4 }
        $1 == "end" && $3 != "dead" && ($2 in rss) && rss[$2] != "dead" {
            g = $3 - rss[$2]; d = $4 - fd[$2]
            if (!n++ || g > gmax) gmax = g
            if (n == 1 || d > dmax) dmax = d
            if (n == 1 || $3 > rmax) rmax = $3
            if (g < 1024 && d <= 0) good++
            printf "    pod %-3s RSS %6d -> %6d KiB (%+5d), descriptors %3d -> %3d\n", $2, rss[$2], $3, g, fd[$2], $4
        }
        END {
            printf "  RSS at the end: max %d KiB; RSS growth: max %d KiB; descriptor growth: max %d\n", rmax, gmax, dmax
            printf "  sidecars within both targets: %d of %d\n", good, n
        }
    ' "$WORK/samples"
    echo "  sidecars that exited early: $(grep -c ' dead$' "$WORK/samples" || true)"
    echo
    echo "Errors logged by the sidecars (outages): $(cat "$WORK"/pod-*/agent.log | grep -c 'level=error' || true)"
    echo "Secret values in the sidecars' logs: $(
        for i in $(seq 1 "$PODS"); do
            grep -F -c "$(jq -r '.id' "$WORK/pod-$i/secrets/files/app/0/own.json")" "$WORK/pod-$i/agent.log" || true
        done | awk '{ s += $1 } END { print s + 0 }')"
} | tee "$WORK/report"

[[ "$REACHED" == yes ]] &&
    grep -q "sidecars that exited early: 0" "$WORK/report" &&
    grep -q "Secret values in the sidecars' logs: 0" "$WORK/report" &&
    grep -q "sidecars within both targets: $PODS of $PODS" "$WORK/report"
