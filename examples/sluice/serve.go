package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/cluster"
)

// Defaults of the serving commands.
const (
	defaultAdminAddr  = "127.0.0.1:2381"
	defaultListenAddr = "127.0.0.1:10080"
	defaultMirrorAddr = "127.0.0.1:9095"
	defaultDrain      = 30 * time.Second
	maxObjectsFile    = 64 << 20
)

//go:embed demo.yaml
var demoYAML string

var demoTemplate = template.Must(template.New("demo.yaml").
	Funcs(template.FuncMap{"quote": strconv.Quote}). // a Go quoted string is a YAML double-quoted one
	Option("missingkey=error").
	Parse(demoYAML))

// demoObjects renders the demo's objects: the HTTPServer listens on
// address:port and the Pipeline proxies to mirrorURL.
func demoObjects(address string, port int, mirrorURL string) ([]byte, error) {
	var b bytes.Buffer
	err := demoTemplate.Execute(&b, struct {
		Address   string
		Port      int
		MirrorURL string
	}{address, port, mirrorURL})
	return b.Bytes(), err
}

func (c *cli) demoCommand() *command {
	return &command{
		name:  "demo",
		args:  "[flags]",
		short: "Run the quickstart: the mirror backend, a gateway proxying /pipeline to it, and the admin API.",
		long: `
The demo's objects are an HTTPServer "server-demo" whose rule routes the path
prefix /pipeline to the Pipeline "pipeline-demo", whose Proxy filter forwards
to the mirror backend. Try:

  curl -d hello http://127.0.0.1:10080/pipeline

SIGINT or SIGTERM stops it gracefully.`,
		setup: func(c *cli, fs *flag.FlagSet) action {
			sf := addServeFlags(fs)
			listen := fs.String("listen", defaultListenAddr, "`address:port` of the demo HTTPServer (an IP address, or none for every interface)")
			mirror := fs.String("mirror", defaultMirrorAddr, "`address` of the mirror backend")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				if err := sf.resolve(c, fs); err != nil {
					return err
				}
				host, port, err := splitListen(*listen)
				if err != nil {
					return err
				}
				return c.demo(sf, host, port, *mirror)
			}
		},
	}
}

func (c *cli) demo(sf *serveFlags, host string, port int, mirrorAddr string) error {
	log := sf.logger(c.stderr)
	st := newStack(log, sf.drain)
	mln, err := net.Listen("tcp", mirrorAddr)
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	st.serveHTTP("mirror", mln, newMirrorServer(log))
	mirrorURL := "http://" + dialAddr(mln.Addr())

	objs, err := demoObjects(host, port, mirrorURL)
	if err != nil {
		return st.fail(fmt.Errorf("demo objects: %w", err))
	}
	g, err := sluice.Load(bytes.NewReader(objs), sf.options(log)...)
	if err != nil {
		return st.fail(fmt.Errorf("demo objects: %w", err))
	}
	adminURL, err := c.startGateway(st, g, sf, nil, nil)
	if err != nil {
		return err
	}
	gatewayURL := "http://" + dialAddr(&net.TCPAddr{IP: net.ParseIP(host), Port: port})
	var server string
	if sf.admin != defaultAdminAddr {
		server = " -server " + adminURL
	}
	var note string
	if sf.adminToken != "" {
		// The token itself is never printed.
		note = "The admin API requires the admin token: give it with -token or $SLUICE_TOKEN.\n"
	}
	fmt.Fprintf(c.stdout, `sluice demo is running:
  mirror backend  %s
  HTTPServer      server-demo on %s, routing /pipeline to pipeline-demo, which proxies to the mirror
  admin API       %s%s

Try:
  curl -d hello %s/pipeline
  sluice object get%s
  sluice object status pipeline-demo%s
%s
Press Ctrl-C to stop.
`, mirrorURL, gatewayURL, adminURL, sluice.AdminPrefix, gatewayURL, server, server, note)
	return st.wait(c.ctx)
}

func (c *cli) serverCommand() *command {
	return &command{
		name:  "server",
		args:  "[-f FILE|-] [flags]",
		short: "Serve the objects of a YAML file (or stdin) and the admin API.",
		long: `
FILE holds one or more objects (HTTPServer, Pipeline, ...) as YAML documents
separated by "---". Without -f the gateway starts empty, to be filled through
the admin API ("sluice object create"). The admin API refuses to listen on a
non-loopback address unless a token is set; then clients send it with -token
or $SLUICE_TOKEN.

SIGHUP, "sluice upgrade" or POST /apis/v2/upgrade replaces the process with a
new one of its executable without dropping a connection (hot upgrade): the
new process takes over the listening sockets and the running objects, and
the old one drains and exits.`,
		setup: func(c *cli, fs *flag.FlagSet) action {
			sf := addServeFlags(fs)
			cl := addClusterFlags(fs)
			file := fs.String("f", "", "YAML `file` of the objects to serve; - reads stdin")
			pidFile := fs.String("pid-file", "", "`file` to write the process ID of the serving process to, rewritten by each hot upgrade")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				if err := sf.resolve(c, fs); err != nil {
					return err
				}
				return c.server(sf, cl, *file, *pidFile)
			}
		},
	}
}

func (c *cli) server(sf *serveFlags, cl *clusterFlags, file, pidFile string) error {
	log := sf.logger(c.stderr)
	opts := sf.options(log)
	var hu *hotUpgrade
	var objs []byte
	inherited := false
	node, err := cl.open(c, sf.admin, log)
	if err != nil {
		return err
	}
	if node != nil {
		defer node.Close()
		opts = append(opts, sluice.WithStore(node))
	}
	// A member's raft data directory is held by one process at a time:
	// no hot upgrade in cluster mode.
	if c.hotUpgrade && node == nil {
		var err error
		if hu, err = newHotUpgrade(pidFile, log); err != nil {
			return err
		}
		defer hu.stop()
		if objs, inherited, err = hu.inheritedObjects(); err != nil {
			return err
		}
		opts = append(opts, hu.options()...)
	}
	if file != "" && !inherited {
		var err error
		if objs, err = c.readFile(file); err != nil {
			return err
		}
	}
	g, err := sluice.Load(bytes.NewReader(objs), opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", displayName(file), err)
	}
	if node != nil {
		node.SetObjectStatus(func() any { return g.Status() })
	}
	st := newStack(log, sf.drain)
	adminURL, err := c.startGateway(st, g, sf, hu, node)
	if err != nil {
		return err
	}
	if hu != nil {
		if err := hu.ready(g); err != nil {
			return st.fail(err)
		}
		st.exit = hu.exit()
		stop := make(chan struct{})
		defer close(stop)
		go hu.onSignal(stop)
	}
	specs := g.List("")
	fmt.Fprintf(c.stdout, "sluice server is running %d object(s)", len(specs))
	if inherited {
		fmt.Fprint(c.stdout, " taken over from the parent process")
	} else if file != "" {
		fmt.Fprintf(c.stdout, " from %s", displayName(file))
	}
	fmt.Fprintf(c.stdout, "; admin API on %s%s\n", adminURL, sluice.AdminPrefix)
	for _, s := range specs {
		fmt.Fprintf(c.stdout, "  %s %s\n", s.Kind, s.Name)
	}
	return st.wait(c.ctx)
}

// keepAliveGrace bounds how long a stop or a hot upgrade waits for
// keep-alive connections to end after their next exchange before the
// drain closes the idle ones.
const keepAliveGrace = 2 * time.Second

// startGateway starts g and serves its admin API, with the hot upgrade
// endpoint of hu (nil: not available); on failure it stops everything st
// holds. It returns the admin API's base URL.
func (c *cli) startGateway(st *stack, g *sluice.Gateway, sf *serveFlags, hu *hotUpgrade, node *cluster.Node) (string, error) {
	st.push("gateway", func(ctx context.Context) error {
		// Keep-alive connections end after their next exchange first,
		// so that none is closed under a request a client is sending.
		grace, cancel := context.WithTimeout(ctx, keepAliveGrace)
		g.CloseKeepAlives(grace)
		cancel()
		return g.Shutdown(ctx)
	})
	if err := g.Start(c.ctx); err != nil {
		return "", st.fail(fmt.Errorf("starting the gateway: %w", err))
	}
	listen := net.Listen
	if hu != nil {
		listen = hu.tf.Listen
	}
	aln, err := listen("tcp", sf.admin)
	if err != nil {
		return "", st.fail(fmt.Errorf("admin API: %w", err))
	}
	srv := newHTTPServer(mountCluster(node, upgradeAPI(g.AdminHandler(), hu, sf)), st.log)
	srv.ReadTimeout = time.Minute // specs are small; a slow body is not
	srv.WriteTimeout = time.Minute
	st.serveHTTP("admin API", aln, srv)
	auth := "loopback clients only"
	if sf.adminToken != "" {
		auth = "bearer token required"
	}
	st.log.Info("admin API listening", "addr", aln.Addr().String(), "auth", auth)
	return "http://" + aln.Addr().String(), nil
}

func (c *cli) mirrorCommand() *command {
	return &command{
		name:  "mirror",
		args:  "[-addr ADDR]",
		short: "Serve the echo backend: it answers every request with a description of it.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			addr := fs.String("addr", defaultMirrorAddr, "`address` to listen on")
			drain := fs.Duration("drain", defaultDrain, "how long to wait for requests in flight at shutdown")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				if *drain <= 0 {
					return usagef("-drain must be positive")
				}
				log := slog.New(slog.NewTextHandler(c.stderr, nil))
				ln, err := net.Listen("tcp", *addr)
				if err != nil {
					return err
				}
				st := newStack(log, *drain)
				st.serveHTTP("mirror", ln, newMirrorServer(log))
				fmt.Fprintf(c.stdout, "sluice mirror is listening on http://%s\n", ln.Addr())
				return st.wait(c.ctx)
			}
		},
	}
}

// serveFlags are the flags of the commands that run a gateway.
type serveFlags struct {
	admin      string
	adminToken string
	adminHosts string // comma-separated names allowed in the admin API's Host header
	drain      time.Duration
	level      slog.Level
	levelVar   *slog.LevelVar // the handler's level, changed by the admin API's /loglevel
}

func addServeFlags(fs *flag.FlagSet) *serveFlags {
	sf := &serveFlags{}
	fs.StringVar(&sf.admin, "admin", defaultAdminAddr, "`address` of the admin API; a non-loopback one needs -admin-token")
	fs.StringVar(&sf.adminToken, "admin-token", "", "bearer `token` the admin API requires (default $SLUICE_ADMIN_TOKEN)")
	fs.StringVar(&sf.adminHosts, "admin-hosts", "", "comma-separated `names` clients may use in the Host header of admin API requests, "+
		"besides loopback names and the -admin address (others are refused: DNS rebinding)")
	fs.DurationVar(&sf.drain, "drain", defaultDrain, "how long to wait for requests in flight at shutdown and after a reload")
	fs.TextVar(&sf.level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	return sf
}

// resolve fills in defaults from the environment and checks the flags.
func (sf *serveFlags) resolve(c *cli, fs *flag.FlagSet) error {
	if !flagWasSet(fs, "admin-token") {
		sf.adminToken = c.getenv("SLUICE_ADMIN_TOKEN")
	}
	if sf.drain <= 0 {
		return usagef("-drain must be positive")
	}
	host, _, err := net.SplitHostPort(sf.admin)
	if err != nil {
		return usagef("-admin %q: %v", sf.admin, err)
	}
	if sf.adminToken == "" && !isLoopbackHost(host) {
		return &exitError{exitUsage, fmt.Errorf("refusing to serve the admin API on %q without an admin token: "+
			"anyone who can reach it could change the gateway; listen on a loopback address such as 127.0.0.1, "+
			"or set -admin-token (or $SLUICE_ADMIN_TOKEN)", sf.admin)}
	}
	return nil
}

func (sf *serveFlags) logger(w io.Writer) *slog.Logger {
	sf.levelVar = new(slog.LevelVar)
	sf.levelVar.Set(sf.level)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: sf.levelVar}))
}

func (sf *serveFlags) options(log *slog.Logger) []sluice.Option {
	opts := []sluice.Option{sluice.WithLogger(log), sluice.WithDrainTimeout(sf.drain), sluice.WithObjectKinds(registryKinds()...)}
	if sf.levelVar != nil {
		opts = append(opts, sluice.WithLogLevel(sf.levelVar))
	}
	if sf.adminToken != "" {
		opts = append(opts, sluice.WithAdminToken(sf.adminToken))
	}
	var hosts []string
	if host, _, err := net.SplitHostPort(sf.admin); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
		hosts = append(hosts, host)
	}
	for h := range strings.SplitSeq(sf.adminHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) > 0 {
		opts = append(opts, sluice.WithAdminHosts(hosts...))
	}
	return opts
}

// isLoopbackHost reports whether host (of a listen address) is a loopback
// address or "localhost". An empty host means every interface.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitListen splits the -listen address of the demo into the HTTPServer's
// address (an IP, or empty for every interface) and port.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, usagef("-listen %q: %v", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, usagef("-listen %q: the port must be a number from 1 to 65535", addr)
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	if host != "" && net.ParseIP(host) == nil {
		return "", 0, usagef("-listen %q: the host must be an IP address", addr)
	}
	return host, port, nil
}

// dialAddr returns the host:port to reach a listening address at: a
// loopback address in place of an unspecified one.
func dialAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

func displayName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// readFile reads file, or stdin for "-".
func (c *cli) readFile(file string) ([]byte, error) {
	var r io.Reader
	if file == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxObjectsFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayName(file), err)
	}
	if len(b) > maxObjectsFile {
		return nil, fmt.Errorf("%s: larger than %d MiB", displayName(file), maxObjectsFile>>20)
	}
	return b, nil
}

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// stack is what a serving command runs: HTTP servers and a gateway, stopped
// in the reverse order of their start (admin API, gateway, backends).
type stack struct {
	log   *slog.Logger
	drain time.Duration
	errc  chan error      // a server that stopped serving on its own
	exit  <-chan struct{} // closed when a new process took over (hot upgrade); nil: never
	wg    sync.WaitGroup
	stops []stopper
}

type stopper struct {
	name string
	stop func(context.Context) error
}

func newStack(log *slog.Logger, drain time.Duration) *stack {
	return &stack{log: log, drain: drain, errc: make(chan error, 1)}
}

func (s *stack) push(name string, stop func(context.Context) error) {
	s.stops = append(s.stops, stopper{name, stop})
}

// serveHTTP serves srv on ln until the stack stops.
func (s *stack) serveHTTP(name string, ln net.Listener, srv *http.Server) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case s.errc <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
	s.push(name, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if err != nil {
			srv.Close()
		}
		return err
	})
}

// wait runs until ctx is done (a signal: a clean stop) or a server fails,
// then stops everything.
func (s *stack) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "drain", s.drain.String())
		s.shutdown()
		return nil
	case <-s.exit:
		s.log.Info("a new process took over; draining", "drain", s.drain.String())
		s.shutdown()
		return nil
	case err := <-s.errc:
		return s.fail(err)
	}
}

// fail stops everything and returns err.
func (s *stack) fail(err error) error {
	s.shutdown()
	return err
}

// shutdown stops everything within the drain timeout, last started first.
func (s *stack) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), s.drain)
	defer cancel()
	for i := len(s.stops) - 1; i >= 0; i-- {
		if err := s.stops[i].stop(ctx); err != nil {
			s.log.Warn("stopping", "what", s.stops[i].name, "error", err)
		}
	}
	s.stops = nil
	s.wg.Wait()
}
