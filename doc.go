// Package sluice is an embeddable traffic gateway: HTTP servers route
// requests to pipelines of filters that validate, adapt, limit and proxy
// them to backends, all configured as objects that can change while traffic
// flows.
//
// # Objects
//
// Everything is an object with a kind and a name, written in YAML in the
// shape Easegress v2 uses (or built in Go with NewSpec):
//
//	kind: HTTPServer
//	name: server-demo
//	port: 10080
//	rules:
//	  - paths:
//	    - pathPrefix: /pipeline
//	      backend: pipeline-demo
//	---
//	kind: Pipeline
//	name: pipeline-demo
//	flow:
//	  - filter: proxy
//	filters:
//	  - name: proxy
//	    kind: Proxy
//	    pools:
//	    - servers:
//	      - url: http://127.0.0.1:9095
//
// A Gateway owns the objects. Apply creates or updates a set of them all or
// nothing: every spec is decoded strictly (an unknown field is an error),
// validated and built before anything changes; an error names the kind, the
// name, the field and its YAML line, and the running objects stay as they
// were. Then each new object inherits state from the one it replaces, the
// new generation is swapped in atomically, and the old one is closed once
// its requests have finished, so a reload drops no request and closes no
// listener whose address did not change.
//
// # Kinds
//
// Object kinds are registered per Gateway: HTTPServer and Pipeline are
// built in, WithObjectKinds adds others, such as controllers (objects with a
// Run method that work off the request path). Filter kinds, the steps of a
// pipeline, are defined in package pipeline, built in under filters/, and
// added with WithFilterKinds. There is no global registry: two gateways in
// one process share nothing.
//
// # Serving
//
// Start opens the HTTP servers' listeners and runs the controllers;
// Shutdown drains and stops everything. A program that has its own HTTP
// server mounts a gateway's router with Handler instead, and its admin REST
// API with AdminHandler (ListenAdmin opens a listener for it that refuses a
// non-loopback address without a token or mutual TLS). An AutoCertManager
// obtains and renews the https servers' certificates with ACME.
//
// Objects are kept in a Store: in memory by default, or replicated across a
// cluster (package cluster), in which case every member's Gateway applies
// the changes any member commits.
package sluice
