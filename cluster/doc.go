// Package cluster runs Sluice as a cluster whose objects are replicated with
// hashicorp/raft, with no external store to operate.
//
// # Model
//
// Each member is a Node: a raft server and a sluice.Store. The embedding
// program opens a Node, hands it to its Gateway with sluice.WithStore, and
// mounts Node.AdminHandler next to the Gateway's admin API:
//
//	node, err := cluster.Open(ctx, cluster.Config{ID: "m1", DataDir: dir,
//		RaftAddr: "10.0.0.1:2380", AdminURL: "https://10.0.0.1:2381",
//		Bootstrap: true, TLS: tlsConfig, Secret: secret})
//	gw, err := sluice.New(sluice.WithStore(node))
//	node.SetObjectStatus(func() any { return gw.Status() })
//	for _, p := range cluster.AdminPaths {
//		mux.Handle(p, node.AdminHandler())
//	}
//	mux.Handle("/", gw.AdminHandler())
//	gw.Start(ctx)
//
// An Apply on any member commits the objects' specs to the store; a
// follower forwards the commit to the leader's admin handler. Raft
// replicates the commit to every member, whose state machine applies it
// and wakes the store's watchers; every started Gateway follows its store
// and applies the change through the same code path as a local Apply. A
// member that fell too far behind receives a snapshot instead of the log;
// its watches close and its Gateway lists the store again (see
// sluice.ErrCompacted).
//
// The store's revision counts commits, the same on every member. A commit
// carries a random ID that the state machine remembers for a while, so
// that a commit retried after a leader change takes effect once. Reads
// (List) come from the member's own copy; a context from Linearizable makes
// a read linearizable (the leader proves its leadership by committing an
// empty entry, and the member waits until it has applied as much).
//
// Waits for a commit watch the state machine for the commit's ID rather
// than raft's future: raft v1.7.3 leaves the futures of entries that were
// committed but not yet applied unanswered when it shuts down, and a
// goroutine waiting on one would never end.
//
// # Roles and membership
//
// Primary members are raft voters; run three or five. Secondary members
// are non-voters: they replicate and serve traffic but do not vote, so any
// number of them costs the primaries nothing. A new cluster starts with
// one member that has Config.Bootstrap; the others set Config.Join to the
// admin URL of any member (a follower forwards the join to the leader).
// Node.Leave and Node.Remove (or POST /apis/v2/cluster/leave) take a
// member out. A member restarted with its data directory finds its raft
// state there (raft.HasExistingState) and rejoins: it never bootstraps a
// second cluster, whatever its Config says. Each member reports its status
// to the leader every HeartbeatInterval; GET /apis/v2/status/members on any
// member answers every member's role, raft state, last contact, applied
// index, revision and object status (Node.SetObjectStatus).
//
// # Security
//
// Members authenticate each other twice. The raft transport runs mutual
// TLS 1.3 (each side's certificate must chain to Config.TLS.RootCAs), and
// the dialing side then proves the shared Config.Secret with an HMAC over
// the TLS session's exported keying material, so the proof cannot be
// replayed. Calls between admin handlers (join, leave, forwarded commits,
// heartbeats) carry an HMAC of the secret over method, path, time and body
// and, over TLS, a verified client certificate.
//
// # Failover defaults and their trade-offs
//
// hashicorp/raft's defaults (1 s heartbeat and election timeouts, 500 ms
// leader lease) suit WANs; on a LAN they leave a cluster without a leader
// for two seconds or more. The defaults here are HeartbeatTimeout and
// ElectionTimeout 300 ms, LeaderLeaseTimeout 250 ms and CommitTimeout
// 20 ms: followers notice a dead leader within 300-600 ms and elect a new
// one typically within a second, and a leader cut off from the majority
// stops acknowledging writes after 250 ms. The price: a member stalled for
// longer than the timeouts (a long GC pause, an overloaded host, a
// congested or high-latency network) causes needless elections, during
// which writes wait. Raise the three timeouts together (keeping
// LeaderLeaseTimeout ≤ HeartbeatTimeout ≤ ElectionTimeout) for members
// across data centres or on busy hosts. Snapshots are taken every 1024
// entries and 2048 entries are kept after one, so that a member absent for
// a short while catches up from the log; object specs change rarely, so
// the log stays small either way.
//
// # Dependencies
//
// github.com/hashicorp/raft v1.7.3 with github.com/hashicorp/raft-boltdb/v2
// v2.3.1 on go.etcd.io/bbolt v1.4.3 (log and stable store, one raft.db per
// member) and raft's file snapshot store; this combination builds and
// passes the race detector (raft v1.8 with the v1 bolt store does not).
//
// The root package never imports this one, so an embedder that does not
// use clustering pulls in no raft code.
package cluster
