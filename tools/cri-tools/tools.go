//go:build tools

// Package tools pins crictl, the CRI command-line client of the kind node image (kind's node contract lists it;
// kubeadm's preflight and people debugging a node use it): scripts/build-node-components.sh builds its cmd/crictl
// from this module, so go.mod and go.sum fix every dependency. cri-tools releases follow Kubernetes minor versions:
// v1.34.0 goes with Kubernetes v1.34.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
