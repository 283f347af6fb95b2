package proxy

import (
	"math/rand/v2"
	"net/http"
	"sync/atomic"
)

// LoadBalancer chooses the server of a pool for a request.
//
// A LoadBalancer is built once per pool generation over a fixed list of
// servers and shared by every request: Choose is called concurrently and
// must not block or allocate. It returns nil when no server can take the
// request (no server is healthy, say); the Proxy then answers without
// calling a server. A policy that keeps state across generations (a
// counter, stickiness) implements inherit to take it over.
type LoadBalancer interface {
	Choose(r *http.Request) *Server
}

// newLoadBalancer returns the policy's load balancer over servers, which
// must not be empty. The policy has been validated.
func newLoadBalancer(policy string, servers []*Server) LoadBalancer {
	switch policy {
	case PolicyRandom:
		return &random{servers: servers}
	default:
		return &roundRobin{servers: servers, next: new(turn)}
	}
}

// roundRobin takes the servers in turn.
type roundRobin struct {
	servers []*Server
	next    *turn // shared with the previous generation after inherit
}

// turn is the round-robin counter, alone on its cache line.
type turn struct {
	n atomic.Uint64
	_ [56]byte
}

func (lb *roundRobin) Choose(*http.Request) *Server {
	n := uint64(len(lb.servers))
	if n == 0 {
		return nil
	}
	return lb.servers[(lb.next.n.Add(1)-1)%n]
}

// inherit continues prev's turn, so a reload does not send the next request
// to the first server again.
func (lb *roundRobin) inherit(prev LoadBalancer) {
	if p, ok := prev.(*roundRobin); ok {
		lb.next = p.next
	}
}

// random picks a server uniformly at random.
type random struct {
	servers []*Server
}

func (lb *random) Choose(*http.Request) *Server {
	if len(lb.servers) == 0 {
		return nil
	}
	return lb.servers[rand.IntN(len(lb.servers))]
}

// inheritor is implemented by load balancers that take state over from the
// load balancer of the previous generation.
type inheritor interface {
	inherit(prev LoadBalancer)
}

var (
	_ LoadBalancer = (*roundRobin)(nil)
	_ LoadBalancer = (*random)(nil)
	_ inheritor    = (*roundRobin)(nil)
)
