package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/sluicegw/sluice"
)

// Hot upgrade of "sluice server": on SIGHUP, on POST /apis/v2/upgrade to
// its admin API, or on "sluice upgrade", the process starts a new one from
// its executable file (which may have been replaced by a newer build) with
// the same arguments, and hands it every listening socket: the TCP
// listener of each HTTPServer, the UDP socket of each HTTP/3 server and
// the admin API's listener. github.com/cloudflare/tableflip passes the
// sockets and tells the old process when the new one is ready.
//
// The new process loads the objects the old one was running (they are
// passed along as a file, so that changes made through the admin API
// survive; the -f file is read only by the first process), starts them on
// the inherited sockets and signals ready. Only then does the old process
// stop accepting, drain its requests in flight (up to -drain) and exit 0.
// A new process that fails to start (a bad build, objects it cannot load)
// exits and the old one keeps serving: the upgrade call reports the
// error. Until the old process has exited, the new one refuses a further
// upgrade (409).
const (
	upgradePath     = "/upgrade"
	objectsFileName = "sluice-objects"
	upgradeTimeout  = time.Minute
)

// hotUpgrade is the upgrade machinery of one serving process.
type hotUpgrade struct {
	tf  *tableflip.Upgrader
	log *slog.Logger

	mu sync.Mutex // one upgrade at a time
	g  *sluice.Gateway
}

func newHotUpgrade(pidFile string, log *slog.Logger) (*hotUpgrade, error) {
	tf, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: upgradeTimeout})
	if err != nil {
		return nil, fmt.Errorf("hot upgrade: %w", err)
	}
	return &hotUpgrade{tf: tf, log: log}, nil
}

// inheritedObjects returns the objects the parent process was running,
// when this process is an upgrade.
func (h *hotUpgrade) inheritedObjects() ([]byte, bool, error) {
	f, err := h.tf.File(objectsFileName)
	if err != nil || f == nil {
		return nil, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxObjectsFile+1))
	if err != nil {
		return nil, false, fmt.Errorf("objects of the parent process: %w", err)
	}
	if len(b) > maxObjectsFile {
		return nil, false, errors.New("objects of the parent process: too large")
	}
	return b, true, nil
}

// options makes the gateway's servers listen through the upgrader.
func (h *hotUpgrade) options() []sluice.Option {
	return []sluice.Option{sluice.WithListenFuncs(h.tf.Listen, h.tf.ListenPacket)}
}

// ready records the running gateway and tells the parent process, if
// any, that this one serves now.
func (h *hotUpgrade) ready(g *sluice.Gateway) error {
	h.mu.Lock()
	h.g = g
	h.mu.Unlock()
	if err := h.tf.Ready(); err != nil {
		return fmt.Errorf("hot upgrade: %w", err)
	}
	if h.tf.HasParent() {
		h.log.Info("took over from the parent process", "pid", os.Getpid())
	}
	return nil
}

// upgrade starts the new process and waits until it is ready; then Exit
// is closed and this process drains.
func (h *hotUpgrade) upgrade() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.g == nil {
		return errors.New("not ready yet")
	}
	f, err := os.CreateTemp("", "sluice-objects-*.yaml")
	if err != nil {
		return err
	}
	os.Remove(f.Name()) // the open file lives on, for the new process
	defer f.Close()
	for i, s := range h.g.List("") {
		if i > 0 {
			io.WriteString(f, "---\n")
		}
		if _, err := f.Write(s.YAML()); err != nil {
			return fmt.Errorf("writing the objects: %w", err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := h.tf.AddFile(objectsFileName, f); err != nil {
		return err
	}
	h.log.Info("upgrading: starting a new process")
	if err := h.tf.Upgrade(); err != nil {
		h.log.Error("upgrade failed; this process keeps serving", "error", err)
		return err
	}
	h.log.Info("upgraded: the new process is ready; draining this one")
	return nil
}

// onSignal upgrades on SIGHUP until stop is closed.
func (h *hotUpgrade) onSignal(stop <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			h.upgrade() // logged
		case <-stop:
			return
		case <-h.tf.Exit():
			return
		}
	}
}

// exit is closed once a new process has taken over.
func (h *hotUpgrade) exit() <-chan struct{} { return h.tf.Exit() }

// stop refuses further upgrades and releases the upgrader.
func (h *hotUpgrade) stop() { h.tf.Stop() }

// upgradeAPI serves GET and POST /apis/v2/upgrade beside the gateway's
// admin API (next), guarded as the admin API is: the bearer token when one
// is set, loopback clients only otherwise; a loopback Host only (DNS
// rebinding); no state change from a browser's cross-origin request. GET
// reports the process ID and whether hot upgrade is available; POST
// upgrades. h is nil in a process that cannot upgrade (a demo, or sluice
// run inside a test).
func upgradeAPI(next http.Handler, h *hotUpgrade, sf *serveFlags) http.Handler {
	path := sluice.AdminPrefix + upgradePath
	token := sf.adminToken
	hosts := map[string]bool{}
	if host, _, err := net.SplitHostPort(sf.admin); err == nil && host != "" {
		hosts[strings.ToLower(host)] = true
	}
	for h := range strings.SplitSeq(sf.adminHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts[strings.ToLower(h)] = true
		}
	}
	cop := http.NewCrossOriginProtection()
	endpoint := cop.Handler(upgradeEndpoint(h))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			next.ServeHTTP(w, r)
			return
		}
		if code, msg := adminAllowed(r, token, hosts); code != 0 {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
			}
			writeJSON(w, code, map[string]any{"code": code, "message": msg})
			return
		}
		endpoint.ServeHTTP(w, r)
	})
}

func upgradeEndpoint(h *hotUpgrade) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, http.StatusOK, upgradeState{PID: os.Getpid(), HotUpgrade: h != nil})
		case http.MethodPost:
			if h == nil {
				writeJSON(w, http.StatusNotImplemented, map[string]any{"code": http.StatusNotImplemented,
					"message": "hot upgrade is not available in this process (only \"sluice server\" upgrades)"})
				return
			}
			if err := h.upgrade(); err != nil {
				writeJSON(w, http.StatusConflict, map[string]any{"code": http.StatusConflict, "message": "upgrade failed: " + err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"status": "upgraded", "oldPid": os.Getpid()})
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"code": http.StatusMethodNotAllowed, "message": "method not allowed"})
		}
	})
}

// upgradeState is the answer of GET /apis/v2/upgrade.
type upgradeState struct {
	PID        int  `json:"pid"`
	HotUpgrade bool `json:"hotUpgrade"`
}

// adminAllowed applies the admin API's rules to r: a loopback Host or one
// of hosts (the -admin address and -admin-hosts); with a token,
// "Authorization: Bearer <token>"; without one, loopback clients only. It
// returns 0 when r may pass, else the status and message.
func adminAllowed(r *http.Request, token string, hosts map[string]bool) (int, string) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	host = strings.Trim(host, "[]")
	if ip := net.ParseIP(host); host != "" && !hosts[host] && !(host == "localhost" || strings.HasSuffix(host, ".localhost") || (ip != nil && ip.IsLoopback())) {
		return http.StatusForbidden, fmt.Sprintf("host %q is not allowed to reach the upgrade endpoint", r.Host)
	}
	if token != "" {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
			return http.StatusUnauthorized, "a valid bearer token is required"
		}
		return 0, ""
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return http.StatusForbidden, "the admin API answers loopback clients only unless a token is configured"
	}
	return 0, ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (c *cli) upgradeCommand() *command {
	return &command{
		name:  "upgrade",
		args:  "[flags]",
		short: "Replace a running \"sluice server\" with a new process of its executable, without dropping a connection.",
		long: `
The server starts a new process from its executable file with the same
arguments, hands it its listening sockets and objects, and exits once the
new process serves and its own requests in flight are done. Sending the
server SIGHUP does the same. The command exits 0 when the new process is
ready.`,
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "table (the default) or json")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				api, err := cf.client(c, fs, formatTable, formatJSON)
				if err != nil {
					return err
				}
				defer api.close()
				data, err := api.call(http.MethodPost, upgradePath, nil, nil, false)
				if err != nil {
					return err
				}
				if cf.output == formatJSON {
					return c.print(data)
				}
				var res struct {
					OldPID int `json:"oldPid"`
				}
				if err := json.Unmarshal(data, &res); err != nil {
					return fmt.Errorf("decoding the answer: %w", err)
				}
				fmt.Fprintln(c.stdout, "upgraded: process "+strconv.Itoa(res.OldPID)+" is draining; the new process serves")
				return nil
			}
		},
	}
}
