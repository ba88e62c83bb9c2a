#!/bin/sh
# The browser tests drive the system's Chromium (Debian's package) with Playwright;
# install it when missing. Playwright's own browser download is not used.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "browser: installing Debian's chromium" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null 2>&1
    $SUDO apt-get install -y --no-install-recommends chromium >/dev/null
}
command -v chromium >/dev/null 2>&1 || {
    echo "browser: chromium could not be installed; the browser tests need it" >&2
    exit 1
}
