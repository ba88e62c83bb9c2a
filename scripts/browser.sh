#!/bin/sh
# The browser tests drive the system's Chromium (Debian's package) with Playwright;
# install it when missing, with a Japanese font (the Japanese interface's tests and
# screenshots draw real glyphs, not boxes). Playwright's own browser download is not used.
set -eu
if command -v chromium >/dev/null 2>&1 && fc-list :lang=ja 2>/dev/null | grep -q .; then
    exit 0
fi
echo "browser: installing Debian's chromium and a Japanese font" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES="chromium fonts-ipafont-gothic"
# shellcheck disable=SC2086 # two package names
$SUDO apt-get install -y --no-install-recommends $PACKAGES >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null 2>&1
    $SUDO apt-get install -y --no-install-recommends $PACKAGES >/dev/null
}
command -v chromium >/dev/null 2>&1 || {
    echo "browser: chromium could not be installed; the browser tests need it" >&2
    exit 1
}
