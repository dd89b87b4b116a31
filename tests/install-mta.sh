#!/usr/bin/env bash
# Installs the real MTAs the bounce-handling tests drive (tests/mta.py): Debian's postfix and
# dovecot-imapd. Idempotent and non-interactive. It never leaves a system-wide Postfix or Dovecot
# daemon running: the tests start private instances from their own config under a temp dir.
#   - postfix is preseeded to "No configuration" (no /etc/postfix/main.cf, nothing to deliver);
#   - while apt-get installs, /usr/sbin/policy-rc.d answers 101 so no package starts a service;
#     a policy-rc.d that was there before (Docker images ship one) is left exactly as it was;
#   - a postfix or dovecot master that is running from the system config afterwards is stopped.
set -euo pipefail

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PACKAGES=(postfix dovecot-imapd)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections

  POLICY=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# tests/install-mta.sh: start no service while packages install\nexit 101\n' \
      | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    created_policy=1
  fi
  cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
  trap cleanup EXIT

  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  cleanup
  trap - EXIT
fi

# Belt and braces: no system-wide daemon may outlive the install (a private test instance, started
# with its own -c config, is not touched: only masters from the default config are stopped).
if [ -f /etc/postfix/main.cf ] && $SUDO postfix status >/dev/null 2>&1; then
  $SUDO postfix stop >/dev/null 2>&1 || true
fi
if [ -f /run/dovecot/master.pid ] && $SUDO kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
  $SUDO doveadm stop >/dev/null 2>&1 || $SUDO kill "$(cat /run/dovecot/master.pid)" || true
fi

command -v postfix >/dev/null && command -v dovecot >/dev/null && command -v doveadm >/dev/null
echo "install-mta: postfix $(postconf -d -h mail_version 2>/dev/null), dovecot $(dovecot --version)"
