//go:build tools

// Package tools pins the helm command Sluice's chart tests and kind workflow run: scripts/build-deploy-tools.sh
// builds it from this module, so go.mod and go.sum fix every dependency. helm v3.19 is built against the
// Kubernetes v0.34 libraries, the minor Sluice runs everywhere.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
