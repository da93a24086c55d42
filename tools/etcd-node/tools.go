//go:build tools

// Package tools pins the etcd of the kind node image: kubeadm v1.34 runs etcd from the image
// registry.k8s.io/etcd:3.6.5-0 (its constants.DefaultEtcdVersion), and scripts/build-node-components.sh builds
// that image from this module's etcd and etcdctl (the modules' own main packages), so go.mod and go.sum fix every
// dependency. It is a separate module from tools/etcd, which pins the etcd of the test control plane: the two
// versions move independently (the node's follows kubeadm, the tests' follows etcd's patch releases).
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
