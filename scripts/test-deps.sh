#!/usr/bin/env bash
# Installs and starts what the tests talk to: a real Redis on 127.0.0.1:6379
# and the interop peers: libcoap's clients, openssl s_client, and gcc with
# mbedTLS for the mbedTLS DTLS client the tests compile. Idempotent.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v coap-client-notls >/dev/null || need+=(libcoap3-bin)
command -v openssl >/dev/null || need+=(openssl)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/include/mbedtls/ssl.h ] || need+=(libmbedtls-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing ${need[*]} from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/lwm2md-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/lwm2md-redis --logfile /tmp/lwm2md-redis/redis.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
