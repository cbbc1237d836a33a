#!/usr/bin/env bash
# A walkthrough of the HTTP demo with curl: builds and starts it, then shows the rate-limit
# headers, a 429 with Retry-After, two users with separate budgets, X-Forwarded-For from a
# trusted proxy versus a spoofed one, a cost that can never fit, a live reload that
# changes a limit, a streamed answer charged the tokens it used, a policy in shadow mode,
# the operators' routes, plans, a user's and a team's budgets together, an override set
# through the admin routes, and a caller reading its own quota. It stops the server it
# started, whatever happens.
#
# The demo listens on 127.0.0.1 (trusted as a proxy by the policy file) and on ::1 (not).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/ensure-toolchain.sh
command -v curl >/dev/null || { echo "curl-demo.sh needs curl" >&2; exit 1; }
command -v python3 >/dev/null || { echo "curl-demo.sh needs python3 (to mint test tokens)" >&2; exit 1; }

PORT=${PORT:-3000}
V4="http://127.0.0.1:$PORT"
V6="http://[::1]:$PORT"
WORK=$(mktemp -d)
DEMO_PID=""
cleanup() {
  if [ -n "$DEMO_PID" ]; then kill "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The policy file is copied so that the live reload below does not edit the repository.
cp config/demo.yaml "$WORK/policies.yaml"
export DEMO_JWT_SECRET="curl-demo-secret"
export DEMO_ADMIN_TOKEN="curl-demo-admin-token"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { echo "\$ curl $*"; curl -sS -i "$@" | tr -d '\r' | grep -iE '^(HTTP|ratelimit|x-ratelimit|retry-after|content-type)|^\{' ; }
code() { curl -sS -o /dev/null -w '%{http_code}' "$@"; }

step "Building and starting the demo"
cargo build --release --example demo
"${CARGO_TARGET_DIR:-target}/release/examples/demo" --config "$WORK/policies.yaml" \
  --listen "127.0.0.1:$PORT" --listen "[::1]:$PORT" >"$WORK/demo.log" 2>&1 &
DEMO_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$V4/health" && break
  kill -0 "$DEMO_PID" 2>/dev/null || { cat "$WORK/demo.log"; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "$V4/health" || { echo "demo did not start"; cat "$WORK/demo.log"; exit 1; }

# HS256 tokens, minted with the Python standard library: token SUB [PLAN [TEAM]].
token() {
  python3 - "$DEMO_JWT_SECRET" "$@" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
secret, sub, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
body = {"sub": sub, "aud": "limiter-demo", "exp": int(time.time()) + 3600}
body.update(zip(["plan", "team"], extra))
claims = b64(json.dumps(body).encode())
sig = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(sig)}")
PY
}
ALICE=$(token alice)
BOB=$(token bob)

step "1. An allowed request: RateLimit-Policy lists every window, RateLimit the closest to exhaustion"
show "$V6/hello"

step "2. Five per minute on /hello: the sixth gets 429, Retry-After and a problem+json body"
for _ in 1 2 3 4; do printf '%s ' "$(code "$V6/hello")"; done; echo
show "$V6/hello"

step "3. Per-user budgets: alice spends her 10 requests on /me, bob still has his"
for _ in $(seq 1 10); do printf '%s ' "$(code -H "Authorization: Bearer $ALICE" "$V4/me")"; done; echo
echo "alice again: $(code -H "Authorization: Bearer $ALICE" "$V4/me")"
echo "bob:         $(code -H "Authorization: Bearer $BOB" "$V4/me")"
echo "a forged token claiming alice counts by address instead: $(code -H "Authorization: Bearer ${ALICE%.*}.forged" "$V4/me")"

step "4. X-Forwarded-For: believed from the trusted proxy 127.0.0.1, ignored from ::1"
echo "via the proxy, client 203.0.113.7 has its own budget:"
show -H "X-Forwarded-For: 203.0.113.7" "$V4/hello"
echo "from ::1 (exhausted in step 2), a spoofed header changes nothing:"
show -H "X-Forwarded-For: 198.51.100.1" "$V6/hello"

step "5. A cost that can never fit: 6000 units against a window of 5000 (no Retry-After)"
show -X POST -H "Authorization: Bearer $BOB" -H "x-upload-kb: 6000" "$V4/upload"

step "6. Live reload: bob uploads 4000 of 5000 units, the file raises the limit to 8000, the 4000 stay counted"
UPLOAD=(-X POST -H "Authorization: Bearer $BOB" "$V4/upload")
echo "upload 4000: $(code -H "x-upload-kb: 4000" "${UPLOAD[@]}")"
echo "upload 2000: $(code -H "x-upload-kb: 2000" "${UPLOAD[@]}")   (4000 + 2000 > 5000)"
sed -i 's/{ name: hourly, max: 5000, window: 1h, algorithm: fixed_window }/{ name: hourly, max: 8000, window: 1h, algorithm: fixed_window }/' "$WORK/policies.yaml"
# A cost of 0 reports the state without consuming: poll it until the new policy is live.
for _ in $(seq 1 100); do
  curl -sS -i -H "x-upload-kb: 0" "${UPLOAD[@]}" | grep -qi '^ratelimit-policy: "hourly";q=8000' && break
  sleep 0.1
done
show -H "x-upload-kb: 2000" "${UPLOAD[@]}"

step "7. Tokens known after the answer: /chat streams ~120 tokens; the quota (450 tokens a minute) falls by what each answer used"
CHAT=(-H "Authorization: Bearer $ALICE" "$V4/chat")
for answer in 1 2 3 4; do
  echo "\$ curl -N $V4/chat   (answer $answer)"
  curl -sS -N -i "${CHAT[@]}" | tr -d '\r' | grep -iE '^(HTTP|ratelimit|retry-after)|^event: usage|^\{' -A1 | grep -vE '^(--|data: token|x-ratelimit)' || true
done
echo "(each answer reserves 100 tokens before it starts and is charged the 120 it streamed, so r falls by"
echo " about 120 an answer (a GCRA window refills 7.5 tokens a second meanwhile); the fourth finds fewer than"
echo " the 100 it would reserve: 429, and the problem body names the window)"

step "8. Shadow mode: /beta's planned limit (3 a minute) never refuses; the handler is told when it would have"
for i in 1 2 3 4 5; do
  printf 'request %s: ' "$i"; curl -sS -w ' (%{http_code})\n' "$V4/beta"
done

step "9. The operators' routes (/admin): refused without the admin token; with it, alice's /me usage read and reset"
echo "without the token: $(code "$V4/admin/usage/me/user:alice")"
ADMIN=(-H "Authorization: Bearer $DEMO_ADMIN_TOKEN")
echo "\$ curl -H 'Authorization: Bearer ...' $V4/admin/usage/me/user:alice"
curl -sS "${ADMIN[@]}" "$V4/admin/usage/me/user:alice"; echo
echo "reset: $(code -X DELETE "${ADMIN[@]}" "$V4/admin/usage/me/user:alice")"
echo "alice on /me again: $(code -H "Authorization: Bearer $ALICE" "$V4/me")"

step "10. Plans: on /v1/work carol (plan free) gets 3 a minute, dave (plan pro) 6"
CAROL=$(token carol free red); DAVE=$(token dave pro green)
printf 'carol: '; for _ in $(seq 1 4); do printf '%s ' "$(code -H "Authorization: Bearer $CAROL" "$V4/v1/work")"; done; echo
printf 'dave:  '; for _ in $(seq 1 7); do printf '%s ' "$(code -H "Authorization: Bearer $DAVE" "$V4/v1/work")"; done; echo

step "11. Several policies: erin and frank (both pro) share team blue's 8 a minute; the 429 names the policy"
ERIN=$(token erin pro blue); FRANK=$(token frank pro blue)
printf 'erin:  '; for _ in $(seq 1 6); do printf '%s ' "$(code -H "Authorization: Bearer $ERIN" "$V4/v1/work")"; done; echo
printf 'frank: '; for _ in $(seq 1 2); do printf '%s ' "$(code -H "Authorization: Bearer $FRANK" "$V4/v1/work")"; done; echo
echo "frank's third, refused by the team's budget (his own has 4 left):"
curl -sS -H "Authorization: Bearer $FRANK" "$V4/v1/work"; echo

step "12. An override through the admin routes: carol raised 3x for an hour, at once, keeping what she used"
echo "\$ curl -X PUT $V4/admin/overrides/work/user:carol -d '{\"factor\": 3, \"seconds\": 3600}'"
echo "-> $(code -X PUT "${ADMIN[@]}" -d '{"factor": 3, "seconds": 3600}' "$V4/admin/overrides/work/user:carol")"
curl -sS "${ADMIN[@]}" "$V4/admin/overrides"; echo
printf 'carol: '; for _ in $(seq 1 4); do printf '%s ' "$(code -H "Authorization: Bearer $CAROL" "$V4/v1/work")"; done
echo "  (9 a minute now; she had used 3; the team red allows 8)"
echo "cleared: $(code -X DELETE "${ADMIN[@]}" "$V4/admin/overrides/work/user:carol")"

step "13. Self-service: carol reads her own quota for /v1/work with her own token"
curl -sS -H "Authorization: Bearer $CAROL" "$V4/me/quota?path=/v1/work"; echo
echo
echo "Demo log:"; grep -E "reloaded|listening" "$WORK/demo.log" | sed 's/\x1b\[[0-9;]*m//g'
