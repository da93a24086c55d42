//go:build tools

// Package tools pins the storage provisioner of the kind node image (the default StorageClass's
// rancher.io/local-path): scripts/build-node-components.sh builds its image from this module's
// local-path-provisioner main package, so go.mod and go.sum fix every dependency. v0.0.30 is the version kind
// v0.30.0's own local-path-provisioner image is built from (images/local-path-provisioner/Makefile). It is built
// with the Kubernetes client libraries of tools/kube (v0.34.4, where its release has v0.30.0), which compile it
// unchanged, so their packages are compiled once (tests/unit/test_go_tools.py).
package tools

import (
	_ "github.com/rancher/local-path-provisioner"
)
