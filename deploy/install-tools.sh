#!/usr/bin/env bash
# Installs the deployment tools the end-to-end tests (tests/live/) drive:
#   - nginx, from Debian's packages, when no `nginx` binary is found (and
#     Node.js with npm, the same way, when there is no `npm`);
#   - newman (the Postman collection runner), pinned in postman/package.json,
#     into the project-local folder postman/node_modules.
#
# Idempotent: a second run finds both tools and changes nothing.
# It never starts the system nginx service: the tests run their own nginx in
# the foreground on free ports, and a developer's port 80 stays theirs.
#
# Usage:  bash deploy/install-tools.sh          (as root, or with sudo for apt-get)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
postman_dir="$root/postman"

# ---------------------------------------------------------------- nginx ----
find_nginx() {
    # /usr/sbin is not on every user's PATH, but that is where Debian puts it.
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
apt_updated=no

# Installs Debian packages without starting any service they bring.
apt_install() {
    # Debian's maintainer scripts start a service right after installing it,
    # unless /usr/sbin/policy-rc.d exits 101 ("action forbidden"). Put one in
    # place for the duration of the install if the machine has none, and take
    # it away afterwards, so that only this install is affected.
    local policy=/usr/sbin/policy-rc.d made_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from stores-api deploy/install-tools.sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        made_policy=yes
    fi
    # The package lists may be missing or stale on a fresh machine.
    local status=0
    if [ "$apt_updated" = no ]; then
        $sudo apt-get update -qq || status=$?
        apt_updated=yes
    fi
    if [ "$status" -eq 0 ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
            || status=$?
    fi
    if [ "$made_policy" = yes ]; then $sudo rm -f "$policy"; fi
    return "$status"
}

if [ -n "$(find_nginx)" ]; then
    echo "nginx: found $(find_nginx) ($("$(find_nginx)" -v 2>&1 | sed 's/^nginx version: //'))"
else
    echo "nginx: not found, installing Debian's package"
    apt_install nginx
    # A machine where the service did start anyway (an init system that ignores
    # policy-rc.d) gets it stopped again; failure here just means it was not running.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $sudo systemctl stop nginx.service 2>/dev/null || true
    fi
    if [ -z "$(find_nginx)" ]; then
        echo "nginx: apt-get install finished but no nginx binary was found" >&2
        exit 1
    fi
    echo "nginx: installed $(find_nginx)"
fi

# --------------------------------------------------------------- newman ----
# newman 6 needs Node.js 16 or later; Debian 12's nodejs is 18.
if ! command -v npm >/dev/null 2>&1; then
    echo "newman: npm not found, installing Debian's nodejs and npm"
    apt_install nodejs npm
fi

# The version package.json pins, read with node so there is no second copy of it here.
wanted="$(node -p "require('$postman_dir/package.json').devDependencies.newman")"
newman="$postman_dir/node_modules/.bin/newman"
have=""
if [ -x "$newman" ]; then
    have="$("$newman" --version 2>/dev/null || true)"
fi

if [ "$have" = "$wanted" ]; then
    echo "newman: found $newman ($have)"
else
    echo "newman: installing $wanted into $postman_dir/node_modules"
    # `npm ci` installs exactly what package-lock.json records; without a lock
    # file (someone deleted it) fall back to `npm install`, which writes one.
    if [ -f "$postman_dir/package-lock.json" ]; then
        npm ci --prefix "$postman_dir" --no-audit --no-fund --loglevel=error
    else
        npm install --prefix "$postman_dir" --no-audit --no-fund --loglevel=error
    fi
    have="$("$newman" --version)"
    if [ "$have" != "$wanted" ]; then
        echo "newman: expected $wanted after install, found $have" >&2
        exit 1
    fi
    echo "newman: installed $have"
fi
