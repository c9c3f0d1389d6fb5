#!/bin/sh
# Try nginx in front of one gateway: `deploy/nginx/try.sh` (gateway on :8000, nginx on :8080).
# nginx runs in the foreground from a scratch directory; Ctrl-C stops both.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
sed -e "s#/var/cache/nginx/ztream#$work/cache#" "$here/ztream.conf" > "$work/ztream.conf"
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/body; proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
    include $work/ztream.conf;
}
CONF
ztream serve ${ZTREAM_CONFIG:+--config "$ZTREAM_CONFIG"} &
gateway=$!
trap 'kill $gateway 2>/dev/null; rm -rf "$work"' EXIT INT TERM
echo "nginx on http://127.0.0.1:8080/ in front of the gateway on :8000"
nginx -p "$work" -c "$work/nginx.conf" -g "daemon off;"
