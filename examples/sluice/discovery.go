package main

import (
	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery/consul"
	"github.com/sluicegw/sluice/mesh/discovery/dns"
	"github.com/sluicegw/sluice/mesh/discovery/etcd"
	"github.com/sluicegw/sluice/mesh/discovery/eureka"
	"github.com/sluicegw/sluice/mesh/discovery/nacos"
	"github.com/sluicegw/sluice/mesh/discovery/zookeeper"
)

// registryKinds are the service-registry object kinds the reference
// binary serves: a pool with serviceRegistry and serviceName names one of
// these objects, and `sluice object status <name>` prints its instances,
// last sync and errors.
func registryKinds() []sluice.ObjectKind {
	return []sluice.ObjectKind{etcd.Kind, zookeeper.Kind, consul.Kind, eureka.Kind, nacos.Kind, dns.Kind}
}
