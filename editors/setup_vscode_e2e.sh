#!/usr/bin/env bash
# Install what the VS Code end-to-end test needs (tests/test_vscode_e2e.py, vscode-extension/test/e2e.mjs):
#   Debian packages   chromium (the browser playwright drives), ripgrep, and the headers code-server builds against
#   code-server       VS Code in a browser, from npm, into $INFILL_E2E_HOME (outside the checkout, so a fresh clone
#                     on the same machine finds it warm)
#   the extension's   typescript, @vscode/vsce, playwright-core, vscode-languageclient (`npm ci` in vscode-extension/)
#   npm packages
# Idempotent: a second run checks and returns in a few seconds. Runs as root (apt-get); offline apart from the
# Debian, npm and PyPI registries: nothing is downloaded from GitHub (ripgrep comes from Debian, see below).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
E2E_HOME=${INFILL_E2E_HOME:-$HOME/.cache/infill/vscode-e2e}
CODE_SERVER_VERSION=4.100.3  # VS Code 1.100.3; the last code-server whose engines allow Node 20
RIPGREP_PREBUILT=1.15.11     # the @vscode/ripgrep version code-server 4.100.3 pulls in
APT_PACKAGES=(build-essential pkg-config python3 libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev ripgrep chromium curl)

say() { printf '[setup_vscode_e2e] %s\n' "$*"; }
started=$SECONDS

# -- Debian packages --------------------------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- code-server ------------------------------------------------------------------------------------------------
CS_DIR=$E2E_HOME/code-server-$CODE_SERVER_VERSION
if [[ ! -x $CS_DIR/node_modules/.bin/code-server ]]; then
  say "npm install code-server@$CODE_SERVER_VERSION into $CS_DIR"
  mkdir -p "$CS_DIR"
  # @vscode/ripgrep's postinstall downloads rg from GitHub unless its cache (under the temp dir) has the tarball:
  # put Debian's rg there, in a temp dir of our own.
  tmp=$E2E_HOME/tmp
  cache=$tmp/vscode-ripgrep-cache-$RIPGREP_PREBUILT
  mkdir -p "$cache"
  staged=$(mktemp -d)
  cp "$(command -v rg)" "$staged/rg"
  tar czf "$cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$staged" rg
  rm -rf "$staged"
  (
    cd "$CS_DIR"
    [[ -f package.json ]] || npm init -y >/dev/null
    # unsafe_perm: its postinstall refuses to run as root otherwise; nodedir: node headers from Debian's nodejs
    # (or /usr/include/node) instead of a download; yes: node-pty's build runs `npx node-gyp`.
    TMPDIR=$tmp npm_config_yes=true npm_config_unsafe_perm=true npm_config_nodedir=/usr \
      npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION"
  )
  [[ -x $CS_DIR/node_modules/.bin/code-server ]] || { say "code-server did not install"; exit 1; }
fi

# -- the extension's npm packages -------------------------------------------------------------------------------
EXT=$ROOT/vscode-extension
stamp=$EXT/node_modules/.package-lock.json
if [[ ! -f $stamp || $EXT/package-lock.json -nt $stamp ]]; then
  say "npm ci in $EXT"
  (cd "$EXT" && npm ci --no-audit --no-fund --loglevel=error)
fi

say "ready in $((SECONDS - started)) s: code-server $CS_DIR, chromium $(command -v chromium)"
