// Command sluice is the reference binary of the Sluice library: a thin
// standalone gateway and an egctl-like client of its admin REST API, built
// only on the public API of package sluice.
//
// Serving:
//
//	sluice [demo] [-listen 127.0.0.1:10080] [-mirror 127.0.0.1:9095] [-admin 127.0.0.1:2381]
//	sluice server [-f objects.yaml|-] [-admin 127.0.0.1:2381] [-admin-token T]
//	sluice mirror [-addr 127.0.0.1:9095]
//
// With no arguments (or "demo") sluice runs the quickstart: the mirror
// backend, an HTTPServer "server-demo" whose rule sends /pipeline to the
// Pipeline "pipeline-demo", which proxies to the mirror, and the admin API.
// The objects come from the embedded demo.yaml, with the addresses of the
// flags filled in. Then
//
//	curl -d hello http://127.0.0.1:10080/pipeline
//
// answers with the request as the mirror saw it.
//
// "server" serves the objects of a YAML file (or of stdin with "-f -"; none
// without -f) and the admin API. The admin API listens on loopback unless
// an admin token is given (-admin-token or $SLUICE_ADMIN_TOKEN); then every
// request needs "Authorization: Bearer <token>". "mirror" serves the echo
// backend alone: it answers every request with a text description of it.
//
// SIGHUP, "sluice upgrade" or POST /apis/v2/upgrade to its admin API makes
// "server" replace itself without dropping a request (hot upgrade, with
// github.com/cloudflare/tableflip): a new process of the executable file,
// with the same arguments, inherits the listening sockets (HTTPServers'
// TCP and HTTP/3 UDP sockets, the admin listener) and the running objects,
// loads them and signals ready; then the old process drains and exits 0.
// -pid-file names a file holding the serving process's ID.
//
// SIGINT or SIGTERM stops a serving command gracefully: the admin API stops
// taking changes, the gateway drains its requests (up to -drain, 30 s by
// default) and the servers close; the exit status is 0. A second signal
// kills the process.
//
// Client commands talk to the admin API of a running sluice (or of any
// program that serves sluice's AdminHandler), like Easegress's egctl:
//
//	sluice object create -f FILE|-    create the objects of a file, all or nothing
//	sluice object apply -f FILE|-     create or update them
//	sluice object update -f FILE|-    update one existing object
//	sluice object get [NAME] [-kind K]
//	sluice object describe NAME       spec and runtime status
//	sluice object delete NAME|-f FILE
//	sluice object kinds               object kinds and filter kinds
//	sluice object status [NAME]
//	sluice health
//	sluice upgrade                    hot-upgrade a running "sluice server"
//
// Their flags: -server (default $SLUICE_SERVER or http://127.0.0.1:2381),
// -token (default $SLUICE_TOKEN) and -o yaml|json|table. Flags may come
// before or after the positional arguments. An error from the API prints
// the server's message and exits 1; a usage error prints the usage and exits
// 2. "sluice help [COMMAND]" or -h prints the usage.
//
// The binary never prints a token: not in usage texts, banners, logs or
// errors.
package main
