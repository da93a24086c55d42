//go:build tools

// Package tools pins the CoreDNS of the kind node image: kubeadm v1.34 deploys the cluster DNS from the image
// registry.k8s.io/coredns/coredns:v1.12.1 (its constants.CoreDNSVersion), and scripts/build-node-components.sh
// builds that image from this module's coredns main package, so go.mod and go.sum fix every dependency. The
// module's published sources already hold the plugin list generated from its plugin.cfg (core/plugin/zplugin.go
// and core/dnsserver/zdirectives.go), so the build links the default plugin set without `go generate`.
package tools

import (
	_ "github.com/coredns/coredns"
)
