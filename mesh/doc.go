// Package mesh is Sluice's edge service mesh: a service registry, a sidecar
// agent that intercepts an application's traffic, detects its protocol and
// forwards it to a same-node instance or through a tunnel to a remote
// node's agent, and a mesh control plane replicated by package cluster.
//
// Built: the service-discovery backends (etcd, ZooKeeper, Consul, Eureka,
// Nacos, DNS) under mesh/discovery, one package each, so that an embedder
// pays only for what it imports; their instances feed the Proxy's pools.
//
// Scope (not built yet): the Service, Instance and Node model with
// EdgeMesh-style routing rules, the MeshController object, and agents that
// keep the last registry snapshot on disk.
//
// The root package never imports this one.
package mesh
