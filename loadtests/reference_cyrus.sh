#!/bin/sh
# The reference server for side-by-side benchmark runs: Cyrus IMAP 3.6 from Debian's packages with
# JMAP and Xapian search, in a throwaway directory on loopback, user bench / bench-pw.
#
#   sudo sh loadtests/reference_cyrus.sh [DIR] [HTTP_PORT]      # default /tmp/cyr 18008
#   python ../shared/bench/jmapbench.py --url http://127.0.0.1:18008/.well-known/jmap \
#       --user bench --password bench-pw --mbox corpus-10000.mbox --count 10000 --seed 1 --out cyrus.json
#   kill "$(cat /tmp/cyr/run/master.pid)"                      # stop it
#
# Needs root (packages, the cyrus user) and no syslog daemon of its own: when /dev/log is missing,
# a small catcher writes Cyrus' log to DIR/syslog.txt.  Each run starts from an empty DIR.
set -eu
R=${1:-/tmp/cyr}
PORT=${2:-18008}
if ! [ -x /usr/lib/cyrus/bin/httpd ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        cyrus-imapd cyrus-caldav cyrus-admin cyrus-clients sasl2-bin >/dev/null
fi
[ -f "$R/run/master.pid" ] && kill "$(cat "$R/run/master.pid")" 2>/dev/null && sleep 2
rm -rf "$R"
mkdir -p "$R/run/socket" "$R/run/proc" "$R/run/lock" "$R/spool" "$R/search"
mkdir -p "$R/conf/db" "$R/conf/socket" "$R/conf/proc" "$R/conf/log" "$R/conf/msg" "$R/conf/quota"
mkdir -p "$R/conf/user" "$R/conf/sieve" "$R/conf/ptclient"
cat > "$R/imapd.conf" <<EOF
configdirectory: $R/conf
partition-default: $R/spool
defaultpartition: default
admins: cyrus
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $R/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
httpmodules: jmap
httpallowcompress: no
conversations: yes
conversations_db: twoskip
search_engine: xapian
search_index_headers: no
search_batchsize: 8192
defaultsearchtier: t1
t1searchpartition-default: $R/search
sync_log: 1
sync_log_channels: squatter
lmtpsocket: $R/run/socket/lmtp
idlesocket: $R/run/socket/idle
notifysocket: $R/run/socket/notify
proc_path: $R/run/proc
mboxname_lockpath: $R/run/lock
autocreate_quota: 0
hashimapspool: true
unixhierarchysep: yes
altnamespace: yes
syslog_prefix: cyrbench
EOF
# Debian's defaults for the services (prefork=0), the rolling Xapian indexer as a daemon
cat > "$R/cyrus.conf" <<EOF
START {
  recover cmd="ctl_cyrusdb -C $R/imapd.conf -r"
}
SERVICES {
  imap cmd="imapd -C $R/imapd.conf -U 30" listen="127.0.0.1:$((PORT + 135))" prefork=0 maxchild=100
  http cmd="httpd -C $R/imapd.conf -U 30" listen="127.0.0.1:$PORT" prefork=0 maxchild=100
}
EVENTS {
  checkpoint cmd="ctl_cyrusdb -C $R/imapd.conf -c" period=30
}
DAEMON {
  squatter cmd="squatter -C $R/imapd.conf -R"
}
EOF
echo bench-pw | saslpasswd2 -p -c -f "$R/sasldb2" bench
echo cyrus-pw | saslpasswd2 -p -c -f "$R/sasldb2" cyrus
chown -R cyrus:mail "$R"
if ! [ -S /dev/log ]; then
    python3 - "$R/syslog.txt" <<'EOF' &
import os, socket, sys
if os.fork():
    sys.exit(0)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
with open(sys.argv[1], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536) + b"\n")
EOF
    sleep 1
fi
/usr/lib/cyrus/bin/master -C "$R/imapd.conf" -M "$R/cyrus.conf" -p "$R/run/master.pid" -d
sleep 3
printf 'cm user/bench\n' | cyradm --user cyrus --password cyrus-pw --server 127.0.0.1 \
    --port $((PORT + 135)) --auth PLAIN >/dev/null
echo "Cyrus JMAP: http://127.0.0.1:$PORT/.well-known/jmap (bench / bench-pw); it logs to syslog"
