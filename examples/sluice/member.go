package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/cluster"
)

// memberListCommand is "sluice member list": every member of the cluster
// a server belongs to, as its leader last heard from them (GET
// /apis/v2/status/members).
func (c *cli) memberListCommand() *command {
	return &command{
		name:  "member list",
		args:  "[flags]",
		short: "List the members of a cluster: role, raft state, heartbeat, applied index.",
		long: "Any member answers: a follower asks the leader. ALIVE is whether the leader heard\n" +
			"the member's heartbeat within three intervals; HEARTBEAT is how long ago.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "table (the default), yaml or json")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("want no arguments, got %d", len(args))
				}
				api, err := cf.client(c, fs, formatTable, formatYAML, formatJSON)
				if err != nil {
					return err
				}
				defer api.close()
				data, err := api.call(http.MethodGet, "/status/members", nil, nil, false)
				if err != nil {
					return err
				}
				var cs cluster.Status
				if err := json.Unmarshal(data, &cs); err != nil {
					return fmt.Errorf("decoding the member status: %w", err)
				}
				switch cf.output {
				case formatJSON:
					_, err = c.stdout.Write(data)
					return err
				case formatYAML:
					b, err := yaml.Marshal(cs)
					if err != nil {
						return err
					}
					_, err = c.stdout.Write(b)
					return err
				}
				return c.memberTable(cs, time.Now())
			}
		},
	}
}

// memberTable prints the member status as a table, the leader marked.
func (c *cli) memberTable(cs cluster.Status, now time.Time) error {
	rows := make([][]string, 0, len(cs.Members))
	for _, m := range cs.Members {
		id := m.ID
		if m.ID == cs.Leader {
			id += " *"
		}
		beat := "-"
		if !m.Heartbeat.IsZero() {
			beat = now.Sub(m.Heartbeat).Round(time.Millisecond).String()
		}
		state := m.State
		if state == "" {
			state = "-"
		}
		rows = append(rows, []string{
			id, m.Name, string(m.Role), state, strconv.FormatBool(m.Alive), beat,
			strconv.FormatUint(m.AppliedIndex, 10), strconv.FormatInt(m.Revision, 10), m.RaftAddr, m.AdminURL,
		})
	}
	if err := c.table([]string{"ID", "NAME", "ROLE", "STATE", "ALIVE", "HEARTBEAT", "APPLIED", "REVISION", "RAFT", "ADMIN"}, rows); err != nil {
		return err
	}
	if cs.Leader == "" {
		fmt.Fprintln(c.stdout, "(no leader known)")
	} else if cs.From != cs.Leader {
		fmt.Fprintf(c.stdout, "(the leader %s did not answer; this is %s's view)\n", cs.Leader, cs.From)
	}
	return nil
}

// memberMain runs "sluice member COMMAND".
func (c *cli) memberMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(c.stderr, "sluice member: missing command")
		c.memberUsage(c.stderr)
		return exitUsage
	}
	if isHelp(args[0]) {
		c.memberUsage(c.stdout)
		return exitOK
	}
	if cmd := c.lookup("member " + args[0]); cmd != nil {
		return c.exec(cmd, args[1:])
	}
	fmt.Fprintf(c.stderr, "sluice member: unknown command %q\n", args[0])
	c.memberUsage(c.stderr)
	return exitUsage
}

func (c *cli) memberUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: sluice member COMMAND [flags]\n\nMember commands:\n")
	for _, cmd := range c.commands() {
		if name, ok := strings.CutPrefix(cmd.name, "member "); ok {
			fmt.Fprintf(w, "  %-32s %s\n", name+" "+cmd.args, cmd.short)
		}
	}
	fmt.Fprint(w, "\nRun \"sluice help member COMMAND\" for a command's flags.\n")
}

// clusterFlags are the flags of "sluice server" in cluster mode: the
// gateway's objects live in a raft store replicated between members
// (package cluster). Cluster mode is on when -cluster-id is set.
type clusterFlags struct {
	id, name, role, dataDir string
	raftAddr, advertise     string
	adminURL                string
	bootstrap               bool
	join                    string
	caFile, certFile        string
	keyFile, secretFile     string
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	cf := &clusterFlags{}
	fs.StringVar(&cf.id, "cluster-id", "", "member `ID`; setting it turns cluster mode on (the objects are replicated with raft)")
	fs.StringVar(&cf.name, "cluster-name", "", "member `name` shown in member lists (default: the ID)")
	fs.StringVar(&cf.role, "cluster-role", string(cluster.Primary), "member `role`: primary (votes) or secondary (replicates, serves, does not vote)")
	fs.StringVar(&cf.dataDir, "cluster-data-dir", "", "`directory` of the raft log and snapshots; restarted with it, a member rejoins its cluster")
	fs.StringVar(&cf.raftAddr, "cluster-raft", "127.0.0.1:2380", "`address` the raft transport listens on")
	fs.StringVar(&cf.advertise, "cluster-advertise", "", "raft `address` the other members dial (default: -cluster-raft)")
	fs.StringVar(&cf.adminURL, "cluster-admin-url", "", "`URL` where the other members reach this admin API (default: http:// and -admin)")
	fs.BoolVar(&cf.bootstrap, "cluster-bootstrap", false, "start a new cluster with this member as its first primary (ignored once the data directory holds raft state)")
	fs.StringVar(&cf.join, "cluster-join", "", "comma-separated admin `URLs` of members to join through (ignored once the data directory holds raft state)")
	fs.StringVar(&cf.caFile, "cluster-ca", "", "PEM `file` of the CA that signs every member's certificate")
	fs.StringVar(&cf.certFile, "cluster-cert", "", "PEM `file` of this member's certificate (server and client use)")
	fs.StringVar(&cf.keyFile, "cluster-key", "", "PEM `file` of this member's private key")
	fs.StringVar(&cf.secretFile, "cluster-secret-file", "", "`file` holding the secret shared by every member (default $SLUICE_CLUSTER_SECRET)")
	return cf
}

// enabled reports whether cluster mode is on.
func (cf *clusterFlags) enabled() bool { return cf.id != "" }

// config turns the flags into a cluster.Config; adminAddr is the -admin
// address. Errors name the flag.
func (cf *clusterFlags) config(c *cli, adminAddr string, log *slog.Logger) (cluster.Config, error) {
	cfg := cluster.Config{
		ID: cf.id, Name: cf.name, Role: cluster.Role(cf.role), DataDir: cf.dataDir,
		RaftAddr: cf.raftAddr, AdvertiseAddr: cf.advertise, AdminURL: cf.adminURL,
		Bootstrap: cf.bootstrap, Logger: log,
	}
	if cfg.AdminURL == "" {
		cfg.AdminURL = "http://" + adminAddr
	}
	for j := range strings.SplitSeq(cf.join, ",") {
		if j = strings.TrimSpace(j); j != "" {
			cfg.Join = append(cfg.Join, j)
		}
	}
	if cf.dataDir == "" {
		return cfg, usagef("-cluster-data-dir is required in cluster mode")
	}
	if cf.caFile == "" || cf.certFile == "" || cf.keyFile == "" {
		return cfg, usagef("-cluster-ca, -cluster-cert and -cluster-key are required in cluster mode: members authenticate each other with certificates")
	}
	cert, err := tls.LoadX509KeyPair(cf.certFile, cf.keyFile)
	if err != nil {
		return cfg, fmt.Errorf("-cluster-cert/-cluster-key: %w", err)
	}
	caPEM, err := os.ReadFile(cf.caFile)
	if err != nil {
		return cfg, fmt.Errorf("-cluster-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return cfg, fmt.Errorf("-cluster-ca %s: no PEM certificate in the file", cf.caFile)
	}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool, MinVersion: tls.VersionTLS13}
	secret := c.getenv("SLUICE_CLUSTER_SECRET")
	if cf.secretFile != "" {
		b, err := os.ReadFile(cf.secretFile)
		if err != nil {
			return cfg, fmt.Errorf("-cluster-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret == "" {
		return cfg, usagef("-cluster-secret-file or $SLUICE_CLUSTER_SECRET is required in cluster mode")
	}
	cfg.Secret = []byte(secret)
	return cfg, nil
}

// open starts this member (nil, nil when cluster mode is off).
func (cf *clusterFlags) open(c *cli, adminAddr string, log *slog.Logger) (*cluster.Node, error) {
	if !cf.enabled() {
		return nil, nil
	}
	cfg, err := cf.config(c, adminAddr, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	node, err := cluster.Open(ctx, cfg)
	if errors.Is(err, cluster.ErrBadConfig) {
		return nil, usagef("%v", err)
	}
	return node, err
}

// mount serves the member's cluster endpoints (join, leave, forwarded
// writes, heartbeats, /apis/v2/status/members) next to admin, the
// gateway's admin API. With node nil it returns admin.
func mountCluster(node *cluster.Node, admin http.Handler) http.Handler {
	if node == nil {
		return admin
	}
	mux := http.NewServeMux()
	for _, p := range cluster.AdminPaths {
		mux.Handle(p, node.AdminHandler())
	}
	mux.Handle("/", admin)
	return mux
}
