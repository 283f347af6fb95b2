// Package cluster runs Sluice as a cluster whose objects are replicated with
// hashicorp/raft, with no external store to operate.
//
// Scope (not built yet): a sluice.Store backed by raft (put, delete and list
// objects with revisions, watch from a revision, linearizable reads,
// snapshots, raft-boltdb/v2 log and stable stores, mutual TLS between
// nodes); primary members that vote and secondary members that replicate
// and serve; bootstrap, join through any member's admin API, leave and
// remove; writes forwarded to the leader; member heartbeats and per-member
// object status. Every member's Gateway applies the replicated objects
// through the same path as a local Apply, by following its Store.
//
// The root package never imports this one, so an embedder that does not
// use clustering pulls in no raft code.
package cluster
