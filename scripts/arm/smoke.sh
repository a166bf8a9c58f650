#!/usr/bin/env bash
# Smoke-tests a packaged edgestar tarball under qemu-user on the build machine: each native
# addon is exercised by a real command, not only loaded.
#   zstd-napi       convert --format zstd-chunked, inspect and verify (own blob and fixture)
#   better-sqlite3  pull from a private docker-registry on loopback, images, cache status, cat
# then the agent: it starts, answers `ps` on its socket and stops on SIGTERM; and FUSE: the
# target Node serves the pulled image over /dev/fuse (the mount(8) it runs is the host's)
# and a file is read back through the mount.
# Usage: scripts/arm/smoke.sh TARBALL QEMU_NAME VERSION
# Uses its own temp dir and a free loopback port; stops what it started on exit.
set -euo pipefail
tarball=$1
qemu_name=$2
version=$3

say() { echo "build-arm: smoke: $*" >&2; }
fail() {
  echo "build-arm: smoke: FAILED: $1" >&2
  [ -n "${2:-}" ] && echo "hint: $2" >&2
  exit 1
}

tmp=$(mktemp -d /tmp/edgestar-arm-smoke.XXXXXX)
registry_pid=
agent_pid=
edgestar=
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
  if [ -n "$edgestar" ] && mountpoint -q "$tmp/mnt" 2>/dev/null; then
    "$edgestar" umount "$tmp/mnt" >/dev/null 2>&1 || umount -l "$tmp/mnt" || true
  fi
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

grep -qx enabled "/proc/sys/fs/binfmt_misc/$qemu_name" 2>/dev/null ||
  fail "$qemu_name is not enabled in binfmt_misc" "run scripts/arm/apt-deps.sh, or update-binfmts --enable $qemu_name"

tar -xzf "$tarball" -C "$tmp"
root=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'edgestar-*')
edgestar="$root/bin/edgestar"
state="$tmp/state"
# json FIELD: reads one field (a dotted path) of the JSON object on stdin, with the host Node.
json() { node -e "let t='';process.stdin.on('data',d=>t+=d).on('end',()=>{let v=JSON.parse(t);for(const k of process.argv[1].split('.'))v=v?.[k];console.log(v)})" "$1"; }
# run LABEL CMD...: runs a step, prints its time, shows its output if it fails.
run() {
  local label=$1 begun=$SECONDS
  shift
  if ! "$@" >"$tmp/out" 2>"$tmp/err"; then
    cat "$tmp/out" "$tmp/err" >&2
    fail "$label" "the output above is the failing command's"
  fi
  say "ok  $label ($((SECONDS - begun))s)"
}

# The CLI starts on the target Node, and it is the target's (not the host's) Node.
run "edgestar --version" "$edgestar" --version
[ "$(cat "$tmp/out")" = "$version" ] || fail "--version printed '$(cat "$tmp/out")', expected $version"
run "bundled node reports its arch" "$root/node/bin/node" -p 'process.arch + " " + process.version'
say "    $(cat "$tmp/out")"

# zstd-napi: a zstd:chunked blob made, inspected and verified on the target.
mkdir -p "$tmp/rootfs/app" "$tmp/rootfs/bin"
echo "hello from edgestar on $(basename "$root")" >"$tmp/rootfs/app/hello.txt"
head -c 3000000 /dev/urandom >"$tmp/rootfs/app/blob.bin"
seq 1 200000 >"$tmp/rootfs/app/numbers.txt"
ln -s ../app/hello.txt "$tmp/rootfs/bin/hello"
run "convert --format zstd-chunked" "$edgestar" convert "$tmp/rootfs" "$tmp/layer.tar.zst" \
  --format zstd-chunked --json
toc=$(json tocDigest <"$tmp/out")
diff_id=$(json diffID <"$tmp/out")
run "inspect (own zstd:chunked blob)" "$edgestar" inspect "$tmp/layer.tar.zst" --json
[ "$(json tocDigest <"$tmp/out")" = "$toc" ] || fail "inspect reports another TOC digest than convert"
run "verify (own zstd:chunked blob)" "$edgestar" verify "$tmp/layer.tar.zst" --toc-digest "$toc" \
  --diff-id "$diff_id" --json

# The reference fixtures (made by the Go eStargz implementation), when this machine has them.
fixtures=${EDGESTAR_FIXTURES_DIR:-$(dirname "$0")/../../../shared/fixtures/estargz}
[ -d "$fixtures" ] || fixtures=/work/shared/fixtures/estargz
if [ -f "$fixtures/large.zstdchunked.json" ]; then
  for fixture in large.zstdchunked large.estargz; do
    sidecar="$fixtures/$fixture.json"
    blob="$fixtures/$(json blob <"$sidecar")"
    run "inspect fixture $fixture" "$edgestar" inspect "$blob" --json
    [ "$(json tocDigest <"$tmp/out")" = "$(json tocDigest <"$sidecar")" ] ||
      fail "inspect of $fixture reports another TOC digest than its sidecar"
    run "verify fixture $fixture" "$edgestar" verify "$blob" --json \
      --toc-digest "$(json tocDigest <"$sidecar")" --diff-id "$(json diffID <"$sidecar")"
  done
else
  say "--  reference fixtures not found (set EDGESTAR_FIXTURES_DIR); own blob checked only"
fi

# better-sqlite3: a private registry on a free loopback port, an image pushed and pulled.
command -v docker-registry >/dev/null || fail "docker-registry is missing" "apt-get install docker-registry"
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cat >"$tmp/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $tmp/registry}}
http: {addr: "127.0.0.1:$port"}
EOF
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
registry_pid=$!
ready=no
for _ in $(seq 1 50); do
  if node -e "fetch('http://127.0.0.1:$port/v2/').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"; then
    ready=yes && break
  fi
  sleep 0.2
done
[ "$ready" = yes ] || {
  cat "$tmp/registry.log" >&2
  fail "docker-registry did not answer on 127.0.0.1:$port" "its log is above"
}
ref="127.0.0.1:$port/smoke:1"
run "convert --push $ref" "$edgestar" convert "$tmp/rootfs" --push "$ref" --cmd '/bin/hello' --json
run "pull $ref (SQLite store)" "$edgestar" pull "$ref" --state-dir "$state" --json
run "images" "$edgestar" images --state-dir "$state" --json
grep -q smoke "$tmp/out" || fail "images does not list the pulled image"
run "cache status" "$edgestar" cache status --state-dir "$state" --json
[ "$(json presentChunks <"$tmp/out")" -gt 0 ] || fail "cache status shows no chunks after the pull"
run "cat /app/hello.txt" "$edgestar" cat "$ref" /app/hello.txt --state-dir "$state"
cmp -s "$tmp/out" "$tmp/rootfs/app/hello.txt" || fail "cat returned other bytes than the file"

# The agent boots on the target (state lock, store, API socket) and answers a client.
echo '{}' >"$tmp/agent.json"
"$edgestar" agent --config "$tmp/agent.json" --state-dir "$tmp/agent-state" \
  --socket "$tmp/agent.sock" --json >"$tmp/agent.out" 2>"$tmp/agent.log" &
agent_pid=$!
begun=$SECONDS
until grep -q '"ok":true' "$tmp/agent.out" 2>/dev/null; do
  kill -0 "$agent_pid" 2>/dev/null || {
    cat "$tmp/agent.out" "$tmp/agent.log" >&2
    fail "the agent exited before it was ready" "its output is above"
  }
  [ $((SECONDS - begun)) -lt 120 ] || {
    cat "$tmp/agent.log" >&2
    fail "the agent was not ready after 120 s" "its log is above"
  }
  sleep 1
done
say "ok  agent ready on its socket ($((SECONDS - begun))s, runtime $(json runtime <"$tmp/agent.out"))"
run "ps through the agent's socket" "$edgestar" ps --socket "$tmp/agent.sock" --json
[ "$(json ok <"$tmp/out")" = true ] || fail "ps did not answer ok"
kill -TERM "$agent_pid"
wait "$agent_pid" || {
  cat "$tmp/agent.log" >&2
  fail "the agent exited non-zero on SIGTERM" "its log is above"
}
agent_pid=

# FUSE: the target Node speaks the kernel protocol over /dev/fuse, under qemu-user.
if [ ! -c /dev/fuse ]; then
  say "--  /dev/fuse missing: FUSE mount skipped"
  exit 0
fi
mkdir -p "$tmp/mnt"
run "mount --detach" "$edgestar" mount "$ref" "$tmp/mnt" --state-dir "$state" --detach \
  --log-file "$tmp/mount.log"
# The mount source is edgestar:PID of the serving process; under binfmt_misc its executable
# is qemu's, so a host Node serving the mount would show here.
source=$(awk -v dir="$tmp/mnt" '$5 == dir { for (i = 7; $i != "-"; i++); print $(i + 2) }' \
  /proc/self/mountinfo)
serving_pid=${source#edgestar:}
serving_exe=$(readlink -f "/proc/$serving_pid/exe" 2>/dev/null || true)
case "$serving_exe" in
  *qemu*) say "ok  the FUSE server (pid $serving_pid) runs under $serving_exe" ;;
  *) fail "the mount at $tmp/mnt is not served by the emulated Node (source '$source', exe '$serving_exe')" ;;
esac
run "read files through FUSE" cmp "$tmp/mnt/app/blob.bin" "$tmp/rootfs/app/blob.bin"
cmp -s "$tmp/mnt/bin/hello" "$tmp/rootfs/app/hello.txt" || fail "the symlink in the mount reads wrong"
run "umount" "$edgestar" umount "$tmp/mnt"
say "all checks passed"
