// Package openapi embeds the OpenAPI 3.1 description of runbox's API, served
// at GET /openapi.yaml and checked against the server by the API tests.
package openapi

import _ "embed"

// Spec is openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte
