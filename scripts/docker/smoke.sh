#!/usr/bin/env bash
# Checks by hand that the engine scripts/docker-setup.sh brings up does what
# the end-to-end tests need, with the real `docker` CLI and the test image:
# run, run -d, exec -i, attach, logs -f, stats, cp, save | load, build.
# Cleans up what it creates. Not part of the test suite; run it after
# scripts/docker-setup.sh:   bash scripts/docker/smoke.sh
set -uo pipefail

IMAGE=${OUTPOST_TEST_IMAGE:-outpost-test/busybox:latest}
export DOCKER_HOST=unix:///var/run/docker.sock DOCKER_BUILDKIT=0
tag=op-smoke-$$
work=$(mktemp -d /tmp/$tag.XXXXXX)
ok=0
bad=0

cleanup() {
  docker ps -aq --filter "label=$tag" | xargs -r docker rm -f >/dev/null 2>&1
  docker rmi -f "outpost-test/$tag:saved" "outpost-test/$tag:built" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" = "$3" ]; then
    echo "ok    $1"
    ok=$((ok + 1))
  else
    echo "FAIL  $1: expected [$2], got [$3]"
    bad=$((bad + 1))
  fi
}
# Commands that could hang are killed outright: the CLI turns a SIGTERM into
# a signal for the container (sig-proxy) or ignores the first two.
t() { timeout -s KILL "$@"; }

out=$(t 30 docker run --rm --label "$tag" "$IMAGE" echo hi 2>"$work/err"; echo "rc=$?")
check "run --rm echo hi" "hi rc=0 stderr=" "$(echo $out) stderr=$(cat "$work/err")"

check "run: exit code" "7" "$(t 30 docker run --rm --label "$tag" "$IMAGE" sh -c 'exit 7' >/dev/null 2>&1; echo $?)"

check "run: default network is loopback only" "lo" "$(t 30 docker run --rm --label "$tag" "$IMAGE" ls /sys/class/net 2>&1)"

check "run -i: stdin" "piped" "$(echo piped | t 30 docker run --rm -i --label "$tag" "$IMAGE" cat 2>&1)"

c=$(t 30 docker run -d --label "$tag" "$IMAGE" sh -c \
  'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done' 2>&1)
check "run -d" "running" "$(docker inspect -f '{{.State.Status}}' "$c" 2>&1)"

check "exec -i" "via-exec" "$(echo via-exec | t 30 docker exec -i "$c" cat 2>&1)"

check "exec: exit code" "3" "$(t 30 docker exec "$c" sh -c 'exit 3' >/dev/null 2>&1; echo $?)"

before=$(docker logs "$c" 2>/dev/null | wc -l)
t 2 docker logs -f "$c" >"$work/follow" 2>&1
after=$(wc -l <"$work/follow")
check "logs -f follows new lines" "yes" "$([ "$after" -ge $((before + 5)) ] && echo yes || echo "no ($before then $after)")"

stats=$(t 30 docker stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.PIDs}}' "$c" 2>&1)
check "stats --no-stream" "yes" "$(echo "$stats" | grep -qE '^[^ ]+ [0-9.]+[KMG]i?B / ' && echo yes || echo "no: $stats")"

echo payload >"$work/in"
docker cp "$work/in" "$c:/tmp/in" >/dev/null 2>&1 && docker cp "$c:/tmp/in" "$work/out" >/dev/null 2>&1
check "cp in and out" "payload payload" "$(docker exec "$c" cat /tmp/in 2>&1) $(cat "$work/out" 2>&1)"

check "top" "yes" "$(docker top "$c" 2>&1 | grep -q 'while true' && echo yes || echo no)"

check "rm -f running" "$c" "$(docker rm -f "$c" 2>&1)"

a=$(docker create -i --label "$tag" "$IMAGE" \
  sh -c 'while read l; do echo got:$l; done; echo eof; exit 4' 2>&1)
docker start "$a" >/dev/null 2>&1
sleep 0.2
out=$(printf 'x\ny\n' | t 20 docker attach "$a" 2>&1; echo "rc=$?")
check "attach: stdin, stdout, exit code" "got:x got:y eof rc=4" "$(echo $out)"

a=$(docker create -i --label "$tag" "$IMAGE" cat 2>&1)
check "start -ai" "via-start" "$(echo via-start | t 20 docker start -ai "$a" 2>&1)"

docker tag "$IMAGE" "outpost-test/$tag:saved"
docker save "outpost-test/$tag:saved" >"$work/saved.tar" 2>/dev/null &&
  docker rmi "outpost-test/$tag:saved" >/dev/null 2>&1
out=$(docker load <"$work/saved.tar" 2>&1)
check "save, load (file)" "Loaded image: outpost-test/$tag:saved" "$out"
out=$(docker save "outpost-test/$tag:saved" 2>/dev/null | docker load 2>&1)
check "save | load" "Loaded image: outpost-test/$tag:saved" "$out"

mkdir "$work/ctx"
echo hello >"$work/ctx/hello.txt"
printf 'FROM %s\nCOPY hello.txt /hello.txt\nRUN echo built >/built.txt\nCMD ["cat", "/hello.txt", "/built.txt"]\n' \
  "$IMAGE" >"$work/ctx/Dockerfile"
if t 120 docker build -q --label "$tag" -t "outpost-test/$tag:built" "$work/ctx" >"$work/build" 2>&1; then
  out=$(t 30 docker run --rm --label "$tag" "outpost-test/$tag:built" 2>&1)
else
  out="build failed: $(tail -n 5 "$work/build")"
fi
check "build (DOCKER_BUILDKIT=0) and run" "hello built" "$(echo $out)"

echo "docker smoke: $ok ok, $bad failed"
[ "$bad" = 0 ]
