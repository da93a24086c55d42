//go:build tools

// Package tools pins the Kubernetes commands Sluice's tests run: scripts/build-kube.sh builds them from this
// module, so go.mod and go.sum fix every dependency. k8s.io/kubernetes requires its staging modules
// (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and resolves them with replace directives that only apply
// inside its own repository; go.mod here replaces each one with the release of the same minor (v0.34.4).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
