#!/usr/bin/env bash
# Regenerate loopwright.cedarschema.json from policies/loopwright.cedarschema.
#
# Verified Permissions (CfnPolicyStore.schema.cedarJson) takes the JSON schema format only, and
# cedarpy 4.12 cannot convert the human-readable format; Cedar's own converter
# (@cedar-policy/cedar-wasm, schemaToJsonWithResolvedTypes) does. Needs node and the npm
# registry once. The test suite fails while loopwright.cedarschema.sha256 does not match the
# schema's text, naming this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
npm install --silent --no-audit --no-fund --prefix "$work" @cedar-policy/cedar-wasm@4.13.0 >/dev/null
node -e '
const cedar = require(process.argv[1] + "/node_modules/@cedar-policy/cedar-wasm/nodejs/cedar_wasm.js");
const fs = require("fs");
const answer = cedar.schemaToJsonWithResolvedTypes(fs.readFileSync(process.argv[2], "utf8"));
if (answer.type !== "success") { console.error(JSON.stringify(answer, null, 2)); process.exit(1); }
fs.writeFileSync(process.argv[3], JSON.stringify(answer.json, null, 2) + "\n");
' "$work" "$root/policies/loopwright.cedarschema" "$here/loopwright.cedarschema.json"
sha256sum "$root/policies/loopwright.cedarschema" | cut -d' ' -f1 > "$here/loopwright.cedarschema.sha256"
echo "wrote $here/loopwright.cedarschema.json"
