#!/usr/bin/env bash
# Builds Pulumi's Kubernetes resource provider plugin (`pulumi-resource-kubernetes`, what
# @pulumi/kubernetes asks the CLI for) from the Go module proxy into tools/pulumi/bin, beside the
# CLI install-pulumi.sh builds, because plugins cannot be downloaded on our build machines.
# Idempotent: a finished build is reused.
#
# Why a wrapper module: the proxy serves github.com/pulumi/pulumi-kubernetes/provider/v4 only at
# a pseudo-version; its go.mod replaces sdk/v4 with a sibling directory (so `go install` is
# refused), and its cmd/pulumi-resource-kubernetes main embeds schema-embed.json and
# terraform-mapping-embed.json, files `go generate` writes and the module zip lacks. The zip
# does hold their sources (schema.json, terraform-mapping.json), so this script does what the
# provider's own generate.go does (sets the schema's version, compacts both files) and builds
# a wrapper main that calls the provider's exported
#   provider.Serve(providerName, version string, pulumiSchema, terraformMapping []byte)
# exactly as the upstream main does. The provider's only replace is that local sdk/v4 one, so
# there is no non-local replace to repeat: the wrapper requires sdk/v4 at the version the
# provider's go.mod names ($K8S_SDK_GO_VERSION; the proxy serves it although its list omits it).
# This needs no schema generation (pulumi-gen-kubernetes would need the Kubernetes swagger, which
# the zip lacks) and nothing from GitHub.
#
# Pairing: the plugin reports K8S_SDK_NPM_VERSION, and package.json must pin @pulumi/kubernetes
# to exactly that version, because the SDK asks the CLI for its own version (package.json
# "pulumi": {"version"}) and the CLI would otherwise try to download that other version. 4.24.1
# is the npm release this provider commit belongs to: its go.mod requires sdk/v4 v4.24.0, and its
# schema.json (Kubernetes 1.33 APIs, 480 resource types) names exactly the resource types the
# @pulumi/kubernetes 4.24.1 package registers. A newer npm pin needs a newer provider source.
#
# How the CLI finds it offline: tools/pulumi/bin is put first on PATH (as for `pulumi` itself),
# and a resource plugin that is not installed under ~/.pulumi/plugins is taken from PATH (the
# CLI prints "warning: using pulumi-resource-kubernetes from $PATH"). To install it instead:
#   pulumi plugin install resource kubernetes "$K8S_SDK_NPM_VERSION" --file tools/pulumi/bin/pulumi-resource-kubernetes
set -euo pipefail

K8S_PROVIDER_MODULE="github.com/pulumi/pulumi-kubernetes/provider/v4"
K8S_PROVIDER_PSEUDO="${K8S_PROVIDER_PSEUDO:-v4.0.0-20260115033456-f47bc2d6f199}"
K8S_SDK_GO_VERSION="${K8S_SDK_GO_VERSION:-v4.24.0}"
K8S_SDK_NPM_VERSION="${K8S_SDK_NPM_VERSION:-4.24.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/tools/pulumi/bin"
build_dir="$root/tools/pulumi/build/k8s-plugin"
stamp="$bin_dir/.built-kubernetes-$K8S_SDK_NPM_VERSION-$K8S_PROVIDER_PSEUDO"

log() { printf '[install-k8s-plugin] %s\n' "$*" >&2; }

# A plugin that reports another version than the SDK asks for is never used: refuse the mismatch.
if [ -f "$root/package.json" ] && command -v node >/dev/null 2>&1; then
  pinned="$(node -p 'const p = require(process.argv[1]); ({...p.dependencies, ...p.devDependencies})["@pulumi/kubernetes"] || ""' "$root/package.json")"
  if [ -n "$pinned" ] && [ "$pinned" != "$K8S_SDK_NPM_VERSION" ]; then
    log "package.json pins @pulumi/kubernetes \"$pinned\" but this plugin is built as $K8S_SDK_NPM_VERSION: pin \"$K8S_SDK_NPM_VERSION\" exactly"
    exit 1
  fi
fi

if [ -f "$stamp" ] && [ -x "$bin_dir/pulumi-resource-kubernetes" ]; then
  exit 0
fi
command -v go >/dev/null 2>&1 || { log "Go is required to build pulumi-resource-kubernetes"; exit 1; }
mkdir -p "$build_dir" "$bin_dir"
started=$(date +%s)
export GOFLAGS=-mod=mod

cat > "$build_dir/go.mod" <<MOD
module strata.local/pulumi-resource-kubernetes

go 1.24

require (
	$K8S_PROVIDER_MODULE $K8S_PROVIDER_PSEUDO
	github.com/pulumi/pulumi-kubernetes/sdk/v4 $K8S_SDK_GO_VERSION
)
MOD
log "resolving $K8S_PROVIDER_MODULE@$K8S_PROVIDER_PSEUDO (first run downloads from the Go module proxy)"
(cd "$build_dir" && go mod download -json "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_PSEUDO" > download.json)
src="$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).Dir' "$build_dir/download.json")"
[ -f "$src/cmd/pulumi-resource-kubernetes/schema.json" ] || { log "the module has no cmd/pulumi-resource-kubernetes/schema.json: cannot build"; exit 1; }

# What the provider's generate.go does: the schema with its version set, and the mapping compacted.
node -e '
  const fs = require("fs");
  const [src, out, version] = process.argv.slice(1);
  const schema = JSON.parse(fs.readFileSync(src + "/schema.json", "utf8"));
  schema.version = version;
  fs.writeFileSync(out + "/schema-embed.json", JSON.stringify(schema));
  fs.writeFileSync(out + "/terraform-mapping-embed.json", JSON.stringify(JSON.parse(fs.readFileSync(src + "/terraform-mapping.json", "utf8"))));
' "$src/cmd/pulumi-resource-kubernetes" "$build_dir" "$K8S_SDK_NPM_VERSION"

cat > "$build_dir/main.go" <<'GO'
// The provider's own main, minus `go generate`: serve the Kubernetes provider with its schema.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
GO
log "resolving dependencies"
(cd "$build_dir" && go mod tidy >/dev/null 2>"$build_dir/tidy.err") || { log "go mod tidy failed: $(tail -3 "$build_dir/tidy.err")"; exit 1; }
log "building pulumi-resource-kubernetes $K8S_SDK_NPM_VERSION (several minutes on a cold Go cache)"
(cd "$build_dir" && nice -n 10 go build -trimpath -buildvcs=false \
   -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_SDK_NPM_VERSION" \
   -o "$bin_dir/pulumi-resource-kubernetes" .)
rm -f "$bin_dir"/.built-kubernetes-*
touch "$stamp"
log "built in $(( $(date +%s) - started )) s: $bin_dir/pulumi-resource-kubernetes"
