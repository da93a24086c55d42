//go:build tools

// Package tools pins the kind command of Sluice's kind workflow (make kind-up, tests/e2e):
// scripts/build-deploy-tools.sh builds it from this module, so go.mod and go.sum fix every dependency.
package tools

import (
	_ "sigs.k8s.io/kind"
)
