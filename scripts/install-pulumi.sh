#!/usr/bin/env bash
# Builds the real Pulumi CLI (and the Node.js language host) from the Go module proxy into
# tools/pulumi/bin, because the CLI cannot be downloaded on our build machines. Uses `pulumi`
# from PATH instead when one is already installed. Idempotent: a finished build is reused.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-v3.259.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/tools/pulumi/bin"
build_dir="$root/tools/pulumi/build"
stamp="$bin_dir/.built-$PULUMI_VERSION"

log() { printf '[install-pulumi] %s\n' "$*" >&2; }

if [ -f "$stamp" ] && [ -x "$bin_dir/pulumi" ]; then
  : # built before; only the small plugin scripts below are refreshed
elif [ -z "${STRATA_BUILD_PULUMI:-}" ] && command -v pulumi >/dev/null 2>&1 \
   && [ "$(command -v pulumi)" != "$bin_dir/pulumi" ]; then
  log "using pulumi from PATH: $(command -v pulumi)"
  mkdir -p "$bin_dir"
  ln -sf "$(command -v pulumi)" "$bin_dir/pulumi"
  if command -v pulumi-language-nodejs >/dev/null 2>&1; then
    ln -sf "$(command -v pulumi-language-nodejs)" "$bin_dir/pulumi-language-nodejs"
  fi
else
  command -v go >/dev/null 2>&1 || { log "Go is required to build the Pulumi CLI (https://go.dev/dl)"; exit 1; }
  mkdir -p "$build_dir/cli" "$build_dir/langhost" "$bin_dir"
  started=$(date +%s)

  # pkg/go.mod carries replace directives, so `go install pkg@version` is refused; a wrapper
  # module that requires pkg and sdk and repeats the non-local replaces builds the same binary.
  cat > "$build_dir/cli/go.mod" <<MOD
module strata.local/pulumi-cli

go 1.24

require (
	github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e

replace golang.org/x/text => golang.org/x/text v0.39.0
MOD
  cat > "$build_dir/cli/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
  log "resolving Pulumi $PULUMI_VERSION modules (first run downloads from the Go module proxy)"
  (cd "$build_dir/cli" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$build_dir/cli" && GOFLAGS=-mod=mod go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$PULUMI_VERSION")
  log "building the pulumi CLI (several minutes on a cold Go cache)"
  (cd "$build_dir/cli" && GOFLAGS=-mod=mod go build -trimpath -tags osusergo,grpcnotrace \
     -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
     -o "$bin_dir/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

  # The Node.js language host is untagged; it is needed to run a project directory
  # (`pulumi up` in the repository root).
  cat > "$build_dir/langhost/go.mod" <<MOD
module strata.local/pulumi-language-nodejs

go 1.24

require github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e

replace golang.org/x/text => golang.org/x/text v0.39.0
MOD
  cat > "$build_dir/langhost/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"
GO
  log "building pulumi-language-nodejs"
  if ! (cd "$build_dir/langhost" && GOFLAGS=-mod=mod go get "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3@$PULUMI_VERSION" \
          && GOFLAGS=-mod=mod go build -trimpath -o "$bin_dir/pulumi-language-nodejs" \
             github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3) 2>"$build_dir/langhost.err"; then
    # The module is untagged and the proxy serves no version of it (403 "This module version is
    # not available"). Strata drives programs through the Automation API (`npx strata up`),
    # which needs no language host; a bare `pulumi up` in a project directory does.
    log "pulumi-language-nodejs is not served by the Go module proxy ($(tail -1 "$build_dir/langhost.err" | cut -c1-160)); installing Strata's Node.js language host instead"
    rm -f "$bin_dir/pulumi-language-nodejs"
  fi
  log "built in $(( $(date +%s) - started )) s"
fi

# The dynamic-provider plugin: Pulumi looks for pulumi-resource-pulumi-nodejs beside the CLI.
cat > "$bin_dir/pulumi-resource-pulumi-nodejs" <<'SH'
#!/usr/bin/env bash
# Runs @pulumi/pulumi's dynamic provider host with node. The SDK is resolved from the program's
# directory first (the program's own @pulumi/pulumi), then from the Strata checkout this plugin
# was installed into.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
entry="$(node -e 'process.stdout.write(require.resolve("@pulumi/pulumi/cmd/dynamic-provider/index.js", {paths: [process.cwd(), process.argv[1]]}))' "$here/../../..")"
exec node "$entry" "$@"
SH
chmod +x "$bin_dir/pulumi-resource-pulumi-nodejs"

# The language host: the Go build above when the proxy served it, else our Node.js one.
if [ ! -e "$bin_dir/pulumi-language-nodejs" ] || grep -q "Strata" "$bin_dir/pulumi-language-nodejs" 2>/dev/null; then
  cp "$root/scripts/pulumi-language-nodejs.js" "$bin_dir/pulumi-language-nodejs"
  chmod +x "$bin_dir/pulumi-language-nodejs"
fi
if [ ! -f "$stamp" ]; then
  "$bin_dir/pulumi" version >/dev/null
  touch "$stamp"
  log "pulumi $("$bin_dir/pulumi" version) ready in $bin_dir"
fi
