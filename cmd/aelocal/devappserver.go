package main

// aelocal as the program aetest starts.
//
// aetest (google.golang.org/appengine/v2/aetest, and v1's
// google.golang.org/appengine/aetest) runs dev_appserver.py for every
// Instance, or the program named by APPENGINE_DEV_APPSERVER_BINARY (v2 and
// v1.6.7) or APPENGINE_DEV_APPSERVER (v1.6.8). It passes dev_appserver's
// flags and an app directory, reads "Starting API server at: URL" and
// "Starting admin server at: URL" from the program's stderr, sends API
// calls to the API URL, and in Instance.Close GETs ADMIN/quit and waits for
// the program to exit. Given those flags, aelocal plays that part.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
)

// devFlag describes one flag of dev_appserver.py that aelocal understands.
type devFlag struct {
	boolean bool // takes true/false and may stand alone
}

// devFlags are the dev_appserver.py flags aelocal knows: those aetest
// passes, and the addresses. Others are accepted and named on stderr.
var devFlags = map[string]devFlag{
	"host":                         {},
	"port":                         {},
	"api_host":                     {},
	"api_port":                     {},
	"admin_host":                   {},
	"admin_port":                   {},
	"datastore_path":               {},
	"clear_datastore":              {boolean: true},
	"datastore_consistency_policy": {},
	"support_datastore_emulator":   {boolean: true},
	"automatic_restart":            {boolean: true},
	"skip_sdk_update_check":        {boolean: true},
	"clear_search_indexes":         {boolean: true},
	"application":                  {},
	"A":                            {},
}

// isDevAppserver reports whether args are dev_appserver.py's rather than
// aelocal's own: aetest always passes --api_port and --admin_port, which
// aelocal's own flags do not have.
func isDevAppserver(args []string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "api_port" || name == "admin_port") {
			return true
		}
	}
	return false
}

// devConfig is what aelocal takes from dev_appserver.py's command line.
type devConfig struct {
	apiAddr, adminAddr string
	datastorePath      string
	clearDatastore     bool
	consistency        string
	unknown            []string // flags aelocal ignores, as given
	apps               []string // app directories or yaml files
}

// parseDevAppserver reads dev_appserver.py's command line. Like Python's
// argparse, it takes "--flag=value", "--flag value" and, for booleans, a
// lone "--flag". A flag aelocal does not know takes the next argument as
// its value unless that looks like a flag or is the last argument (the app
// directory comes last).
func parseDevAppserver(args []string) (devConfig, error) {
	vals := map[string]string{}
	var c devConfig
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			c.apps = append(c.apps, a)
			continue
		}
		if a == "--" {
			c.apps = append(c.apps, args[i+1:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, known := devFlags[name]
		next := func() bool { return i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") }
		switch {
		case hasVal:
		case known && f.boolean:
			val = "true"
			if next() {
				if _, err := parseBool(args[i+1]); err == nil {
					i++
					val = args[i]
				}
			}
		case known:
			if i+1 >= len(args) {
				return c, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			val = args[i]
		default:
			if next() && i+2 < len(args) {
				i++
				a += " " + args[i]
			}
		}
		if !known {
			c.unknown = append(c.unknown, a)
			continue
		}
		if name == "A" {
			name = "application"
		}
		vals[name] = val
	}

	host := func(flag string) string {
		h := vals[flag]
		if h == "" {
			h = vals["host"]
		}
		if h == "" || h == "localhost" {
			// dev_appserver's default. Its name may resolve to ::1 as well,
			// so aelocal names the address it listens on.
			h = "127.0.0.1"
		}
		return h
	}
	port := func(flag string) (string, error) {
		p := vals[flag]
		if p == "" {
			return "0", nil
		}
		if _, err := net.LookupPort("tcp", p); err != nil {
			return "", fmt.Errorf("--%s=%s: %v", flag, p, err)
		}
		return p, nil
	}
	apiPort, err := port("api_port")
	if err != nil {
		return c, err
	}
	adminPort, err := port("admin_port")
	if err != nil {
		return c, err
	}
	c.apiAddr = net.JoinHostPort(host("api_host"), apiPort)
	c.adminAddr = net.JoinHostPort(host("admin_host"), adminPort)
	c.datastorePath = vals["datastore_path"]
	c.consistency = vals["datastore_consistency_policy"]
	for _, b := range []string{"clear_datastore", "support_datastore_emulator", "automatic_restart", "skip_sdk_update_check", "clear_search_indexes"} {
		if v, ok := vals[b]; ok {
			x, err := parseBool(v)
			if err != nil {
				return c, fmt.Errorf("--%s=%s: want true or false", b, v)
			}
			if b == "clear_datastore" {
				c.clearDatastore = x
			}
		}
	}
	return c, nil
}

// parseBool reads a boolean as dev_appserver.py does.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "1":
		return true, nil
	case "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

// devAppserverMain runs aelocal as dev_appserver.py and returns the exit
// code.
func devAppserverMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go watchParent(ctx, cancel, os.Getppid, 200*time.Millisecond)
	if err := runDevAppserver(ctx, args, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "aelocal:", err)
		return 1
	}
	return 0
}

// watchParent calls cancel once the process that started this one has
// exited: the process is then reparented, and its parent ID changes. So a
// killed test run leaves no aelocal behind.
func watchParent(ctx context.Context, cancel func(), getppid func() int, every time.Duration) {
	parent := getppid()
	if parent <= 1 {
		return // started by init, or nothing to watch on this system
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if getppid() != parent {
				cancel()
				return
			}
		}
	}
}

// runDevAppserver serves until ctx is done or the admin server's /quit is
// called. It writes the lines aetest waits for to stderr, and nothing after
// them: aetest may stop reading, and a full pipe would block the server.
func runDevAppserver(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseDevAppserver(args)
	if err != nil {
		return err
	}
	if len(c.unknown) > 0 {
		fmt.Fprintf(stderr, "aelocal: ignoring dev_appserver flags it does not use: %s\n", strings.Join(c.unknown, " "))
	}
	if c.consistency != "" && c.consistency != "consistent" {
		fmt.Fprintf(stderr, "aelocal: --datastore_consistency_policy=%s: aelocal's datastore is always strongly consistent\n", c.consistency)
	}
	// aetest always clears the datastore; a kept one is the server's
	// DatastorePath, as with aelocal's own -datastore_path.
	opts := aelocal.Options{Addr: c.apiAddr}
	if c.datastorePath != "" && !c.clearDatastore {
		opts.DatastorePath = c.datastorePath
	}
	s, err := aelocal.NewServerOptions(&opts)
	if err != nil {
		return err
	}
	defer s.Close()

	ln, err := net.Listen("tcp", c.adminAddr)
	if err != nil {
		return fmt.Errorf("admin server: %w", err)
	}
	quit := make(chan struct{})
	admin := &http.Server{Handler: adminHandler(ln.Addr().String(), quit), ReadHeaderTimeout: 10 * time.Second}
	go admin.Serve(ln)

	// The API URL carries the bridge's path: v1 clients before 1.6.8 post
	// to the URL as printed; later ones and v2 take its host and port.
	fmt.Fprintf(stderr, "aelocal: Starting API server at: %s/rpc_http\n", s.URL())
	fmt.Fprintf(stderr, "aelocal: Starting admin server at: http://%s\n", ln.Addr())

	select {
	case <-ctx.Done():
	case <-quit:
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	admin.Shutdown(sctx) // lets the /quit answer go out
	return nil
}

// adminHandler serves dev_appserver's admin /quit, the one admin page aetest
// uses. aetest quits with a GET, so a web page must not be able to send
// it: requests with a browser's Origin or Sec-Fetch-Site header, or for a
// host other than the literal address (DNS rebinding), are refused.
func adminHandler(addr string, quit chan struct{}) http.Handler {
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("/quit", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != addr || r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
			http.Error(w, "aelocal: /quit is for aetest only", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			http.Error(w, "aelocal: GET or POST /quit", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintln(w, "aelocal: quitting")
		once.Do(func() { close(quit) })
	})
	return mux
}
