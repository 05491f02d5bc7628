// Package testenv starts throwaway PostgreSQL clusters and recording HTTP
// receivers, for walhook's tests and for the `walhook demo` command. The core
// (Cluster, Receiver, Proxy) needs no test; testing.go adds helpers built on
// it for anything that satisfies TB. The package does not import testing, so
// that the binary that links it for its demo does not link the test framework.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timeouts generous enough for a loaded, shared 2-core machine.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 60 * time.Second
)

// Cluster is a throwaway PostgreSQL cluster on 127.0.0.1, with trust
// authentication for the superuser "postgres" and wal_level=logical.
//
// The postmaster is our child process, started with a parent-death signal
// (SIGINT, a fast shutdown), so it goes away when the process that started it
// dies without calling Stop; its data directory in os.TempDir() is then left
// behind, and the next StartCluster on this machine removes it. Restart
// starts the postmaster again as our child, so this holds across restarts.
type Cluster struct {
	binDir   string
	rootDir  string // what Stop removes: dataDir, plus the owner file
	dataDir  string
	logPath  string
	cred     *syscall.Credential // nil: run as the current user
	log      *slog.Logger
	settings map[string]string

	mu      sync.Mutex // serialises Stop and Restart
	port    int        // fixed once StartCluster returns
	pm      *postmaster
	stopped bool
}

// Options configures StartCluster.
type Options struct {
	// Logger receives start, stop and restart messages; nil discards them.
	Logger *slog.Logger
	// Settings are extra postgresql.conf settings, e.g.
	// {"max_slot_wal_keep_size": "64MB"}. They override testenv's defaults,
	// except port, listen_addresses and unix_socket_directories, which testenv
	// owns and which are rejected here.
	Settings map[string]string
	// BinDir, if set, is the directory holding initdb, postgres and pg_ctl;
	// otherwise they are looked up (see StartCluster).
	BinDir string
	// Fsync runs the cluster with production durability (fsync and
	// full_page_writes on), for benchmarks: what users run. Tests leave it
	// off, since their clusters die with them.
	Fsync bool
}

// postmaster is one run of the postgres server process.
type postmaster struct {
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // exit status, readable after done is closed
}

func (p *postmaster) exited() bool {
	select {
	case <-p.done:
		return true
	default:
	}
	return false
}

// defaultSettings make a cluster fit for logical replication tests and cheap
// to run several of at once; durability is traded away (fsync=off) because
// the cluster dies with the test, but synchronous_commit stays on so that a
// committed transaction is in the WAL before the client hears of it.
var defaultSettings = [][2]string{
	{"wal_level", "logical"},
	{"max_replication_slots", "32"},
	{"max_wal_senders", "32"},
	{"max_connections", "200"},
	{"shared_buffers", "32MB"},
	{"fsync", "off"},
	{"full_page_writes", "off"},
	{"synchronous_commit", "on"},
	{"TimeZone", "UTC"},
	{"logging_collector", "off"},
}

// durability returns opts.Settings, with fsync and full_page_writes on
// where opts.Fsync asks for them and Settings does not say otherwise.
func durability(opts Options) map[string]string {
	s := maps.Clone(opts.Settings)
	if s == nil {
		s = map[string]string{}
	}
	if opts.Fsync {
		for _, k := range []string{"fsync", "full_page_writes"} {
			if _, set := s[k]; !set {
				s[k] = "on"
			}
		}
	}
	return s
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// StartCluster creates and starts a new cluster in a fresh temporary
// directory, on a free port of 127.0.0.1, and returns once it accepts
// connections. The server binaries are taken from opts.BinDir, else the
// directory of initdb on PATH (symlinks resolved), else pg_config --bindir,
// else the highest /usr/lib/postgresql/*/bin; if none holds initdb, postgres
// and pg_ctl the error wraps ErrNoPostgres. Under root the server runs as the
// "postgres" system user. The caller must call Stop.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	for k, v := range opts.Settings {
		if !settingName.MatchString(k) || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("start postgres: invalid setting %q = %q", k, v)
		}
		switch strings.ToLower(k) {
		case "port", "listen_addresses", "unix_socket_directories":
			return nil, fmt.Errorf("start postgres: setting %q is chosen by testenv and cannot be overridden", k)
		}
	}
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "testenv")
	removeStale(logger)
	rootDir, err := os.MkdirTemp("", tempPattern)
	if err != nil {
		return nil, fmt.Errorf("create postgres data directory: %w", err)
	}
	dataDir := filepath.Join(rootDir, "data")
	c := &Cluster{
		binDir:   binDir,
		rootDir:  rootDir,
		dataDir:  dataDir,
		logPath:  filepath.Join(dataDir, "postgres.log"),
		cred:     cred,
		log:      logger,
		settings: durability(opts),
	}
	if err := c.create(ctx); err != nil {
		os.RemoveAll(rootDir)
		return nil, err
	}
	// The free port may be taken by someone else before postgres binds it;
	// pick another a few times rather than fail the whole test binary.
	for attempt := 1; ; attempt++ {
		c.port, err = freePort()
		if err == nil {
			err = c.start(ctx)
		}
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "could not bind") {
			os.RemoveAll(rootDir)
			return nil, err
		}
		c.log.Warn("port taken, retrying on another", "port", c.port, "err", err)
	}
	c.log.Info("postgres started", "port", c.port, "data_dir", dataDir, "bin_dir", binDir)
	return c, nil
}

// create runs initdb and writes the settings.
func (c *Cluster) create(ctx context.Context) error {
	if err := writeOwner(c.rootDir); err != nil {
		return err
	}
	if c.cred != nil {
		// MkdirTemp made the directory 0700 for root; initdb runs as
		// postgres and creates the data directory inside it.
		if err := os.Chown(c.rootDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("hand directory %s to user postgres: %w", c.rootDir, err)
		}
	}
	// --no-locale: C.UTF-8 is not present everywhere, and tests must not
	// depend on the machine's locale.
	args := []string{"-D", c.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-instructions"}
	if c.settings["fsync"] != "on" {
		// A cluster without fsync dies with its test. A durable one is
		// synced here, as a production cluster's files are: otherwise the
		// kernel writes initdb's files back (some 25 MB at once) about 30 s
		// later, during a benchmark's first runs instead of before them.
		args = append(args, "--no-sync")
	}
	initdb := c.command("initdb", args...)
	if err := runWithContext(ctx, initdb); err != nil {
		return fmt.Errorf("initdb %s: %w", c.dataDir, err)
	}

	var b strings.Builder
	b.WriteString("\n# Added by walhook's testenv.\n")
	for _, kv := range defaultSettings {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], confValue(kv[1]))
	}
	// Written after the defaults so that they win; sorted so that the file
	// reads the same on every run.
	for _, k := range slices.Sorted(maps.Keys(c.settings)) {
		fmt.Fprintf(&b, "%s = %s\n", k, confValue(c.settings[k]))
	}
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\nunix_socket_directories = %s\n", confValue(c.dataDir))
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

func confValue(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// runWithContext runs cmd, killing it if ctx ends first, and puts its output
// in the error.
func runWithContext(ctx context.Context, cmd *exec.Cmd) error {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
		}
		return nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

// Port is the TCP port the cluster listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory, removed by Stop. It holds the
// server log, postgres.log.
func (c *Cluster) DataDir() string { return c.dataDir }

// BinDir is the directory of the PostgreSQL binaries the cluster runs.
func (c *Cluster) BinDir() string { return c.binDir }

// LogPath is the server log, inside DataDir.
func (c *Cluster) LogPath() string { return c.logPath }

// DSN is the connection string for database on this cluster, as the
// superuser postgres (trust authentication, no password).
func (c *Cluster) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, url.PathEscape(database))
}

// Stop shuts the cluster down (fast, falling back to immediate, then to
// SIGKILL) and removes its data directory. It is idempotent, and the error
// says only what could not be undone: a server still running or a directory
// left behind.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	var errs []error
	if err := c.stopLocked("fast"); err != nil {
		c.log.Warn("fast shutdown did not work, trying immediate", "port", c.port, "err", err)
		if err := c.stopLocked("immediate"); err != nil {
			c.log.Warn("immediate shutdown did not work, killing", "port", c.port, "err", err)
			if err := c.killLocked(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(c.rootDir); err != nil {
		errs = append(errs, fmt.Errorf("remove postgres data directory: %w", err))
	}
	c.log.Info("postgres stopped", "port", c.port)
	return errors.Join(errs...)
}

// Restart stops the server with pg_ctl stop -m mode ("fast", or "immediate"
// to simulate a crash: no shutdown checkpoint, crash recovery on start) and
// starts it again on the same port and data directory, returning once it
// accepts connections. Connections to the cluster are broken by it.
func (c *Cluster) Restart(mode string) error {
	if mode != "fast" && mode != "immediate" {
		return fmt.Errorf("restart postgres: mode %q, want fast or immediate", mode)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("restart postgres on port %d: cluster is stopped", c.port)
	}
	if err := c.stopLocked(mode); err != nil {
		return fmt.Errorf("restart postgres on port %d: %w", c.port, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout+stopTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	c.log.Info("postgres restarted", "port", c.port, "mode", mode)
	return nil
}

// connect opens one connection to database, for the cluster's own
// housekeeping.
func (c *Cluster) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.DSN(database))
	if err != nil {
		return nil, fmt.Errorf("connect to database %q on port %d: %w", database, c.port, err)
	}
	return conn, nil
}
