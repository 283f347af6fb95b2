// Package discovery is the common part of Sluice's service-registry
// objects: the Registry that caches a backend's instances for the Proxy's
// pools, and the spec pieces the backends share.
//
// The model: a registry object is a sluice.Controller that also implements
// pipeline.ServiceRegistry. A Proxy pool with serviceRegistry and
// serviceName watches the service through the gateway (pipeline
// Env.Registries); the registry's Run goroutine fetches the watched
// services from its backend, waits for a change (a watch where the backend
// has one, otherwise the sync interval), and tells the watchers when the
// instances changed, so that the pool swaps its server list. When the
// backend fails, the last known instances stay, reported stale.
//
// Each backend is a package of its own, so that an embedder links only the
// clients it uses:
//
//	mesh/discovery/etcd       EtcdServiceRegistry (watches keys)
//	mesh/discovery/zookeeper  ZookeeperServiceRegistry (watches znodes)
//	mesh/discovery/consul     ConsulServiceRegistry (health API)
//	mesh/discovery/eureka     EurekaServiceRegistry (REST API, polling)
//	mesh/discovery/nacos      NacosServiceRegistry (open API, polling)
//	mesh/discovery/dns        DNSServiceRegistry (SRV or A records, polling)
//
// Register the kinds an embedder needs with sluice.WithObjectKinds, e.g.
// sluice.WithObjectKinds(etcd.Kind, dns.Kind). An embedder's own registry
// is any object implementing pipeline.ServiceRegistry, built on Registry or
// not.
package discovery
