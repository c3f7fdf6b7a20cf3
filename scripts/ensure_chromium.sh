#!/usr/bin/env bash
# Install Debian's chromium (and a font) for the report browser tests when it is missing
# (make setup). Quick when present; non-interactive; as root, or through sudo when that
# works without a password; otherwise it says what to run and leaves setup going.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
packages=(chromium fonts-dejavu-core)
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "chromium is missing and this user cannot install it: run" \
    "'sudo apt-get install -y chromium fonts-dejavu-core' (the report browser tests need" \
    "/usr/bin/chromium; NORTHSTAR_SKIP_BROWSER=1 skips them)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and there is no apt-get here: install Chromium at" \
    "/usr/bin/chromium, or set NORTHSTAR_SKIP_BROWSER=1 to skip the report browser tests" >&2
  exit 0
fi
echo "installing ${packages[*]} for the report browser tests"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
/usr/bin/chromium --version
