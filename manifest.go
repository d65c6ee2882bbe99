// Package shipbot holds what the binary embeds from the repository root: the
// GitHub App manifest (app.yml) that the setup page registers.
package shipbot

import _ "embed"

// AppManifest is app.yml.
//
//go:embed app.yml
var AppManifest []byte
